"""Properties over random tick sequences: once per episode, caps per anchored window, liveness,
and restarts (state through JSON every tick) that change nothing.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.config.policies import (
    ErrorLoopPolicy,
    KillOnCostPolicy,
    PoliciesConfig,
    RestartOnCompactionPolicy,
    ResumeOnIdlePolicy,
    StuckBusyPolicy,
)
from halswarm.policy import (
    RESTARTABLE,
    ErrorLoopState,
    PolicyAction,
    PolicyStates,
    RestartOnCompactionState,
    ResumeOnIdleState,
    SessionView,
    SpendView,
    Suppressed,
    decide_all,
    decide_error_loop,
    decide_restart_on_compaction,
    decide_resume_on_idle,
)
from tests.policy.support import roundtrip, session, snap

if TYPE_CHECKING:
    from halswarm.models import SessionStatus


def anchored_windows_respect(times: list[float], window: float, cap: int) -> bool:
    """Split action times into windows anchored at their first action; each holds <= cap."""
    anchor: float | None = None
    used = 0
    for t in sorted(times):
        if anchor is None or t - anchor >= window:
            anchor, used = t, 0
        used += 1
        if used > cap:
            return False
    return True


def room_left(times: list[float], now: float, window: float, cap: int) -> bool:
    """Reference model: does an action at *now* fit, given earlier action *times*?"""
    anchor: float | None = None
    used = 0
    for t in sorted(times):
        if anchor is None or t - anchor >= window:
            anchor, used = t, 0
        used += 1
    if anchor is None or now - anchor >= window:
        return cap > 0
    return used < cap


# ---- resume_on_idle ----------------------------------------------------------------------

CHANGES = ["stay", "idle", "busy", "flip", "activity", "offline", "online"]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(1, 400), st.sampled_from(CHANGES)), max_size=60),
    threshold=st.sampled_from([1, 60, 300]),
    max_retries=st.integers(0, 3),
    window=st.integers(1, 3000),
    persist=st.booleans(),
)
def test_resume_on_idle_properties(
    steps: list[tuple[int, str]], threshold: int, max_retries: int, window: int, persist: bool
) -> None:
    config = ResumeOnIdlePolicy(
        enabled=True, idle_threshold_seconds=threshold, max_retries=max_retries, reset_window_seconds=window
    )
    now = 0.0
    status: SessionStatus = "idle"
    since, activity, reachable = 0.0, None, True
    state = ResumeOnIdleState()
    acted: dict[float, float] = {}  # episode (status_since) -> time of its resume
    notices: dict[float, float] = {}  # episode -> time of its Suppressed
    action_times: list[float] = []
    for dt, change in steps:
        now += dt
        if change in {"idle", "busy"} and status != change:
            status, since = ("idle" if change == "idle" else "busy"), now
        elif change == "flip":  # busy and idle again between two ticks
            status, since = "idle", now
        elif change == "activity":
            activity = now
        elif change in {"offline", "online"}:
            reachable = change == "online"
        view = session(status=status, since=since, activity=activity, reachable=reachable)
        due = status == "idle" and reachable and now - view.quiet_since >= threshold
        fits = room_left(action_times, now, window, max_retries)
        decision = decide_resume_on_idle(config, snap(view), state, now)
        state = roundtrip(decision.state) if persist else decision.state
        for action in decision.actions:
            assert due
            if isinstance(action, PolicyAction):
                assert since not in acted, "two resumes in one idle period"
                acted[since] = now
                action_times.append(now)
            else:
                assert since not in notices, "two notices in one idle period"
                assert since not in acted
                assert isinstance(action, Suppressed)
                notices[since] = now
        # Liveness: a due period is handled at once, and acted upon whenever the budget allows.
        if due:
            assert since in acted or since in notices
            if since not in acted:
                assert not fits
            elif acted[since] == now:
                assert fits
    assert anchored_windows_respect(action_times, window, max_retries)


# ---- restart_on_compaction ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(1, 300),
            st.sampled_from(["new", "compact", "status", "end", "stay"]),
            st.integers(0, 20),
            st.sampled_from(["busy", "idle", "waiting", "error", "starting", "completed"]),
        ),
        max_size=50,
    ),
    max_retries=st.integers(0, 3),
    window=st.integers(1, 2000),
    persist=st.booleans(),
)
def test_restart_on_compaction_properties(
    steps: list[tuple[int, str, int, SessionStatus]], max_retries: int, window: int, persist: bool
) -> None:
    config = RestartOnCompactionPolicy(enabled=True, max_retries=max_retries, reset_window_seconds=window)
    now = 0.0
    live: dict[str, SessionView] = {}
    fresh = 0
    state = RestartOnCompactionState()
    restarted: set[str] = set()
    noticed: set[str] = set()
    per_project: dict[str, list[float]] = defaultdict(list)
    for dt, change, pick, status in steps:
        now += dt
        ids = sorted(live)
        if change == "new" or not ids:
            fresh += 1
            sid = f"s{fresh}"
            live[sid] = session(sid, status=status, project="pq"[pick % 2], compactions=pick % 4)
        else:
            sid = ids[pick % len(ids)]
            current = live[sid]
            if change == "compact":
                live[sid] = attrs.evolve(current, compaction_count=current.compaction_count + 1)
            elif change == "status":
                live[sid] = attrs.evolve(current, status=status)
            elif change == "end":
                del live[sid]
        decision = decide_restart_on_compaction(config, snap(*live.values()), state, now)
        state = roundtrip(decision.state) if persist else decision.state
        for action in decision.actions:
            view = live[action.target]
            assert view.compaction_count >= config.compaction_threshold
            assert view.status in RESTARTABLE
            if isinstance(action, PolicyAction):
                assert action.target not in restarted
                restarted.add(action.target)
                per_project[view.project].append(now)
            else:
                assert action.target not in noticed
                assert action.target not in restarted
                noticed.add(action.target)
    for times in per_project.values():
        assert anchored_windows_respect(times, window, max_retries)


# ---- error_loop --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 200), st.sampled_from(["error", "ok", "reclimb", "stay"]), st.integers(3, 9))
    ),
    max_retries=st.integers(0, 3),
    window=st.integers(1, 2000),
    persist=st.booleans(),
)
def test_error_loop_properties(steps: list[tuple[int, str, int]], max_retries: int, window: int, persist: bool) -> None:
    config = ErrorLoopPolicy(enabled=True, max_retries=max_retries, reset_window_seconds=window)
    now, errors, seen, streak = 0.0, 0, 0, 0
    state = ErrorLoopState()
    acted: set[int] = set()
    noticed: set[int] = set()
    times: list[float] = []
    for dt, change, k in steps:
        now += dt
        errors = {"error": errors + 1, "ok": 0, "reclimb": k, "stay": errors}[change]
        if errors < config.consecutive_errors or errors < seen:
            streak += 1  # the streak (as observed at ticks) ended
        seen = errors
        decision = decide_error_loop(config, snap(session(status="error", errors=errors)), state, now)
        state = roundtrip(decision.state) if persist else decision.state
        for action in decision.actions:
            assert errors >= config.consecutive_errors
            if isinstance(action, PolicyAction):
                assert streak not in acted
                acted.add(streak)
                times.append(now)
            else:
                assert streak not in noticed
                assert streak not in acted
                noticed.add(streak)
        if errors >= config.consecutive_errors:
            assert streak in acted or streak in noticed
    assert anchored_windows_respect(times, window, max_retries)


# ---- every policy at once ----------------------------------------------------------------

ALL_ON = PoliciesConfig(
    resume_on_idle=ResumeOnIdlePolicy(enabled=True, idle_threshold_seconds=60),
    restart_on_compaction=RestartOnCompactionPolicy(enabled=True),
    kill_on_cost=KillOnCostPolicy(enabled=True, daily_limit_usd=10.0, projects={"p": 5.0}),
    error_loop=ErrorLoopPolicy(enabled=True, action="restart"),
    stuck_busy=StuckBusyPolicy(enabled=True, minutes=1, action="abort"),
)

views = st.builds(
    SessionView,
    id=st.sampled_from(["a", "b", "c", "d"]),
    node_id=st.just("n1"),
    project=st.sampled_from(["p", "q"]),
    status=st.sampled_from(["starting", "busy", "idle", "retry", "waiting", "error", "completed", "unreachable"]),
    status_since=st.integers(0, 1000).map(float),
    compaction_count=st.integers(0, 3),
    consecutive_errors=st.integers(0, 4),
    reachable=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    ticks=st.lists(
        st.tuples(
            st.lists(views, max_size=4, unique_by=lambda v: v.id),
            st.integers(0, 20),
            st.sets(st.sampled_from(["a", "b", "c", "d"])),
        ),
        max_size=15,
    )
)
def test_decide_all_sends_at_most_one_command_per_session_per_tick(
    ticks: list[tuple[list[SessionView], int, set[str]]],
) -> None:
    states = PolicyStates()
    stopped: set[str] = set()  # the ticks are all one day
    for k, (sessions, spent, in_flight) in enumerate(ticks):
        now = 1000.0 + 100.0 * k
        spend = SpendView("2026-03-01", Decimal(spent), {"p": Decimal(spent) / 2})
        decision = decide_all(ALL_ON, snap(*sessions, spend=spend, in_flight=in_flight), states, now)
        commands = [a for a in decision.actions if isinstance(a, PolicyAction) and a.kind == "command"]
        targets = [a.target for a in commands]
        assert len(targets) == len(set(targets))
        by_id = {s.id: s for s in sessions}
        for command in commands:
            view = by_id[command.target]
            assert view.is_reachable
            assert view.is_active
            if command.policy == "kill_on_cost":
                assert command.target not in stopped  # once per session and day
                stopped.add(command.target)
            else:
                assert command.target not in in_flight
                # The brake holds every session of a scope over its limit from other commands.
                assert spent < 10
                assert not (view.project == "p" and Decimal(spent) / 2 >= 5)
        states = decision.states
