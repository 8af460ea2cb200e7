"""FailureThrottle: free attempts, doubling delays, the window, bounded memory."""

from __future__ import annotations

from halswarm.auth_throttle import FailureThrottle


def test_free_failures_then_doubling_delays_capped() -> None:
    throttle = FailureThrottle(free=3, base_delay=0.5, max_delay=3.0)
    delays = [throttle.failed("10.0.0.1", now=float(i)) for i in range(8)]
    assert delays == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert throttle.failed("10.0.0.2", now=8.0) == 0.0  # another address is not slowed


def test_the_window_resets_the_count() -> None:
    throttle = FailureThrottle(free=1, window=60.0, base_delay=1.0)
    throttle.failed("a", 0.0)
    assert throttle.failed("a", 1.0) == 1.0
    assert throttle.failed("a", 61.0) == 0.0  # a new window
    assert throttle.failures("a", 62.0) == 1


def test_a_flood_never_overflows_the_delay() -> None:
    throttle = FailureThrottle(free=5, max_delay=5.0)
    delays = [throttle.failed("10.0.0.1", now=0.001 * i) for i in range(5000)]
    assert delays[-1] == 5.0  # 2 ** 4999 would overflow a float


def test_memory_is_bounded() -> None:
    throttle = FailureThrottle(max_addresses=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(throttle) == 100
    assert throttle.failures("10.0.3.231", 0.0) == 1  # the latest are kept
    assert throttle.failures("10.0.0.0", 0.0) == 0
