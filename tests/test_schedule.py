"""The fixed-rate schedule every periodic loop uses, on trio's MockClock: drift-free ticks, missed
ticks skipped (no burst) after a slow step or a late wake-up, an interval change taking effect
after the tick that is due, and extra wake-ups that leave the schedule alone."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import pytest
import trio
import trio.testing

from halswarm.schedule import Ticks

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: Steps a loop may take in one test: more means it runs ticks in a burst (it would spin
#: without moving virtual time, so a deadline alone would not end the test).
MAX_STEPS: Final = 50
#: Virtual seconds any test may take.
GUARD: Final = 100


def record(started: list[float], at: float) -> None:
    started.append(at)
    assert len(started) < MAX_STEPS, "the loop runs in a burst"


async def beside(loop: Callable[[], Awaitable[None]], script: Callable[[], Awaitable[None]]) -> None:
    """Run *loop* while *script* runs, then cancel it (bounded by :data:`GUARD`)."""
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop)
            await script()
            nursery.cancel_scope.cancel()


async def run_loop(ticks: Ticks, steps: dict[int, float], until: float) -> list[float]:
    """A loop acting at once and then on every tick; step n (from 0) takes ``steps[n]`` seconds.

    Returns when each step started, relative to the schedule's start.
    """
    started: list[float] = []
    with trio.fail_after(GUARD), trio.move_on_at(ticks.start + until):
        while True:
            record(started, trio.current_time() - ticks.start)
            await trio.sleep(steps.get(len(started) - 1, 0.0))
            await ticks.wait()
    return started


async def test_ticks_are_drift_free_whatever_the_steps_take(autojump_clock: trio.testing.MockClock) -> None:
    ticks = Ticks(10.0)
    started = await run_loop(ticks, {0: 3.0, 1: 9.5, 2: 0.1}, until=45)
    assert started == [0.0, 10.0, 20.0, 30.0, 40.0]


async def test_a_slow_step_skips_the_ticks_it_missed_instead_of_bursting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks = Ticks(10.0)
    started = await run_loop(ticks, {1: 25.0}, until=65)  # the step at 10 ends at 35: 20 and 30 skipped
    assert started == [0.0, 10.0, 40.0, 50.0, 60.0]


async def test_a_step_that_ends_exactly_on_a_tick_runs_again_at_once(autojump_clock: trio.testing.MockClock) -> None:
    # A poll that used its whole deadline ends on a tick, which is then still due. Here the
    # step from 0.1 ends at 0.1 + 0.2, a hair past 3 * 0.1 in binary floating point: the
    # tick at 0.3 must run at once all the same, not be skipped.
    ticks = Ticks(0.1, start=0.0)  # MockClock's time starts at 0
    started = await run_loop(ticks, {1: 0.2}, until=0.45)
    assert [round(t, 9) for t in started] == [0.0, 0.1, 0.3, 0.4]


async def test_a_late_wake_up_skips_the_missed_ticks(autojump_clock: trio.testing.MockClock) -> None:
    ticks = Ticks(10.0)
    started: list[float] = []

    async def loop() -> None:
        while True:
            await ticks.wait()
            record(started, trio.current_time() - ticks.start)

    async def script() -> None:
        await trio.sleep(5)
        autojump_clock.jump(17)  # the process was stopped: the tick at 10 is served at 22
        await trio.sleep(20)  # until 42

    await beside(loop, script)
    assert started == [22.0, 30.0, 40.0]  # 20 is skipped, not run at 22 as well


async def test_an_interval_change_takes_effect_after_the_tick_that_is_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = {"interval": 10.0}
    ticks = Ticks(config["interval"])
    start = ticks.start
    started: list[float] = []

    async def loop() -> None:
        while True:
            await ticks.wait(config["interval"])
            record(started, trio.current_time() - start)
            await trio.sleep(1)  # each step takes a second

    async def script() -> None:
        await trio.sleep_until(start + 15)
        config["interval"] = 4.0  # a reload; the tick due at 20 keeps its time
        await trio.sleep_until(start + 35)

    await beside(loop, script)
    assert ticks.interval == 4.0
    # The new schedule starts when the step at 20 asks for its next tick (at 21): 25, 29, 33.
    assert started == [10.0, 20.0, 25.0, 29.0, 33.0]


async def test_next_at_reports_the_next_tick_without_moving(autojump_clock: trio.testing.MockClock) -> None:
    ticks = Ticks(60.0)
    start = ticks.start
    await trio.sleep(130)
    assert ticks.next_at() == start + 180.0  # 60 and 120 are past
    assert ticks.next_at() == start + 180.0
    assert ticks.advance() == start + 180.0
    assert ticks.next_at() == start + 240.0


async def test_next_after_now_serves_loops_that_also_act_between_ticks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A heartbeat loop: regular beats on the schedule, an extra one whenever woken; an extra
    # beat never delays a regular one.
    ticks = Ticks(10.0)
    woken = trio.Event()
    beats: list[float] = []

    async def loop() -> None:
        nonlocal woken
        while True:
            record(beats, trio.current_time() - ticks.start)
            with trio.move_on_at(ticks.next_after_now()):
                await woken.wait()
                woken = trio.Event()

    async def script() -> None:
        await trio.sleep(14)
        woken.set()  # an extra beat at 14; the regular one stays at 20
        await trio.sleep(1)
        autojump_clock.jump(20)  # stopped from 15 to 35: the beat due at 20 comes late, 30 is skipped
        await trio.sleep(7)  # until 42

    await beside(loop, script)
    assert beats == [0.0, 10.0, 14.0, 35.0, 40.0]


@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan])
async def test_an_interval_that_is_not_positive_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be greater than 0 seconds"):
        Ticks(interval)
    ticks = Ticks(1.0)
    with pytest.raises(ValueError, match="interval must be greater than 0 seconds"):
        ticks.advance(interval)
    assert ticks.interval == 1.0
