"""Pure helpers around completions: start keys, agent reports, persisted progress, the API view."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.models import Event
from halswarm.policy.completions import (
    MAX_DETAIL,
    CompletionNote,
    DependencyProgress,
    ReportedCompletion,
    StartNote,
    clean_detail,
    project_info,
    reported_completion,
    restore_progress,
    start_key,
)
from halswarm.policy.dependencies import DependencyGraph, DependencyState
from halswarm.projects import CompletionInfo, DependencyStartInfo, ProjectInfo

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

GRAPH = DependencyGraph.from_config({"api": ["schema"], "web": ["api", "design"]})
T0 = 1_773_144_000.0  # 2026-03-10T12:00:00Z


def test_start_keys_name_the_project_and_the_completion_and_change_per_attempt() -> None:
    assert start_key("api", T0) == "dependencies:start:api:2026-03-10T12:00:00.000000Z"
    assert start_key("api", T0, 2) == "dependencies:start:api:2026-03-10T12:00:00.000000Z:2"
    assert start_key("api", T0 + 1) != start_key("api", T0)


@pytest.mark.parametrize(
    ("text", "detail"),
    [(None, None), ("", None), ("  \n", None), ("  all tests green \n", "all tests green"), ("x" * 600, "x" * 500)],
)
def test_clean_detail(text: str | None, detail: str | None) -> None:
    assert clean_detail(text) == detail
    assert len(clean_detail("y" * 10_000) or "") == MAX_DETAIL


def event(node_id: str = "node-1", project: str | None = "schema", data: JSONObject | None = None) -> Event:
    return Event(7, node_id, 3, "2026-03-10T12:00:00.000000Z", "project.completed", None, project, data or {})


def test_an_agent_report_is_read_from_its_event() -> None:
    done = event(data={"project": "schema", "source": "agent", "detail": " done "})
    assert reported_completion(done) == ReportedCompletion("schema", "node-1", "done")
    # The project may be in the data only; a detail that is not text is dropped.
    assert reported_completion(event(project=None, data={"project": "schema", "detail": 3})) == ReportedCompletion(
        "schema", "node-1", None
    )
    assert reported_completion(event(project=None, data={"name": "schema"})) is None


@pytest.mark.parametrize(
    "ev",
    [
        pytest.param(event(node_id="supervisor"), id="the supervisor's own record"),
        pytest.param(event(project=None), id="no project"),
        pytest.param(event(project=""), id="empty project"),
        pytest.param(
            Event(1, "node-1", 1, "2026-03-10T12:00:00.000000Z", "session.idle", "s1", "schema", {}), id="other type"
        ),
    ],
)
def test_anything_else_is_not_a_report(ev: Event) -> None:
    assert reported_completion(ev) is None


def test_progress_round_trips_and_lists_waiting_starts() -> None:
    progress = DependencyProgress(
        completions={"schema": CompletionNote("agent", "node:node-1", "done", "node-1")},
        starts={
            "api": StartNote("schema", ("schema",), "c1", status="sent", command_id="cmd-1"),
            "web": StartNote("api", ("api", "design"), "c2", attempt=2, error="node 'n' is offline"),
        },
        event_cursor=42,
    )
    assert restore_progress(progress.dump()) == (progress, [])
    assert progress.waiting() == ["web"]
    assert restore_progress(None) == (DependencyProgress(), [])


@pytest.mark.parametrize("text", ["{", "[]", '{"starts": {"api": {"after": 1}}}', '{"event_cursor": "x"}'])
def test_unreadable_progress_starts_empty_with_a_problem(text: str) -> None:
    progress, problems = restore_progress(text)
    assert progress == DependencyProgress()
    assert len(problems) == 1
    assert problems[0].startswith("dependencies.progress: unreadable state, starting empty (")


def test_the_api_view_of_a_project() -> None:
    state = DependencyState(completed={"schema": T0}, started={"api": T0})
    progress = DependencyProgress(
        completions={"schema": CompletionNote("api", "api", "v1 frozen")},
        starts={"api": StartNote("schema", ("schema",), "c1", status="sent", command_id="cmd-1")},
    )
    hosts = {"api": [("node-2", False), ("node-1", True)], "schema": [("node-1", True)]}
    sessions = {"api": (3, 1)}
    info = project_info("api", graph=GRAPH, state=state, progress=progress, hosts=hosts, sessions=sessions)
    assert info == ProjectInfo(
        name="api",
        nodes=["node-1", "node-2"],
        nodes_online=["node-1"],
        depends_on=["schema"],
        dependants=["web"],
        complete=None,
        started_by_dependency=DependencyStartInfo(
            time="2026-03-10T12:00:00.000000Z",
            after="schema",
            dependencies=["schema"],
            status="sent",
            command_id="cmd-1",
        ),
        sessions=3,
        active_sessions=1,
    )
    schema = project_info("schema", graph=GRAPH, state=state, progress=progress, hosts=hosts, sessions=sessions)
    assert schema.complete == CompletionInfo("2026-03-10T12:00:00.000000Z", "api", "api", "v1 frozen")
    assert (schema.started_by_dependency, schema.sessions, schema.dependants) == (None, 0, ["api"])
    # A project outside the graph and hosted nowhere (completed before its node went away).
    lone = project_info("misc", graph=GRAPH, state=state, progress=progress, hosts={}, sessions={})
    assert (lone.nodes, lone.depends_on, lone.dependants, lone.complete) == ([], [], [], None)


def test_the_api_view_without_progress_still_shows_the_state() -> None:
    # The progress row was unreadable: the state alone still says what happened.
    state = DependencyState(completed={"schema": T0}, started={"api": T0})
    api = project_info("api", graph=GRAPH, state=state, progress=DependencyProgress(), hosts={}, sessions={})
    assert api.started_by_dependency == DependencyStartInfo(
        "2026-03-10T12:00:00.000000Z", after="", dependencies=["schema"], status="sent"
    )
    schema = project_info("schema", graph=GRAPH, state=state, progress=DependencyProgress(), hosts={}, sessions={})
    assert schema.complete == CompletionInfo("2026-03-10T12:00:00.000000Z", "api", "unknown")
