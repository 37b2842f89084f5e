"""GET /segments/map, the dashboard's customer map: who may ask, what it refuses, and that every
customer on it is assigned exactly as GET /segment assigns them."""

from __future__ import annotations

from collections import Counter

import httpx
import numpy as np
import pytest

from app.ml.segmentation.projection import principal_plane
from tests.dashboard.conftest import READ_KEY, SHOP, Served


def test_only_an_admin_key_reads_the_map(served: Served):
    assert httpx.get(f"{served.url}/segments/map").status_code == 401
    read = httpx.get(f"{served.url}/segments/map", headers={"Authorization": f"Bearer {READ_KEY}"})
    assert read.status_code == 403
    assert served.api.get("/segments/map", params={"limit": 1}).status_code == 200


@pytest.mark.parametrize(
    "params", [{"algorithm": "hdbscan"}, {"limit": 0}, {"limit": 5001}, {"limit": "many"}]
)
def test_bad_parameters_answer_422_in_json(served: Served, params):
    response = served.api.get("/segments/map", params=params)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["fields"][0]["path"].startswith("query.")


def test_the_whole_shop_matches_the_segment_sizes(served: Served):
    segments = served.api.get("/segments").json()
    for algorithm in ("kmeans", "dbscan"):
        answer = served.api.get("/segments/map", params={"algorithm": algorithm}).json()
        profiles = (
            segments["segments"]
            if segments["algorithm"] == algorithm
            else segments["other_algorithm"]["segments"]
        )
        assert answer["algorithm"] == algorithm
        assert answer["sampled"] == answer["customers"] == segments["quality"]["n_customers"]
        # Measured on the same day as the training: live assignment gives the trained sizes.
        assert {s["segment_id"]: s["count"] for s in answer["segments"]} == {
            p["segment_id"]: p["size"] for p in profiles
        }
        assert answer["no_purchase"] == next(p["size"] for p in profiles if p["segment_id"] == -1)
        assert len(answer["points"]) == answer["sampled"] - answer["no_purchase"]
        cells = Counter((p["r"], (p["f"] + p["m"] + 1) // 2) for p in answer["points"])
        assert {
            (r + 1, fm + 1): n
            for r, row in enumerate(answer["rfm_grid"])
            for fm, n in enumerate(row)
            if n
        } == dict(cells)


def test_a_sample_is_stable_and_assigned_as_get_segment_assigns(served: Served):
    customers = served.api.get("/segments").json()["quality"]["n_customers"]
    first = served.api.get("/segments/map", params={"limit": 40}).json()
    assert first == served.api.get("/segments/map", params={"limit": 40}).json()
    assert first["sampled"] == 40 and first["customers"] == customers >= len(SHOP.users)
    assert sum(s["count"] for s in first["segments"]) == 40
    for point in first["points"][:8]:
        one = served.api.get(f"/segment/{point['user_id']}").json()
        assert one["segment"]["id"] == point["segment_id"]
        rfm = one["rfm"]
        assert (rfm["r"], rfm["f"], rfm["m"], rfm["group"]) == (
            point["r"],
            point["f"],
            point["m"],
            point["group"],
        )
        assert rfm["monetary"] == pytest.approx(point["monetary"])


def test_principal_plane_of_points_on_a_line():
    t = np.arange(6, dtype=np.float64)
    X = np.column_stack([t, -t, np.zeros(6)])  # all variance along (1, -1, 0) / sqrt(2)
    xy, explained = principal_plane(X)
    assert explained[0] == pytest.approx(1.0)
    assert explained[1] == pytest.approx(0.0, abs=1e-12)
    assert xy[:, 1] == pytest.approx(np.zeros(6), abs=1e-9)
    # Distances along the line are kept, centred on the mean; the first loading is positive.
    assert xy[:, 0] == pytest.approx((t - 2.5) * np.sqrt(2))


def test_principal_plane_of_too_little_data_is_zero():
    xy, explained = principal_plane(np.ones((1, 4)))
    assert xy.tolist() == [[0.0, 0.0]] and explained.tolist() == [0.0, 0.0]
    assert principal_plane(np.zeros((3, 0)))[0].shape == (3, 2)
