"""error_loop: N consecutive errors -> one alert or restart per streak, capped per project."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config.policies import ErrorLoopPolicy
from halswarm.policy import (
    Decision,
    ErrorEpisode,
    ErrorLoopState,
    PolicyAction,
    RetryWindow,
    Snapshot,
    Suppressed,
    decide_error_loop,
)
from tests.policy.support import drive, session, snap

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.models import SessionStatus
    from halswarm.policy import SessionView

EMPTY = ErrorLoopState()


def decider(**kw: object) -> Callable[[Snapshot, ErrorLoopState, float], Decision[ErrorLoopState]]:
    config = ErrorLoopPolicy(enabled=True, **kw)  # type: ignore[arg-type]

    def decide(snapshot: Snapshot, state: ErrorLoopState, now: float) -> Decision[ErrorLoopState]:
        return decide_error_loop(config, snapshot, state, now)

    return decide


decide = decider()


def failing(errors: int, sid: str = "s1", *, status: SessionStatus = "error", project: str = "alpha") -> SessionView:
    return session(sid, status=status, errors=errors, project=project)


@pytest.mark.parametrize(("errors", "fires"), [(0, False), (2, False), (3, True), (9, True)])
def test_threshold_edges(errors: int, fires: bool) -> None:
    assert bool(decide(snap(failing(errors)), EMPTY, 0.0).actions) is fires


def test_the_alert() -> None:
    (action,) = decide(snap(failing(3)), EMPTY, 42.0).actions
    assert isinstance(action, PolicyAction)
    assert (action.kind, action.command_type, action.target, action.args) == ("alert", None, "s1", {})
    assert action.actor == "policy:error_loop"
    assert action.idempotency_key == "error_loop:s1:42.0"
    assert "3 consecutive errors (threshold 3); alert" in action.reason


def test_the_restart() -> None:
    (action,) = decider(action="restart")(snap(failing(3)), EMPTY, 0.0).actions
    assert isinstance(action, PolicyAction)
    assert (action.kind, action.command_type, action.args) == ("command", "restart_session", {"handover": True})


def test_once_per_streak_while_errors_keep_coming() -> None:
    ticks = [(float(t), snap(failing(3 + t // 10))) for t in range(0, 200, 5)]
    actions, state = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [0.0]
    assert state.episodes == {"s1": ErrorEpisode(0.0, 22, "acted")}


def test_a_new_streak_after_a_successful_turn() -> None:
    ticks = [(0.0, snap(failing(3))), (10.0, snap(failing(4))), (20.0, snap(failing(0, status="idle")))]
    ticks += [(30.0, snap(failing(2))), (40.0, snap(failing(3))), (50.0, snap(failing(5)))]
    actions, _ = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [0.0, 40.0]


def test_a_reset_between_two_ticks_shows_as_a_lower_count() -> None:
    actions, _ = drive(decide, EMPTY, [(0.0, snap(failing(5))), (10.0, snap(failing(4)))])
    assert [t for t, _ in actions] == [0.0, 10.0]


def test_alerts_go_to_any_active_session_but_not_finished_ones() -> None:
    assert decide(snap(failing(3, status="waiting")), EMPTY, 0.0).actions
    assert not decide(snap(failing(3, status="completed")), EMPTY, 0.0).actions


def test_a_restart_waits_for_a_restartable_status() -> None:
    decide_restart = decider(action="restart")
    ticks = [(0.0, snap(failing(3, status="waiting"))), (10.0, snap(failing(3, status="idle")))]
    actions, _ = drive(decide_restart, EMPTY, ticks)
    assert [t for t, _ in actions] == [10.0]


def test_retry_cap_per_project_suppresses_once_and_the_window_restores_it() -> None:
    decide1 = decider(max_retries=1, reset_window_seconds=600.0)
    ticks = [(0.0, snap(failing(3, "a1"), failing(3, "b1", project="beta")))]
    ticks += [(float(t), snap(failing(3, "a2"))) for t in range(10, 600, 10)]
    ticks += [(600.0, snap(failing(4, "a2"))), (610.0, snap(failing(5, "a2")))]
    actions, state = drive(decide1, EMPTY, ticks)
    assert [(t, a.target, type(a).__name__) for t, a in actions] == [
        (0.0, "a1", "PolicyAction"),
        (0.0, "b1", "PolicyAction"),
        (10.0, "a2", "Suppressed"),
        (600.0, "a2", "PolicyAction"),
    ]
    notice = actions[2][1]
    assert isinstance(notice, Suppressed)
    assert (notice.retries_used, notice.next_reset) == (1, 600.0)
    assert "alerts for alpha" in notice.reason
    # The streak keeps the time it was first handled: the key is stable within it.
    assert state.episodes == {"a2": ErrorEpisode(10.0, 5, "acted")}
    assert state.windows == {"alpha": RetryWindow(600.0, 1)}  # beta's window (from 0) expired at 600


def test_dry_run() -> None:
    ticks = [(float(t), snap(failing(3 + t))) for t in range(5)]
    real, real_state = drive(decider(action="restart"), EMPTY, ticks)
    dry, dry_state = drive(decider(action="restart", dry_run=True), EMPTY, ticks)
    assert len(dry) == 1
    assert dry[0][1].dry_run
    assert not real[0][1].dry_run
    assert dry_state == real_state


def test_held_sessions_keep_their_state() -> None:
    state = ErrorLoopState({"s1": ErrorEpisode(0.0, 5, "acted")})
    held = decide(snap(failing(0, status="idle"), in_flight=["s1"]), state, 10.0)
    assert held.state == state  # not ended: we did not look
    config = ErrorLoopPolicy(enabled=True)
    assert not decide_error_loop(config, snap(failing(3)), EMPTY, 0.0, claimed=frozenset({"s1"})).actions
    assert not decide(snap(session(errors=3, status="error", reachable=False)), EMPTY, 0.0).actions


def test_pruning() -> None:
    state = ErrorLoopState({"gone": ErrorEpisode(0.0, 3, "acted")}, {"alpha": RetryWindow(0.0, 1)})
    assert decide(snap(), state, 3599.0).state == ErrorLoopState({}, {"alpha": RetryWindow(0.0, 1)})
    assert decide(snap(), state, 3600.0).state == EMPTY


def test_restoring_the_state_every_tick_changes_nothing() -> None:
    ticks = [(float(t), snap(failing((t // 7) % 6, f"s{t // 100}"))) for t in range(0, 2000, 3)]
    plain, _ = drive(decider(max_retries=2, reset_window_seconds=500.0), EMPTY, ticks)
    persisted, _ = drive(decider(max_retries=2, reset_window_seconds=500.0), EMPTY, ticks, persist=True)
    assert plain == persisted
    assert len(plain) > 4
