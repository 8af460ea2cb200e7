"""``halctl projects list|complete`` against a real cluster, and the table at every terminal width."""

from __future__ import annotations

import datetime as dt
import io
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from halswarm.cli.projects import completion_lines, project_state, projects_table
from halswarm.convert import converter
from halswarm.projects import CompleteAnswer, CompletionInfo, DependencyStartInfo, ProjectInfo

if TYPE_CHECKING:
    from halswarm.testing.halctl import Halctl

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


async def test_projects_list_table_and_json(halctl: Halctl) -> None:
    table = await halctl("projects", "list")
    assert table.exit_code == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "PROJECT" in line)
    for column in ("NODES", "DEPENDS ON", "DEPENDANTS", "SESSIONS", "STATE"):
        assert column in header
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.startswith("proj-")}
    assert list(rows) == ["proj-1-1", "proj-1-2", "proj-2-1", "proj-2-2"]
    assert "node-2" in rows["proj-2-1"]
    assert "4 projects, 0 complete, 0 started by their dependencies" in table.stdout
    as_json = await halctl("-o", "json", "projects", "list")
    projects = converter.structure(as_json.json()["projects"], list[ProjectInfo])
    assert [p.nodes for p in projects] == [["node-1"], ["node-1"], ["node-2"], ["node-2"]]


async def test_complete_says_what_it_did_and_is_idempotent(halctl: Halctl) -> None:
    done = await halctl("projects", "complete", "proj-1-2", "--detail", "released")
    assert (done.exit_code, done.stdout.strip()) == (0, "project proj-1-2 marked complete")
    again = await halctl("-o", "json", "projects", "complete", "proj-1-2")
    answer = converter.structure(again.json(), CompleteAnswer)
    assert answer.already_complete
    assert answer.project.complete is not None
    assert answer.project.complete.detail == "released"
    text = await halctl("projects", "complete", "proj-1-2")
    assert text.stdout.startswith("project proj-1-2 was already complete (since 20")
    assert text.stdout.strip().endswith(", by api); nothing started")
    listed = await halctl("projects", "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("proj-1-2"))
    assert "complete just now by api: released" in row
    audit = await halctl("audit", "--action", "project.*")
    assert sum("project.completed" in line for line in audit.stdout.splitlines()) == 3


async def test_an_unknown_project_exits_5(halctl: Halctl) -> None:
    unknown = await halctl("projects", "complete", "nope")
    assert unknown.exit_code == 5
    assert unknown.stderr.startswith("error: not found: no project 'nope': no node hosts it")
    assert unknown.stdout == ""


def info(name: str, **fields: object) -> ProjectInfo:
    base = ProjectInfo(name, ["node-1", "node-2"], ["node-1"], [], [])
    return converter.structure({**converter.unstructure(base), **converter.unstructure(fields)}, ProjectInfo)


SCHEMA = info(
    "schema",
    dependants=["api"],
    complete=CompletionInfo("2026-03-10T10:00:00.000000Z", "agent", "node:node-1", "frozen", "node-1"),
    sessions=2,
)
API = info(
    "api",
    depends_on=["schema"],
    dependants=["web"],
    started_by_dependency=DependencyStartInfo(
        "2026-03-10T10:00:00.000000Z", "schema", ["schema"], "sent", "0123456789abcdef"
    ),
    sessions=1,
    active_sessions=1,
)
WEB = info("web", depends_on=["api", "design"])
DESIGN = info(
    "design",
    dependants=["web"],
    started_by_dependency=DependencyStartInfo(
        "2026-03-10T11:00:00.000000Z", "x", [], "waiting", error="no online node hosts design"
    ),
)
ALL = [API, DESIGN, SCHEMA, WEB]


@pytest.mark.parametrize(
    ("project", "state"),
    [
        (SCHEMA, "complete 2h ago by agent on node-1: frozen"),
        (API, "started 2h ago after schema (command 0123456789ab)"),
        (WEB, "waiting for api, design"),
        (DESIGN, "start waiting: no online node hosts design"),
        (info("lone"), "-"),
        (info("ready", depends_on=["schema"]), "dependencies complete"),
    ],
)
def test_project_state(project: ProjectInfo, state: str) -> None:
    assert project_state(project, {"schema"}, NOW).plain == state


@pytest.mark.parametrize("width", [50, 60, 79, 80, 99, 100, 120, 200])
def test_the_table_fits_every_width(width: int) -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(projects_table(ALL, NOW, width=width))
    lines = buffer.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    header = lines[0]
    assert ("NODES" in header) == (width >= 80)
    assert ("DEPENDANTS" in header) == (width >= 100)
    if width >= 100:
        assert "node-1, node-2 (offline)" in buffer.getvalue()


def test_completion_lines() -> None:
    started = CompleteAnswer(SCHEMA, already_complete=False, started=[API, DESIGN])
    assert completion_lines(started).plain == (
        "project schema marked complete\n"
        "started api (command 0123456789abcdef)\n"
        "design: start waiting: no online node hosts design"
    )
    nothing = CompleteAnswer(info("misc"), already_complete=False)
    assert completion_lines(nothing).plain == "project misc marked complete"
    again = CompleteAnswer(SCHEMA, already_complete=True)
    assert completion_lines(again).plain == (
        "project schema was already complete (since 2026-03-10T10:00:00.000000Z, by node:node-1); nothing started"
    )
