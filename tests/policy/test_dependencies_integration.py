"""Dependency-aware starts inside a real supervisor, starting sessions on a real agent.

The graph is ``api`` <- ``schema`` and ``web`` <- ``api``, ``design``; one node hosts all
four. Completions come from the API, halctl and the agent (its ``project.completed``
event, as the ``.context/COMPLETE`` marker or the simulator's trigger raises it). As in
``test_engine_integration.py``, the wall clock is a :class:`~tests.policy.scripted.ManualClock`,
the sockets are real, and every wait is bounded: after an action a test waits for the
start it expects, then for a few more passes of the engine, and checks nothing else came.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.agent.simulate import SimulatedBackend
from halswarm.config.dependencies import DependencyStartConfig
from halswarm.config.policies import PoliciesConfig
from halswarm.convert import structure_strict
from halswarm.models import Project
from halswarm.projects import CompleteAnswer, ProjectInfo
from halswarm.store.policy_sql import AuditQuery
from halswarm.testing import (
    TEST_TOKEN,
    agent_config,
    api_client,
    free_port,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)
from halswarm.testing.halctl import run_halctl
from tests.policy.scripted import ManualClock, ScriptedBackend, fleet_ready, open_agent_with

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    import httpx

    from halswarm.config import SupervisorConfig
    from halswarm.jsontypes import JSONObject
    from halswarm.supervisor.app import SupervisorHandle

TICK: Final = 0.02
DEPENDENCIES: Final = {"api": ["schema"], "web": ["api", "design"]}
APP: Final = tuple(Project(name, f"/srv/{name}") for name in ("api", "design", "schema", "web"))


def deps_config(tmp_path: Path, *, start: DependencyStartConfig | None = None, port: int = 0) -> SupervisorConfig:
    config = supervisor_config(tmp_path / "supervisor.db", port=port)
    return attrs.evolve(
        config,
        policies=PoliciesConfig(tick_seconds=TICK),
        dependencies=dict(DEPENDENCIES),
        dependency_start=start or DependencyStartConfig(),
    )


@asynccontextmanager
async def open_app(
    config: SupervisorConfig, tmp_path: Path, backend: ScriptedBackend, clock: ManualClock
) -> AsyncGenerator[SupervisorHandle]:
    """A supervisor and one agent hosting the four projects, online."""
    async with (
        open_supervisor(config, now=clock) as sup,
        open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock, projects=APP),
    ):
        await fleet_ready(sup, backend)
        yield sup


async def passes(sup: SupervisorHandle, n: int = 3) -> None:
    """Wait until the dependency engine completed *n* more passes."""
    target = sup.dependencies.passes + n
    await wait_until(lambda: sup.dependencies.passes >= target, what=f"{n} dependency passes")


async def started(backend: ScriptedBackend, *projects: str) -> None:
    """Wait until exactly *projects* were started on the agent, in that order."""
    expected = [("start_session", p) for p in projects]
    await wait_until(lambda: backend.executed == expected, what=f"starts of {', '.join(projects)}")


async def complete(client: httpx.AsyncClient, project: str, **headers: str) -> CompleteAnswer:
    response = await client.post(f"/api/v1/projects/{project}/complete", headers=headers)
    assert response.status_code == 200, response.text
    return structure_strict(response.json(), CompleteAnswer)


async def events(client: httpx.AsyncClient, event_type: str, count: int = 1) -> list[JSONObject]:
    """The stored events of *event_type*, once there are at least *count* (oldest first)."""

    async def fetch() -> list[JSONObject]:
        response = await client.get("/api/v1/events", params={"type": event_type, "limit": 1000})
        return [e["data"] for e in response.json()["events"]]

    async def enough() -> bool:
        return len(await fetch()) >= count

    await wait_until(enough, what=f"{count} {event_type} events stored")
    return await fetch()


async def start_commands(sup: SupervisorHandle, count: int) -> list[tuple[str, str]]:
    """(target, outcome) of the start commands' outcomes in the audit log, once *count* finished."""

    async def fetch() -> list[tuple[str, str]]:
        rows = await sup.store.query_audit(AuditQuery(actor="policy:dependencies", action="command.*", limit=100))
        return [(r.target, r.outcome) for r in reversed(rows) if r.outcome != "accepted"]

    async def enough() -> bool:
        return len(await fetch()) >= count

    await wait_until(enough, what=f"{count} start commands finished")
    return await fetch()


async def test_dependants_start_when_their_last_dependency_completes_and_only_once(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [])
    env = {"HOME": str(tmp_path), "HALCTL_TOKEN": TEST_TOKEN}
    with trio.fail_after(60):
        async with open_app(deps_config(tmp_path), tmp_path, backend, clock) as sup, api_client(sup) as client:
            env["HALCTL_URL"] = f"http://127.0.0.1:{sup.http_port}"
            # schema: api depends only on it, so api starts; web also needs api and design.
            answer = await complete(client, "schema", **{"X-Correlation-ID": "op-1"})
            assert (answer.already_complete, [p.name for p in answer.started]) == (False, ["api"])
            start = answer.started[0].started_by_dependency
            assert start is not None
            assert (start.status, start.after, start.dependencies) == ("sent", "schema", ["schema"])
            assert start.command_id is not None
            await started(backend, "api")
            command = await sup.dispatcher.wait(start.command_id, 10)
            assert command is not None
            assert (command.status, command.actor, command.source, command.correlation_id) == (
                "succeeded",
                "policy:dependencies",
                "policy",
                "op-1",
            )
            assert command.args["prompt"] == DependencyStartConfig().render("api", ["schema"])
            assert command.idempotency_key.startswith("dependencies:start:api:")
            await wait_until(lambda: sup.tracker.get("api-1") is not None, what="the started session tracked")
            # design (through halctl): web still waits for api.
            design = await run_halctl(["projects", "complete", "design"], env=env, cwd=tmp_path)
            assert (design.exit_code, design.stdout.strip()) == (
                0,
                "project design marked complete; no dependant became ready",
            )
            await passes(sup)
            assert backend.executed == [("start_session", "api")]
            # api, its last dependency: web starts, once.
            done = await run_halctl(["projects", "complete", "api", "--detail", "v1 shipped"], env=env, cwd=tmp_path)
            assert done.exit_code == 0, done.stderr
            assert done.stdout.startswith("project api marked complete\nstarted web (command ")
            await started(backend, "api", "web")
            # Completing again answers 200, changes nothing and starts nothing.
            again = await complete(client, "api")
            assert (again.already_complete, again.started) == (True, [])
            assert again.project.complete is not None
            assert again.project.complete.detail == "v1 shipped"
            repeated = await run_halctl(["projects", "complete", "schema"], env=env, cwd=tmp_path)
            assert repeated.stdout.startswith("project schema was already complete (since ")
            await passes(sup)
            assert backend.executed == [("start_session", "api"), ("start_session", "web")]
            assert await start_commands(sup, 2) == [("api", "succeeded"), ("web", "succeeded")]
            started_events = await events(client, "dependency.started", 2)
            assert [(e["project"], e["dependencies"], e["after"]) for e in started_events] == [
                ("api", ["schema"], "schema"),
                ("web", ["api", "design"], "api"),
            ]
            completed = await events(client, "project.completed", 3)
            assert [(e["project"], e["source"]) for e in completed] == [
                ("schema", "api"),
                ("design", "api"),
                ("api", "api"),
            ]
            audit = await sup.store.query_audit(AuditQuery(action="project.completed"))
            assert [(a.actor, a.source, a.target, a.outcome) for a in reversed(audit)] == [
                ("api", "http", "schema", "recorded"),
                ("api", "http", "design", "recorded"),
                ("api", "http", "api", "recorded"),
                ("api", "http", "api", "already_complete"),
                ("api", "http", "schema", "already_complete"),
            ]
            assert audit[-1].correlation_id == "op-1"
            # The projects as the API and halctl show them.
            listed = structure_strict((await client.get("/api/v1/projects")).json()["projects"], list[ProjectInfo])
            by_name = {p.name: p for p in listed}
            assert sorted(by_name) == ["api", "design", "schema", "web"]
            web = by_name["web"]
            assert (web.nodes, web.nodes_online, web.depends_on, web.dependants) == (
                ["node-1"],
                ["node-1"],
                ["api", "design"],
                [],
            )
            assert web.complete is None
            assert web.started_by_dependency is not None
            assert web.started_by_dependency.after == "api"
            await wait_until(lambda: sup.tracker.get("web-1") is not None, what="web's session tracked")
            assert (by_name["api"].complete is not None, by_name["api"].sessions) == (True, 1)
            table = await run_halctl(["projects", "list"], env=env, cwd=tmp_path)
            rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.split()}
            # (halctl reads the real clock, this supervisor a manual one: times differ.)
            assert "complete" in rows["api"]
            assert "by api: v1 shipped" in rows["api"]
            assert "started" in rows["web"]
            assert "after api (command " in rows["web"]
            assert "4 projects, 3 complete, 2 started by their dependencies" in table.stdout


async def test_a_supervisor_restart_starts_no_dependant_again(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [])
    config = deps_config(tmp_path, port=free_port())  # the agent reconnects to the same port
    with trio.fail_after(90):
        async with open_agent_with(config.server.port, tmp_path / "agent", backend, clock, projects=APP):
            async with open_supervisor(config, now=clock) as first, api_client(first) as client:
                await fleet_ready(first, backend)
                await complete(client, "schema")
                await started(backend, "api")
                await complete(client, "design")
            async with open_supervisor(config, now=clock) as second, api_client(second) as client:
                await fleet_ready(second, backend)
                await passes(second)
                assert backend.executed == [("start_session", "api")]
                assert (await complete(client, "schema")).already_complete
                assert (await complete(client, "design")).already_complete
                answer = await complete(client, "api")
                assert [p.name for p in answer.started] == ["web"]
                await started(backend, "api", "web")
                await passes(second)
                assert len(backend.executed) == 2


async def test_a_start_waits_for_a_node_hosting_it_across_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [])
    config = deps_config(tmp_path, port=free_port())
    with trio.fail_after(90):
        async with open_supervisor(config, now=clock) as first, api_client(first) as client:
            answer = await complete(client, "schema")  # no node has connected yet
            (api,) = answer.started
            assert api.started_by_dependency is not None
            assert api.started_by_dependency.status == "waiting"
            assert await events(client, "dependency.waiting") == [
                {
                    "project": "api",
                    "dependencies": ["schema"],
                    "after": "schema",
                    "reason": "no online node hosts api; started once one is online",
                }
            ]
        async with (
            open_supervisor(config, now=clock) as second,
            open_agent_with(second.ws_port, tmp_path / "agent", backend, clock, projects=APP),
        ):
            await fleet_ready(second, backend)
            await started(backend, "api")  # not lost: sent once a node hosting api came online
            await passes(second)
            assert backend.executed == [("start_session", "api")]
            info = second.dependencies.project("api").started_by_dependency
            assert info is not None
            assert (info.status, info.error) == ("sent", None)
            rows = await second.store.query_audit(AuditQuery(actor="policy:dependencies"))
            assert [(r.action, r.outcome) for r in reversed(rows)][:2] == [
                ("dependency.start", "waiting"),
                ("command.start_session", "accepted"),
            ]


async def test_disabled_starts_record_completions_only(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [])
    config = deps_config(tmp_path, start=DependencyStartConfig(enabled=False))
    with trio.fail_after(60):
        async with open_app(config, tmp_path, backend, clock) as sup, api_client(sup) as client:
            answer = await complete(client, "schema")
            assert (answer.already_complete, answer.started) == (False, [])
            await passes(sup)
            assert backend.executed == []
            (row,) = await sup.store.query_audit(AuditQuery(action="project.completed"))
            assert row.detail == {"source": "api", "start": [], "not_started": ["api"]}


async def test_an_agent_reported_completion_does_what_the_cli_does_once(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(clock, [])
    with trio.fail_after(60):
        async with open_app(deps_config(tmp_path), tmp_path, backend, clock) as sup, api_client(sup) as client:
            await backend.complete_project("schema", "schema v1 frozen")
            await started(backend, "api")
            await backend.complete_project("schema")  # resent (the marker came back): nothing more
            await passes(sup)
            assert backend.executed == [("start_session", "api")]
            assert await start_commands(sup, 1) == [("api", "succeeded")]
            schema = sup.dependencies.project("schema").complete
            assert schema is not None
            assert (schema.source, schema.actor, schema.node_id, schema.detail) == (
                "agent",
                "node:node-1",
                "node-1",
                "schema v1 frozen",
            )
            (row,) = await sup.store.query_audit(AuditQuery(action="project.completed"))
            assert (row.actor, row.source, row.target, row.outcome) == ("node:node-1", "agent", "schema", "recorded")
            assert (await complete(client, "schema")).already_complete


async def test_the_simulators_completion_trigger_starts_dependants(tmp_path: Path) -> None:
    config = deps_config(tmp_path)
    with trio.fail_after(60):
        async with open_supervisor(config) as sup:
            agent = agent_config(sup.ws_port, tmp_path / "agent", node_id="sim-1", projects=list(APP))
            async with open_sim_agent(agent, sessions=1, rate=5.0) as handle:
                await wait_until(lambda: sup.registry.online_count() == 1, what="the simulator online")
                assert isinstance(handle.backend, SimulatedBackend)
                await handle.backend.complete_project("schema", "done")

                assert await start_commands(sup, 1) == [("api", "succeeded")]
                await passes(sup)
                assert await start_commands(sup, 1) == [("api", "succeeded")]
                await wait_until(lambda: bool(sup.tracker.sessions(project="api")), what="api's session tracked")
