"""The wedged-process rule both daemons' watchdog pings follow (on trio's MockClock): an operation
is timed while it runs, and the first one over the limit is named."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from halswarm.liveness import CallTimer, Stall, first_stall


async def test_a_call_is_timed_while_it_runs_and_only_then(autojump_clock: trio.testing.MockClock) -> None:
    timer = CallTimer()
    seen: list[float] = []

    async def call() -> None:
        with timer.timing():
            await trio.sleep(40)
            raise OSError("the call failed")

    with trio.fail_after(100):
        assert timer.running_for() == 0.0
        async with trio.open_nursery() as nursery:

            async def run_call() -> None:
                with pytest.raises(OSError, match="the call failed"):
                    await call()

            nursery.start_soon(run_call)
            await trio.sleep(25)
            seen.append(timer.running_for())
        assert timer.running_for() == 0.0  # ended by an error: no longer running
    assert seen == [25.0]


def test_the_first_operation_over_the_limit_is_named() -> None:
    writer = Stall("the writer has been inside one call for {:.1f}s", lambda: 31.04)
    commit = Stall("a commit has taken {:.1f}s so far", lambda: 45.0)
    idle = Stall("never named {:.1f}s", lambda: 0.0)
    assert first_stall([idle, writer, commit], 30.0) == "the writer has been inside one call for 31.0s (limit 30s)"
    assert first_stall([idle, commit, writer], 30.0) == "a commit has taken 45.0s so far (limit 30s)"
    assert first_stall([writer, commit], 45.0) is None  # at the limit is not beyond it
    assert first_stall([writer, commit], None) is None  # no watchdog: never wedged
