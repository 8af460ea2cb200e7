"""resume_on_idle: threshold edges, once per idle period, retry caps, reset windows, dry run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config.policies import ResumeOnIdlePolicy
from halswarm.policy import (
    Decision,
    IdleEpisode,
    PolicyAction,
    ResumeOnIdleState,
    RetryWindow,
    Snapshot,
    Suppressed,
    decide_resume_on_idle,
)
from tests.policy.support import acts, drive, session, snap, suppressed

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.models import SessionStatus
    from halswarm.policy import Action

THRESHOLD = 300.0
EMPTY = ResumeOnIdleState()


def decider(**kw: object) -> Callable[[Snapshot, ResumeOnIdleState, float], Decision[ResumeOnIdleState]]:
    config = ResumeOnIdlePolicy(enabled=True, **kw)  # type: ignore[arg-type]

    def decide(snapshot: Snapshot, state: ResumeOnIdleState, now: float) -> Decision[ResumeOnIdleState]:
        return decide_resume_on_idle(config, snapshot, state, now)

    return decide


decide = decider()


def only(decision: Decision[ResumeOnIdleState]) -> PolicyAction:
    (action,) = decision.actions
    assert isinstance(action, PolicyAction)
    return action


@pytest.mark.parametrize(("now", "fires"), [(299.999, False), (300.0, True), (300.001, True), (10_000.0, True)])
def test_threshold_edges(now: float, fires: bool) -> None:
    decision = decide(snap(session(since=0.0)), EMPTY, now)
    assert bool(decision.actions) is fires


def test_the_resume_command() -> None:
    action = only(decide(snap(session("s1", since=5.0, project="alpha", node="n7")), EMPTY, 400.0))
    assert action.policy == "resume_on_idle"
    assert action.actor == "policy:resume_on_idle"
    assert (action.kind, action.command_type, action.target, action.args) == ("command", "resume_session", "s1", {})
    assert (action.project, action.node_id, action.dry_run) == ("alpha", "n7", False)
    assert action.idempotency_key == "resume_on_idle:s1:5.0"
    assert "idle for 395 s" in action.reason
    assert "resume 1 of 3" in action.reason


def test_configured_prompt_is_sent() -> None:
    action = only(decider(prompt="Keep going.")(snap(session()), EMPTY, 300.0))
    assert action.args == {"prompt": "Keep going."}


def test_idle_time_counts_from_the_last_activity() -> None:
    s = session(since=0.0, activity=100.0)
    assert not decide(snap(s), EMPTY, 399.9).actions
    assert decide(snap(s), EMPTY, 400.0).actions


def test_activity_before_the_status_change_does_not_count() -> None:
    assert decide(snap(session(since=100.0, activity=50.0)), EMPTY, 400.0).actions


@pytest.mark.parametrize("status", ["busy", "waiting", "retry", "error", "starting", "completed", "unreachable"])
def test_only_idle_sessions_are_resumed(status: SessionStatus) -> None:
    assert not decide(snap(session(status=status, since=0.0)), EMPTY, 10_000.0).actions


def test_once_per_idle_period_over_many_ticks() -> None:
    ticks = [(float(t), snap(session(since=0.0))) for t in range(0, 3900, 10)]
    actions, state = drive(decide, EMPTY, ticks)
    assert [(t, a.target) for t, a in actions] == [(300.0, "s1")]
    assert state.episodes == {"s1": IdleEpisode(0.0, "acted")}
    assert state.windows == {"s1": RetryWindow(300.0, 1)}
    # Long after the window ended, the same idle period is still not resumed again.
    later, _ = drive(decide, state, [(t, snap(session(since=0.0))) for t in (5000.0, 50_000.0)])
    assert later == []


def test_again_only_after_busy_and_idle_past_the_threshold() -> None:
    ticks = [
        (300.0, snap(session(since=0.0))),  # resumed
        (310.0, snap(session(status="busy", since=305.0))),
        (320.0, snap(session(since=315.0))),
        (614.0, snap(session(since=315.0))),  # 299 s idle: not yet
        (615.0, snap(session(since=315.0))),  # 300 s: resumed again
        (900.0, snap(session(since=315.0))),
    ]
    actions, _ = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [300.0, 615.0]


def test_a_busy_spell_between_two_ticks_is_seen_through_status_since() -> None:
    # The resume's turn started and finished between ticks: the tick never saw "busy",
    # but the idle status is a new one (status_since moved), so it is a new period.
    ticks = [(300.0, snap(session(since=0.0))), (700.0, snap(session(since=390.0)))]
    actions, _ = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [300.0, 700.0]


def test_each_session_has_its_own_episode_and_budget() -> None:
    s1, s2 = session("s1", since=0.0), session("s2", since=100.0)
    actions, state = drive(decide, EMPTY, [(300.0, snap(s1, s2)), (400.0, snap(s1, s2)), (500.0, snap(s1, s2))])
    assert [(t, a.target) for t, a in actions] == [(300.0, "s1"), (400.0, "s2")]
    assert set(state.windows) == {"s1", "s2"}


def episodes(count: int, *, start: float = 0.0, gap: float = 400.0) -> list[tuple[float, Snapshot]]:
    """*count* idle periods of one session, each ticked well past the threshold."""
    ticks = []
    for k in range(count):
        since = start + k * gap
        ticks += [(since + THRESHOLD + dt, snap(session(since=since))) for dt in (0.0, 10.0, 50.0)]
    return ticks


def test_retry_cap_suppresses_exactly_once_per_episode() -> None:
    actions, state = drive(decider(max_retries=2), EMPTY, episodes(4))
    kinds = [(t, type(a).__name__) for t, a in actions]
    assert kinds == [
        (300.0, "PolicyAction"),
        (700.0, "PolicyAction"),
        (1100.0, "Suppressed"),  # third period: cap used; one notice only
        (1500.0, "Suppressed"),  # fourth period: a new episode, a new notice
    ]
    notice = actions[2][1]
    assert isinstance(notice, Suppressed)
    assert notice.actor == "policy:resume_on_idle"
    assert (notice.target, notice.retries_used, notice.next_reset) == ("s1", 2, 3900.0)
    assert "2 of 2" in notice.reason
    assert state.episodes["s1"] == IdleEpisode(1200.0, "suppressed")


def test_reset_window_restores_the_budget_for_a_suppressed_period() -> None:
    decide2 = decider(max_retries=2, reset_window_seconds=3600.0)
    ticks = [*episodes(3)]  # actions at 300 and 700, suppressed at 1100 (period since 800)
    ticks += [(3899.9, snap(session(since=800.0))), (3900.0, snap(session(since=800.0)))]
    ticks += [(t, snap(session(since=800.0))) for t in (4000.0, 5000.0)]
    actions, state = drive(decide2, EMPTY, ticks)
    assert [(t, type(a).__name__) for t, a in actions] == [
        (300.0, "PolicyAction"),
        (700.0, "PolicyAction"),
        (1100.0, "Suppressed"),
        (3900.0, "PolicyAction"),  # the window from 300 ended: same period, acted once
    ]
    assert state.windows["s1"] == RetryWindow(3900.0, 1)
    assert state.episodes["s1"] == IdleEpisode(800.0, "acted")


def test_window_is_anchored_at_its_first_action() -> None:
    decide1 = decider(max_retries=1, reset_window_seconds=1000.0)
    # Actions: 300 (opens window to 1300); period since 400 suppressed at 700;
    # period since 1000 would be due at 1300: the window just ended -> acted.
    ticks = [(300.0, snap(session(since=0.0))), (700.0, snap(session(since=400.0)))]
    ticks += [(1299.0, snap(session(since=1000.0))), (1300.0, snap(session(since=1000.0)))]
    actions, _ = drive(decide1, EMPTY, ticks)
    assert [(t, type(a).__name__) for t, a in actions] == [
        (300.0, "PolicyAction"),
        (700.0, "Suppressed"),
        (1300.0, "PolicyAction"),
    ]


def test_max_retries_zero_never_acts() -> None:
    actions, state = drive(decider(max_retries=0), EMPTY, episodes(2))
    assert all(isinstance(a, Suppressed) for _, a in actions)
    assert len(actions) == 2
    notice = actions[0][1]
    assert isinstance(notice, Suppressed)
    assert notice.next_reset is None
    assert "max_retries is 0" in notice.reason
    assert state.windows == {}


def test_dry_run_decides_the_same_once_and_advances_the_state() -> None:
    real, real_state = drive(decider(max_retries=1), EMPTY, episodes(3))
    dry, dry_state = drive(decider(max_retries=1, dry_run=True), EMPTY, episodes(3))
    assert [(t, type(a)) for t, a in dry] == [(t, type(a)) for t, a in real]
    assert all(a.dry_run for _, a in dry)
    assert not any(a.dry_run for _, a in real)
    assert dry_state == real_state


def test_in_flight_and_claimed_sessions_are_left_alone() -> None:
    s = session(since=0.0)
    assert not decide(snap(s, in_flight=["s1"]), EMPTY, 1000.0).actions
    config = ResumeOnIdlePolicy(enabled=True)
    assert not decide_resume_on_idle(config, snap(s), EMPTY, 1000.0, claimed=frozenset({"s1"})).actions
    # Held sessions keep their state (not pruned, window not spent).
    state = ResumeOnIdleState({"s1": IdleEpisode(0.0, "suppressed")}, {"s1": RetryWindow(900.0, 3)})
    assert decide(snap(s, in_flight=["s1"]), state, 1000.0).state == state


def test_a_node_outage_does_not_end_the_idle_period() -> None:
    ticks: list[tuple[float, Snapshot]] = [(300.0, snap(session(since=0.0)))]
    ticks += [(t, snap(session(since=0.0, reachable=False))) for t in (400.0, 500.0)]
    ticks += [(t, snap(session(since=0.0))) for t in (600.0, 5000.0)]
    actions, _ = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [300.0]


def test_unreachable_sessions_are_not_resumed() -> None:
    assert not decide(snap(session(since=0.0, reachable=False)), EMPTY, 1000.0).actions


def test_state_of_vanished_sessions_and_expired_windows_is_pruned() -> None:
    state = ResumeOnIdleState(
        {"gone": IdleEpisode(0.0, "acted"), "s1": IdleEpisode(0.0, "acted")},
        {"gone": RetryWindow(0.0, 1), "s1": RetryWindow(100.0, 1)},
    )
    kept = decide(snap(session("s1", since=0.0)), state, 3699.0).state
    assert kept == ResumeOnIdleState({"s1": IdleEpisode(0.0, "acted")}, {"s1": RetryWindow(100.0, 1)})
    expired = decide(snap(session("s1", since=0.0)), state, 3700.0).state
    assert expired == ResumeOnIdleState({"s1": IdleEpisode(0.0, "acted")}, {})
    assert decide(snap(), state, 10.0).state == EMPTY


def test_episode_state_is_dropped_when_the_session_leaves_idle() -> None:
    state = ResumeOnIdleState({"s1": IdleEpisode(0.0, "acted")}, {})
    assert decide(snap(session(status="busy", since=350.0)), state, 360.0).state.episodes == {}


def test_restoring_the_state_every_tick_changes_nothing() -> None:
    ticks = episodes(5) + [(t, snap(session(since=2000.0))) for t in (4000.0, 4100.0)]
    plain, _ = drive(decider(max_retries=2), EMPTY, ticks)
    persisted, _ = drive(decider(max_retries=2), EMPTY, ticks, persist=True)
    assert plain == persisted


def test_idempotency_key_names_the_episode() -> None:
    first = acts(decide(snap(session(since=0.0)), EMPTY, 300.0))
    again = acts(decide(snap(session(since=0.0)), EMPTY, 999.0))  # a replay after a lost state write
    other = acts(decide(snap(session(since=10.0)), EMPTY, 999.0))
    assert first[0].idempotency_key == again[0].idempotency_key != other[0].idempotency_key


def test_actions_are_in_session_id_order() -> None:
    sessions = [session(sid, since=0.0) for sid in ("c", "a", "b")]
    decision = decide(snap(*sessions), EMPTY, 300.0)
    targets: list[Action] = list(decision.actions)
    assert [a.target for a in targets] == ["a", "b", "c"]
    assert not suppressed(decision)
