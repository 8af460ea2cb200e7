"""stuck_busy: busy with no activity for N minutes -> one alert or abort per quiet stretch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config.policies import StuckBusyPolicy
from halswarm.policy import Decision, PolicyAction, Snapshot, StuckBusyState, decide_stuck_busy
from tests.policy.support import drive, session, snap

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.models import SessionStatus

EMPTY = StuckBusyState()
LIMIT = 30 * 60.0


def decider(**kw: object) -> Callable[[Snapshot, StuckBusyState, float], Decision[StuckBusyState]]:
    config = StuckBusyPolicy(enabled=True, **kw)  # type: ignore[arg-type]

    def decide(snapshot: Snapshot, state: StuckBusyState, now: float) -> Decision[StuckBusyState]:
        return decide_stuck_busy(config, snapshot, state, now)

    return decide


decide = decider()


@pytest.mark.parametrize(("now", "fires"), [(LIMIT - 0.001, False), (LIMIT, True), (LIMIT + 1, True)])
def test_threshold_edges(now: float, fires: bool) -> None:
    assert bool(decide(snap(session(status="busy", since=0.0)), EMPTY, now).actions) is fires


def test_the_alert_and_the_abort() -> None:
    s = session(status="busy", since=0.0, activity=60.0)
    (alert,) = decide(snap(s), EMPTY, 60.0 + LIMIT).actions
    assert isinstance(alert, PolicyAction)
    assert (alert.kind, alert.command_type, alert.target) == ("alert", None, "s1")
    assert alert.idempotency_key == "stuck_busy:s1:60.0"
    assert "no activity for 1800 s (threshold 30 min); alert" in alert.reason
    (abort,) = decider(action="abort")(snap(s), EMPTY, 60.0 + LIMIT).actions
    assert isinstance(abort, PolicyAction)
    assert (abort.kind, abort.command_type, abort.args) == ("command", "abort_session", {})


def test_minutes_are_configurable() -> None:
    decide5 = decider(minutes=5)
    assert not decide5(snap(session(status="busy")), EMPTY, 299.0).actions
    assert decide5(snap(session(status="busy")), EMPTY, 300.0).actions


@pytest.mark.parametrize("status", ["idle", "waiting", "retry", "error", "starting", "completed", "unreachable"])
def test_only_busy_sessions(status: SessionStatus) -> None:
    assert not decide(snap(session(status=status, since=0.0)), EMPTY, 10 * LIMIT).actions


def test_once_per_quiet_stretch_and_new_activity_rearms() -> None:
    ticks = [(float(t), snap(session(status="busy", since=0.0))) for t in range(0, 4000, 60)]
    ticks += [(t, snap(session(status="busy", since=0.0, activity=4000.0))) for t in (4000.0, 5799.0, 5800.0, 9000.0)]
    actions, state = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [1800.0, 5800.0]
    assert state.episodes == {"s1": 4000.0}


def test_leaving_busy_ends_the_stretch() -> None:
    ticks = [(1800.0, snap(session(status="busy", since=0.0)))]
    ticks += [(1900.0, snap(session(status="idle", since=1850.0)))]
    ticks += [(t, snap(session(status="busy", since=2000.0))) for t in (2000.0, 3800.0)]
    actions, _ = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [1800.0, 3800.0]


def test_dry_run() -> None:
    ticks = [(float(t), snap(session(status="busy"))) for t in range(0, 4000, 100)]
    dry, dry_state = drive(decider(dry_run=True, action="abort"), EMPTY, ticks)
    real, real_state = drive(decider(action="abort"), EMPTY, ticks)
    assert [t for t, _ in dry] == [t for t, _ in real] == [1800.0]
    assert dry[0][1].dry_run
    assert dry_state == real_state


def test_held_sessions_keep_their_state_and_vanished_ones_are_pruned() -> None:
    state = StuckBusyState({"s1": 0.0, "gone": 5.0})
    held = decide(snap(session(status="busy", activity=900.0), in_flight=["s1"]), state, 10_000.0)
    assert held.actions == ()
    assert held.state == StuckBusyState({"s1": 0.0})
    config = StuckBusyPolicy(enabled=True)
    claimed = decide_stuck_busy(config, snap(session(status="busy")), EMPTY, LIMIT, claimed=frozenset({"s1"}))
    assert claimed.actions == ()
    assert not decide(snap(session(status="busy", reachable=False)), EMPTY, LIMIT).actions


def test_restoring_the_state_every_tick_changes_nothing() -> None:
    ticks = [(float(t), snap(session(status="busy", activity=float(t - t % 2500)))) for t in range(0, 20_000, 50)]
    plain, _ = drive(decider(minutes=10), EMPTY, ticks)
    persisted, _ = drive(decider(minutes=10), EMPTY, ticks, persist=True)
    assert plain == persisted
    assert len(plain) == 8
