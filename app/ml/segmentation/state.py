"""The state format: a fitted segmentation as numeric arrays and JSON-able metadata.

:meth:`CustomerSegmentation.to_state` and :meth:`CustomerSegmentation.from_state` go through
here; the arrays are saved without pickle and the model is rebuilt without a refit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from app.ml.segmentation.features import FEATURES
from app.ml.segmentation.value import CustomerValue

if TYPE_CHECKING:
    from app.ml.segmentation.model import CustomerSegmentation

__all__ = ["restore_state", "state_of", "state_params"]

_STATE_FORMAT = "tastemaker.segmentation/1"


def state_of(model: CustomerSegmentation) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
    """Numeric arrays and JSON-able metadata that fully describe the fitted ``model``."""
    arrays = {
        "scaler_mean": model.scaler_mean_,
        "scaler_scale": model.scaler_scale_,
        "feature_weights": model.feature_weights_,
        "svd_components": model.svd_components_,
        "rfm_edges": model.rfm_edges_,
        "kmeans_centroids": model.centroids_,
        "dbscan_core_samples": model.core_samples_,
        "dbscan_core_labels": model.core_labels_.astype(np.int64),
    }
    params = model.get_params()
    params["k_range"] = list(params["k_range"])
    meta = {
        "format": _STATE_FORMAT,
        "params": params,
        "k": model.k_,
        "dbscan_eps": model.dbscan_eps_,
        "n_dbscan_clusters": model.n_dbscan_clusters_,
        "feature_names": list(model.feature_names_),
        "categories": list(model.categories_),
        "segment_labels": {
            alg: [[sid, label] for sid, label in labels.items()]
            for alg, labels in model.segment_labels_.items()
        },
        "profiles": model.profiles_,
        "quality": model.quality_,
        "reference_time": model.reference_time_,
        "fitted_at": model.fitted_at_,
        "value": model.value_.to_meta(),
    }
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta


def state_params(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor parameters stored in ``meta``; ValueError if it is not a state."""
    if meta.get("format") != _STATE_FORMAT:
        raise ValueError(f"not a segmentation state: format {meta.get('format')!r}")
    params = dict(meta["params"])
    params["k_range"] = tuple(params["k_range"])
    return params


def restore_state(
    model: CustomerSegmentation, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]
) -> None:
    """Set the fitted attributes of ``model`` from :func:`state_of` output, checking them."""
    model.scaler_mean_ = np.asarray(arrays["scaler_mean"], dtype=np.float64)
    model.scaler_scale_ = np.asarray(arrays["scaler_scale"], dtype=np.float64)
    model.feature_weights_ = np.asarray(arrays["feature_weights"], dtype=np.float64)
    model.svd_components_ = np.asarray(arrays["svd_components"], dtype=np.float64)
    model.rfm_edges_ = np.asarray(arrays["rfm_edges"], dtype=np.float64)
    model.centroids_ = np.asarray(arrays["kmeans_centroids"], dtype=np.float64)
    model.core_samples_ = np.asarray(arrays["dbscan_core_samples"], dtype=np.float64)
    model.core_labels_ = np.asarray(arrays["dbscan_core_labels"], dtype=np.int64)
    model.k_ = int(meta["k"])
    model.dbscan_eps_ = float(meta["dbscan_eps"])
    model.n_dbscan_clusters_ = int(meta["n_dbscan_clusters"])
    model.feature_names_ = list(meta["feature_names"])
    model.categories_ = list(meta["categories"])
    model.segment_labels_ = {
        alg: {int(sid): str(label) for sid, label in pairs}
        for alg, pairs in meta["segment_labels"].items()
    }
    model.profiles_ = {alg: list(p) for alg, p in meta["profiles"].items()}
    model.quality_ = dict(meta["quality"])
    # Absent from states saved before the data's clock was stored: wall clock then.
    reference, fitted = meta.get("reference_time"), meta.get("fitted_at")
    model.reference_time_ = None if reference is None else float(reference)
    model.fitted_at_ = None if fitted is None else float(fitted)
    # Absent from states saved before predicted value: unpublished, with the reason.
    model.value_ = CustomerValue.from_meta(meta.get("value"))
    if tuple(model.feature_names_[: len(FEATURES)]) != FEATURES:
        raise ValueError(
            f"segmentation state has features {model.feature_names_}, this code computes "
            f"{list(FEATURES)}: retrain to rebuild it"
        )
    d = len(model.feature_names_)
    if (
        model.scaler_mean_.shape != (d,)
        or model.centroids_.shape != (model.k_, d)
        or model.core_samples_.shape[1:] != (d,)
        or model.svd_components_.shape != (d - len(FEATURES), len(model.categories_))
    ):
        raise ValueError("segmentation state arrays do not match its metadata")
