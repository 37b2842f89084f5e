"""Vocabulary: id <-> index mapping and its JSON form."""

import numpy as np
import pytest

from app.ml.vocabulary import Vocabulary


def test_round_trip_and_lookups() -> None:
    vocab = Vocabulary(["b", "a", "c"])
    assert len(vocab) == 3
    assert vocab.index("a") == 1
    assert vocab.id(2) == "c"
    assert vocab.get("zz") is None
    assert "b" in vocab and "zz" not in vocab
    np.testing.assert_array_equal(vocab.indices(["c", "zz", "b"]), [2, -1, 0])
    assert vocab.lookup([2, 0]) == ["c", "b"]
    assert Vocabulary.from_json(vocab.to_json()) == vocab


def test_unknown_id_raises_key_error() -> None:
    with pytest.raises(KeyError, match="unknown id"):
        Vocabulary(["a"]).index("b")


def test_duplicates_rejected_or_collapsed() -> None:
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])
    assert Vocabulary.from_unique(["x", "y", "x"]).to_json() == ["x", "y"]


def test_union_keeps_order_and_appends_new_ids() -> None:
    assert Vocabulary(["a", "b"]).union(["c", "a", "d", "c"]).to_json() == ["a", "b", "c", "d"]


@pytest.mark.parametrize("bad", [{"a": 1}, ["a", 2], "abc"])
def test_from_json_validates(bad: object) -> None:
    with pytest.raises(ValueError):
        Vocabulary.from_json(bad)
