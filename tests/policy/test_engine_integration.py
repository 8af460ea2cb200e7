"""The policy engine inside a real supervisor, acting on a real agent's simulated sessions.

How time works here, and why:

- **Decisions run on the injected wall clock**, a :class:`~tests.policy.scripted.ManualClock`
  shared by the supervisor and the agent. It moves only when a test calls
  ``clock.advance(...)``, so "idle for 299 s" and "idle for 300 s" are exact, whatever
  the machine's speed.
- **The tick schedule runs on trio's clock**, here the real one with
  ``policies.tick_seconds = 0.02``: these tests use real loopback sockets (hub, HTTP,
  agent link), and trio's autojump ``MockClock`` jumps while the kernel moves bytes
  (house style: never autojump with real sockets). The schedule itself is tested on
  ``MockClock`` in ``test_engine.py``, against fakes without threads or sockets.
- Nothing waits for time to pass: after moving the clock a test waits (bounded) for two
  completed ticks, then looks; any wait for a command or a status is bounded too.

The sessions are :class:`~tests.policy.scripted.ScriptedBackend`'s: they change only when
the test (or a command) changes them, so every expected action is known in advance.

The engine's events go through the real pipeline here, so "exactly once" is checked
after moving the clock past twice the threshold: were the supervisor's own events
(``policy.action``, ``policy.alert``, ``policy.suppressed``) counted as activity of the
session they name, each would start a new episode and the policy would act again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.audit import AuditEntry
from halswarm.config.policies import (
    KillOnCostPolicy,
    NodeOfflinePolicy,
    PoliciesConfig,
    RestartOnCompactionPolicy,
    ResumeOnIdlePolicy,
    StuckBusyPolicy,
)
from halswarm.config.supervisor import BudgetsConfig, CostConfig
from halswarm.convert import converter
from halswarm.models import Session
from halswarm.store.policy_sql import AuditQuery
from halswarm.testing import TEST_TOKEN, api_client, free_port, open_supervisor, supervisor_config, wait_until
from halswarm.testing.halctl import run_halctl
from tests.policy.scripted import (
    ManualClock,
    ScriptedBackend,
    fleet_ready,
    open_agent_with,
    open_fleet,
    policy_ticks,
)

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.config import SupervisorConfig
    from halswarm.jsontypes import JSONObject
    from halswarm.models import SessionStatus
    from halswarm.proto.messages import CommandMsg
    from halswarm.supervisor.app import SupervisorHandle

TICK = 0.02
RESUME = ResumeOnIdlePolicy(enabled=True, idle_threshold_seconds=300.0)
PAST_TWICE_THE_THRESHOLD = 650.0


class Backend(ScriptedBackend):
    """Scripted sessions, plus resumes that do nothing at all and sessions started later."""

    def __init__(
        self, now: ManualClock, sessions: list[tuple[str, str, SessionStatus]], *, inert_resumes: bool = False
    ) -> None:
        super().__init__(now, sessions)
        self.inert_resumes = inert_resumes

    async def execute(self, command: CommandMsg) -> JSONObject:
        if self.inert_resumes and command.command_type == "resume_session":
            # The command succeeds, and the session shows no activity at all.
            self.executed.append((command.command_type, command.target))
            return {"session_id": command.target}
        return await super().execute(command)

    async def add_session(self, sid: str, project: str) -> None:
        """A session started on the node (by a human, say): announced busy."""
        self.states[sid] = Session(sid, "node-1", project, directory=f"/srv/{project}", status="busy")
        await self.update(sid)


def fleet_config(
    tmp_path: Path,
    policies: PoliciesConfig,
    *,
    budgets: BudgetsConfig | None = None,
    cost: CostConfig | None = None,
) -> SupervisorConfig:
    config = supervisor_config(tmp_path / "supervisor.db")
    return attrs.evolve(
        config,
        policies=attrs.evolve(policies, tick_seconds=TICK),
        budgets=budgets or config.budgets,
        cost=cost or config.cost,
    )


def resume_config(tmp_path: Path, policy: ResumeOnIdlePolicy) -> SupervisorConfig:
    return fleet_config(tmp_path, PoliciesConfig(resume_on_idle=policy))


async def policy_commands(sup: SupervisorHandle, policy: str = "*") -> list[tuple[str, str, str]]:
    """(action, target, outcome) of the policy's command outcomes in the audit log, oldest first."""
    rows = await sup.store.query_audit(AuditQuery(actor=f"policy:{policy}", action="command.*", limit=1000))
    return [(r.action, r.target, r.outcome) for r in reversed(rows) if r.outcome != "accepted"]


async def events(sup: SupervisorHandle, event_type: str) -> list[JSONObject]:
    async with api_client(sup) as client:
        response = await client.get("/api/v1/events", params={"type": event_type, "limit": 1000})
    return [e["data"] for e in response.json()["events"]]


async def wait_commands(sup: SupervisorHandle, count: int, policy: str = "*") -> list[tuple[str, str, str]]:
    async def enough() -> bool:
        return len(await policy_commands(sup, policy)) >= count

    await wait_until(enough, what=f"{count} finished policy commands")
    return await policy_commands(sup, policy)


async def wait_status(sup: SupervisorHandle, sid: str, status: str) -> None:
    def reached() -> bool:
        session = sup.tracker.get(sid)
        return session is not None and session.status == status

    await wait_until(reached, what=f"{sid} {status}")


async def test_an_idle_session_is_resumed_after_the_threshold_and_not_again_until_busy_and_idle_again(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "idle"), ("s2", "beta", "busy")])
    with trio.fail_after(60):
        async with open_fleet(
            fleet_config(tmp_path, PoliciesConfig(resume_on_idle=RESUME)), tmp_path, backend, clock
        ) as sup:
            await policy_ticks(sup)
            clock.advance(299)
            await policy_ticks(sup)
            assert await policy_commands(sup) == []
            clock.advance(1)
            assert await wait_commands(sup, 1) == [("command.resume_session", "s1", "succeeded")]
            await wait_status(sup, "s1", "busy")
            clock.advance(5000)  # busy: nothing to resume however long it takes
            await policy_ticks(sup, 3)
            assert backend.executed == [("resume_session", "s1")]
            # The turn ends: a new idle period, resumed once it is 300 s old.
            await backend.update("s1", status="idle")
            await wait_status(sup, "s1", "idle")
            await policy_ticks(sup)
            clock.advance(299)
            await policy_ticks(sup)
            assert len(backend.executed) == 1
            clock.advance(1)
            await wait_commands(sup, 2)
            assert backend.executed == [("resume_session", "s1")] * 2
            actions = await events(sup, "policy.action")
            assert [(e["policy"], e["action"], e["target"], e["dry_run"]) for e in actions] == [
                ("resume_on_idle", "resume_session", "s1", False)
            ] * 2
            assert all(isinstance(e["command_id"], str) for e in actions)


async def test_a_turn_too_short_for_a_tick_to_see_still_ends_the_idle_period(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "idle")], quick_turns=True)
    with trio.fail_after(60):
        async with open_fleet(
            fleet_config(tmp_path, PoliciesConfig(resume_on_idle=RESUME)), tmp_path, backend, clock
        ) as sup:
            await policy_ticks(sup)
            clock.advance(300)
            await wait_commands(sup, 1)
            await policy_ticks(sup)  # idle before and after the resume: seen as a new idle period
            clock.advance(299)
            await policy_ticks(sup)
            assert len(backend.executed) == 1
            clock.advance(1)
            await wait_commands(sup, 2)


async def test_a_resume_that_produced_no_activity_is_not_repeated(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = Backend(clock, [("s1", "alpha", "idle")], inert_resumes=True)
    with trio.fail_after(60):
        async with open_fleet(
            fleet_config(tmp_path, PoliciesConfig(resume_on_idle=RESUME)), tmp_path, backend, clock
        ) as sup:
            await policy_ticks(sup)
            clock.advance(300)
            assert await wait_commands(sup, 1) == [("command.resume_session", "s1", "succeeded")]
            await policy_ticks(sup)
            clock.advance(PAST_TWICE_THE_THRESHOLD)  # still the same idle period: nothing happened in it
            await policy_ticks(sup, 3)
            assert backend.executed == [("resume_session", "s1")]
            assert len(await events(sup, "policy.action")) == 1


async def test_stuck_busy_alerts_once_per_quiet_stretch(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "busy")])
    policies = PoliciesConfig(
        stuck_busy=StuckBusyPolicy(enabled=True, minutes=5.0), node_offline=NodeOfflinePolicy(enabled=False)
    )
    with trio.fail_after(60):
        async with open_fleet(fleet_config(tmp_path, policies), tmp_path, backend, clock) as sup:
            await policy_ticks(sup)
            clock.advance(300)

            async def alerted() -> bool:
                return bool(await events(sup, "policy.alert"))

            await wait_until(alerted, what="the stuck_busy alert")
            await policy_ticks(sup)
            clock.advance(PAST_TWICE_THE_THRESHOLD)
            await policy_ticks(sup, 3)
            (alert,) = await events(sup, "policy.alert")
            assert (alert["policy"], alert["target"]) == ("stuck_busy", "s1")
            # The agent reports activity: a new quiet stretch, alerted once it is 5 minutes old.
            await backend.update("s1", status="busy")
            await policy_ticks(sup)
            clock.advance(300)

            async def alerted_twice() -> bool:
                return len(await events(sup, "policy.alert")) == 2

            await wait_until(alerted_twice, what="the second stuck_busy alert")


async def test_after_max_retries_it_stops_emits_suppressed_and_the_reset_window_restores_it(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "idle")], quick_turns=True)
    policy = attrs.evolve(RESUME, max_retries=2, reset_window_seconds=2000.0)
    with trio.fail_after(60):
        async with open_fleet(
            fleet_config(tmp_path, PoliciesConfig(resume_on_idle=policy)), tmp_path, backend, clock
        ) as sup:
            await policy_ticks(sup)
            for done in (1, 2):  # resumes at +300 (the window opens) and +600
                clock.advance(300)
                await wait_commands(sup, done)
                await policy_ticks(sup)
            clock.advance(300)  # +900: the third idle period finds the cap used up
            await policy_ticks(sup)
            clock.advance(PAST_TWICE_THE_THRESHOLD)  # +1550: still that idle period, suppressed once
            await policy_ticks(sup)
            assert len(backend.executed) == 2
            (suppressed,) = await events(sup, "policy.suppressed")
            assert (suppressed["policy"], suppressed["target"], suppressed["retries_used"]) == (
                "resume_on_idle",
                "s1",
                2,
            )
            assert suppressed["next_reset"] == "2026-03-10T12:38:20.000000Z"  # +300 +2000 s
            async with api_client(sup) as client:
                audit = (await client.get("/api/v1/audit", params={"action": "policy.suppressed"})).json()["audit"]
                assert [(a["actor"], a["target"], a["outcome"]) for a in audit] == [
                    ("policy:resume_on_idle", "s1", "suppressed")
                ]
                clock.advance(750)  # +2300: the window resets; the idle period still going is resumed
                await wait_commands(sup, 3)
                await policy_ticks(sup)
                info = (await client.get("/api/v1/policies/resume_on_idle")).json()["policy"]
            assert (info["retries_used"], info["max_retries"], info["retry_scope"]) == (1, 2, "session")
            assert info["next_reset"] == "2026-03-10T13:11:40.000000Z"  # +2300 +2000 s
            assert info["last_action"]["action"] == "resume_session"


async def test_reaching_the_compaction_threshold_performs_a_handover_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "busy")])
    policies = PoliciesConfig(restart_on_compaction=RestartOnCompactionPolicy(enabled=True, compaction_threshold=2))
    with trio.fail_after(60):
        async with open_fleet(fleet_config(tmp_path, policies), tmp_path, backend, clock) as sup:
            await backend.update("s1", compaction_count=1)
            await policy_ticks(sup, 3)
            assert backend.executed == []
            await backend.update("s1", compaction_count=2)
            assert await wait_commands(sup, 1, "restart_on_compaction") == [
                ("command.restart_session", "s1", "succeeded")
            ]
            await wait_until(lambda: sup.tracker.get("s1-next") is not None, what="the successor tracked")
            successor = sup.tracker.get("s1-next")
            assert successor is not None
            assert successor.predecessor_id == "s1"
            (row,) = await sup.store.query_audit(
                AuditQuery(actor="policy:restart_on_compaction", action="command.*", limit=1, after=0)
            )
            command = await sup.store.get_command(str(row.detail["command_id"]))
            assert command is not None
            assert (command.args, command.source, command.result) == (
                {"handover": True},
                "policy",
                {"session_id": "s1-next", "predecessor_id": "s1", "handover": True},
            )
            await policy_ticks(sup, 3)
            assert backend.executed == [("restart_session", "s1")]  # never twice


async def test_crossing_the_daily_budget_aborts_the_running_sessions(tmp_path: Path) -> None:
    clock = ManualClock()
    sessions: list[tuple[str, str, SessionStatus]] = [
        ("s1", "alpha", "busy"),
        ("s2", "beta", "busy"),
        ("s3", "alpha", "idle"),
        ("s4", "beta", "completed"),
    ]
    backend = ScriptedBackend(clock, sessions)
    policies = PoliciesConfig(
        kill_on_cost=KillOnCostPolicy(enabled=True),  # no limit of its own: the budgets'
        resume_on_idle=RESUME,
        restart_on_compaction=RestartOnCompactionPolicy(enabled=True, compaction_threshold=1),
    )
    config = fleet_config(
        tmp_path, policies, budgets=BudgetsConfig(daily_usd=5.0), cost=CostConfig(estimate_interval_seconds=0.02)
    )
    with trio.fail_after(60):
        async with open_fleet(config, tmp_path, backend, clock) as sup:
            await backend.update("s1", cost_usd=3.0)
            await wait_until(lambda: getattr(sup.tracker.get("s1"), "cost_usd", 0.0) == 3.0, what="s1's cost")
            await policy_ticks(sup, 3)
            assert backend.executed == []
            await backend.update("s2", cost_usd=2.5)  # the fleet's $5.50 today crosses $5
            done = await wait_commands(sup, 3, "kill_on_cost")
            assert sorted(done) == [("command.abort_session", s, "succeeded") for s in ("s1", "s2", "s3")]
            await wait_status(sup, "s1", "idle")
            await policy_ticks(sup, 3)
            assert sorted(backend.executed) == [("abort_session", s) for s in ("s1", "s2", "s3")]  # once each
            # The brake holds: idle far past the threshold, compacted, and still not resumed or restarted.
            await backend.update("s2", compaction_count=1)
            await policy_ticks(sup)
            clock.advance(PAST_TWICE_THE_THRESHOLD)
            await policy_ticks(sup, 3)
            assert sorted(backend.executed) == [("abort_session", s) for s in ("s1", "s2", "s3")]
            reasons = {e["reason"] for e in await events(sup, "policy.action")}
            assert reasons == {"fleet spend today $5.50 reached the daily limit $5.00; abort"}


async def test_the_brake_stops_sessions_that_become_reachable_or_start_after_it_fired(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = Backend(clock, [("s1", "alpha", "busy"), ("s2", "beta", "busy")])
    config = fleet_config(
        tmp_path,
        PoliciesConfig(kill_on_cost=KillOnCostPolicy(enabled=False)),
        budgets=BudgetsConfig(daily_usd=5.0),
        cost=CostConfig(estimate_interval_seconds=0.02),
    )
    with trio.fail_after(90):
        async with open_supervisor(config, now=clock) as sup, api_client(sup) as client:
            async with open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock):
                await fleet_ready(sup, backend)
                await backend.update("s1", cost_usd=6.0)  # over the fleet's $5 today
                await wait_until(lambda: getattr(sup.tracker.get("s1"), "cost_usd", 0.0) == 6.0, what="s1's cost")
            # The node is gone; the brake is switched on: nothing it can reach yet.
            await wait_until(lambda: sup.registry.online_count() == 0, what="the node offline")
            enabled = await client.post("/api/v1/policies/kill_on_cost/enable")
            assert enabled.status_code == 200, enabled.text
            await policy_ticks(sup, 3)
            assert backend.executed == []
            async with open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock):  # the node is back
                await fleet_ready(sup, backend)
                assert sorted(await wait_commands(sup, 2, "kill_on_cost")) == [
                    ("command.abort_session", s, "succeeded") for s in ("s1", "s2")
                ]
                await backend.add_session("s3", "alpha")  # a session started later that day
                await wait_commands(sup, 3, "kill_on_cost")
                await policy_ticks(sup, 3)
                assert sorted(backend.executed) == [("abort_session", s) for s in ("s1", "s2", "s3")]
                assert len(await events(sup, "policy.action")) == 3  # one per session and day


async def test_a_supervisor_restart_does_not_reset_retry_counters(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "idle")])
    policy = attrs.evolve(RESUME, max_retries=1)
    config = fleet_config(tmp_path, PoliciesConfig(resume_on_idle=policy))
    port = free_port()
    config = attrs.evolve(config, server=attrs.evolve(config.server, port=port))  # the agent reconnects to it
    with trio.fail_after(90):
        async with open_agent_with(port, tmp_path / "agent", backend, clock):  # outlives both supervisors
            async with open_supervisor(config, now=clock) as first:
                await fleet_ready(first, backend)
                await policy_ticks(first)
                clock.advance(300)
                await wait_commands(first, 1)
                await backend.update("s1", status="idle")  # the turn ended: a new idle period...
                await wait_status(first, "s1", "idle")
                await policy_ticks(first)
            # ... and the supervisor restarts.
            async with open_supervisor(config, now=clock) as second:
                await fleet_ready(second, backend)
                await policy_ticks(second)
                clock.advance(300)  # idle 300 s since before the restart: due, but the cap is used
                await policy_ticks(second)
                (suppressed,) = await events(second, "policy.suppressed")
                assert (suppressed["target"], suppressed["retries_used"]) == ("s1", 1)
                assert backend.executed == [("resume_session", "s1")]


async def test_dry_run_sends_nothing_but_emits_and_audits(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "idle")])
    policy = attrs.evolve(RESUME, dry_run=True)
    with trio.fail_after(60):
        async with open_fleet(
            fleet_config(tmp_path, PoliciesConfig(resume_on_idle=policy)), tmp_path, backend, clock
        ) as sup:
            await policy_ticks(sup)
            clock.advance(300)

            async def reported() -> bool:
                return bool(await events(sup, "policy.action"))

            await wait_until(reported, what="the dry run reported")
            await policy_ticks(sup)
            clock.advance(PAST_TWICE_THE_THRESHOLD)  # still the same idle period: reported once
            await policy_ticks(sup, 3)
            (event,) = await events(sup, "policy.action")
            assert (event["action"], event["target"], event["dry_run"], event["command_id"]) == (
                "resume_session",
                "s1",
                True,
                None,
            )
            assert backend.executed == []
            rows = await sup.store.query_audit(AuditQuery(actor="policy:*"))
            assert [(r.action, r.target, r.outcome) for r in rows] == [("command.resume_session", "s1", "dry_run")]
            assert await sup.store.unfinished_commands() == []


async def test_runtime_enable_and_disable_are_audited_and_take_effect_on_the_next_tick(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "idle")], quick_turns=True)
    policies = PoliciesConfig(resume_on_idle=attrs.evolve(RESUME, enabled=False))
    with trio.fail_after(60):
        async with (
            open_fleet(fleet_config(tmp_path, policies), tmp_path, backend, clock) as sup,
            api_client(sup) as client,
        ):
            await policy_ticks(sup)
            clock.advance(300)
            await policy_ticks(sup)
            assert backend.executed == []
            enabled = await client.post("/api/v1/policies/resume_on_idle/enable", headers={"X-Correlation-ID": "op-42"})
            assert enabled.status_code == 200, enabled.text
            assert (enabled.json()["policy"]["enabled"], enabled.json()["policy"]["configured"]) == (True, False)
            await wait_commands(sup, 1)
            await policy_ticks(sup)
            disabled = await client.post("/api/v1/policies/resume_on_idle/disable")
            assert disabled.json()["policy"]["override"] is None  # back to the config file's setting
            clock.advance(1000)
            await policy_ticks(sup, 3)
            assert len(backend.executed) == 1
            audit = (await client.get("/api/v1/audit", params={"actor": "api"})).json()["audit"]
            assert [(a["action"], a["target"], a["source"]) for a in audit] == [
                ("policy.disable", "resume_on_idle", "http"),
                ("policy.enable", "resume_on_idle", "http"),
            ]
            assert audit[1]["correlation_id"] == "op-42"
            # Every automated action is in the audit log under its policy, through the API and halctl.
            policy_rows = (await client.get("/api/v1/audit", params={"actor": "policy:*"})).json()["audit"]
            assert {(a["actor"], a["action"], a["outcome"]) for a in policy_rows} == {
                ("policy:resume_on_idle", "command.resume_session", "accepted"),
                ("policy:resume_on_idle", "command.resume_session", "succeeded"),
            }
            env = {"HALCTL_URL": f"http://127.0.0.1:{sup.http_port}", "HALCTL_TOKEN": TEST_TOKEN, "HOME": str(tmp_path)}
            table = await run_halctl(["audit", "--actor", "policy:*"], env=env, cwd=tmp_path)
            assert table.exit_code == 0, table.stderr
            lines = [line for line in table.stdout.splitlines() if "policy:resume_on_idle" in line]
            assert len(lines) == 2
            assert all("command.resume_session" in line and "s1" in line for line in lines)
            args = ["-o", "json", "audit", "--actor", "policy:resume_on_idle"]
            listed = converter.structure(
                (await run_halctl(args, env=env, cwd=tmp_path)).json()["audit"], list[AuditEntry]
            )
            assert [a.outcome for a in listed] == ["succeeded", "accepted"]


async def test_node_offline_alerts_once_when_a_node_goes_away(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [("s1", "alpha", "busy")])
    policies = PoliciesConfig(node_offline=NodeOfflinePolicy(enabled=True))
    with trio.fail_after(60):
        async with open_supervisor(fleet_config(tmp_path, policies), now=clock) as sup:
            async with open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock):
                await fleet_ready(sup, backend)
                await policy_ticks(sup)
            # The agent shut down cleanly: its node is offline at once.

            async def alerted() -> bool:
                return bool(await events(sup, "policy.alert"))

            await wait_until(alerted, what="the node_offline alert")
            await policy_ticks(sup, 3)
            (alert,) = await events(sup, "policy.alert")
            assert (alert["policy"], alert["target"]) == ("node_offline", "node-1")
            assert alert["reason"] == "node node-1 offline for 0 s; 1 active session(s) unreachable"
            rows = await sup.store.query_audit(AuditQuery(actor="policy:node_offline"))
            assert [(r.action, r.target, r.outcome) for r in rows] == [("policy.alert", "node-1", "raised")]
