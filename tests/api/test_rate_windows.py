"""The in-process rate limit counts as the `limits` library's sliding window counter does."""

from __future__ import annotations

import random
import time

from limits import parse, storage, strategies

from app.security.ratelimit import SlidingWindows


def test_the_memory_windows_decide_as_the_librarys_sliding_window_counter(monkeypatch):
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    ours = SlidingWindows()
    theirs = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
    rng = random.Random(5)
    items = [parse("5/second"), parse("10/minute"), parse("3/minute")]
    decisions = []
    for _ in range(3_000):
        clock[0] += rng.expovariate(8.0)  # about 8 requests a second, in bursts and pauses
        item = rng.choice(items)
        who = rng.choice(["key-a", "key-b", "10.0.0.1"])
        mine = ours.hit(item, "read", who)
        assert mine == theirs.hit(item, "read", who), (clock[0], str(item), who)
        decisions.append(mine)
    assert 0.2 < sum(decisions) / len(decisions) < 0.9  # both allowed and refused were checked


def test_a_refused_identity_is_told_when_it_may_come_back(monkeypatch):
    clock = [1_800_000_010.0]  # 10 s into a minute window
    monkeypatch.setattr(time, "time", lambda: clock[0])
    windows, item = SlidingWindows(), parse("3/minute")
    assert [windows.hit(item, "read", "k") for _ in range(4)] == [True, True, True, False]
    assert windows.reset_at(item, "read", "k") == 1_800_000_060.0  # the window's end
    clock[0] += 50  # the next window's start: the 3 earlier hits weigh 3 × (1 - 0/60)
    assert not windows.hit(item, "read", "k")
    clock[0] += 25  # they weigh 3 × 35/60 = 1.75, counted as 1: two more fit
    assert [windows.hit(item, "read", "k") for _ in range(3)] == [True, True, False]
    assert windows.hit(item, "read", "other")
