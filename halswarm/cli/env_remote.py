"""``halctl env status|drift|approve|manifest`` and ``env check|provision --node``: the
environment as the supervisor sees it (issue #9).

They call ``/api/v1/env/*``. ``status`` and ``drift`` show the latest report per (node,
project); ``check``/``provision --node N`` submit an ``env_check``/``env_provision``
command to that node's agent and print its answer; ``approve`` runs a declared install
command (audited as ``env.install.approve``) and prints its exit code and output;
``manifest show|set`` read and replace the supervisor's manifest (a bad one is refused
with each problem's key path). ``-o json`` prints the API's own shapes
(:mod:`halswarm.envcheck.views`).

Exit codes: ``status``, ``check`` and ``provision`` exit 6 when a listed project is
degraded and 7 when one is missing (as the local check does; a dry run exits 0); a
command that failed on the agent, timed out or gave no answer in ``--wait`` seconds,
an install that exited non-zero, or a refused manifest exit 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import asyncclick as click
import orjson
import trio
from rich.text import Text

from halswarm.cli.client import ApiClient, ApiError
from halswarm.cli.context import App, app_of, output_option
from halswarm.cli.env_render import drift_table, install_lines, outcome_lines, report_lines, status_table
from halswarm.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, exit_code_for
from halswarm.cli.render import outcome_line, pending_line
from halswarm.envcheck.report import EnvReport
from halswarm.envcheck.views import DriftEntry, EnvStatus, InstallOutcome, ManifestInfo, ProvisionOutcome
from halswarm.jsontypes import is_json_object
from halswarm.models import Command

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

__all__ = [
    "MAX_WAIT",
    "approve",
    "drift",
    "manifest",
    "remote_check",
    "remote_provision",
    "status",
    "submit_env",
    "wait_option",
]

DEFAULT_WAIT: Final = 120.0
MAX_WAIT: Final = 300.0  # the API's limit


def wait_option(command: click.Command) -> click.Command:
    """``--wait SECONDS`` for commands that go to an agent; apply above ``@group.command()``."""
    option = click.option(
        "--wait",
        type=click.FloatRange(0, MAX_WAIT),
        default=DEFAULT_WAIT,
        show_default=True,
        metavar="SECONDS",
        help="How long the supervisor waits for the agent's answer.",
    )
    return option(command)


def _seg(value: str) -> str:
    return quote(value, safe="")


async def submit_env(
    api: ApiClient, path: str, *, params: dict[str, str | int | float | None], body: JSONObject | None, wait: float
) -> Command:
    """POST a command route (check, provision, approve) and return the command, finished or not.

    A command that failed on the agent, timed out or hit an offline node is returned too
    (the API answers 502/504/409 with it); other API errors are raised.
    """
    try:
        answer = await api.call(
            "POST",
            path,
            params={**params, "wait": wait},
            json_body=body,
            read_timeout=wait + api.timeouts.wait_margin_s,
        )
    except ApiError as exc:
        if exc.command is None:
            raise
        return exc.command
    return api.structure(answer, "command", Command)


def _finished(app: App, command: Command, wait: float) -> JSONObject:
    """The command's result; exit 1 (with its outcome on stderr) unless it succeeded."""
    if command.status == "succeeded" and command.result is not None:
        return command.result
    app.warn(outcome_line(command) if command.status in ("failed", "timed_out") else pending_line(command, wait))
    if app.json:
        app.print_json({"command": command})
    raise click.exceptions.Exit(EXIT_FAILED)


def _exit(code: int) -> None:
    if code != EXIT_OK:
        raise click.exceptions.Exit(code)


async def remote_check(app: App, node: str, project: str | None, wait: float) -> None:
    """``halctl env check --node N``: the agent checks now; print its reports; exit 0/6/7."""
    async with app.open_api() as api:
        command = await submit_env(
            api, f"/api/v1/env/check/{_seg(node)}", params={"project": project}, body=None, wait=wait
        )
    result = _finished(app, command, wait)
    reports = ApiClient.structure(result, "reports", list[EnvReport])
    if app.json:
        app.print_json({"command": command})
    else:
        if not reports:
            app.print(Text(f"{node}: no projects to check"))
        for report in reports:
            app.print_lines(report_lines(report, app.io.console.width, node=node))
    _exit(exit_code_for([r.state for r in reports]))


async def remote_provision(app: App, node: str, project: str | None, dry_run: bool, wait: float) -> None:
    """``halctl env provision --node N``: the agent applies the safe fixes (or plans them)."""
    async with app.open_api() as api:
        command = await submit_env(
            api,
            f"/api/v1/env/provision/{_seg(node)}",
            params={"project": project, "dry_run": "true" if dry_run else "false"},
            body=None,
            wait=wait,
        )
    result = _finished(app, command, wait)
    outcomes = ApiClient.structure(result, "projects", list[ProvisionOutcome])
    if app.json:
        app.print_json({"command": command})
    else:
        for outcome in outcomes:
            app.print_lines(outcome_lines(outcome, node=node))
    if not dry_run:
        _exit(exit_code_for([o.state_after for o in outcomes if o.state_after is not None]))


def _filters(command: click.Command) -> click.Command:
    command = click.option("--project", metavar="P", help="Only this project.")(command)
    return click.option("--node", metavar="N", help="Only this node.")(command)


@output_option
@_filters
@click.command("status")
@click.pass_context
async def status(ctx: click.Context, node: str | None, project: str | None) -> None:
    """The latest check per node and project: exit 0 all ready, 6 degraded, 7 missing."""
    app = app_of(ctx)
    path = f"/api/v1/env/status/{_seg(node)}" if node else "/api/v1/env/status"
    async with app.open_api() as api:
        body = await api.call("GET", path, params={"project": project})
    found = ApiClient.structure({"status": body}, "status", EnvStatus)
    if app.json:
        app.print_json(found)
    elif not found.reports:
        held = "no manifest is held" if found.manifest_hash is None else "no agent has reported yet"
        app.print(Text(f"no environment reports ({held})"))
    else:
        app.print(status_table(found.reports, app.io.now(), width=app.io.console.width))
    _exit(exit_code_for([r.state for r in found.reports]))


@output_option
@_filters
@click.command("drift")
@click.pass_context
async def drift(ctx: click.Context, node: str | None, project: str | None) -> None:
    """What differs from the manifest, one row per drift item (from the latest reports)."""
    app = app_of(ctx)
    async with app.open_api() as api:
        body = await api.call("GET", "/api/v1/env/drift", params={"node": node, "project": project})
    entries = ApiClient.structure(body, "drift", list[DriftEntry])
    if app.json:
        app.print_json({"drift": entries})
    elif not entries:
        app.print(Text("no drift"))
    else:
        app.print(drift_table(entries, width=app.io.console.width))


@output_option
@wait_option
@click.command("approve")
@click.option("--node", required=True, metavar="N", help="The node to run it on.")
@click.option("--project", required=True, metavar="P", help="The project declaring the install command.")
@click.argument("install", metavar="INSTALL")
@click.pass_context
async def approve(ctx: click.Context, node: str, project: str, install: str, wait: float) -> None:
    """Approve and run the manifest's declared install command INSTALL (audited); print its output.

    Exit 0 when it exited 0; 1 when it failed, timed out or gave no answer in time.
    """
    app = app_of(ctx)
    async with app.open_api() as api:
        command = await submit_env(
            api,
            f"/api/v1/env/approve/{_seg(node)}",
            params={},
            body={"project": project, "install": install},
            wait=wait,
        )
    outcome = ApiClient.structure({"result": _finished(app, command, wait)}, "result", InstallOutcome)
    if app.json:
        app.print_json({"command": command})
    else:
        app.print_lines(install_lines(node, outcome))
    _exit(EXIT_OK if outcome.ok else EXIT_FAILED)


@click.group("manifest")
def manifest() -> None:
    """The supervisor's environment manifest (show it, or replace it from a file)."""


def _manifest_lines(info: ManifestInfo) -> list[Text]:
    if info.manifest is None:
        return [Text("the supervisor holds no environment manifest")]
    head = Text(f"manifest {info.hash}  ", style="bold")
    head.append(f"projects: {', '.join(info.projects) or '-'}; file: {info.path or '(memory only)'}")
    return [head, Text(orjson.dumps(info.manifest, option=orjson.OPT_INDENT_2).decode())]


@output_option
@manifest.command("show")
@click.pass_context
async def manifest_show(ctx: click.Context) -> None:
    """Print the manifest the supervisor holds, its hash and file."""
    app = app_of(ctx)
    async with app.open_api() as api:
        body = await api.call("GET", "/api/v1/env/manifest")
    info = ApiClient.structure({"info": body}, "info", ManifestInfo)
    if app.json:
        app.print_json(info)
    else:
        app.print_lines(_manifest_lines(info))


@output_option
@manifest.command("set")
@click.argument("file", metavar="FILE")
@click.pass_context
async def manifest_set(ctx: click.Context, file: str) -> None:
    """Replace the manifest with FILE (JSON; admin role). Agents get it at once.

    A manifest the supervisor refuses prints each problem with its key path (exit 1).
    """
    app = app_of(ctx)
    path = trio.Path(app.io.cwd / file)
    try:
        raw = orjson.loads(await path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        app.fail(EXIT_USAGE, f"cannot read {file} as JSON: {exc}")
    if not is_json_object(raw):
        app.fail(EXIT_USAGE, f"{file}: a manifest is a JSON object")
    async with app.open_api() as api:
        try:
            body = await api.call("PUT", "/api/v1/env/manifest", json_body=raw)
        except ApiError as exc:
            problems = exc.body.get("problems") if exc.body is not None else None
            if exc.code != "invalid_manifest" or not isinstance(problems, list):
                raise
            app.warn(f"error: the supervisor refused {file}:")
            for problem in problems:
                app.warn(f"  {problem}")
            raise click.exceptions.Exit(EXIT_FAILED) from None
    info = ApiClient.structure({"info": body}, "info", ManifestInfo)
    if app.json:
        app.print_json(info)
    else:
        app.print(Text(f"manifest {info.hash} held; projects: {', '.join(info.projects) or '-'}; agents notified"))
