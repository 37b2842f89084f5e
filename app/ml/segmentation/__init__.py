"""Customer segmentation: RFM scores and groups, behaviour features, K-means and DBSCAN.

The package exports what the rest of Tastemaker uses; the modules hold the parts:

- :mod:`~app.ml.segmentation.features`: the per-customer aggregates and behaviour features;
- :mod:`~app.ml.segmentation.orders`: orders per customer and each customer's first order;
- :mod:`~app.ml.segmentation.value`: predicted value (BG/NBD, Gamma-Gamma) and churn risk;
- :mod:`~app.ml.segmentation.holdout`: the predicted value's error on a time holdout;
- :mod:`~app.ml.segmentation.rfm`: RFM scores by quintile edges and the RFM groups;
- :mod:`~app.ml.segmentation.clustering`: K-means, DBSCAN, sampling and cluster quality;
- :mod:`~app.ml.segmentation.profiles`: segment profiles and their labels;
- :mod:`~app.ml.segmentation.model`: the estimator :class:`CustomerSegmentation`;
- :mod:`~app.ml.segmentation.assignment`: its answer for each customer;
- :mod:`~app.ml.segmentation.state`: the state format its fitted arrays are saved in.
"""

from app.ml.segmentation.assignment import SegmentAssignment
from app.ml.segmentation.clustering import NO_PURCHASE_SEGMENT, OUTLIER_SEGMENT
from app.ml.segmentation.features import CustomerAggregates, ItemCounts, aggregate_events
from app.ml.segmentation.model import Algorithm, CustomerSegmentation, NotEnoughData
from app.ml.segmentation.profiles import NO_PURCHASE_LABEL, SegmentProfile
from app.ml.segmentation.rfm import (
    NO_PURCHASE_GROUP,
    RFM_GROUPS,
    rfm_edges,
    rfm_group,
    rfm_group_index,
    rfm_scores,
)

__all__ = [
    "NO_PURCHASE_GROUP",
    "NO_PURCHASE_LABEL",
    "NO_PURCHASE_SEGMENT",
    "OUTLIER_SEGMENT",
    "RFM_GROUPS",
    "Algorithm",
    "CustomerAggregates",
    "CustomerSegmentation",
    "ItemCounts",
    "NotEnoughData",
    "SegmentAssignment",
    "SegmentProfile",
    "aggregate_events",
    "rfm_edges",
    "rfm_group",
    "rfm_group_index",
    "rfm_scores",
]
