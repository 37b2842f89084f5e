"""The Online Retail reader on a hand-written file, and an end-to-end run on a real slice."""

import lzma
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from app.datasets.online_retail import (
    is_non_product_code,
    read_online_retail,
    to_event_log,
)
from app.ml.recommender import RecommenderConfig, train_recommender
from tests.ml.conftest import as_history

CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom
C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom
536380,22139,RETROSPOT TEA SET,-2,2010-12-01 09:45:00,4.95,14527.0,United Kingdom
536381,22140,FREE GIFT,1,2010-12-01 09:45:00,0.0,14527.0,United Kingdom
536382,POST,POSTAGE,1,2010-12-01 09:46:00,18.0,12583.0,France
536383,gift_0001_10,Dotcomgiftshop Gift Voucher,1,2010-12-01 09:47:00,8.5,12583.0,France
536384,M,Manual,1,2010-12-01 09:48:00,1.0,12583.0,France
536385,21730,GLASS STAR FROSTED T-LIGHT HOLDER,six,2010-12-01 09:49:00,4.25,12583.0,France
536386,21730,GLASS STAR FROSTED T-LIGHT HOLDER,2,2010-12-02 10:00:00,4.25,12583.0,France
"""


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "retail.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_drop_reasons_are_counted(csv_path: Path) -> None:
    reader = read_online_retail(csv_path)
    rows = list(reader)
    assert reader.kept == len(rows) == 3
    assert reader.dropped == Counter(
        {
            "duplicate_row": 1,
            "no_customer": 1,
            "cancellation": 1,
            "non_positive_quantity": 1,
            "non_positive_price": 1,
            "non_product_code": 3,
            "malformed": 1,
        }
    )
    first = rows[0]
    assert first.user_id == "17850"
    assert first.item_id == "85123A"
    assert first.invoice == "536365"
    assert first.quantity == 6 and first.unit_price == pytest.approx(2.55)
    assert first.value == pytest.approx(15.3)
    assert first.occurred_at == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    assert first.country == "United Kingdom"


def test_event_ids_are_deterministic_and_xz_reads_the_same(csv_path: Path, tmp_path: Path) -> None:
    xz = tmp_path / "retail.csv.xz"
    xz.write_bytes(lzma.compress(csv_path.read_bytes()))
    ids_a = [r.event_id for r in read_online_retail(csv_path)]
    ids_b = [r.event_id for r in read_online_retail(xz)]
    assert ids_a == ids_b
    assert len(set(ids_a)) == len(ids_a)


def test_iterating_again_resets_counts(csv_path: Path) -> None:
    reader = read_online_retail(csv_path)
    list(reader)
    list(reader)
    assert reader.kept == 3
    assert sum(reader.dropped.values()) == 9


def test_missing_columns_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        list(read_online_retail(bad))
    with pytest.raises(FileNotFoundError):
        list(read_online_retail(tmp_path / "absent.csv"))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("POST", True),
        ("DOT", True),
        ("BANK CHARGES", True),
        ("C2", True),
        ("gift_0001_20", True),
        ("AMAZONFEE", True),
        ("m", True),
        ("85123A", False),
        ("21730", False),
        ("DCGS0003", False),
    ],
)
def test_non_product_codes(code: str, expected: bool) -> None:
    assert is_non_product_code(code) is expected


def test_to_event_log_builds_purchases_and_catalog(csv_path: Path) -> None:
    events, catalog = to_event_log(read_online_retail(csv_path))
    assert len(events) == 3
    assert set(events.types.tolist()) == {"purchase"}
    np.testing.assert_allclose(events.values, [15.3, 20.34, 8.5])
    assert events.order_ids.tolist() == ["536365", "536365", "536386"]
    assert catalog.item_ids == ["85123A", "71053", "21730"]
    assert catalog.titles[0] == "WHITE HANGING HEART T-LIGHT HOLDER"


def test_served_blend_beats_popularity_on_an_online_retail_slice(online_retail_slice) -> None:
    events, catalog = online_retail_slice
    trained = train_recommender(events, catalog, RecommenderConfig(tune_max_users=800))
    models = trained.metrics["models"]
    served, popular = models["served"], models["popularity"]
    # Leak-free (time cutoff, items new to the user) popularity is a strong baseline here.
    assert served["ndcg"] > 1.5 * popular["ndcg"]
    assert served["precision"] > 1.3 * popular["precision"]
    assert served["coverage"] > 5 * popular["coverage"]
    basket = trained.metrics["next_basket"]
    assert basket["home"]["recall"] >= 1.3 * basket["explore"]["recall"]
    assert basket["buy_again"]["recall"] > basket["popularity"]["recall"]
    rec = trained.recommender
    out = rec.recommend_user(as_history(["85123A", "71053"]), n=10)
    assert out.source == "personalized" and len(out.items) == 10


@pytest.mark.slow
def test_quality_bar_on_full_online_retail() -> None:
    from tests.ml.conftest import online_retail_path

    reader = read_online_retail(online_retail_path())
    events, catalog = to_event_log(reader)
    assert reader.kept == 391_150
    metrics = train_recommender(events, catalog).metrics
    served, models, basket = metrics["models"]["served"], metrics["models"], metrics["next_basket"]
    # The bars of issue 12 on the time-cutoff protocol (measured 0.135 vs 0.1346; 2.15x).
    assert served["ndcg"] >= models["ease_binary"]["ndcg"]
    assert served["ndcg"] >= 0.125
    assert basket["home"]["recall"] >= 1.3 * basket["explore"]["recall"]
