"""restart_on_compaction: one handover restart per session, retry caps per project."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config.policies import RestartOnCompactionPolicy
from halswarm.policy import (
    Decision,
    PolicyAction,
    RestartOnCompactionState,
    RetryWindow,
    Snapshot,
    Suppressed,
    decide_restart_on_compaction,
)
from tests.policy.support import drive, session, snap

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.models import SessionStatus
    from halswarm.policy import SessionView

EMPTY = RestartOnCompactionState()


def decider(**kw: object) -> Callable[[Snapshot, RestartOnCompactionState, float], Decision[RestartOnCompactionState]]:
    config = RestartOnCompactionPolicy(enabled=True, **kw)  # type: ignore[arg-type]

    def decide(snapshot: Snapshot, state: RestartOnCompactionState, now: float) -> Decision[RestartOnCompactionState]:
        return decide_restart_on_compaction(config, snapshot, state, now)

    return decide


decide = decider()


def compacted(
    sid: str = "s1", count: int = 2, *, status: SessionStatus = "busy", project: str = "alpha"
) -> SessionView:
    return session(sid, status=status, compactions=count, project=project)


@pytest.mark.parametrize(("count", "fires"), [(0, False), (1, False), (2, True), (7, True)])
def test_threshold_edges(count: int, fires: bool) -> None:
    assert bool(decide(snap(compacted(count=count)), EMPTY, 0.0).actions) is fires


def test_the_restart_command() -> None:
    (action,) = decide(snap(compacted("s1", 2)), EMPTY, 50.0).actions
    assert isinstance(action, PolicyAction)
    assert (action.kind, action.command_type, action.target) == ("command", "restart_session", "s1")
    assert action.args == {"handover": True}
    assert action.actor == "policy:restart_on_compaction"
    assert action.idempotency_key == "restart_on_compaction:s1"
    assert "2 compactions (threshold 2)" in action.reason


def test_threshold_is_configurable() -> None:
    decide5 = decider(compaction_threshold=5)
    assert not decide5(snap(compacted(count=4)), EMPTY, 0.0).actions
    assert decide5(snap(compacted(count=5)), EMPTY, 0.0).actions


def test_same_session_is_never_restarted_twice() -> None:
    # The old session lingers while the handover runs, and keeps compacting.
    ticks = [(float(t), snap(compacted(count=2 + t // 100, status="busy" if t % 20 else "idle"))) for t in range(300)]
    actions, state = drive(decide, EMPTY, ticks)
    assert len(actions) == 1
    assert state.sessions == {"s1": "acted"}


def test_the_successor_starts_from_zero_and_is_restarted_when_it_compacts() -> None:
    ticks = [
        (0.0, snap(compacted("old", 2))),
        (10.0, snap(compacted("old", 2, status="completed"), compacted("new", 0))),
        (20.0, snap(compacted("new", 1))),
        (30.0, snap(compacted("new", 2))),
    ]
    actions, state = drive(decide, EMPTY, ticks)
    assert [(t, a.target) for t, a in actions] == [(0.0, "old"), (30.0, "new")]
    assert state.sessions == {"new": "acted"}  # "old" left the snapshot: pruned
    assert state.windows == {"alpha": RetryWindow(0.0, 2)}


@pytest.mark.parametrize(("status", "fires"), [("busy", True), ("idle", True), ("error", True), ("retry", True),
                                               ("waiting", False), ("starting", False), ("completed", False),
                                               ("unreachable", False)])  # fmt: skip
def test_restart_waits_for_a_restartable_status(status: SessionStatus, fires: bool) -> None:
    assert bool(decide(snap(compacted(status=status)), EMPTY, 0.0).actions) is fires


def test_a_waiting_session_is_restarted_once_the_question_is_answered() -> None:
    ticks = [(0.0, snap(compacted(status="waiting"))), (10.0, snap(compacted(status="busy")))]
    actions, _ = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [10.0]


def test_retry_cap_is_per_project() -> None:
    decide2 = decider(max_retries=2, reset_window_seconds=1000.0)
    ticks = [
        (0.0, snap(compacted("a1"))),
        (10.0, snap(compacted("a2"))),
        (20.0, snap(compacted("a3"), compacted("b1", project="beta"))),
        *[(float(t), snap(compacted("a3"))) for t in range(30, 1000, 10)],
        (1000.0, snap(compacted("a3"))),  # the alpha window (opened at 0) ended
        (1010.0, snap(compacted("a3"))),
    ]
    actions, state = drive(decide2, EMPTY, ticks)
    assert [(t, a.target, type(a).__name__) for t, a in actions] == [
        (0.0, "a1", "PolicyAction"),
        (10.0, "a2", "PolicyAction"),
        (20.0, "a3", "Suppressed"),
        (20.0, "b1", "PolicyAction"),
        (1000.0, "a3", "PolicyAction"),
    ]
    notice = actions[2][1]
    assert isinstance(notice, Suppressed)
    assert (notice.project, notice.retries_used, notice.next_reset) == ("alpha", 2, 1000.0)
    assert "restarts for alpha" in notice.reason
    assert state.sessions == {"a3": "acted"}
    assert state.windows == {"alpha": RetryWindow(1000.0, 1), "beta": RetryWindow(20.0, 1)}


def test_sessions_of_one_project_in_one_tick_share_the_budget() -> None:
    decision = decider(max_retries=1)(snap(compacted("a1"), compacted("a2")), EMPTY, 0.0)
    assert [type(a).__name__ for a in decision.actions] == ["PolicyAction", "Suppressed"]


def test_project_windows_outlive_their_sessions_until_they_expire() -> None:
    state = RestartOnCompactionState({"gone": "acted"}, {"alpha": RetryWindow(0.0, 3)})
    assert decide(snap(), state, 3599.0).state == RestartOnCompactionState({}, {"alpha": RetryWindow(0.0, 3)})
    assert decide(snap(), state, 3600.0).state == EMPTY
    # ... so a session that appears after its predecessor vanished is still capped.
    decision = decide(snap(compacted("next")), state, 100.0)
    assert [type(a).__name__ for a in decision.actions] == ["Suppressed"]


def test_dry_run_advances_the_state_as_if_acted() -> None:
    ticks = [(float(t), snap(compacted("a1"), compacted("a2"))) for t in range(0, 100, 10)]
    real, real_state = drive(decider(max_retries=1), EMPTY, ticks)
    dry, dry_state = drive(decider(max_retries=1, dry_run=True), EMPTY, ticks)
    assert len(dry) == 2
    assert [(t, type(a)) for t, a in dry] == [(t, type(a)) for t, a in real]
    assert all(a.dry_run for _, a in dry)
    assert dry_state == real_state


def test_held_sessions_are_left_alone() -> None:
    config = RestartOnCompactionPolicy(enabled=True)
    assert not decide(snap(compacted(), in_flight=["s1"]), EMPTY, 0.0).actions
    assert not decide_restart_on_compaction(config, snap(compacted()), EMPTY, 0.0, claimed=frozenset({"s1"})).actions
    assert not decide(snap(session(compactions=3, status="busy", reachable=False)), EMPTY, 0.0).actions


def test_restoring_the_state_every_tick_changes_nothing() -> None:
    ticks = [(float(t), snap(*(compacted(f"s{k}") for k in range(t // 300 + 1)))) for t in range(0, 6000, 100)]
    plain, _ = drive(decider(max_retries=2), EMPTY, ticks)
    persisted, _ = drive(decider(max_retries=2), EMPTY, ticks, persist=True)
    assert plain == persisted
    assert len(plain) > 2
