"""The recommender's hyper-parameters: one frozen config per model, nested in the recommender's.

Every config rejects unknown keys and values of the wrong type (pydantic's strict mode: an int
widens to a float, but a bool or a string is no number). A model's config holds exactly the
keyword parameters of that model's ``__init__``, so training builds it as
``ItemKNN(**config.item_knn.model_dump(), ...)`` and each hyper-parameter is declared once here
and once in the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.ml.collaborative import UserSimilarity
from app.ml.interactions import Aggregation
from app.ml.similarity import Similarity
from app.ml.weights import DEFAULT_EVENT_WEIGHTS

ModelName = Literal["item_knn", "user_knn", "ease", "rp3beta", "content", "popularity", "trending"]
MODEL_NAMES: tuple[ModelName, ...] = get_args(ModelName)

#: Aggregations tried at tuning when the config leaves it open, and the one used untuned.
TUNED_AGGREGATIONS: tuple[Aggregation, ...] = ("binary", "log1p")
DEFAULT_AGGREGATION: Aggregation = "log1p"

#: The newest distinct items of a history that ``explore`` scores (see ``history_items``).
HISTORY_ITEMS = 100
#: How many history items' neighbour rows ``explore`` reads whole (see ``history_rows``).
HISTORY_ROWS = 50

PositiveDays = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ItemKNNConfig(_Config):
    """:class:`~app.ml.collaborative.ItemKNN`'s hyper-parameters."""

    k: int = 200
    shrink: float = 0.0
    similarity: Similarity = "cosine"
    max_votes: int | None = Field(default=1000, ge=1)


class UserKNNConfig(_Config):
    """:class:`~app.ml.collaborative.UserKNN`'s hyper-parameters."""

    k: int = 50
    shrink: float = 0.0
    similarity: UserSimilarity = "cosine"


class EASEConfig(_Config):
    """:class:`~app.ml.collaborative.EASE`'s hyper-parameters.

    A catalogue above ``max_items`` gets RP3beta instead (EASE is dense items x items).
    ``k`` is the weights kept per row for scoring, the largest in absolute value (None: the
    dense rows, each answer then costs a pass over the catalogue). On Online Retail, k=400
    scores as the dense rows do (explore NDCG@10 0.1345 alone, 0.1352 served against 0.1355);
    k=200 cost the served blend 0.7%.
    """

    l2: float = 500.0
    max_items: int = 8000
    k: int | None = Field(default=400, ge=1)


class RP3betaConfig(_Config):
    """:class:`~app.ml.collaborative.RP3beta`'s hyper-parameters."""

    alpha: float = 1.0
    beta: float = 0.5
    k: int = 200


class ContentConfig(_Config):
    """:class:`~app.ml.content.ContentTfidf`'s hyper-parameters.

    ``max_postings`` bounds how many items one term links (exact below it), so that the fit
    does not grow with the square of the shop.
    """

    k: int = 100
    max_df: float = 0.5
    min_df: int = 1
    ngram_max: int = 1
    stop_words: Literal["english"] | None = "english"
    max_postings: int = 400


class TrendingConfig(_Config):
    """:class:`~app.ml.popularity.Trending`'s hyper-parameters."""

    window_days: float = 30.0
    half_life_days: float = 7.0


class RecommenderConfig(_Config):
    """Every hyper-parameter of training, with defaults chosen on a validation split.

    Build it from untrusted input with :meth:`from_dict`, which rejects unknown keys.
    ``min_content_weight`` floors the tuned content weight (as a share of the largest weight)
    so that items nobody has bought yet stay reachable. ``eval_max_users`` bounds how many
    users evaluation scores (a seeded sample beyond it). ``max_block_entries`` bounds the
    memory of the blocked similarity products and ``blas_threads`` the BLAS threads.
    ``history_items`` bounds the distinct items ``explore`` scores; past ``history_rows`` of
    them, each item's neighbour rows are read from their strongest entries down to the share
    ``history_rows / items``, so that scoring reads about ``history_rows`` rows' worth.
    """

    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    aggregation: Aggregation | None = None
    half_life_days: PositiveDays | None = None
    history_half_life_days: PositiveDays | None = 60.0
    history_length: int = Field(default=200, ge=1)
    history_items: int | None = Field(default=HISTORY_ITEMS, ge=1)
    history_rows: int | None = Field(default=HISTORY_ROWS, ge=1)
    repeat_half_life_days: PositiveDays | None = 90.0
    home_repeat_share: Share | None = None
    models: tuple[ModelName, ...] = (
        "item_knn",
        "user_knn",
        "ease",
        "rp3beta",
        "content",
        "popularity",
    )
    item_knn: ItemKNNConfig = ItemKNNConfig()
    user_knn: UserKNNConfig = UserKNNConfig()
    ease: EASEConfig = EASEConfig()
    rp3beta: RP3betaConfig = RP3betaConfig()
    content: ContentConfig = ContentConfig()
    trending: TrendingConfig = TrendingConfig()
    evaluate: bool = True
    eval_k: int = Field(default=10, ge=1)
    eval_max_users: int = 10_000
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_interactions: int = 2
    tune: bool = True
    blend_weights: dict[str, float] | None = None
    tune_max_users: int = 2500
    tune_candidates: int = 30
    tune_min_coverage: float = 0.0
    min_content_weight: float = 0.05
    seed: int = 0
    max_block_entries: int = 1 << 24
    blas_threads: int = 1

    @field_validator("models", mode="before")
    @classmethod
    def _known_models(cls, value: Any) -> Any:
        # JSON has no tuples: a list is read as one (a string stays a type error).
        if isinstance(value, list | tuple):
            unknown = sorted(set(value) - set(MODEL_NAMES))
            if unknown:
                raise ValueError(f"unknown models {unknown}; expected some of {MODEL_NAMES}")
            return tuple(value)
        return value

    @model_validator(mode="after")
    def _blend_weights_of_trained_models(self) -> RecommenderConfig:
        if self.blend_weights is not None:
            stray = set(self.blend_weights) - set(self.models)
            if stray:
                raise ValueError(f"blend_weights for models not trained: {sorted(stray)}")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecommenderConfig:
        """Build a config from a mapping; raise ``ValueError`` on unknown keys or bad values.

        Besides the nested form of :meth:`to_dict` it reads the previous release's flat keys
        (``item_knn_k``, ``rp3_alpha``, ``content_max_df``, ...), so that older bundles and
        settings still load.
        """
        values = _nested(data)
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise ValueError(f"unknown recommender config keys: {sorted(unknown)}")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'config'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(f"invalid recommender config: {problems}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict (round-trips through :meth:`from_dict`)."""
        return self.model_dump(mode="json")


#: The previous release's flat key prefixes, by the nested config they now belong to.
_LEGACY_PREFIXES = {
    "item_knn_": "item_knn",
    "user_knn_": "user_knn",
    "ease_": "ease",
    "rp3_": "rp3beta",
    "content_": "content",
    "trending_": "trending",
}


def _nested(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every flat key of the previous release moved into its nested config.

    A flat key is moved only when it names a field of that config; others stay, to be
    reported as unknown under the name they were given.
    """
    out = dict(data)
    for key in list(out):
        prefix = next((p for p in _LEGACY_PREFIXES if key.startswith(p)), None)
        if prefix is None or key in RecommenderConfig.model_fields:
            continue
        name, field = _LEGACY_PREFIXES[prefix], key.removeprefix(prefix)
        section = RecommenderConfig.model_fields[name].annotation
        if not (
            isinstance(section, type)
            and issubclass(section, BaseModel)
            and field in section.model_fields
        ):
            continue
        nested = out.get(name, {})
        if not isinstance(nested, Mapping) or field in nested:
            raise ValueError(f"recommender config {key!r} is also given as {name}.{field}")
        out[name] = {**nested, field: out.pop(key)}
    return out
