"""The one default table of event-type weights, shared by the settings, training and serving.

It lives apart from :mod:`app.ml.interactions` (which applies it, see
:func:`app.ml.interactions.event_weights`) so that the settings can import it without loading
numpy and scipy: the command line starts without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

RATING_TYPE = "rating"

DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "view": 1.0,
        "click": 1.0,
        "add_to_cart": 3.0,
        "purchase": 5.0,
        # Times the rating's value: a 5-star rating weighs 5, like a purchase.
        RATING_TYPE: 1.0,
    }
)
