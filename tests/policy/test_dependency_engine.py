"""The dependency engine against fakes (no threads, no sockets): persist-then-act, starts that
wait for a node, retries with a new key after an offline refusal, agent reports read once,
and the startup warning about projects no node hosts, on trio's virtual clock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from halswarm.config.dependencies import DependencyStartConfig
from halswarm.models import Event, Project
from halswarm.policy.completions import PROGRESS_ROW, STATE_ROW, restore_progress, start_key
from halswarm.policy.dependencies import restore_dependency_state
from halswarm.policy.dependency_engine import ACTOR, DependencyEngine, UnknownProjectError
from halswarm.proto.messages import Hello
from halswarm.store import StoreError
from halswarm.supervisor.dispatcher import CommandError
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.tracker import SessionTracker
from halswarm.timeutil import format_ts
from tests.policy.engine_support import Events, FakeCommands, FakePolicyStore, NoLink, WallClock

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject
    from halswarm.store import EventQuery

DEPENDENCIES = {"api": ["schema"], "web": ["api", "design"]}


@attrs.define
class FakeStore(FakePolicyStore):
    """The policy store plus stored events (``project.completed`` ones, for the engine's scan)."""

    events: list[Event] = attrs.field(factory=list)

    async def query_events(self, query: EventQuery) -> list[Event]:
        await trio.lowlevel.checkpoint()
        after = query.after or 0
        return [e for e in self.events if e.type == query.type and e.id > after][: query.limit]

    def report(self, project: str, node_id: str = "node-1", detail: str | None = None) -> None:
        data: JSONObject = {"project": project, "source": "agent", "detail": detail}
        n = len(self.events) + 1
        self.events.append(
            Event(n, node_id, n, "2026-03-10T12:00:00.000000Z", "project.completed", None, project, data)
        )


@attrs.define
class World:
    engine: DependencyEngine
    clock: WallClock
    store: FakeStore
    commands: FakeCommands
    events: Events
    registry: NodeRegistry

    def connect(self, node_id: str, *projects: str) -> None:
        hello = Hello(
            node_id=node_id,
            instance_key=f"key-{node_id}",
            hostname=node_id,
            version="t",
            projects=[Project(p, f"/srv/{p}") for p in projects],
        )
        self.registry.attach(hello, NoLink(), now=trio.current_time(), wall=format_ts(self.clock()))

    def starts(self) -> list[tuple[str, str, str]]:
        """(target, actor, idempotency key) of every start submitted."""
        return [(c.target, c.actor, c.idempotency_key) for c in self.commands.submitted]


def world(store: FakeStore | None = None, *, start: DependencyStartConfig | None = None, grace: float = 0.0) -> World:
    store = store or FakeStore()
    clock = WallClock()
    tracker = SessionTracker()
    registry = NodeRegistry(on_reachability=tracker.set_node_reachable)
    commands = FakeCommands(store)
    events = Events()
    engine = DependencyEngine(
        DEPENDENCIES,
        start or DependencyStartConfig(),
        store=store,
        registry=registry,
        tracker=tracker,
        commands=commands,
        emit=events,
        now=clock,
        retry_interval=10.0,
        unknown_grace=grace,
    )
    return World(engine, clock, store, commands, events, registry)


async def test_the_completion_is_stored_before_any_start_is_sent() -> None:
    w = world()
    w.connect("node-1", "schema", "api", "web", "design")
    answer = await w.engine.complete("schema", actor="api", source="http", correlation_id="op-1")
    assert [p.name for p in answer.started] == ["api"]
    assert w.commands.saves_at_submit == [1]  # the completion (and the start it decided) came first
    state, _ = restore_dependency_state(w.store.rows[STATE_ROW])
    assert (set(state.completed), set(state.started)) == ({"schema"}, {"api"})
    (command,) = w.commands.submitted
    assert (command.type, command.target, command.actor, command.source) == ("start_session", "api", ACTOR, "policy")
    assert command.args == {"prompt": DependencyStartConfig().render("api", ["schema"])}
    assert (command.correlation_id, command.idempotency_key) == ("op-1", start_key("api", w.clock.epoch()))
    progress, _ = restore_progress(w.store.rows[PROGRESS_ROW])
    assert (progress.starts["api"].status, progress.starts["api"].command_id) == ("sent", command.id)
    assert w.events.of("dependency.started") == [
        {
            "project": "api",
            "dependencies": ["schema"],
            "after": "schema",
            "command_id": command.id,
            "node_id": None,
            "correlation_id": "op-1",
        }
    ]
    assert [(a.actor, a.action, a.target, a.outcome) for a in w.store.audits] == [
        ("api", "project.completed", "schema", "recorded")
    ]


async def test_a_store_failure_changes_nothing_and_sends_nothing() -> None:
    w = world()
    w.connect("node-1", "schema", "api")
    w.store.fail_writes = True
    with pytest.raises(StoreError):
        await w.engine.complete("schema", actor="api", source="http")
    assert w.engine.project("schema").complete is None
    assert w.commands.submitted == []
    w.store.fail_writes = False
    answer = await w.engine.complete("schema", actor="api", source="http")  # decided afresh
    assert (answer.already_complete, [p.name for p in answer.started]) == (False, ["api"])


async def test_unknown_projects_are_refused_and_hosted_ones_outside_the_graph_accepted() -> None:
    w = world()
    w.connect("node-1", "misc")
    with pytest.raises(UnknownProjectError, match="no project 'nope'"):
        await w.engine.complete("nope", actor="api", source="http")
    assert (await w.engine.complete("misc", actor="api", source="http")).started == []
    assert (await w.engine.complete("design", actor="api", source="http")).started == []  # in the graph, no host


async def test_a_start_waits_for_an_online_node_and_is_sent_once_when_one_comes() -> None:
    w = world()
    answer = await w.engine.complete("schema", actor="api", source="http", correlation_id="op-1")
    (api,) = answer.started
    assert api.started_by_dependency is not None
    assert (api.started_by_dependency.status, api.started_by_dependency.error) == (
        "waiting",
        "no online node hosts api; started once one is online",
    )
    assert w.commands.submitted == []
    for _ in range(3):
        await w.engine.run_pass()
    # Said once, not every pass.
    assert [(a.actor, a.action, a.target, a.outcome) for a in w.store.audits][1:] == [
        (ACTOR, "dependency.start", "api", "waiting")
    ]
    assert [e["project"] for e in w.events.of("dependency.waiting")] == ["api"]
    w.connect("node-1", "api")
    await w.engine.run_pass()
    await w.engine.run_pass()
    assert w.starts() == [("api", ACTOR, start_key("api", w.clock.epoch()))]
    info = w.engine.project("api").started_by_dependency
    assert info is not None
    assert (info.status, info.error, info.command_id) == ("sent", None, "cmd-1")


async def test_a_start_refused_for_an_offline_node_is_retried_under_the_next_key() -> None:
    w = world()
    w.connect("node-1", "api", "schema")
    w.commands.refuse["api"] = CommandError(409, "target_offline", "node 'node-1' is offline")
    await w.engine.complete("schema", actor="api", source="http")
    info = w.engine.project("api").started_by_dependency
    assert info is not None
    assert (info.status, info.error) == ("waiting", "node 'node-1' is offline (target_offline)")
    del w.commands.refuse["api"]
    await w.engine.run_pass()
    key = start_key("api", w.clock.epoch())
    assert [c.idempotency_key for c in w.commands.submitted] == [f"{key}:1"]
    assert w.commands.saves_at_submit == [1, 2]  # each attempt is stored before the next


async def test_a_start_refused_for_good_is_audited_and_not_retried() -> None:
    w = world()
    w.connect("node-1", "api", "schema")
    w.commands.refuse["api"] = CommandError(409, "idempotency_conflict", "key already used")
    await w.engine.complete("schema", actor="api", source="http", correlation_id="op-9")
    await w.engine.run_pass()
    assert len(w.commands.saves_at_submit) == 1
    info = w.engine.project("api").started_by_dependency
    assert info is not None
    assert (info.status, info.error) == ("refused", "key already used (idempotency_conflict)")
    refused = w.store.audits[-1]
    assert (refused.actor, refused.action, refused.outcome, refused.correlation_id) == (
        ACTOR,
        "command.start_session",
        "refused",
        "op-9",
    )


async def test_disabled_starts_record_the_completion_and_start_nothing() -> None:
    w = world(start=DependencyStartConfig(enabled=False))
    w.connect("node-1", "api", "schema")
    answer = await w.engine.complete("schema", actor="api", source="http")
    assert (answer.already_complete, answer.started, w.commands.submitted) == (False, [], [])
    assert w.store.audits[0].detail == {"source": "api", "start": [], "not_started": ["api"]}


async def test_agent_reports_are_read_once_and_the_cursor_survives_a_restart() -> None:
    store = FakeStore()
    w = world(store)
    w.connect("node-1", "api", "schema")
    store.report("schema", detail="v1 frozen")
    store.report("schema")  # resent (the marker was created again)
    store.events.append(
        Event(3, "supervisor", 1, "2026-03-10T12:00:00.000000Z", "project.completed", None, "design", {})
    )
    await w.engine.load()
    await w.engine.run_pass()
    assert [c.target for c in w.commands.submitted] == ["api"]
    schema = w.engine.project("schema").complete
    assert schema is not None
    assert (schema.source, schema.actor, schema.node_id, schema.detail) == (
        "agent",
        "node:node-1",
        "node-1",
        "v1 frozen",
    )
    assert w.engine.project("design").complete is None  # the supervisor's own record is not a report
    assert [(a.actor, a.source, a.action, a.target) for a in store.audits] == [
        ("node:node-1", "agent", "project.completed", "schema")
    ]
    progress, _ = restore_progress(store.rows[PROGRESS_ROW])
    assert progress.event_cursor == 3
    # A restarted engine reads on from the cursor, and a new report of schema changes nothing.
    again = world(store)
    again.connect("node-1", "api", "schema")
    await again.engine.load()
    store.report("schema")
    await again.engine.run_pass()
    assert again.commands.submitted == []
    assert restore_progress(store.rows[PROGRESS_ROW])[0].event_cursor == 4


async def test_projects_lists_hosted_graph_and_completed_projects() -> None:
    w = world()
    w.connect("node-1", "api", "misc")
    await w.engine.complete("misc", actor="api", source="http")
    assert [p.name for p in w.engine.projects()] == ["api", "design", "misc", "schema", "web"]
    api = w.engine.project("api")
    assert (api.nodes, api.nodes_online, api.depends_on, api.dependants) == (
        ["node-1"],
        ["node-1"],
        ["schema"],
        ["web"],
    )
    with pytest.raises(UnknownProjectError):
        w.engine.project("nope")


async def test_projects_no_node_hosts_are_warned_about_after_the_grace(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="halswarm.policy.dependency_engine")
    w = world(grace=90.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.engine.run)
        await trio.sleep(60)
        assert "no node hosts" not in caplog.text  # nodes may not have reconnected yet
        w.connect("node-1", "api", "schema")
        await trio.sleep(31)
        (record,) = [r for r in caplog.records if "no node hosts" in r.getMessage()]
        assert record.ctx == {"unknown_projects": ["design", "web"]}  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
