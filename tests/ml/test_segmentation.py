"""Customer segmentation: RFM on hand-made tables, clusters on the synthetic shop's known groups."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from app.datasets.synthetic import SyntheticShop, generate_shop
from app.ml.segmentation import (
    NO_PURCHASE_GROUP,
    NO_PURCHASE_LABEL,
    NO_PURCHASE_SEGMENT,
    OUTLIER_SEGMENT,
    RFM_GROUPS,
    CustomerAggregates,
    CustomerSegmentation,
    ItemCounts,
    NotEnoughData,
    aggregate_events,
    rfm_edges,
    rfm_group,
    rfm_group_index,
    rfm_scores,
)

DAY = 86_400.0
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online-retail"


# ---------------------------------------------------------------------------------------------
# RFM on hand-made tables
# ---------------------------------------------------------------------------------------------

EDGES = np.array(
    [
        [10.0, 30.0, 60.0, 120.0],  # recency days
        [1.0, 2.0, 3.0, 5.0],  # orders
        [50.0, 100.0, 200.0, 500.0],  # spend
    ]
)


@pytest.mark.parametrize(
    ("recency", "frequency", "monetary", "expected"),
    [
        (5.0, 1, 50.0, (5, 1, 1)),
        (10.0, 2, 75.0, (5, 2, 2)),  # on an edge: no edge strictly below -> best R
        (11.0, 3, 100.0, (4, 3, 2)),
        (45.0, 4, 150.0, (3, 4, 3)),
        (61.0, 5, 500.0, (2, 4, 4)),
        (200.0, 6, 1000.0, (1, 5, 5)),
        (float("nan"), 0, 0.0, (0, 0, 0)),  # never purchased
    ],
)
def test_rfm_scores_by_hand(
    recency: float, frequency: int, monetary: float, expected: tuple[int, int, int]
) -> None:
    r, f, m = rfm_scores([recency], [frequency], [monetary], EDGES)
    assert (int(r[0]), int(f[0]), int(m[0])) == expected


def test_rfm_edges_are_quintiles_over_purchasers() -> None:
    rec = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, np.nan], dtype=float)
    freq = np.array([1, 1, 1, 1, 1, 1, 2, 2, 3, 9, 0], dtype=float)
    mon = np.arange(11, dtype=float) * 10
    edges = rfm_edges(rec, freq, mon)
    np.testing.assert_allclose(edges[0], [2.8, 4.6, 6.4, 8.2])
    np.testing.assert_allclose(edges[1], [1.0, 1.0, 1.4, 2.2])
    # With many ties at one order, every one-order customer gets F = 1.
    _, f, _ = rfm_scores(rec, freq, mon, edges)
    assert f.tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5, 0]
    with pytest.raises(ValueError, match="at least one"):
        rfm_edges([np.nan], [0], [0])


@pytest.mark.parametrize(
    ("r", "f", "m", "group"),
    [
        (5, 5, 5, "Champions"),
        (5, 4, 3, "Champions"),  # FM = ceil(3.5) = 4
        (4, 5, 5, "Champions"),
        (4, 4, 4, "Loyal"),
        (3, 5, 4, "Loyal"),
        (5, 2, 3, "Potential loyalists"),
        (4, 2, 2, "Potential loyalists"),
        (5, 1, 1, "New"),
        (4, 1, 1, "Promising"),
        (3, 3, 3, "Need attention"),
        (3, 1, 2, "Need attention"),
        (2, 3, 4, "At risk"),
        (1, 3, 3, "At risk"),
        (2, 5, 5, "Can't lose them"),
        (1, 5, 4, "Can't lose them"),
        (2, 1, 2, "Hibernating"),
        (1, 1, 2, "Lost"),
        (1, 1, 1, "Lost"),
        (0, 0, 0, NO_PURCHASE_GROUP),
    ],
)
def test_rfm_group_table(r: int, f: int, m: int, group: str) -> None:
    assert rfm_group(r, f, m) == group


def test_rfm_group_vectorised_matches_scalar_and_covers_every_group() -> None:
    grid = np.array([(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)])
    idx = rfm_group_index(grid[:, 0], grid[:, 1], grid[:, 2])
    assert [RFM_GROUPS[i] for i in idx] == [rfm_group(*row) for row in grid.tolist()]
    assert set(idx.tolist()) == set(range(len(RFM_GROUPS)))
    assert rfm_group_index([0], [0], [0]).tolist() == [-1]
    with pytest.raises(ValueError):
        rfm_group(6, 1, 1)


# ---------------------------------------------------------------------------------------------
# Aggregates from events, by hand
# ---------------------------------------------------------------------------------------------


def test_aggregate_events_by_hand() -> None:
    t0 = 1_700_000_000.0
    events = [
        # user, item, type, value, time, order
        ("a", "x", "view", np.nan, t0, ""),
        ("a", "x", "click", np.nan, t0 + 10, ""),
        ("a", "x", "add_to_cart", np.nan, t0 + 20, ""),
        ("a", "x", "purchase", 20.0, t0 + 30, "o1"),
        ("a", "y", "purchase", 5.0, t0 + 31, "o1"),
        ("a", "y", "purchase", 5.0, t0 + 5 * DAY, "o2"),
        ("b", "y", "view", np.nan, t0 + DAY, ""),
        # no order ids: two purchases on one day are one order, a later day another
        ("c", "z", "purchase", 7.0, t0 + 2 * DAY, ""),
        ("c", "x", "purchase", 3.0, t0 + 2 * DAY + 60, ""),
        ("c", "x", "purchase", 3.0, t0 + 9 * DAY, ""),
    ]
    cols = list(zip(*events, strict=True))
    now = t0 + 10 * DAY
    agg, items = aggregate_events(
        user_ids=cols[0],
        item_ids=cols[1],
        event_types=cols[2],
        values=cols[3],
        occurred_at=cols[4],
        order_ids=cols[5],
        item_categories={"x": ["Kitchen"], "y": ["Kitchen", "Garden"], "z": ["Toys"]},
        users=["a", "b", "c", "d"],
        now=now,
    )
    assert agg.user_ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(agg.orders, [2, 0, 2, 0])
    np.testing.assert_allclose(agg.monetary, [30, 0, 13, 0])
    # The first order: o1 for a (two lines), the first purchase day for c (two lines).
    np.testing.assert_allclose(agg.first_purchase_at[[0, 2]], [t0 + 30, t0 + 2 * DAY])
    assert np.isnan(agg.first_purchase_at[[1, 3]]).all()
    np.testing.assert_allclose(agg.first_order_value, [25, 0, 10, 0])
    np.testing.assert_array_equal(agg.distinct_items, [2, 0, 2, 0])
    np.testing.assert_array_equal(agg.views, [2, 1, 0, 0])
    np.testing.assert_array_equal(agg.carts, [1, 0, 0, 0])
    np.testing.assert_array_equal(agg.purchases, [3, 0, 3, 0])
    np.testing.assert_allclose(agg.last_purchase_at[[0, 2]], [t0 + 5 * DAY, t0 + 9 * DAY])
    assert np.isnan(agg.last_purchase_at[[1, 3]]).all()
    np.testing.assert_allclose(agg.first_seen_at[:3], [t0, t0 + DAY, t0 + 2 * DAY])
    assert np.isnan(agg.first_seen_at[3])
    assert agg.categories == ["Garden", "Kitchen", "Toys"]
    np.testing.assert_array_equal(
        agg.category_counts.toarray(),
        [[2, 6, 0], [1, 1, 0], [0, 2, 1], [0, 0, 0]],
    )
    assert agg.now == now
    assert items.item_ids == ["x", "y", "z"]
    np.testing.assert_array_equal(
        items.matrix.toarray(), [[1, 2, 0], [0, 0, 0], [2, 0, 1], [0, 0, 0]]
    )


def test_aggregates_reject_ragged_input() -> None:
    with pytest.raises(ValueError, match="orders"):
        CustomerAggregates(
            user_ids=["a", "b"],
            last_purchase_at=np.zeros(2),
            first_seen_at=np.zeros(2),
            last_seen_at=np.zeros(2),
            orders=np.zeros(3),
            monetary=np.zeros(2),
            distinct_items=np.zeros(2),
            views=np.zeros(2),
            carts=np.zeros(2),
            purchases=np.zeros(2),
            category_counts=sp.csr_matrix((2, 0)),
            categories=[],
            now=0.0,
            first_purchase_at=np.zeros(2),
            first_order_value=np.zeros(2),
        )


# ---------------------------------------------------------------------------------------------
# Segments on the synthetic shop (known behavioural groups)
# ---------------------------------------------------------------------------------------------


def shop_aggregates(shop: SyntheticShop) -> tuple[CustomerAggregates, ItemCounts]:
    ev = shop.events
    return aggregate_events(
        user_ids=ev.user_id,
        item_ids=ev.item_id,
        event_types=ev.type,
        values=ev.value,
        occurred_at=ev.occurred_at,
        order_ids=ev.order_id,
        item_categories={item.item_id: item.categories for item in shop.items},
        users=[u.user_id for u in shop.users],
        now=shop.now,
    )


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return generate_shop(n_users=2000, n_items=400, n_events=100_000, seed=0)


@pytest.fixture(scope="module")
def data(shop: SyntheticShop) -> tuple[CustomerAggregates, ItemCounts]:
    return shop_aggregates(shop)


@pytest.fixture(scope="module")
def model(data: tuple[CustomerAggregates, ItemCounts]) -> CustomerSegmentation:
    agg, items = data
    # Five purchasing groups in the generator (window shoppers never buy).
    return CustomerSegmentation(k=5).fit(agg, top_items=items)


def group_mask(shop: SyntheticShop, name: str) -> np.ndarray:
    return shop.groups == shop.group_names.index(name)


def test_recovers_the_generators_groups(shop: SyntheticShop, model: CustomerSegmentation) -> None:
    ari = adjusted_rand_score(shop.groups, model.labels_)
    assert ari >= 0.7, ari
    # Window shoppers never buy: all of them, and only them, are the reserved segment.
    np.testing.assert_array_equal(
        model.labels_ == NO_PURCHASE_SEGMENT, group_mask(shop, "window_shoppers")
    )


def test_labels_describe_the_groups(shop: SyntheticShop, model: CustomerSegmentation) -> None:
    labels = model.segment_labels_["kmeans"]

    def label_of(group: str) -> str:
        ids, counts = np.unique(model.labels_[group_mask(shop, group)], return_counts=True)
        return labels[int(ids[np.argmax(counts)])]

    assert label_of("window_shoppers") == NO_PURCHASE_LABEL
    assert label_of("new_customers").startswith("New customers")
    assert "one-time" in label_of("one_time_buyers").lower()
    assert "lapsed" in label_of("lapsed_customers").lower()
    assert label_of("loyal_big_spenders").startswith("High-value loyal")
    for algorithm in ("kmeans", "dbscan"):
        names = [p["label"] for p in model.profiles(algorithm)]
        assert len(names) == len(set(names))
        assert all(name and not name.lower().startswith("cluster") for name in names)


def test_profiles_are_complete_and_json_able(
    shop: SyntheticShop, model: CustomerSegmentation
) -> None:
    for algorithm in ("kmeans", "dbscan"):
        profiles = model.profiles(algorithm)
        json.dumps(profiles, allow_nan=False)
        assert sum(p["size"] for p in profiles) == len(shop.users)
        assert sum(p["share"] for p in profiles) == pytest.approx(1.0)
        for p in profiles:
            if p["segment_id"] == NO_PURCHASE_SEGMENT:
                assert p["frequency"]["median"] is None
                continue
            assert p["frequency"]["median"] >= 1
            assert p["monetary"]["mean"] > 0
            assert p["recency_days"]["median"] >= 0
            assert p["top_categories"] and p["top_items"]
            assert p["top_categories"][0]["category"] in shop.categories
    loyal = next(p for p in model.profiles("kmeans") if p["label"].startswith("High-value"))
    lapsed_one_time = next(p for p in model.profiles("kmeans") if "one-time" in p["label"].lower())
    assert loyal["monetary"]["median"] > 10 * lapsed_one_time["monetary"]["median"]
    assert loyal["recency_days"]["median"] < lapsed_one_time["recency_days"]["median"]
    # Loyal big spenders' taste: premium categories lead their profile.
    assert loyal["top_categories"][0]["category"] in {
        "Electronics",
        "Jewellery & Watches",
        "Women's Fashion",
        "Men's Fashion",
        "Bags & Travel",
    }


def test_quality_figures(model: CustomerSegmentation) -> None:
    km = model.quality_["kmeans"]
    assert km["k"] == 5 and km["k_selection"] == "fixed"
    assert 0 < km["silhouette"] <= 1
    assert km["davies_bouldin"] > 0 and km["calinski_harabasz"] > 0
    assert km["stability_ari"] >= 0.9
    db = model.quality_["dbscan"]
    assert db["eps"] > 0 and db["n_clusters"] >= 1
    json.dumps(model.quality_, allow_nan=False)


def test_k_chosen_by_silhouette(data: tuple[CustomerAggregates, ItemCounts]) -> None:
    agg, _ = data
    model = CustomerSegmentation(k_range=(2, 5), n_init=3, sample_size=800).fit(agg)
    scores = model.quality_["kmeans"]["silhouette_by_k"]
    assert list(scores) == ["2", "3", "4", "5"]
    assert model.k_ == max(range(2, 6), key=lambda k: scores[str(k)])
    assert model.centroids_.shape == (model.k_, len(model.feature_names_))


def test_dbscan_marks_planted_outliers(data: tuple[CustomerAggregates, ItemCounts]) -> None:
    agg, _ = data
    buyers = np.flatnonzero(agg.orders > 0)
    planted = buyers[:6]
    now = agg.now
    orders = agg.orders.copy()
    monetary = agg.monetary.copy()
    purchases = agg.purchases.copy()
    distinct = agg.distinct_items.copy()
    last_buy = agg.last_purchase_at.copy()
    # Wholesale-like accounts: hundreds of orders worth a fortune, bought today.
    orders[planted] = 400
    monetary[planted] = 2_000_000
    purchases[planted] = 6000
    distinct[planted] = 380
    last_buy[planted] = now - 3600
    odd = dataclasses.replace(
        agg,
        orders=orders,
        monetary=monetary,
        purchases=purchases,
        distinct_items=distinct,
        last_purchase_at=last_buy,
    )
    model = CustomerSegmentation(k=5, n_init=3).fit(odd)
    assert np.all(model.dbscan_labels_[planted] == OUTLIER_SEGMENT)
    assignment = model.assign(odd)
    assert assignment.outlier[planted].all()
    assert assignment.outlier.mean() < 0.1
    assert not assignment.outlier[agg.orders == 0].any()
    dbscan = model.assign(odd, algorithm="dbscan")
    assert np.all(dbscan.segment_id[planted] == OUTLIER_SEGMENT)
    assert dbscan.label[planted[0]].startswith("Outliers")


def test_live_assignment_follows_new_purchases(
    shop: SyntheticShop, data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    arrays_before, _ = model.to_state()
    lapsed = np.flatnonzero(group_mask(shop, "lapsed_customers") & (model.labels_ >= 0))
    i = int(lapsed[0])
    one = agg.take([i])
    before = model.assign(one)
    assert "lapsed" in before.label[0].lower()
    assert before.recency_days[0] > 100
    # The customer comes back: twelve large orders over the last weeks, the last one today.
    now = agg.now
    back = dataclasses.replace(
        one,
        last_purchase_at=np.array([now - 3600.0]),
        last_seen_at=np.array([now - 3000.0]),
        orders=one.orders + 12,
        monetary=one.monetary + 4000.0,
        purchases=one.purchases + 36,
        distinct_items=one.distinct_items + 30,
        views=one.views + 60,
        carts=one.carts + 36,
    )
    after = model.assign(back)
    assert after.segment_id[0] != before.segment_id[0]
    assert after.label[0] != before.label[0]
    assert "lapsed" not in after.label[0].lower()
    assert after.recency_days[0] < 1
    assert after.rfm_group[0] == "Champions"
    # No refit happened: the stored arrays are untouched.
    arrays_after, _ = model.to_state()
    for name, value in arrays_before.items():
        np.testing.assert_array_equal(value, arrays_after[name])


def test_single_customer_assignment_matches_bulk(
    data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    for algorithm in ("kmeans", "dbscan"):
        bulk = model.assign(agg, algorithm=algorithm)
        fitted = model.labels_ if algorithm == "kmeans" else model.dbscan_labels_
        np.testing.assert_array_equal(bulk.segment_id, fitted)
        rows = np.linspace(0, len(agg) - 1, 150).astype(int)
        single = [int(model.assign(agg.take([r]), algorithm=algorithm).segment_id[0]) for r in rows]
        assert single == bulk.segment_id[rows].tolist()


def test_assignment_without_purchase(
    data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    i = int(np.flatnonzero(agg.orders == 0)[0])
    a = model.assign(agg.take([i]))
    row = a.to_dicts()[0]
    assert row["segment_id"] == NO_PURCHASE_SEGMENT
    assert row["label"] == NO_PURCHASE_LABEL
    assert row["rfm"] == {"r": 0, "f": 0, "m": 0, "group": NO_PURCHASE_GROUP}
    assert row["recency_days"] is None and row["outlier"] is False
    json.dumps(a.to_dicts(), allow_nan=False)


def test_assignment_maps_categories_by_name(
    data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    perm = np.random.default_rng(0).permutation(len(agg.categories))
    shuffled = dataclasses.replace(
        agg,
        category_counts=sp.csr_matrix(agg.category_counts.toarray()[:, perm]),
        categories=[agg.categories[j] for j in perm],
    )
    np.testing.assert_array_equal(model.assign(shuffled).segment_id, model.labels_)
    rows = np.flatnonzero(agg.orders > 0)[:20]
    np.testing.assert_array_equal(model.assign(shuffled.take(rows)).segment_id, model.labels_[rows])


def test_state_round_trip(
    data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    arrays, meta = model.to_state()
    assert all(a.dtype.kind in "fiub" for a in arrays.values())  # no object arrays to pickle
    meta = json.loads(json.dumps(meta, allow_nan=False))
    copies = {name: np.array(a) for name, a in arrays.items()}
    loaded = CustomerSegmentation.from_state(copies, meta)
    for algorithm in ("kmeans", "dbscan"):
        a, b = model.assign(agg, algorithm=algorithm), loaded.assign(agg, algorithm=algorithm)
        for field in (
            "segment_id",
            "label",
            "outlier",
            "r_score",
            "f_score",
            "m_score",
            "rfm_group",
        ):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert loaded.profiles(algorithm) == model.profiles(algorithm)
        np.testing.assert_array_equal(a.value.expected_spend, b.value.expected_spend)
        np.testing.assert_array_equal(a.value.churn_risk, b.value.churn_risk)
    assert loaded.get_params() == model.get_params()
    # A state saved before predicted value existed still loads: segments as before, and the
    # predictions unpublished with the reason.
    older = {k: v for k, v in meta.items() if k != "value"}
    old = CustomerSegmentation.from_state(copies, older).assign(agg)
    np.testing.assert_array_equal(old.segment_id, model.assign(agg).segment_id)
    assert np.isnan(old.value.p_alive).all() and (old.value.churn_risk == "").all()
    assert {d["predicted_value"]["reason"] for d in old.to_dicts() if d["frequency"] > 0} == {
        "this model version was trained before predicted value existed: retrain"
    }
    bad = dict(meta, format="something else")
    with pytest.raises(ValueError, match="format"):
        CustomerSegmentation.from_state(copies, bad)
    renamed = dict(meta, feature_names=["lines_per_order", *meta["feature_names"][1:]])
    with pytest.raises(ValueError, match="retrain"):
        CustomerSegmentation.from_state(copies, renamed)
    truncated = dict(copies, kmeans_centroids=copies["kmeans_centroids"][:, :3])
    with pytest.raises(ValueError, match="do not match"):
        CustomerSegmentation.from_state(truncated, meta)


def test_single_assignment_is_fast(
    data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    one = agg.take([int(np.flatnonzero(agg.orders > 0)[0])])
    timings = []
    for _ in range(300):
        start = time.perf_counter()
        model.assign(one)
        timings.append(time.perf_counter() - start)
    # The best of many runs: robust to a busy CI box, still catches an O(n) slip.
    assert min(timings) < 1e-3


def test_not_fitted_and_bad_parameters(data: tuple[CustomerAggregates, ItemCounts]) -> None:
    agg, _ = data
    with pytest.raises(RuntimeError, match="not fitted"):
        CustomerSegmentation().assign(agg)
    with pytest.raises(RuntimeError, match="not fitted"):
        CustomerSegmentation().to_state()
    with pytest.raises(ValueError, match="algorithm"):
        CustomerSegmentation(algorithm="hdbscan").fit(agg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k_range"):
        CustomerSegmentation(k_range=(1, 4)).fit(agg)
    tiny = agg.take(np.flatnonzero(agg.orders > 0)[:2])
    with pytest.raises(NotEnoughData, match="at least 3"):
        CustomerSegmentation().fit(tiny)


def test_live_assignment_runs_on_the_data_clock(
    data: tuple[CustomerAggregates, ItemCounts], model: CustomerSegmentation
) -> None:
    agg, _ = data
    assert model.reference_time_ == agg.now
    fitted = model.fitted_at_
    # Within the first day the data's clock stands at the fit's reference time, so nobody's
    # answer moves; then it advances by whole days of wall time, however old the data is.
    assert model.data_time(fitted) == agg.now
    assert model.data_time(fitted + 0.99 * DAY) == agg.now
    assert model.data_time(fitted + 2.5 * DAY) == agg.now + 2 * DAY
    assert model.data_time(fitted - 5 * DAY) == agg.now
    live = dataclasses.replace(agg, now=model.data_time(fitted + 3600.0))
    for algorithm in ("kmeans", "dbscan"):
        a, b = model.assign(agg, algorithm=algorithm), model.assign(live, algorithm=algorithm)
        for field in ("segment_id", "outlier", "r_score", "rfm_group", "recency_days"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    arrays, meta = model.to_state()
    loaded = CustomerSegmentation.from_state(arrays, json.loads(json.dumps(meta)))
    assert loaded.data_time(fitted + 3 * DAY) == agg.now + 3 * DAY
    # A state saved before the data's clock was stored measures on the wall clock.
    old = {k: v for k, v in meta.items() if k not in ("reference_time", "fitted_at")}
    assert CustomerSegmentation.from_state(arrays, old).data_time(1234.5) == 1234.5


def test_small_shop_still_fits() -> None:
    shop = generate_shop(n_users=40, n_items=30, n_events=2000, seed=4)
    agg, _ = shop_aggregates(shop)
    model = CustomerSegmentation(dbscan_min_samples=3).fit(agg)
    assert 2 <= model.k_ <= 8
    assert len(model.assign(agg)) == 40


# ---------------------------------------------------------------------------------------------
# Online Retail (slow: reads the full file)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_online_retail_segments_are_stable() -> None:
    path = DATA / "online-retail-all.csv.xz"
    if not path.exists():
        pytest.fail(f"Online Retail data missing at {path} (see ../shared/data/README.md)")
    from app.datasets.online_retail import read_online_retail

    rows = list(read_online_retail(path))
    t = np.array([r.occurred_at.timestamp() for r in rows])
    agg, _ = aggregate_events(
        user_ids=[r.user_id for r in rows],
        item_ids=[r.item_id for r in rows],
        event_types=np.full(len(rows), "purchase"),
        values=[r.value for r in rows],
        occurred_at=t,
        order_ids=[r.invoice for r in rows],
        now=float(t.max()) + DAY,
    )
    assert len(agg) == 4334
    model = CustomerSegmentation().fit(agg)
    assert model.quality_["kmeans"]["stability_ari"] >= 0.9
    names = [p["label"] for p in model.profiles("kmeans")]
    assert len(set(names)) == len(names)
