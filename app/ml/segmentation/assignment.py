"""The answer of :meth:`CustomerSegmentation.assign`: each customer's segment, label and RFM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.ml.segmentation.profiles import json_float
from app.ml.segmentation.value import ValuePrediction

__all__ = ["SegmentAssignment"]


@dataclass(frozen=True, eq=False)
class SegmentAssignment:
    """Segments and RFM scores of customers, parallel arrays of shape (n_customers,).

    Attributes
    ----------
    user_ids : list of str
    algorithm : str
        The clustering the segment ids and labels come from.
    segment_id : ndarray, int64
        Cluster id, or ``NO_PURCHASE_SEGMENT`` / ``OUTLIER_SEGMENT``.
    label : ndarray of str
        Human-readable segment label.
    outlier : ndarray, bool
        DBSCAN noise (for either algorithm): behaviour unlike any dense group.
    r_score, f_score, m_score : ndarray, int8
        RFM scores 1..5, 0 for customers without a purchase.
    rfm_group : ndarray of str
    recency_days, frequency, monetary : ndarray, float64
        Recency is NaN without a purchase.
    value : ValuePrediction
        P(alive), expected orders and spend, churn-risk group (or why they are missing).
    """

    user_ids: list[str]
    algorithm: str
    segment_id: NDArray[np.int64]
    label: NDArray[np.str_]
    outlier: NDArray[np.bool_]
    r_score: NDArray[np.int8]
    f_score: NDArray[np.int8]
    m_score: NDArray[np.int8]
    rfm_group: NDArray[np.str_]
    recency_days: NDArray[np.float64]
    frequency: NDArray[np.float64]
    monetary: NDArray[np.float64]
    value: ValuePrediction

    def __len__(self) -> int:
        return len(self.user_ids)

    def to_dicts(self) -> list[dict[str, Any]]:
        """One JSON-able dict per customer."""
        return [
            {
                "user_id": self.user_ids[i],
                "algorithm": self.algorithm,
                "segment_id": int(self.segment_id[i]),
                "label": str(self.label[i]),
                "outlier": bool(self.outlier[i]),
                "rfm": {
                    "r": int(self.r_score[i]),
                    "f": int(self.f_score[i]),
                    "m": int(self.m_score[i]),
                    "group": str(self.rfm_group[i]),
                },
                "recency_days": json_float(self.recency_days[i]),
                "frequency": float(self.frequency[i]),
                "monetary": float(self.monetary[i]),
                "predicted_value": self.value.to_dict(i),
                "churn_risk": str(self.value.churn_risk[i]) or None,
            }
            for i in range(len(self))
        ]
