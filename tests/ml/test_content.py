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


def test_long_postings_link_items_only_within_groups() -> None:
    texts = ["common"] * 10
    exact = ContentTfidf(k=None, max_df=1.0, max_postings=None).fit(texts)
    grouped = ContentTfidf(k=None, max_df=1.0, max_postings=5).fit(texts)
    assert (np.diff(exact.similarity_.indptr) == 9).all()
    # "common" is in 10 items: two groups of 5, each item linked to the 4 others in its group.
    assert (np.diff(grouped.similarity_.indptr) == 4).all()
    assert np.allclose(grouped.similarity_.data, 1.0)


def test_grouping_keeps_items_sharing_a_rare_term_together() -> None:
    # "common" is split into groups of 2; the rarity order pairs the items sharing a tag.
    texts = [f"common tag{i % 4} word{i}" for i in range(8)]
    exact = ContentTfidf(k=1, max_df=1.0, max_postings=None).fit(texts).similarity_
    grouped = ContentTfidf(k=1, max_df=1.0, max_postings=2).fit(texts).similarity_
    partners = [
        grouped.indices[grouped.indptr[i] : grouped.indptr[i + 1]].tolist() for i in range(8)
    ]
    assert partners == [[(i + 4) % 8] for i in range(8)]
    assert np.allclose(grouped.toarray(), exact.toarray(), atol=1e-6)


def test_grouped_similarity_is_exact_below_the_cap_and_a_lower_bound_above() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{j}" for j in range(30)]
    texts = [" ".join(rng.choice(words, size=6, replace=False)) for _ in range(200)]
    exact = ContentTfidf(k=None, max_df=1.0, max_postings=None).fit(texts).similarity_.toarray()
    same = ContentTfidf(k=None, max_df=1.0, max_postings=200).fit(texts).similarity_.toarray()
    np.testing.assert_allclose(same, exact, atol=1e-6)
    grouped = ContentTfidf(k=None, max_df=1.0, max_postings=10).fit(texts).similarity_.toarray()
    assert (grouped <= exact + 1e-6).all()
    assert (grouped > 0).sum() < (exact > 0).sum()
    assert ((grouped > 0).sum(axis=1) <= 6 * 9).all()  # at most 9 others per term


def test_state_of_the_previous_release_loads_its_ngram_range() -> None:
    model = ContentTfidf(k=2, max_df=1.0, ngram_max=2).fit(["red car", "red bike", "blue car"])
    arrays, meta = model.to_state()
    params = dict(meta["params"])
    del params["ngram_max"]
    params["ngram_range"] = [1, 2]  # as bundles stored it before ngram_max
    restored = ContentTfidf.from_state(arrays, {**meta, "params": params})
    assert restored.get_params() == model.get_params()
    assert "red car" in restored.vocabulary_
