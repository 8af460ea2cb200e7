"""``halctl agent-md show|diff|sync``: each project's AGENT.md against the manifest's template (issue #9).

``show`` prints the template rendered for a project and which nodes' files match it;
``diff`` the unified diff of each node's file against it (as last reported; coloured in
a terminal); ``sync`` has the agents rewrite AGENT.md from the template (an
``env_provision`` command limited to the agent file, per node), printing every node's
outcome. Exit 1 when a node's command failed, was not sent (offline, an agent too old)
or gave no answer within ``--wait`` seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import asyncclick as click
from rich.text import Text

from halswarm.cli.audit import fitted_table
from halswarm.cli.client import ApiClient, ApiError
from halswarm.cli.context import app_of, output_option
from halswarm.cli.env_remote import wait_option
from halswarm.cli.env_render import diff_text
from halswarm.cli.exits import EXIT_FAILED
from halswarm.cli.render import ago, outcome_line, pending_line
from halswarm.envcheck.views import (
    AgentMdDiff,
    AgentMdInfo,
    AgentMdSyncAnswer,
    AgentMdSyncRefusal,
    EnvStatus,
    ProvisionOutcome,
)

if TYPE_CHECKING:
    from halswarm.models import Command

__all__ = ["agent_md"]


@click.group("agent-md")
def agent_md() -> None:
    """AGENT.md files against the manifest's template: show, diff, sync."""


@output_option
@agent_md.command("show")
@click.argument("project", metavar="PROJECT")
@click.pass_context
async def show(ctx: click.Context, project: str) -> None:
    """Print PROJECT's AGENT.md as rendered from the template, and which nodes match it."""
    app = app_of(ctx)
    async with app.open_api() as api:
        body = await api.call("GET", f"/api/v1/agent-md/{quote(project, safe='')}")
    info = ApiClient.structure({"info": body}, "info", AgentMdInfo)
    if app.json:
        app.print_json(info)
        return
    now = app.io.now()
    rows: list[list[str | Text]] = []
    for n in info.nodes:
        state = Text("matches", style="green") if n.matches else Text("differs", style="yellow")
        rows.append([n.node_id, state, n.path or "-", ago(n.checked_at, now)])
    if rows:
        app.print(fitted_table(["NODE", "AGENT.MD", "PATH", "CHECKED"], rows, width=app.io.console.width, flex="PATH"))
    if info.rendered is None:
        app.print(Text(f"{info.file}: not rendered ({info.error or 'the manifest declares no template'})"))
        return
    app.print(Text(f"--- {info.file} (sha256 {info.sha256})", style="dim"))
    app.io.console.out(info.rendered.rstrip("\n"), highlight=False)


@output_option
@agent_md.command("diff")
@click.argument("project", metavar="PROJECT")
@click.pass_context
async def diff(ctx: click.Context, project: str) -> None:
    """Each node's AGENT.md against the rendered template, as a unified diff."""
    app = app_of(ctx)
    async with app.open_api() as api:
        body = await api.call("GET", f"/api/v1/agent-md/{quote(project, safe='')}/diff")
    diffs = ApiClient.structure(body, "diffs", list[AgentMdDiff])
    if app.json:
        app.print_json({"project": project, "diffs": diffs})
        return
    if not diffs:
        app.print(Text(f"{project}: no node has reported its AGENT.md yet"))
    for item in diffs:
        if item.matches:
            app.print(Text(f"{item.node_id}: AGENT.md matches the template", style="green"))
            continue
        note = " (the node sent only part of its file)" if item.truncated else ""
        app.print(Text(f"{item.node_id}: AGENT.md differs from the template{note}", style="yellow"))
        app.print(diff_text(item.diff))


@output_option
@wait_option
@agent_md.command("sync")
@click.option("--node", metavar="N", help="Only this node [default: every node hosting the project].")
@click.option("--project", metavar="P", help="Only this project [default: every project the nodes reported].")
@click.option("--dry-run", is_flag=True, help="Show what would be rewritten; change nothing.")
@click.pass_context
async def sync(ctx: click.Context, node: str | None, project: str | None, dry_run: bool, wait: float) -> None:
    """Rewrite AGENT.md from the template on the nodes (a dry run shows what would change)."""
    app = app_of(ctx)
    commands: list[Command] = []
    refused: list[AgentMdSyncRefusal] = []
    async with app.open_api() as api:
        if project is not None:
            projects = [project]
        else:
            body = await api.call("GET", "/api/v1/env/status", params={"node": node})
            found = ApiClient.structure({"status": body}, "status", EnvStatus)
            projects = sorted({r.project for r in found.reports})
        for name in projects:
            answer = await _sync_one(api, name, node, dry_run, wait)
            commands += answer.commands
            refused += answer.refused
    failed = [c for c in commands if c.status != "succeeded" or c.result is None]
    if app.json:
        app.print_json({"commands": commands, "refused": refused})
    else:
        if not commands and not refused:
            app.print(Text("nothing to sync (no node has reported a project)"))
        for command in commands:
            if command in failed:
                continue
            assert command.result is not None
            for outcome in ApiClient.structure(command.result, "projects", list[ProvisionOutcome]):
                app.print(_sync_line(command.target, outcome))
    for command in failed:
        app.warn(outcome_line(command) if command.status in ("failed", "timed_out") else pending_line(command, wait))
    for refusal in refused:
        app.warn(f"{refusal.node_id}/{refusal.project}: not sent ({refusal.code}) — {refusal.message}")
    if failed or refused:
        raise click.exceptions.Exit(EXIT_FAILED)


async def _sync_one(api: ApiClient, project: str, node: str | None, dry_run: bool, wait: float) -> AgentMdSyncAnswer:
    try:
        body = await api.call(
            "POST",
            "/api/v1/agent-md/sync",
            params={"wait": wait},
            json_body={"project": project, "node": node, "dry_run": dry_run},
            read_timeout=wait + api.timeouts.wait_margin_s,
        )
    except ApiError as exc:
        if exc.command is None:
            raise
        return AgentMdSyncAnswer([exc.command])
    return ApiClient.structure({"answer": body}, "answer", AgentMdSyncAnswer)


def _sync_line(node: str, outcome: ProvisionOutcome) -> Text:
    line = Text(f"{node}/{outcome.project}: ", style="bold")
    if outcome.dry_run:
        paths = [a.path for a in outcome.actions]
        line.append(f"would rewrite {', '.join(paths)}" if paths else "AGENT.md already matches")
    else:
        line.append(f"rewrote {', '.join(outcome.applied)}" if outcome.applied else "AGENT.md already matches")
    for error in outcome.errors:
        line.append(f"; failed: {error}", style="bold red")
    return line
