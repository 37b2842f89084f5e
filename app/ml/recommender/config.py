"""The recommender's hyper-parameters: one frozen config, checked when built from untrusted input."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.ml.interactions import (
    AGGREGATIONS,
    DEFAULT_EVENT_WEIGHTS,
)

MODEL_NAMES = ("item_knn", "user_knn", "ease", "rp3beta", "content", "popularity", "trending")

#: Aggregations tried at tuning when the config leaves it open, and the one used untuned.
TUNED_AGGREGATIONS = ("binary", "log1p")
DEFAULT_AGGREGATION = "log1p"


@dataclass(frozen=True)
class RecommenderConfig:
    """Every hyper-parameter of training, with defaults chosen on a validation split.

    Build it from untrusted input with :meth:`from_dict`, which rejects unknown keys.
    ``min_content_weight`` floors the tuned content weight (as a share of the largest weight)
    so that items nobody has bought yet stay reachable. ``content_max_postings`` bounds how many
    items one term links (exact below it, see :class:`ContentTfidf`) and ``eval_max_users`` how
    many users evaluation scores (a seeded sample beyond it), so that neither phase grows with
    the square of the shop.
    """

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    aggregation: str | None = None
    half_life_days: float | None = None
    history_half_life_days: float | None = 60.0
    history_length: int = 500
    repeat_half_life_days: float | None = 90.0
    home_repeat_share: float | None = None
    models: tuple[str, ...] = ("item_knn", "user_knn", "ease", "rp3beta", "content", "popularity")
    item_knn_k: int = 200
    item_knn_shrink: float = 0.0
    item_knn_similarity: str = "cosine"
    user_knn_k: int = 50
    user_knn_shrink: float = 0.0
    user_knn_similarity: str = "cosine"
    ease_l2: float = 500.0
    ease_max_items: int = 8000
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.5
    rp3_k: int = 200
    content_k: int = 100
    content_max_df: float = 0.5
    content_min_df: int = 1
    content_ngram_max: int = 1
    content_stop_words: str | None = "english"
    content_max_postings: int = 400
    trending_window_days: float = 30.0
    trending_half_life_days: float = 7.0
    evaluate: bool = True
    eval_k: int = 10
    eval_max_users: int = 10_000
    holdout_fraction: float = 0.2
    min_interactions: int = 2
    tune: bool = True
    blend_weights: Mapping[str, float] | None = None
    tune_max_users: int = 2500
    tune_candidates: int = 30
    tune_min_coverage: float = 0.0
    min_content_weight: float = 0.05
    seed: int = 0
    max_block_entries: int = 1 << 24
    blas_threads: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(MODEL_NAMES)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; expected some of {MODEL_NAMES}")
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if self.history_length < 1:
            raise ValueError("history_length must be at least 1")
        if self.home_repeat_share is not None and not 0.0 <= self.home_repeat_share <= 1.0:
            raise ValueError("home_repeat_share must be in [0, 1]")
        for name in ("half_life_days", "history_half_life_days", "repeat_half_life_days"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        if self.eval_k < 1:
            raise ValueError("eval_k must be at least 1")
        if self.blend_weights is not None:
            stray = set(self.blend_weights) - set(self.models)
            if stray:
                raise ValueError(f"blend_weights for models not trained: {sorted(stray)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecommenderConfig:
        """Build a config from a mapping; raise ``ValueError`` on unknown keys."""
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(defaults)
        if unknown:
            raise ValueError(f"unknown recommender config keys: {sorted(unknown)}")
        values = {name: _checked(name, value) for name, value in data.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict (round-trips through :meth:`from_dict`)."""
        out = dataclasses.asdict(self)
        out["models"] = list(self.models)
        out["event_weights"] = dict(self.event_weights)
        if self.blend_weights is not None:
            out["blend_weights"] = dict(self.blend_weights)
        return out


_NULLABLE = {
    "aggregation",
    "half_life_days",
    "history_half_life_days",
    "repeat_half_life_days",
    "home_repeat_share",
    "content_stop_words",
    "blend_weights",
}
_NULLABLE_TEXT = {"aggregation", "content_stop_words"}
_MAPPINGS = {"event_weights", "blend_weights"}


def _checked(name: str, value: Any) -> Any:
    """Validate one config value against the type of its default (ints widen to floats)."""
    if value is None:
        if name in _NULLABLE:
            return None
        raise ValueError(f"config {name!r} must not be null")
    if name in _MAPPINGS:
        ok = isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in value.items()
        )
        if not ok:
            raise ValueError(f"config {name!r} must map names to numbers")
        return {k: float(v) for k, v in value.items()}
    if name == "models":
        if isinstance(value, str) or not all(isinstance(m, str) for m in value):
            raise ValueError("config 'models' must be a list of model names")
        return tuple(value)
    default = _DEFAULTS.get(name)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _NULLABLE_TEXT:
        ok = isinstance(value, str)
    elif isinstance(default, float) or name in _NULLABLE:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"config {name!r} has the wrong type: {value!r}")
    return value


_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(RecommenderConfig) if f.default is not None
}
