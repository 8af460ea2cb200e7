"""kill_on_cost: driven by today's fleet and project totals; every session of a scope over
its limit is stopped once per day, whenever it shows up that day."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config.policies import KillOnCostPolicy
from halswarm.policy import CostBrake, Decision, KillOnCostState, PolicyAction, Snapshot, decide_kill_on_cost
from tests.policy.support import acts, drive, session, snap, spend

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.models import SessionStatus
    from halswarm.policy import SessionView

EMPTY = KillOnCostState()
DAY = "2026-03-01"


def decider(**kw: object) -> Callable[[Snapshot, KillOnCostState, float], Decision[KillOnCostState]]:
    kw.setdefault("daily_limit_usd", 50.0)
    config = KillOnCostPolicy(enabled=True, **kw)  # type: ignore[arg-type]

    def decide(snapshot: Snapshot, state: KillOnCostState, now: float) -> Decision[KillOnCostState]:
        return decide_kill_on_cost(config, snapshot, state, now)

    return decide


decide = decider()


def fleet(*statuses: SessionStatus, project: str = "alpha") -> list[SessionView]:
    return [session(f"s{k}", status=st, project=project) for k, st in enumerate(statuses)]


@pytest.mark.parametrize(("spent", "fires"), [("49.99", False), ("49.999999", False), ("50", True), ("50.01", True)])
def test_fleet_limit_edges(spent: str, fires: bool) -> None:
    assert bool(decide(snap(session(status="busy"), spend=spend(spent)), EMPTY, 0.0).actions) is fires


def test_float_limits_compare_exactly_with_decimal_spend() -> None:
    decide03 = decider(daily_limit_usd=0.3)
    assert decide03(snap(session(status="busy"), spend=spend("0.3")), EMPTY, 0.0).actions
    assert not decide03(snap(session(status="busy"), spend=spend("0.29999")), EMPTY, 0.0).actions


def test_one_expensive_session_under_a_fleet_total_below_the_limit_is_not_stopped() -> None:
    # The original compared each session's cost with the limit (mistake 10).
    expensive = session(status="busy")
    assert not decide(snap(expensive, spend=spend("49.00")), EMPTY, 0.0).actions


def test_aborts_every_active_session_and_leaves_finished_ones() -> None:
    sessions = fleet("starting", "busy", "idle", "retry", "waiting", "error", "completed")
    decision = decide(snap(*sessions, spend=spend("60")), EMPTY, 0.0)
    commands = acts(decision)
    assert [a.target for a in commands] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert {a.command_type for a in commands} == {"abort_session"}
    assert all(a.actor == "policy:kill_on_cost" and a.args == {} for a in commands)
    assert "fleet spend today $60.00 reached the daily limit $50.00; abort" in commands[0].reason
    assert commands[0].idempotency_key == f"kill_on_cost:fleet:{DAY}:s0"
    assert decision.state == KillOnCostState({"fleet": CostBrake(DAY, ("s0", "s1", "s2", "s3", "s4", "s5"))})


def test_kill_action() -> None:
    (action,) = decider(action="kill")(snap(session(status="busy"), spend=spend("60")), EMPTY, 0.0).actions
    assert isinstance(action, PolicyAction)
    assert action.command_type == "kill_session"


def test_unreachable_sessions_are_named_in_the_notes_and_stopped_once_reachable() -> None:
    sessions = [session("s1", status="busy"), session("s2", status="idle", reachable=False)]
    sessions.append(session("s3", status="unreachable"))
    decision = decide(snap(*sessions, spend=spend("60")), EMPTY, 0.0)
    assert [a.target for a in acts(decision)] == ["s1"]
    (note,) = decision.notes
    assert "unreachable sessions to stop once reachable: ['s2', 's3']" in note
    # s2's node is back: it is stopped now (s1 is not stopped twice); s3 is still named.
    sessions[1] = session("s2", status="idle")
    again = decide(snap(*sessions, spend=spend("61")), decision.state, 10.0)
    assert [a.target for a in acts(again)] == ["s2"]
    assert again.notes == ("kill_on_cost: fleet over its limit; unreachable sessions to stop once reachable: ['s3']",)
    assert again.state == KillOnCostState({"fleet": CostBrake(DAY, ("s1", "s2"))})


def test_commands_in_flight_do_not_stop_the_brake() -> None:
    decision = decide(snap(session(status="busy"), spend=spend("60"), in_flight=["s1"]), EMPTY, 0.0)
    assert [a.target for a in acts(decision)] == ["s1"]


def test_once_per_session_and_day_then_rearmed_the_next_day() -> None:
    over = spend("60")
    ticks = [(float(t), snap(session("s1", status="busy"), spend=over)) for t in range(10)]
    # A session started later the same day (by a human, a node reconnecting, a successor)
    # is stopped too; s1, stopped already (and resumed by a human since), is not again.
    ticks += [(20.0, snap(session("s1", status="busy"), session("s2", status="busy"), spend=spend("75")))]
    ticks += [(25.0, snap(session("s1", status="busy"), session("s2", status="idle"), spend=spend("80")))]
    ticks += [(30.0, snap(session("s2", status="busy"), spend=spend("1", day="2026-03-02")))]
    ticks += [(40.0, snap(session("s2", status="busy"), spend=spend("51", day="2026-03-02")))]
    actions, state = drive(decide, EMPTY, ticks)
    assert [(t, a.target) for t, a in actions] == [(0.0, "s1"), (20.0, "s2"), (40.0, "s2")]
    assert state == KillOnCostState({"fleet": CostBrake("2026-03-02", ("s2",))})


def test_a_scope_over_its_limit_with_no_active_session_stops_the_next_one() -> None:
    decision = decide(snap(session(status="completed"), spend=spend("60")), EMPTY, 0.0)
    assert not decision.actions
    assert decision.notes == ("kill_on_cost: fleet over its limit; no active session to stop",)
    assert decision.state == KillOnCostState({"fleet": CostBrake(DAY)})
    later = decide(snap(session("s2", status="starting"), spend=spend("60")), decision.state, 500.0)
    assert [a.target for a in acts(later)] == ["s2"]


def test_project_limits_stop_only_that_project() -> None:
    decide_projects = decider(daily_limit_usd=None, projects={"alpha": 10.0, "beta": 100.0})
    sessions = [*fleet("busy", "idle"), session("b1", status="busy", project="beta")]
    decision = decide_projects(snap(*sessions, spend=spend("500", alpha="10", beta="99.99")), EMPTY, 0.0)
    assert [a.target for a in acts(decision)] == ["s0", "s1"]
    assert "project alpha spend today $10.00 reached the daily limit $10.00" in acts(decision)[0].reason
    assert decision.state == KillOnCostState({"project:alpha": CostBrake(DAY, ("s0", "s1"))})


def test_unknown_project_spend_counts_as_zero() -> None:
    decision = decider(daily_limit_usd=None, projects={"alpha": 10.0})(
        snap(*fleet("busy"), spend=spend("90")), EMPTY, 0.0
    )
    assert not decision.actions


def test_a_session_in_two_firing_scopes_gets_one_command() -> None:
    decide_both = decider(daily_limit_usd=50.0, projects={"alpha": 10.0})
    sessions = [*fleet("busy"), session("b1", status="busy", project="beta")]
    decision = decide_both(snap(*sessions, spend=spend("60", alpha="20")), EMPTY, 0.0)
    assert [a.target for a in acts(decision)] == ["b1", "s0"]
    assert decision.state == KillOnCostState({"fleet": CostBrake(DAY, ("b1", "s0")), "project:alpha": CostBrake(DAY)})


def test_project_fires_first_then_fleet_later_the_same_day() -> None:
    decide_both = decider(daily_limit_usd=50.0, projects={"alpha": 10.0})
    sessions = [*fleet("busy"), session("b1", status="busy", project="beta")]
    ticks = [
        (0.0, snap(*sessions, spend=spend("20", alpha="12"))),
        (10.0, snap(*sessions, spend=spend("55", alpha="12"))),
    ]
    actions, _ = drive(decide_both, EMPTY, ticks)
    # The fleet brake stops what is not stopped yet: alpha's session was, by its project's.
    assert [(t, a.target) for t, a in actions] == [(0.0, "s0"), (10.0, "b1")]
    keys = [a.idempotency_key for _, a in actions if isinstance(a, PolicyAction)]
    assert keys == [f"kill_on_cost:project:alpha:{DAY}:s0", f"kill_on_cost:fleet:{DAY}:b1"]


def test_no_spend_figures_decide_nothing() -> None:
    state = KillOnCostState({"fleet": CostBrake(DAY, ("s1",))})
    decision = decide(snap(session(status="busy")), state, 0.0)
    assert decision.actions == ()
    assert decision.state is state
    assert decision.notes == ("kill_on_cost: no spend figures for today yet; nothing checked",)


def test_dry_run_reports_each_session_once_and_a_real_run_the_same_day_stops_them() -> None:
    ticks = [(float(t), snap(*fleet("busy", "idle"), spend=spend("60"))) for t in range(5)]
    ticks.append((5.0, snap(*fleet("busy", "idle", "busy"), spend=spend("60"))))  # s2 started later: reported too
    actions, state = drive(decider(dry_run=True), EMPTY, ticks)
    assert [(t, a.target) for t, a in actions] == [(0.0, "s0"), (0.0, "s1"), (5.0, "s2")]
    assert all(isinstance(a, PolicyAction) and a.dry_run for _, a in actions)
    assert state == KillOnCostState({"fleet": CostBrake(DAY, reported=("s0", "s1", "s2"))})
    # Dry run switched off the same day: what was only reported is stopped for real, once.
    ticks = [(float(t), snap(*fleet("busy", "idle", "busy"), spend=spend("60"))) for t in range(10, 13)]
    actions, state = drive(decide, state, ticks)
    assert [(t, a.target) for t, a in actions] == [(10.0, "s0"), (10.0, "s1"), (10.0, "s2")]
    assert not any(isinstance(a, PolicyAction) and a.dry_run for _, a in actions)
    assert state.scopes["fleet"].commanded == ("s0", "s1", "s2")
    # Back to dry run: nothing is reported again for sessions stopped for real.
    assert not decider(dry_run=True)(snap(*fleet("busy"), spend=spend("60")), state, 20.0).actions


def test_old_days_and_unconfigured_scopes_are_pruned_and_today_s_marks_kept() -> None:
    state = KillOnCostState(
        {
            "fleet": CostBrake("2026-02-28", ("s1",)),
            "project:alpha": CostBrake(DAY, ("gone",)),
            "project:gone": CostBrake(DAY),
        }
    )
    decision = decider(projects={"alpha": 10.0})(snap(spend=spend("1")), state, 0.0)
    # Under its limit again (a lower bill replaced an estimate): today's marks are kept,
    # also of sessions no longer seen, so none is commanded twice in one day.
    assert decision.state == KillOnCostState({"project:alpha": CostBrake(DAY, ("gone",))})


def test_restoring_the_state_every_tick_changes_nothing() -> None:
    ticks = [
        (float(t), snap(*fleet("busy"), spend=spend(str(t), day=f"2026-03-0{1 + t // 60}"))) for t in range(0, 180, 5)
    ]
    plain, _ = drive(decide, EMPTY, ticks)
    persisted, _ = drive(decide, EMPTY, ticks, persist=True)
    assert plain == persisted
    assert [t for t, _ in plain] == [50.0, 60.0, 120.0]  # day 1 reaches $50 at t=50; days 2 and 3 at once
