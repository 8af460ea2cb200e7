"""``halctl projects list|complete NAME``: projects, their dependencies and completion (issue #6).

``list`` shows every project the supervisor knows (hosted by a node, named by config
``dependencies``, or completed): the nodes hosting it, what it depends on and what
depends on it, its state (complete, started by its dependencies, waiting for them) and
its sessions. ``complete`` marks a project complete: the supervisor starts each dependant
whose dependencies are now all complete (audited: ``halctl audit --action
'project.*'``). ``-o json`` prints the API's own shapes (:mod:`halswarm.projects`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import asyncclick as click
from rich.text import Text

from halswarm.cli.audit import fitted_table
from halswarm.cli.context import app_of, output_option
from halswarm.cli.render import ago, short_id

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from rich.table import Table

    from halswarm.projects import CompleteAnswer, ProjectInfo

__all__ = ["completion_lines", "project_state", "projects", "projects_table"]

_DROP_DEPENDANTS_BELOW: Final = 100
_DROP_NODES_BELOW: Final = 80


def _names(names: list[str]) -> str:
    return ", ".join(names) or "-"


def _nodes(project: ProjectInfo) -> str:
    online = set(project.nodes_online)
    return _names([node if node in online else f"{node} (offline)" for node in project.nodes])


def project_state(project: ProjectInfo, complete: Collection[str], now: datetime) -> Text:
    """What stage the project is at, in one line.

    Args:
        project: the project.
        complete: every project complete (for the dependencies it still waits for).
        now: the current time (for "2h ago").
    """
    done = project.complete
    if done is not None:
        text = Text("complete", style="green")
        who = f"agent on {done.node_id}" if done.source == "agent" and done.node_id else done.actor
        text.append(f" {ago(done.time, now)} by {who}")
        if done.detail:
            text.append(f": {done.detail}")
        return text
    start = project.started_by_dependency
    if start is not None:
        if start.status == "sent":
            text = Text("started", style="cyan")
            text.append(f" {ago(start.time, now)} after {start.after}")
            if start.command_id:
                text.append(f" (command {short_id(start.command_id)})")
            return text
        style = "yellow" if start.status == "waiting" else "bold red"
        text = Text(f"start {start.status}", style=style)
        return text.append(f": {start.error}") if start.error else text
    missing = [dep for dep in project.depends_on if dep not in complete]
    if missing:
        return Text(f"waiting for {', '.join(missing)}", style="dim")
    return Text("dependencies complete" if project.depends_on else "-")


def _sessions(project: ProjectInfo) -> str:
    if not project.sessions:
        return "0"
    return f"{project.sessions} ({project.active_sessions} live)"


def projects_table(found: list[ProjectInfo], now: datetime, width: int = 120) -> Table:
    """One row per project, fitted to *width* columns (the state is clipped, never wrapped).

    Narrower than 100 columns the dependants go, narrower than 80 the nodes.
    """
    show_nodes = width >= _DROP_NODES_BELOW
    show_dependants = width >= _DROP_DEPENDANTS_BELOW
    headers = ["PROJECT"] + (["NODES"] if show_nodes else []) + ["DEPENDS ON"]
    headers += (["DEPENDANTS"] if show_dependants else []) + ["SESSIONS", "STATE"]
    complete = {p.name for p in found if p.complete is not None}
    rows: list[list[str | Text]] = []
    for project in found:
        row: list[str | Text] = [project.name]
        if show_nodes:
            row.append(_nodes(project))
        row.append(_names(project.depends_on))
        if show_dependants:
            row.append(_names(project.dependants))
        row += [_sessions(project), project_state(project, complete, now)]
        rows.append(row)
    table = fitted_table(headers, rows, width=width, flex="STATE", right=frozenset({"SESSIONS"}))
    started = sum(1 for p in found if p.started_by_dependency is not None)
    table.caption = f"{len(found)} projects, {len(complete)} complete, {started} started by their dependencies"
    table.caption_justify = "left"
    return table


def completion_lines(answer: CompleteAnswer) -> Text:
    """``project schema marked complete`` and one line per dependant started (or waiting)."""
    name = answer.project.name
    if answer.already_complete:
        done = answer.project.complete
        since = f" (since {done.time}, by {done.actor})" if done is not None else ""
        return Text(f"project {name} was already complete{since}; nothing started")
    text = Text(f"project {name} marked complete")
    if not answer.started and answer.project.dependants:
        text.append("; no dependant became ready")
    for dependant in answer.started:
        start = dependant.started_by_dependency
        if start is None:
            continue
        if start.status == "sent":
            text.append(f"\nstarted {dependant.name} (command {start.command_id or '-'})")
        else:
            reason = f": {start.error}" if start.error else ""
            text.append(f"\n{dependant.name}: start {start.status}{reason}")
    return text


@click.group()
def projects() -> None:
    """Projects: hosts, dependencies, completion; dependants start when their dependencies complete."""


@output_option
@projects.command("list")
@click.pass_context
async def list_projects(ctx: click.Context) -> None:
    """List every known project with its nodes, dependencies, sessions and state."""
    app = app_of(ctx)
    async with app.open_api() as api:
        found = await api.projects()
    if not found and not app.json:
        app.print(Text("no projects: no node hosts any, and config dependencies names none"))
        return
    app.show({"projects": found}, projects_table(found, app.io.now(), width=app.io.console.width))


@output_option
@projects.command("complete")
@click.argument("name", metavar="NAME")
@click.option("--detail", metavar="TEXT", help="A note kept with the completion (shown by projects list).")
@click.pass_context
async def complete_project(ctx: click.Context, name: str, detail: str | None) -> None:
    """Mark a project complete and start the dependants now ready (audited; idempotent)."""
    app = app_of(ctx)
    async with app.open_api() as api:
        answer = await api.complete_project(name, detail=detail)
    app.show(answer, completion_lines(answer))
