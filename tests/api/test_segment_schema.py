"""/segments publishes a real schema: every profile field, the quality figures, typed.

The profile is a TypedDict in the ML core (`SegmentProfile`) and a pydantic model at the API
(`SegmentProfileOut`); these tests keep the two from drifting apart and check that a fitted
model's profiles and quality figures pass the response model unchanged.
"""

from __future__ import annotations

import pytest

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.main import create_app
from app.ml.segmentation import CustomerSegmentation, SegmentProfile, aggregate_events
from app.ml.segmentation.profiles import (
    CategoryShare,
    ItemCount,
    PredictedValueStats,
    Spread,
    Stats,
)
from app.segments.schemas import (
    CategoryShareOut,
    ItemCountOut,
    PredictedValueStatsOut,
    SegmentProfileOut,
    SegmentsOut,
    SpreadOut,
    StatsOut,
)

OPENAPI = create_app(Settings(database_url="sqlite://")).openapi()


def _schema(name: str) -> dict:
    return OPENAPI["components"]["schemas"][name]


@pytest.mark.parametrize(
    ("typed", "model"),
    [
        (SegmentProfile, SegmentProfileOut),
        (Stats, StatsOut),
        (CategoryShare, CategoryShareOut),
        (ItemCount, ItemCountOut),
        (PredictedValueStats, PredictedValueStatsOut),
        (Spread, SpreadOut),
    ],
)
def test_response_models_name_the_fields_of_the_ml_types(typed: type, model: type) -> None:
    assert list(model.model_fields) == list(typed.__annotations__)
    assert set(_schema(model.__name__)["properties"]) == set(typed.__annotations__)
    assert set(_schema(model.__name__).get("required", [])) == typed.__required_keys__


def test_segments_route_publishes_the_profile_schema() -> None:
    ok = OPENAPI["paths"]["/segments"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentsOut"
    }
    segments = _schema("SegmentsOut")["properties"]
    assert segments["segments"]["items"] == {"$ref": "#/components/schemas/SegmentProfileOut"}
    assert set(segments["quality"].values()) == {"#/components/schemas/QualityOut"}
    assert set(_schema("QualityOut")["properties"]) == {
        "n_customers",
        "n_purchasers",
        "kmeans",
        "dbscan",
        "fit_seconds",
    }
    median = _schema("SegmentProfileOut")["properties"]["monetary"]
    assert median["$ref"] == "#/components/schemas/StatsOut"


@pytest.mark.parametrize("with_items", [True, False])
def test_a_fitted_models_profiles_pass_the_response_model_unchanged(with_items: bool) -> None:
    shop = generate_shop(n_users=300, n_items=120, n_events=12_000, seed=3)
    ev = shop.events
    agg, items = aggregate_events(
        user_ids=ev.user_id,
        item_ids=ev.item_id,
        event_types=ev.type,
        values=ev.value,
        occurred_at=ev.occurred_at,
        order_ids=ev.order_id,
        item_categories={item.item_id: item.categories for item in shop.items},
        now=shop.now,
    )
    seg = CustomerSegmentation(k=3).fit(agg, top_items=items if with_items else None)
    body = {
        "model_version": 1,
        "algorithm": "kmeans",
        "quality": seg.quality_,
        "segments": seg.profiles("kmeans"),
        "other_algorithm": {"algorithm": "dbscan", "segments": seg.profiles("dbscan")},
    }
    out = SegmentsOut.model_validate(body).model_dump(mode="json", exclude_unset=True)
    assert out == body
    assert all(("top_items" in p) == with_items for p in out["segments"])
