"""decide_all: priority order, one command per session per tick, disabled policies untouched."""

from __future__ import annotations

import attrs

from halswarm.config.policies import (
    ErrorLoopPolicy,
    KillOnCostPolicy,
    PoliciesConfig,
    RestartOnCompactionPolicy,
    ResumeOnIdlePolicy,
    StuckBusyPolicy,
)
from halswarm.policy import (
    IdleEpisode,
    PolicyAction,
    PolicyStates,
    ResumeOnIdleState,
    RetryWindow,
    decide_all,
)
from tests.policy.support import node, session, snap, spend

ALL_ON = PoliciesConfig(
    resume_on_idle=ResumeOnIdlePolicy(enabled=True),
    restart_on_compaction=RestartOnCompactionPolicy(enabled=True),
    kill_on_cost=KillOnCostPolicy(enabled=True, daily_limit_usd=50.0),
    error_loop=ErrorLoopPolicy(enabled=True),
    stuck_busy=StuckBusyPolicy(enabled=True, action="abort"),
)


def summary(actions: tuple[object, ...]) -> list[tuple[str, str, str]]:
    return [(a.policy, a.target, a.kind) for a in actions if isinstance(a, PolicyAction)]


def test_defaults_only_alert_on_offline_nodes() -> None:
    snapshot = snap(
        session("s1", since=0.0, compactions=5, errors=9),
        nodes=[node("n1", status="offline", since=0.0)],
        spend=spend("1000"),
    )
    decision = decide_all(PoliciesConfig(), snapshot, PolicyStates(), 10_000.0)
    assert summary(decision.actions) == [("node_offline", "n1", "alert")]
    assert list(decision.states.changed(PolicyStates())) == ["node_offline"]


def test_one_command_per_session_per_tick_highest_priority_first() -> None:
    # Idle for long and compacted: the restart wins, the resume waits.
    snapshot = snap(session("s1", since=0.0, compactions=2), session("s2", since=0.0))
    decision = decide_all(ALL_ON, snapshot, PolicyStates(), 1000.0)
    assert summary(decision.actions) == [
        ("restart_on_compaction", "s1", "command"),
        ("resume_on_idle", "s2", "command"),
    ]
    # The loser's state did not advance for s1, so it can act later if still due.
    assert set(decision.states.resume_on_idle.episodes) == {"s2"}


def test_the_cost_brake_beats_everything() -> None:
    # Claimed by the brake, s1 is left alone by every later policy this tick (alerts too).
    snapshot = snap(session("s1", since=0.0, compactions=2, errors=3), session("s2", errors=3), spend=spend("60"))
    decision = decide_all(ALL_ON, snapshot, PolicyStates(), 1000.0)
    assert summary(decision.actions) == [("kill_on_cost", "s1", "command"), ("kill_on_cost", "s2", "command")]
    assert decision.states.error_loop.episodes == {}


def test_the_brake_holds_its_sessions_from_other_commands_while_spend_is_over_the_limit() -> None:
    config = PoliciesConfig(
        resume_on_idle=ResumeOnIdlePolicy(enabled=True),
        kill_on_cost=KillOnCostPolicy(enabled=True, daily_limit_usd=50.0),
        error_loop=ErrorLoopPolicy(enabled=True),  # alerts
    )
    states = PolicyStates()
    states = decide_all(config, snap(session("s1", status="busy"), spend=spend("10")), states, 0.0).states
    aborted = decide_all(config, snap(session("s1", status="busy"), spend=spend("60")), states, 10.0)
    assert summary(aborted.actions) == [("kill_on_cost", "s1", "command")]
    # Idle since the abort, far past the threshold; compacted and failing, too.
    stopped = session("s1", since=20.0, compactions=5, errors=3)
    later = decide_all(config, snap(stopped, spend=spend("61")), aborted.states, 400.0)
    assert summary(later.actions) == [("error_loop", "s1", "alert")]  # alerts still go out
    with_restarts = attrs.evolve(
        ALL_ON, error_loop=ErrorLoopPolicy(enabled=True, action="restart"), stuck_busy=StuckBusyPolicy(enabled=True)
    )
    assert decide_all(with_restarts, snap(stopped, spend=spend("61")), aborted.states, 400.0).actions == ()
    # The next day the brake is off: the session is resumed.
    tomorrow = decide_all(config, snap(stopped, spend=spend("0", day="2026-03-02")), later.states, 500.0)
    assert summary(tomorrow.actions) == [("resume_on_idle", "s1", "command")]


def test_a_dry_run_brake_holds_nothing_back() -> None:
    config = PoliciesConfig(
        resume_on_idle=ResumeOnIdlePolicy(enabled=True),
        kill_on_cost=KillOnCostPolicy(enabled=True, daily_limit_usd=50.0, dry_run=True),
    )
    reported = decide_all(config, snap(session("s1", status="busy"), spend=spend("60")), PolicyStates(), 10.0)
    assert [(a.policy, a.dry_run) for a in reported.actions if isinstance(a, PolicyAction)] == [("kill_on_cost", True)]
    later = decide_all(config, snap(session("s1", since=20.0), spend=spend("61")), reported.states, 400.0)
    assert summary(later.actions) == [("resume_on_idle", "s1", "command")]


def test_alerts_claim_nothing() -> None:
    snapshot = snap(session("s1", since=0.0, errors=3))
    decision = decide_all(ALL_ON, snapshot, PolicyStates(), 1000.0)
    assert summary(decision.actions) == [("error_loop", "s1", "alert"), ("resume_on_idle", "s1", "command")]


def test_in_flight_commands_hold_a_session_until_done() -> None:
    snapshot = snap(session("s1", since=0.0, compactions=2), in_flight=["s1"])
    assert decide_all(ALL_ON, snapshot, PolicyStates(), 1000.0).actions == ()


def test_dry_run_commands_claim_too() -> None:
    config = PoliciesConfig(
        resume_on_idle=ResumeOnIdlePolicy(enabled=True),
        restart_on_compaction=RestartOnCompactionPolicy(enabled=True, dry_run=True),
    )
    decision = decide_all(config, snap(session("s1", since=0.0, compactions=2)), PolicyStates(), 1000.0)
    (action,) = decision.actions
    assert isinstance(action, PolicyAction)
    assert (action.policy, action.dry_run) == ("restart_on_compaction", True)


def test_disabled_policies_keep_their_state_untouched() -> None:
    kept = ResumeOnIdleState({"gone": IdleEpisode(0.0, "acted")}, {"gone": RetryWindow(0.0, 3)})
    states = PolicyStates(resume_on_idle=kept)
    decision = decide_all(PoliciesConfig(), snap(), states, 1e9)
    assert decision.states.resume_on_idle is kept
    assert decision.states.changed(states) == {}


def test_notes_are_collected() -> None:
    decision = decide_all(ALL_ON, snap(session("s1", status="busy")), PolicyStates(), 0.0)
    assert decision.notes == ("kill_on_cost: no spend figures for today yet; nothing checked",)


def test_changed_names_only_the_rows_to_write() -> None:
    before = PolicyStates()
    decision = decide_all(ALL_ON, snap(session("s1", since=0.0)), before, 1000.0)
    changed = decision.states.changed(before)
    assert list(changed) == ["resume_on_idle"]
    assert '"s1"' in changed["resume_on_idle"]
