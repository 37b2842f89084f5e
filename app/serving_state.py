"""What a request changes in this worker's serving state at once, as the layers below see it.

The model registry (:class:`app.training.registry.ModelRegistry`) implements it. Catalogue and
customer use cases take this protocol rather than the registry, so that the domain folders do
not import each other in a loop; the other workers apply the same change at their next poll.
"""

from __future__ import annotations

from typing import Protocol


class ServingState(Protocol):
    """The changes that must not wait for the next poll in the worker that made them."""

    def mark_unavailable(self, item_id: str) -> None:
        """Never recommend the item again (it was retired)."""

    def forget_user(self, user_id: str) -> None:
        """Drop an erased user from the active model's look-ups."""
