"""Placements: buy-again ranking, the home mix, and prefix-stable answers."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.hybrid import Ranked
from app.ml.placements import REPEAT_REASON, mix, repeat_ranking, repeat_slots

DAY = 86_400.0


def _ranked(items: list[int], kind: str) -> Ranked:
    return Ranked(
        items=np.asarray(items, dtype=np.int64),
        scores=np.linspace(1.0, 0.5, len(items)).astype(np.float32),
        reason_kinds=[kind] * len(items),
        reason_items=np.full(len(items), -1, dtype=np.int64),
        source="personalized",
    )


def test_repeat_ranking_orders_by_decayed_frequency_and_respects_the_mask() -> None:
    # item 3 bought three times long ago, item 5 twice recently, item 7 once, item 9 weighs 0
    items = np.array([5, 5, 7, 3, 3, 3, 9, -1])
    weights = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.0, 5.0])
    times = np.array([400, 399, 398, 10, 9, 8, 400, 400]) * DAY
    mask = np.ones(10, dtype=bool)
    ranked = repeat_ranking(items, weights, times, half_life_days=30.0, n=5, mask=mask)
    assert ranked.items.tolist() == [5, 7, 3]  # recency beats old frequency; 9 weighs nothing
    assert ranked.reason_kinds == [REPEAT_REASON] * 3
    flat = repeat_ranking(items, weights, times, half_life_days=None, n=5, mask=mask)
    assert flat.items.tolist() == [3, 5, 7]  # without decay, frequency wins
    mask[5] = False
    assert repeat_ranking(
        items, weights, times, half_life_days=None, n=5, mask=mask
    ).items.tolist() == [3, 7]
    assert repeat_ranking(
        items, weights, times, half_life_days=None, n=1, mask=mask
    ).items.tolist() == [3]


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_repeat_slots_put_ceil_share_repeats_in_every_prefix(share: float) -> None:
    slots = repeat_slots(40, share)
    for m in range(41):
        assert int(slots[:m].sum()) == int(np.ceil(m * share - 1e-9))
    assert bool(slots[0]) == (share > 0)


def test_mix_interleaves_and_fills_when_one_list_runs_out() -> None:
    repeat = _ranked([1, 2], REPEAT_REASON)
    explore = _ranked([10, 11, 12, 13, 14], "similar_to")
    out = mix(repeat, explore, n=6, share=0.5)
    assert out.items.tolist() == [1, 10, 2, 11, 12, 13]
    assert out.reason_kinds[:3] == [REPEAT_REASON, "similar_to", REPEAT_REASON]
    only_explore = mix(_ranked([], REPEAT_REASON), explore, n=3, share=1.0)
    assert only_explore.items.tolist() == [10, 11, 12]


def test_mix_never_places_an_item_twice() -> None:
    out = mix(
        _ranked([1, 2, 3], REPEAT_REASON), _ranked([2, 4, 1, 5], "similar_to"), n=5, share=0.4
    )
    assert sorted(out.items.tolist()) == sorted(set(out.items.tolist()))
    assert len(out.items) == 5


def test_a_longer_home_answer_starts_with_the_shorter_one() -> None:
    repeat = _ranked(list(range(100, 130)), REPEAT_REASON)
    explore = _ranked(list(range(30)), "similar_to")
    for share in (0.2, 0.5, 0.9):
        long = mix(repeat, explore, n=20, share=share).items.tolist()
        for n in range(1, 20):
            assert mix(repeat, explore, n=n, share=share).items.tolist() == long[:n]
