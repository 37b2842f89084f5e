"""Response bodies of the segmentation API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from app.deps import query_model
from app.ml.segmentation import NO_PURCHASE_GROUP, RFM_GROUPS, Algorithm
from app.schemas import ID_MAX_LENGTH, ID_PATTERN
from app.segments import examples


class SegmentRef(BaseModel):
    """Which segment, in words a marketer reads."""

    id: int
    label: str
    algorithm: Algorithm


class RfmOut(BaseModel):
    """Recency/frequency/monetary values, their 1–5 scores and the named RFM group."""

    recency_days: float | None
    frequency: float
    monetary: float
    r: int
    f: int
    m: int
    group: str


class PredictedValueOut(BaseModel):
    """BG/NBD + Gamma-Gamma predictions over the next `horizon_days`; null figures say why."""

    p_alive: float | None = Field(description="Probability the customer is still a customer")
    expected_orders: float | None = Field(description="Expected orders in the horizon")
    expected_spend: float | None = Field(description="Expected spend in the horizon")
    horizon_days: float
    reason: str | None = Field(
        description="Why figures are null (too little data, no purchase yet, ...); else null"
    )


ChurnRisk = Literal["high", "medium", "low"]

#: The RFM groups GET /segment names (the README's table, and customers without a purchase).
RFM_GROUP_NAMES: tuple[str, ...] = (*RFM_GROUPS, NO_PURCHASE_GROUP)


def _known_rfm_group(value: str) -> str:
    if value not in RFM_GROUP_NAMES:
        raise ValueError(f"unknown RFM group {value!r}: one of {', '.join(RFM_GROUP_NAMES)}")
    return value


#: One of :data:`RFM_GROUP_NAMES`, checked against the segmentation's own list.
RfmGroupName = Annotated[
    str,
    AfterValidator(_known_rfm_group),
    WithJsonSchema({"type": "string", "enum": list(RFM_GROUP_NAMES)}),
]


class SegmentOut(BaseModel):
    """A customer's segment, computed from their live behaviour.

    With the store down and nothing cached, the segment assigned at the last retrain is
    returned instead, with `degraded: true` and no RFM figures.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [examples.SEGMENT]})

    user_id: str
    segment: SegmentRef
    rfm: RfmOut | None
    outlier: bool
    predicted_value: PredictedValueOut | None = Field(
        None, description="Null only in a degraded answer"
    )
    churn_risk: ChurnRisk | None = Field(
        None,
        description="From P(alive): high below 0.3, medium below 0.7, else low; "
        "null without a prediction",
    )
    model_version: int
    computed_at: datetime
    degraded: bool = False


class StatsOut(BaseModel):
    """Mean and median of one figure over a segment's customers; null where undefined."""

    mean: float | None
    median: float | None


class CategoryShareOut(BaseModel):
    """A category and its share of the segment's purchases."""

    category: str
    share: float


class ItemCountOut(BaseModel):
    """An item and how many times the segment's customers bought it."""

    item_id: str
    count: float


class SpreadOut(BaseModel):
    """Mean and 10/50/90th percentiles of a predicted figure over a segment's customers."""

    mean: float
    p10: float
    median: float
    p90: float


class PredictedValueStatsOut(BaseModel):
    """A segment's predicted value over its customers with a prediction."""

    customers: int = Field(description="Customers of the segment with a prediction")
    horizon_days: float
    p_alive: SpreadOut | None
    expected_orders: SpreadOut | None
    expected_spend: SpreadOut | None = Field(description="Null when spend is unpublished")


class SegmentProfileOut(BaseModel):
    """One segment in real units: size, R/F/M, order habits, RFM groups and tastes."""

    segment_id: int = Field(description="-1: no purchase yet, -2: outliers (DBSCAN)")
    label: str = Field(description="Unique human-readable name, e.g. 'High-value loyal'")
    reserved: bool = Field(description="A reserved segment (no purchase yet, outliers)")
    size: int = Field(description="Customers in the segment")
    share: float = Field(description="Share of all customers")
    recency_days: StatsOut = Field(description="Days since the last purchase")
    frequency: StatsOut = Field(description="Orders per customer")
    monetary: StatsOut = Field(description="Spend per customer")
    avg_order_value: StatsOut
    tenure_days: StatsOut = Field(description="Days since the first event")
    lines_per_order: StatsOut
    line_value: StatsOut = Field(description="Value of one order line")
    single_order_share: float | None = Field(
        description="Share of customers with one order; null for 'no purchase yet'"
    )
    views_per_customer: float
    rfm_groups: dict[str, float] = Field(
        description="The (at most three) commonest RFM groups and their shares"
    )
    top_categories: list[CategoryShareOut]
    top_items: list[ItemCountOut] | None = Field(
        None, description="Absent when the model was fitted without purchase counts"
    )
    rfm_group_counts: dict[str, int] | None = Field(
        None, description="Customers in every RFM group (absent in older model versions)"
    )
    churn_risk: dict[ChurnRisk, int] | None = Field(
        None, description="Customers in each churn-risk group (absent in older versions)"
    )
    predicted_value: PredictedValueStatsOut | None = Field(
        None, description="Null when the model publishes no predictions for the segment"
    )


class ClusterQualityOut(BaseModel):
    """Silhouette (on a sample), Davies-Bouldin and Calinski-Harabasz; null if undefined."""

    silhouette: float | None
    davies_bouldin: float | None
    calinski_harabasz: float | None


class KMeansQualityOut(ClusterQualityOut):
    """How k was chosen and how well K-means separates the purchasers."""

    k: int
    k_selection: Literal["fixed", "silhouette"]
    silhouette_by_k: dict[str, float | None] = Field(
        description="Silhouette of every k tried (empty when k is fixed)"
    )
    stability_ari: float | None = Field(
        description="Adjusted Rand index against a fit with another seed"
    )
    inertia: float


class DbscanQualityOut(ClusterQualityOut):
    """DBSCAN's parameters, clusters and outliers (figures over clustered purchasers)."""

    eps: float
    min_samples: int
    fit_sample_size: int
    n_clusters: int
    n_core_samples: int
    outlier_share: float


class QualityOut(BaseModel):
    """Clustering quality figures of both algorithms, from the last retrain."""

    n_customers: int
    n_purchasers: int
    kmeans: KMeansQualityOut
    dbscan: DbscanQualityOut
    fit_seconds: float


class OtherAlgorithmOut(BaseModel):
    """The profiles of the algorithm not configured, for comparison."""

    algorithm: Algorithm
    segments: list[SegmentProfileOut]


class GroupTotalsOut(BaseModel):
    """Customers in every RFM group and every churn-risk group, over all segments."""

    rfm_groups: dict[str, int]
    churn_risk: dict[ChurnRisk, int]


class SegmentsOut(BaseModel):
    """Every segment's profile and the clustering quality figures."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.SEGMENTS]})

    model_version: int
    algorithm: Algorithm
    quality: QualityOut
    segments: list[SegmentProfileOut]
    other_algorithm: OtherAlgorithmOut
    groups: GroupTotalsOut | None = Field(
        None, description="RFM and churn-risk group counts; null in older model versions"
    )


class MembersQuery(BaseModel):
    """Pagination of a segment's members."""

    model_config = ConfigDict(frozen=True)

    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="The last user id of the previous page",
    )
    limit: int = Field(100, ge=1, le=1000)
    rfm_group: RfmGroupName | None = Field(
        None, description="Only members whose GET /segment answer has this RFM group now"
    )
    churn_risk: ChurnRisk | None = Field(
        None, description="Only members whose GET /segment answer has this churn risk now"
    )

    def wanted(self) -> dict[str, str]:
        """The RFM group and churn risk asked for (empty: no filter)."""
        return {
            k: v for k, v in (("rfm_group", self.rfm_group), ("churn_risk", self.churn_risk)) if v
        }


MembersParams = Annotated[MembersQuery, Depends(query_model(MembersQuery))]


class MembersOut(BaseModel):
    """One page of a segment's members (as assigned at the last retrain).

    A page filtered by RFM group or churn risk may be short, even empty, with a `next_cursor`:
    follow it until it is null.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [examples.MEMBERS]})

    segment_id: int
    model_version: int
    users: list[str]
    next_cursor: str | None


MAP_MAX_POINTS = 5000


class MapQuery(BaseModel):
    """Which segmentation colours the customer map, and how many customers it samples."""

    model_config = ConfigDict(frozen=True)

    algorithm: Algorithm | None = Field(
        None, description="kmeans or dbscan; default the configured one"
    )
    limit: int = Field(MAP_MAX_POINTS, ge=1, le=MAP_MAX_POINTS, description="Customers sampled")


MapParams = Annotated[MapQuery, Depends(query_model(MapQuery))]


class MapPointOut(BaseModel):
    """One purchaser on the map: where, which segment, and their RFM now."""

    user_id: str
    x: float
    y: float
    segment_id: int
    recency_days: float | None
    frequency: float
    monetary: float
    r: int
    f: int
    m: int
    group: str


class MapSegmentOut(BaseModel):
    """A segment and how many of the sampled customers are in it."""

    segment_id: int
    label: str
    count: int


class MapOut(BaseModel):
    """A sample of customers on the principal plane of the segmentation's features."""

    model_version: int
    algorithm: Algorithm
    customers: int = Field(description="Customers segmented at the last retrain (not erased)")
    sampled: int = Field(description="Customers in the sample (all of them up to `limit`)")
    no_purchase: int = Field(description="Sampled customers without a purchase: not mapped")
    explained_variance: list[float] = Field(description="Variance share of the two axes")
    segments: list[MapSegmentOut] = Field(description="Sampled customers per segment")
    rfm_grid: list[list[int]] = Field(
        description="Mapped customers by R score (rows 1-5) and FM score (columns 1-5), "
        "FM being the mean of F and M rounded half up"
    )
    points: list[MapPointOut]
