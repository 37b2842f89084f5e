"""Examples of the segment answers for the OpenAPI document, taken from a demo shop's model."""

from typing import Any

SEGMENT: dict[str, Any] = {
    "user_id": "u00001",
    "segment": {"id": 0, "label": "Mainstream customers", "algorithm": "kmeans"},
    "rfm": {
        "recency_days": 290.748,
        "frequency": 1.0,
        "monetary": 106.99,
        "r": 1,
        "f": 1,
        "m": 4,
        "group": "At risk",
    },
    "outlier": False,
    "model_version": 1,
    "computed_at": "2026-12-01T20:12:13Z",
    "degraded": False,
}

SEGMENTS: dict[str, Any] = {
    "model_version": 1,
    "algorithm": "kmeans",
    "quality": {
        "n_customers": 300,
        "n_purchasers": 206,
        "kmeans": {
            "silhouette": 0.271,
            "davies_bouldin": 1.316,
            "calinski_harabasz": 64.492,
            "k": 3,
            "k_selection": "silhouette",
            "silhouette_by_k": {
                "3": 0.271,
                "4": 0.248,
                "5": 0.256,
                "6": 0.259,
                "7": 0.262,
                "8": 0.241,
            },
            "stability_ari": 0.858,
            "inertia": 1228.147,
        },
        "dbscan": {
            "silhouette": None,
            "davies_bouldin": None,
            "calinski_harabasz": None,
            "eps": 2.227,
            "min_samples": 10,
            "fit_sample_size": 206,
            "n_clusters": 1,
            "n_core_samples": 152,
            "outlier_share": 0.146,
        },
        "fit_seconds": 0.132,
    },
    "segments": [
        {
            "segment_id": 0,
            "label": "Mainstream customers",
            "reserved": False,
            "size": 117,
            "share": 0.39,
            "recency_days": {"mean": 132.031, "median": 76.071},
            "frequency": {"mean": 5.316, "median": 4.0},
            "monetary": {"mean": 278.174, "median": 148.92},
            "avg_order_value": {"mean": 46.441, "median": 37.388},
            "tenure_days": {"mean": 291.583, "median": 306.244},
            "lines_per_order": {"mean": 1.224, "median": 1.2},
            "line_value": {"mean": 38.896, "median": 30.578},
            "single_order_share": 0.043,
            "views_per_customer": 27.932,
            "rfm_groups": {"At risk": 0.342, "Champions": 0.231, "Loyal": 0.188},
            "top_categories": [
                {"category": "Kitchen & Dining", "share": 0.145},
                {"category": "Home Decor", "share": 0.095},
                {"category": "Stationery & Office", "share": 0.082},
                {"category": "Beauty & Personal Care", "share": 0.078},
                {"category": "Electronics", "share": 0.077},
            ],
            "top_items": [
                {"item_id": "i00017", "count": 98.0},
                {"item_id": "i00069", "count": 47.0},
                {"item_id": "i00010", "count": 34.0},
                {"item_id": "i00061", "count": 33.0},
                {"item_id": "i00029", "count": 32.0},
            ],
        }
    ],
    "other_algorithm": {
        "algorithm": "dbscan",
        "segments": [
            {
                "segment_id": 0,
                "label": "Mainstream customers",
                "reserved": False,
                "size": 176,
                "share": 0.587,
                "recency_days": {"mean": 166.233, "median": 195.844},
                "frequency": {"mean": 3.881, "median": 4.0},
                "monetary": {"mean": 187.471, "median": 93.925},
                "avg_order_value": {"mean": 37.747, "median": 28.99},
                "tenure_days": {"mean": 275.288, "median": 292.383},
                "lines_per_order": {"mean": 1.167, "median": 1.0},
                "line_value": {"mean": 32.564, "median": 24.99},
                "single_order_share": 0.347,
                "views_per_customer": 19.659,
                "rfm_groups": {"At risk": 0.222, "Champions": 0.148, "Need attention": 0.176},
                "top_categories": [
                    {"category": "Kitchen & Dining", "share": 0.148},
                    {"category": "Stationery & Office", "share": 0.088},
                    {"category": "Home Decor", "share": 0.083},
                    {"category": "Beauty & Personal Care", "share": 0.075},
                    {"category": "Women's Fashion", "share": 0.072},
                ],
                "top_items": [
                    {"item_id": "i00017", "count": 108.0},
                    {"item_id": "i00061", "count": 39.0},
                    {"item_id": "i00004", "count": 38.0},
                    {"item_id": "i00069", "count": 38.0},
                    {"item_id": "i00010", "count": 33.0},
                ],
            }
        ],
    },
}

MEMBERS: dict[str, Any] = {
    "segment_id": 0,
    "model_version": 1,
    "users": ["u00001", "u00009", "u00010"],
    "next_cursor": "u00010",
}
