"""Reconnect delays: equal jitter within [base/2, base], exponential growth, the cap, and
determinism from an injected random source."""

from __future__ import annotations

import random

import pytest

from halswarm.agent.backoff import Backoff, Retries


class FixedRandom(random.Random):
    """uniform(a, b) always returns the same fraction of the range."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


@pytest.mark.parametrize("seed", range(5))
def test_delays_stay_within_half_and_full_base(seed: int) -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    rng = random.Random(seed)
    for attempt in range(12):
        base = min(30.0, 0.5 * 2**attempt)
        for _ in range(50):
            delay = backoff.delay(attempt, rng)
            assert base / 2 <= delay <= base, (attempt, delay)


def test_jitter_spans_the_whole_upper_half() -> None:
    # With "equal jitter" the extreme draws land exactly on base/2 and base.
    backoff = Backoff(initial=1.0, maximum=100.0)
    assert [backoff.delay(a, FixedRandom(0.0)) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert [backoff.delay(a, FixedRandom(1.0)) for a in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert [backoff.delay(a, FixedRandom(0.5)) for a in range(4)] == [0.75, 1.5, 3.0, 6.0]


def test_growth_follows_the_multiplier() -> None:
    backoff = Backoff(initial=1.0, maximum=1000.0, multiplier=3.0)
    assert [backoff.delay(a, FixedRandom(1.0)) for a in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]


def test_delays_are_capped_at_the_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    assert backoff.delay(6, FixedRandom(1.0)) == 30.0  # 0.5 * 64 = 32 -> capped
    assert backoff.delay(6, FixedRandom(0.0)) == 15.0
    # Huge attempt counts neither overflow nor exceed the cap.
    assert backoff.delay(10_000, FixedRandom(1.0)) == 30.0
    assert 15.0 <= backoff.delay(10**9, random.Random(1)) <= 30.0


def test_a_seeded_random_gives_the_same_schedule() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0)
    first = [backoff.delay(a, random.Random(42)) for a in range(10)]
    rng_a, rng_b = random.Random(7), random.Random(7)
    run_a = [backoff.delay(a, rng_a) for a in range(10)]
    run_b = [backoff.delay(a, rng_b) for a in range(10)]
    assert run_a == run_b
    assert [backoff.delay(a, random.Random(42)) for a in range(10)] == first
    assert run_a != [backoff.delay(a, random.Random(8)) for a in range(10)]


def test_retries_grow_until_a_connection_stayed_up() -> None:
    retries = Retries(Backoff(initial=1.0, maximum=100.0), stable_after=30.0)
    rng = FixedRandom(1.0)
    delays = []
    for lasted in (0.0, 5.0, 29.9):  # failed to connect, then dropped soon after connecting
        retries.ended(lasted)
        delays.append(retries.next_delay(rng))
    assert delays == [1.0, 2.0, 4.0]
    retries.ended(30.0)
    assert retries.next_delay(rng) == 1.0
