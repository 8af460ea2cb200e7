"""The policy engine on trio's virtual clock, with the real tracker and registry and
in-memory fakes for the store and the command path (see tests/policy/engine_support.py).

The decisions' own edge cases are unit-tested per policy; here: the tick schedule, the
snapshot the engine builds (status_since, reachability, commands in flight, today's
spend, the startup grace), persistence before acting, what is emitted and audited for
each kind of action, runtime enable/disable, and state kept across a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from halswarm.config.policies import (
    ErrorLoopPolicy,
    KillOnCostPolicy,
    NodeOfflinePolicy,
    PoliciesConfig,
    ResumeOnIdlePolicy,
    StuckBusyPolicy,
)
from halswarm.config.supervisor import BudgetsConfig
from halswarm.cost.model import CostBucket
from halswarm.models import Command
from halswarm.policy import CostBrake, restore_states
from halswarm.policy.engine import OBSERVED_ROW, PolicyNotConfiguredError, UnknownPolicyError
from halswarm.policy.observe import Observed
from halswarm.policy.summary import epoch_ts
from halswarm.policy.views import LastAction, RetryUse
from halswarm.store import StoreError
from halswarm.store.policy_sql import UnfinishedCommand
from halswarm.store.sql import NodeRecord
from tests.policy.engine_support import T0, FakePolicyStore, audit_rows, make_world, refused

if TYPE_CHECKING:
    from tests.policy.engine_support import World

RESUME = PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True), node_offline=NodeOfflinePolicy(enabled=False))
EPOCH = T0.timestamp()


async def idle_world(config: PoliciesConfig = RESUME, *, budgets: BudgetsConfig | None = None) -> World:
    world = make_world(config, budgets=budgets)
    await world.engine.load()
    world.connect("n1", "alpha")
    world.set("s1", "idle")
    return world


# ---- the schedule -----------------------------------------------------------------------


async def test_ticks_are_drift_free_and_a_slow_tick_skips_the_missed_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = make_world(PoliciesConfig(tick_seconds=10.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(world.engine.run)
        start = trio.current_time()
        await trio.sleep(35)
        assert [t - start for t in world.store.reads_at] == [10.0, 20.0, 30.0]
        assert world.engine.ticks == 3
        world.store.read_delay = 25.0  # the tick at 40 ends at 65: 50 and 60 are skipped
        await trio.sleep(40)
        assert [t - start for t in world.store.reads_at] == [10.0, 20.0, 30.0, 40.0, 70.0]
        nursery.cancel_scope.cancel()


async def test_a_reloaded_tick_interval_takes_effect_after_the_tick_that_is_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = make_world(PoliciesConfig(tick_seconds=10.0))
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            await nursery.start(world.engine.run)
            start = trio.current_time()
            await trio.sleep(25)
            world.engine.apply_reload(world.engine.plan_reload(PoliciesConfig(tick_seconds=4.0)))
            await trio.sleep(14)  # until 39
            nursery.cancel_scope.cancel()
    # The tick due at 30 keeps its time; the new interval counts from it.
    assert [t - start for t in world.store.reads_at] == [10.0, 20.0, 30.0, 34.0, 38.0]


async def test_a_failing_tick_is_logged_and_the_next_one_runs(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(PoliciesConfig(tick_seconds=10.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(world.engine.run)
        world.store.read_error = RuntimeError("a bug")
        await trio.sleep(15)
        world.store.read_error = StoreError("database read failed: disk I/O error")
        await trio.sleep(10)
        world.store.read_error = None
        await trio.sleep(10)
        assert [r.message for r in caplog.records if r.levelno == logging.ERROR] == [
            "policy tick failed; the next tick runs as usual",
            "policy tick skipped, the database failed (next tick runs as usual): database read failed: disk I/O error",
        ]
        assert len(world.store.reads_at) == 3
        nursery.cancel_scope.cancel()


# ---- resume_on_idle through the engine ----------------------------------------------------


async def test_an_idle_session_is_resumed_once_per_idle_period() -> None:
    world = await idle_world()
    for t in (0.0, 299.0):
        await world.tick_at(t)
    assert world.commands.submitted == []
    await world.tick_at(300.0)
    (command,) = world.commands.submitted
    assert (command.type, command.target, command.actor, command.source) == (
        "resume_session",
        "s1",
        "policy:resume_on_idle",
        "policy",
    )
    assert command.idempotency_key == f"resume_on_idle:s1:{EPOCH!r}"
    for t in (310.0, 1000.0, 5000.0):  # still the same idle period: never again
        await world.tick_at(t)
    assert len(world.commands.submitted) == 1
    # Busy, then idle again: a new period, resumed once it is 300 s old.
    world.set("s1", "busy")
    await world.tick_at(5010.0)
    world.clock.current = T0 + dt.timedelta(seconds=5020.0)
    world.set("s1", "idle")
    await world.tick_at(5030.0)
    await world.tick_at(5329.0)
    assert len(world.commands.submitted) == 1
    await world.tick_at(5330.0)
    assert [c.idempotency_key for c in world.commands.submitted][1] == f"resume_on_idle:s1:{EPOCH + 5030.0!r}"


async def test_a_turn_shorter_than_a_tick_still_starts_a_new_idle_period() -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    # Resumed; the turn ran and ended between two ticks: idle both times, but new activity.
    world.clock.current = T0 + dt.timedelta(seconds=305.0)
    world.set("s1", "idle")
    await world.tick_at(310.0)
    await world.tick_at(609.0)
    assert len(world.commands.submitted) == 1
    await world.tick_at(610.0)
    assert len(world.commands.submitted) == 2


async def test_the_state_is_stored_before_the_command_is_sent() -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    # The save of the deciding tick came before the submit, and no save came after it.
    assert world.commands.saves_at_submit == [world.store.saves]
    states, _ = restore_states(world.store.rows)
    assert states.resume_on_idle.episodes["s1"].outcome == "acted"


async def test_nothing_is_sent_while_the_state_cannot_be_stored(caplog: pytest.LogCaptureFixture) -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    world.store.fail_writes = True
    await world.tick_at(300.0)
    assert world.commands.submitted == []
    assert world.events.emitted == []
    assert "cannot store the policies' state; nothing carried out this tick" in caplog.text
    world.store.fail_writes = False
    await world.tick_at(310.0)
    await world.tick_at(320.0)
    assert len(world.commands.submitted) == 1


async def test_the_action_event_names_the_command() -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    (event,) = world.events.of("policy.action")
    assert event == {
        "policy": "resume_on_idle",
        "target": "s1",
        "reason": "idle for 300 s (threshold 300 s); resume 1 of 3 in this window",
        "project": "alpha",
        "node_id": "n1",
        "correlation_id": "00000000000000000000000000000001"[:16],
        "action": "resume_session",
        "command_id": "cmd-1",
        "dry_run": False,
    }
    assert world.commands.submitted[0].correlation_id == event["correlation_id"]
    # Commands get their audit rows from the dispatcher; the engine adds none.
    assert world.store.audits == []


async def test_dry_run_sends_nothing_but_emits_and_audits_once() -> None:
    world = await idle_world(PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True, dry_run=True)))
    for t in (0.0, 300.0, 310.0, 2000.0):
        await world.tick_at(t)
    assert world.commands.submitted == []
    (event,) = world.events.of("policy.action")
    assert (event["action"], event["dry_run"], event["command_id"]) == ("resume_session", True, None)
    assert audit_rows(world.store) == [("policy:resume_on_idle", "command.resume_session", "s1", "dry_run")]
    assert world.store.audits[0].detail["idempotency_key"] == f"resume_on_idle:s1:{EPOCH!r}"
    assert world.store.audits[0].source == "policy"


async def test_alerts_are_emitted_and_audited_and_send_nothing() -> None:
    world = await idle_world(PoliciesConfig(error_loop=ErrorLoopPolicy(enabled=True)))
    world.set("s1", "error", consecutive_errors=3)
    await world.tick_at(0.0)
    await world.tick_at(10.0)
    (alert,) = world.events.of("policy.alert")
    assert (alert["policy"], alert["target"], alert["project"]) == ("error_loop", "s1", "alpha")
    assert alert["reason"] == "3 consecutive errors (threshold 3); alert"
    assert world.commands.submitted == []
    assert audit_rows(world.store) == [("policy:error_loop", "policy.alert", "s1", "raised")]


async def test_a_dry_run_alert_is_not_a_policy_alert() -> None:
    world = await idle_world(PoliciesConfig(error_loop=ErrorLoopPolicy(enabled=True, dry_run=True)))
    world.set("s1", "error", consecutive_errors=3)
    await world.tick_at(0.0)
    assert world.events.of("policy.alert") == []  # channels route policy.alert: a dry run pages nobody
    (event,) = world.events.of("policy.action")
    assert (event["action"], event["dry_run"]) == ("alert", True)
    assert audit_rows(world.store) == [("policy:error_loop", "policy.alert", "s1", "dry_run")]


async def test_the_engines_own_events_are_not_session_activity() -> None:
    # Events go through the store's ingest into the tracker, as in production: were a
    # policy.alert activity, each alert would start a new quiet stretch and alert again.
    world = await idle_world(PoliciesConfig(stuck_busy=StuckBusyPolicy(enabled=True, minutes=1)))
    world.set("s1", "busy")
    before = world.tracker.get("s1")
    await world.tick_at(0.0)
    await world.tick_at(60.0)
    assert [e["target"] for e in world.events.of("policy.alert")] == ["s1"]
    for t in (130.0, 200.0, 1000.0):  # well past twice the threshold
        await world.tick_at(t)
    assert len(world.events.of("policy.alert")) == 1
    after = world.tracker.get("s1")
    assert before is not None
    assert after is not None
    assert after.last_activity == before.last_activity
    # An agent's event is activity (the same path, another node): a new quiet stretch.
    world.set("s1", "busy")
    await world.tick_at(1010.0)
    await world.tick_at(1070.0)
    assert len(world.events.of("policy.alert")) == 2


async def test_a_dropped_event_is_logged_by_name_and_its_audit_row_kept(caplog: pytest.LogCaptureFixture) -> None:
    world = await idle_world(PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True, dry_run=True)))
    world.events.drop.add("policy.action")  # the event queue is congested
    await world.tick_at(0.0)
    with caplog.at_level(logging.WARNING):
        await world.tick_at(300.0)
    assert world.events.of("policy.action") == []
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "policy event policy.action dropped: the event queue is congested (the audit log has it)"
    )
    assert audit_rows(world.store) == [("policy:resume_on_idle", "command.resume_session", "s1", "dry_run")]


async def test_a_used_up_retry_cap_is_suppressed_once_with_an_event_and_an_audit_row() -> None:
    world = await idle_world(PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True, max_retries=0)))
    for t in (0.0, 300.0, 400.0, 9000.0):
        await world.tick_at(t)
    assert world.commands.submitted == []
    (event,) = world.events.of("policy.suppressed")
    assert (event["policy"], event["target"], event["retries_used"], event["next_reset"]) == (
        "resume_on_idle",
        "s1",
        0,
        None,
    )
    assert audit_rows(world.store) == [("policy:resume_on_idle", "policy.suppressed", "s1", "suppressed")]


async def test_a_refused_command_is_audited_and_not_retried_in_the_episode() -> None:
    world = await idle_world()
    world.commands.refuse["s1"] = refused(503, "storage_unavailable", "the supervisor cannot store commands right now")
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    await world.tick_at(310.0)
    assert world.commands.submitted == []
    assert len(world.commands.saves_at_submit) == 1
    assert audit_rows(world.store) == [("policy:resume_on_idle", "command.resume_session", "s1", "refused")]
    (event,) = world.events.of("policy.action")
    assert event["error"] == "the supervisor cannot store commands right now (storage_unavailable)"
    assert event["command_id"] is None
    info = world.engine.info("resume_on_idle")
    assert info.last_action is not None
    assert info.last_action.error == event["error"]


async def test_a_command_that_failed_at_once_has_its_audit_row_from_the_dispatcher() -> None:
    failed = Command("cmd-9", "resume_session", "s1", status="failed", error="node 'n1' is offline")
    world = await idle_world()
    world.commands.refuse["s1"] = refused(409, "target_offline", "node 'n1' is offline", failed)
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    assert world.store.audits == []
    (event,) = world.events.of("policy.action")
    assert event["command_id"] == "cmd-9"


# ---- the snapshot ---------------------------------------------------------------------------


async def test_sessions_of_an_offline_node_are_held_without_ending_their_episode() -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    assert world.registry.expire("n1", "test")
    await world.tick_at(300.0)
    await world.tick_at(400.0)
    assert world.commands.submitted == []
    world.connect("n1", "alpha")
    await world.tick_at(410.0)
    # The idle period kept its start through the outage.
    assert [c.idempotency_key for c in world.commands.submitted] == [f"resume_on_idle:s1:{EPOCH!r}"]


async def test_a_session_with_a_command_in_flight_is_left_alone() -> None:
    world = await idle_world()
    world.store.unfinished = [UnfinishedCommand("c-human", "prompt_session", "alpha")]  # by project
    world.commands.statuses["c-human"] = "sent"
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    assert world.commands.submitted == []
    # The store still says "sent", but the dispatcher knows it has finished.
    world.commands.statuses["c-human"] = "succeeded"
    await world.tick_at(310.0)
    assert len(world.commands.submitted) == 1


async def test_finished_sessions_are_not_observed() -> None:
    world = await idle_world()
    world.set("s2", "completed")
    await world.tick_at(0.0)
    observed, _ = Observed.restore(world.store.rows[OBSERVED_ROW])
    assert set(observed.sessions) == {"s1"}
    assert set(observed.nodes) == {"n1"}


def cost(project: str, usd: str) -> CostBucket:
    # An unpolled provider's estimate counts toward today's totals.
    return CostBucket(T0.date(), "openai", "gpt-5", project, "estimate", cost_usd=Decimal(usd))


async def test_kill_on_cost_without_limits_of_its_own_acts_on_the_budgets() -> None:
    config = PoliciesConfig(kill_on_cost=KillOnCostPolicy(enabled=True), node_offline=NodeOfflinePolicy(enabled=False))
    world = await idle_world(config, budgets=BudgetsConfig(daily_usd=5.0))
    world.set("s2", "busy")
    world.set("s3", "completed")
    world.store.buckets = [cost("alpha", "2.50")]
    await world.tick_at(0.0)
    assert world.commands.submitted == []
    world.store.buckets.append(cost("beta", "2.50"))
    await world.tick_at(10.0)
    await world.tick_at(20.0)
    assert world.commands.summary() == [
        ("abort_session", "s1", "policy:kill_on_cost"),
        ("abort_session", "s2", "policy:kill_on_cost"),
    ]
    assert world.commands.submitted[0].idempotency_key == "kill_on_cost:fleet:2026-03-10:s1"
    assert world.engine.info("kill_on_cost").notes == [
        "no limits of its own: acts on budgets.daily_usd and budgets.projects"
    ]


async def test_kill_on_cost_limits_of_its_own_replace_the_budgets() -> None:
    config = PoliciesConfig(kill_on_cost=KillOnCostPolicy(enabled=True, projects={"beta": 100.0}))
    world = await idle_world(config, budgets=BudgetsConfig(daily_usd=1.0))
    world.store.buckets = [cost("alpha", "50")]
    await world.tick_at(0.0)
    assert world.commands.submitted == []


KILL = PoliciesConfig(
    kill_on_cost=KillOnCostPolicy(enabled=True, daily_limit_usd=5.0),
    resume_on_idle=ResumeOnIdlePolicy(enabled=True),
    node_offline=NodeOfflinePolicy(enabled=False),
)


async def test_kill_on_cost_stores_its_marks_after_its_commands_are_out() -> None:
    world = await idle_world(KILL)
    world.set("s2", "busy")
    world.store.buckets = [cost("alpha", "6")]
    await world.tick_at(0.0)
    assert world.commands.summary() == [
        ("abort_session", "s1", "policy:kill_on_cost"),
        ("abort_session", "s2", "policy:kill_on_cost"),
    ]
    # Both commands went out before the marks were written (the tick's one other write).
    assert world.commands.saves_at_submit == [world.store.saves - 1] * 2
    states, _ = restore_states(world.store.rows)
    assert states.kill_on_cost.scopes == {"fleet": CostBrake("2026-03-10", ("s1", "s2"))}
    await world.tick_at(10.0)
    assert len(world.commands.submitted) == 2


async def test_a_brake_cut_short_inside_a_tick_stops_the_rest_after_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = await idle_world(KILL)
    world.set("s2", "busy")
    world.store.buckets = [cost("alpha", "6")]
    world.commands.hang.add("s2")
    with trio.move_on_after(5.0):  # a shutdown while the command to s2 is being submitted
        await world.tick_at(0.0)
    assert world.commands.summary() == [("abort_session", "s1", "policy:kill_on_cost")]
    states, _ = restore_states(world.store.rows)
    assert states.kill_on_cost.scopes == {}  # nothing marked: the next run decides both again
    again = await restarted(world)
    await again.tick_at(10.0)
    # Same keys: the dispatcher returns the command s1 already has instead of a second one.
    assert [c.idempotency_key for c in again.commands.submitted] == [
        "kill_on_cost:fleet:2026-03-10:s1",
        "kill_on_cost:fleet:2026-03-10:s2",
    ]
    await again.tick_at(20.0)
    assert len(again.commands.submitted) == 2


async def test_an_aborted_session_is_not_resumed_while_the_brake_is_on() -> None:
    world = await idle_world(KILL)
    world.store.buckets = [cost("alpha", "6")]
    await world.tick_at(0.0)
    assert world.commands.summary() == [("abort_session", "s1", "policy:kill_on_cost")]
    for t in (300.0, 700.0, 5000.0):  # idle far past the threshold
        await world.tick_at(t)
    assert len(world.commands.submitted) == 1
    # The limit is raised (or tomorrow comes): resume_on_idle is free to act again.
    world.store.buckets = [cost("alpha", "4")]
    await world.tick_at(5010.0)
    assert world.commands.summary()[1:] == [("resume_session", "s1", "policy:resume_on_idle")]


async def test_a_session_that_becomes_reachable_or_starts_after_the_brake_is_stopped() -> None:
    world = await idle_world(KILL)
    world.connect("n2", "alpha")
    world.set("s2", "busy", node="n2")
    assert world.registry.expire("n2", "test")
    world.store.buckets = [cost("alpha", "6")]
    await world.tick_at(0.0)
    assert [c.target for c in world.commands.submitted] == ["s1"]
    world.connect("n2", "alpha")  # s2's node is back
    world.set("s3", "starting")  # and someone starts a new session
    await world.tick_at(10.0)
    await world.tick_at(20.0)
    assert [c.target for c in world.commands.submitted] == ["s1", "s2", "s3"]


async def test_offline_nodes_not_seen_yet_raise_no_alert_during_the_startup_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = make_world(PoliciesConfig(), startup_grace=90.0)
    world.registry.load([NodeRecord("n-old")])  # known from the store, not reconnected yet
    await world.engine.load()
    world.connect("n-new")

    async def tick_after(seconds: float) -> None:
        await trio.sleep(seconds)
        world.clock.advance(seconds)
        await world.engine.tick()

    await tick_after(0.0)
    assert world.registry.expire("n-new", "test")  # seen in this run, then lost: alerted at once
    await tick_after(10.0)
    assert [e["target"] for e in world.events.of("policy.alert")] == ["n-new"]
    await tick_after(79.9)
    assert len(world.events.of("policy.alert")) == 1
    await tick_after(0.1)  # the grace is over, and n-old has not come back
    assert [e["target"] for e in world.events.of("policy.alert")] == ["n-new", "n-old"]
    assert (
        world.events.of("policy.alert")[1]["reason"] == "node n-old offline for 90 s; 0 active session(s) unreachable"
    )


# ---- restarts -----------------------------------------------------------------------------


async def restarted(world: World) -> World:
    """A new engine on the same store and fleet (the tracker is rebuilt from the store too)."""
    again = make_world(
        world.engine.config, store=world.store, clock=world.clock, tracker=world.tracker, registry=world.registry
    )
    await again.engine.load()
    return again


async def test_a_restart_keeps_status_since_of_unchanged_statuses() -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    again = await restarted(world)
    await again.tick_at(299.0)
    assert again.commands.submitted == []
    await again.tick_at(300.0)  # idle since T0, not since the restart
    assert [c.idempotency_key for c in again.commands.submitted] == [f"resume_on_idle:s1:{EPOCH!r}"]


async def test_a_restart_does_not_reset_retry_counters() -> None:
    world = await idle_world(PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True, max_retries=1)))
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    assert len(world.commands.submitted) == 1
    again = await restarted(world)
    again.clock.current = T0 + dt.timedelta(seconds=400.0)
    again.set("s1", "idle")  # a new idle period
    await again.tick_at(410.0)
    await again.tick_at(710.0)
    assert again.commands.submitted == []
    (event,) = again.events.of("policy.suppressed")
    assert event["next_reset"] == epoch_ts(EPOCH + 300.0 + 3600.0)
    await again.tick_at(300.0 + 3600.0)  # the window resets: the period still going is acted on
    assert len(again.commands.submitted) == 1


async def test_unreadable_rows_start_empty_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    store = FakePolicyStore(rows={"resume_on_idle": "{not json", OBSERVED_ROW: "[1]", "engine.last_actions": "7"})
    world = make_world(RESUME, store=store)
    with caplog.at_level(logging.WARNING):
        await world.engine.load()
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(":")[0:2] for w in warnings] == [
        ["policy state", " resume_on_idle"],
        ["policy state", " observed statuses"],
        ["policy state", " last actions"],
    ]
    world.connect("n1", "alpha")
    world.set("s1", "idle")
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    assert len(world.commands.submitted) == 1


# ---- runtime enable/disable and the API view ---------------------------------------------


async def test_enable_and_disable_at_runtime_are_audited_and_apply_from_the_next_tick() -> None:
    world = await idle_world(PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=False)))
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    assert world.commands.submitted == []
    info = await world.engine.set_enabled("resume_on_idle", True, actor="api", source="http", correlation_id="c-1")
    assert (info.enabled, info.configured) == (True, False)
    assert info.override is not None
    assert (info.override.enabled, info.override.actor) == (True, "api")
    assert [(a.actor, a.source, a.action, a.target, a.outcome, a.correlation_id) for a in world.store.audits] == [
        ("api", "http", "policy.enable", "resume_on_idle", "ok", "c-1")
    ]
    await world.tick_at(310.0)
    assert len(world.commands.submitted) == 1
    # Overrides survive a restart.
    again = await restarted(world)
    assert again.engine.info("resume_on_idle").enabled
    # Back to what the config file says: the override is cleared, not stored.
    info = await again.engine.set_enabled("resume_on_idle", False, actor="api", source="http")
    assert (info.enabled, info.override) == (False, None)
    assert world.store.overrides == {}
    assert world.store.audits[-1].action == "policy.disable"


async def test_enabling_unknown_or_unconfigured_policies_is_refused() -> None:
    world = await idle_world()
    with pytest.raises(UnknownPolicyError, match="no policy 'resume'"):
        await world.engine.set_enabled("resume", True, actor="api", source="http")
    with pytest.raises(PolicyNotConfiguredError, match="kill_on_cost has no limit"):
        await world.engine.set_enabled("kill_on_cost", True, actor="api", source="http")
    assert world.store.audits == []
    # With a budget to fall back on it can be enabled.
    funded = await idle_world(budgets=BudgetsConfig(projects={"alpha": 3.0}))
    assert (await funded.engine.set_enabled("kill_on_cost", True, actor="api", source="http")).enabled


async def test_the_api_view_shows_retries_next_reset_and_last_action() -> None:
    world = await idle_world()
    await world.tick_at(0.0)
    await world.tick_at(300.0)
    await world.tick_at(310.0)  # stores the command id with the last action
    info = world.engine.info("resume_on_idle")
    assert (info.enabled, info.configured, info.override, info.dry_run) == (True, True, None, False)
    assert (info.max_retries, info.retry_scope, info.retries_used) == (3, "session", 1)
    reset = epoch_ts(EPOCH + 300.0 + 3600.0)
    assert (info.windows, info.next_reset) == ([RetryUse("s1", 1, reset)], reset)
    assert info.last_action == LastAction(
        time=epoch_ts(EPOCH + 300.0),
        action="resume_session",
        target="s1",
        reason="idle for 300 s (threshold 300 s); resume 1 of 3 in this window",
        command_id="cmd-1",
    )
    assert info.config["idle_threshold_seconds"] == 300.0
    # The last action survives a restart, command id included.
    assert (await restarted(world)).engine.info("resume_on_idle").last_action == info.last_action
    assert [i.name for i in world.engine.infos()] == [
        "kill_on_cost",
        "restart_on_compaction",
        "error_loop",
        "stuck_busy",
        "resume_on_idle",
        "node_offline",
    ]
    # After the window, nothing is in use any more.
    world.clock.current = T0 + dt.timedelta(seconds=3900.0)
    assert world.engine.info("resume_on_idle").windows == []
