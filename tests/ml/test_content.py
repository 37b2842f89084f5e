"""TF-IDF content similarity against the TF-IDF formula written out by hand."""

import math

import numpy as np
import pytest

from app.ml.content import ContentTfidf


def test_tfidf_cosine_known_answer() -> None:
    model = ContentTfidf(k=None, max_df=1.0, stop_words=None, sublinear_tf=False)
    model.fit(["red apple", "red car", "blue car"])
    # smooth idf: ln((1 + n) / (1 + df)) + 1 with n = 3
    common = math.log(4 / 3) + 1  # red, car (df = 2)
    rare = math.log(4 / 2) + 1  # apple, blue (df = 1)
    # doc0 = (apple: rare, red: common), doc1 = (red: common, car: common)
    expected = common * common / (math.hypot(rare, common) * math.hypot(common, common))
    sim = model.similarity_.toarray()
    assert sim[0, 1] == pytest.approx(expected, rel=1e-5)
    assert sim[1, 0] == pytest.approx(expected, rel=1e-5)
    assert sim[0, 2] == 0.0
    assert np.all(np.diag(sim) == 0)
    assert model.vocabulary_ == ["apple", "blue", "car", "red"]


def test_max_df_and_stop_words_remove_uninformative_terms() -> None:
    model = ContentTfidf(k=None, max_df=0.6).fit(
        ["the bag red", "the bag blue", "the bag red spot", "the bag green"]
    )
    assert "bag" not in model.vocabulary_  # in every item
    assert "the" not in model.vocabulary_  # English stop word


def test_top_k_prunes_each_row() -> None:
    texts = [f"common word{i % 3} shared" for i in range(12)]
    model = ContentTfidf(k=2, max_df=1.0).fit(texts)
    assert (np.diff(model.similarity_.indptr) <= 2).all()


def test_empty_texts_give_no_neighbours() -> None:
    model = ContentTfidf().fit(["", "", ""])
    assert model.similarity_.nnz == 0
    assert model.similarity_.shape == (3, 3)
    model = ContentTfidf(max_df=1.0).fit(["lamp", "", "lamp shade"])
    assert model.similarity_.getrow(1).nnz == 0
    assert model.similarity_[0, 2] > 0
