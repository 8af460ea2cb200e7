"""Session control commands (``halctl sessions start|inject|resume|restart|abort|kill``)
and ``halctl commands get``.

Each submits one command through ``POST /api/v1/commands?wait=S`` and prints its
outcome in one line, e.g. ``restart_session on proj-1: succeeded — new session ses_…``.
Exit code 0 when it succeeded (or was only accepted, with ``--wait 0``); 1 when the
agent reported a failure, the command timed out, the node is offline, or no outcome
arrived within ``--wait`` seconds (the command id is printed to check on it later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeVar

import asyncclick as click
import attrs
from rich.text import Text

from halswarm.cli.client import ApiError
from halswarm.cli.context import App, app_of, output_option
from halswarm.cli.exits import EXIT_FAILED
from halswarm.cli.render import command_detail, follow_up_hint, outcome_line, pending_line
from halswarm.cli.sessions import with_session_prefix
from halswarm.commands import SESSION_TARGETED, CommandRequest, PromptArgs, RestartArgs, ResumeArgs, StartArgs
from halswarm.convert import unstructure
from halswarm.jsontypes import is_json_object

if TYPE_CHECKING:
    from halswarm.cli.client import ApiClient
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Command, CommandType

__all__ = ["SESSION_ACTIONS", "command_args", "command_options", "commands", "run_command"]

DEFAULT_WAIT: Final = 60.0
MAX_WAIT: Final = 300.0  # the API's limit

C = TypeVar("C", bound=click.Command)


def command_options(command: C) -> C:
    """``--wait`` and ``--idempotency-key``; apply above ``@click.command()``."""
    wait = click.option(
        "--wait",
        type=click.FloatRange(0, MAX_WAIT),
        default=DEFAULT_WAIT,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for the outcome (0: submit and return).",
    )
    key = click.option(
        "--idempotency-key",
        metavar="KEY",
        default=None,
        help="Submitting the same command again with this key returns the first one instead of repeating it.",
    )
    return output_option(key(wait(command)))


def command_args(value: object) -> JSONObject:
    """Command arguments from their shared attrs schema, without the unset ones."""
    data = unstructure(value)
    assert is_json_object(data)
    return {k: v for k, v in data.items() if v is not None}


async def _submit(app: App, api: ApiClient, request: CommandRequest, wait: float) -> Command:
    """Submit; a session-targeted command may name a session by a unique id prefix."""

    async def submit_to(target: str) -> Command:
        return await api.submit(attrs.evolve(request, target=target), wait=wait)

    if request.type not in SESSION_TARGETED:
        return await submit_to(request.target)
    return await with_session_prefix(app, api, request.target, submit_to)


def _report(app: App, command: Command, wait: float, *, detail: bool = False) -> None:
    """Print the command's outcome; exit 1 unless it succeeded (or was only accepted)."""
    if app.json:
        app.print_json({"command": command})
    elif detail:
        app.print(command_detail(command))
    if command.status == "succeeded":
        if not app.json:
            app.io.console.print(Text(outcome_line(command)), soft_wrap=True)
        return
    if command.status in ("failed", "timed_out"):
        app.warn(outcome_line(command))
        raise click.exceptions.Exit(EXIT_FAILED)
    if wait == 0:
        if not app.json:
            line = f"{command.type} on {command.target}: accepted — {follow_up_hint(command)}"
            app.io.console.print(Text(line), soft_wrap=True)
        return
    app.warn(pending_line(command, wait))
    raise click.exceptions.Exit(EXIT_FAILED)


async def run_command(
    ctx: click.Context,
    command_type: CommandType,
    target: str,
    args: JSONObject,
    *,
    wait: float,
    idempotency_key: str | None,
) -> None:
    """Submit one command, wait up to *wait* seconds and print its outcome.

    Raises:
        click.exceptions.Exit: exit code 1 when it failed, timed out or gave no outcome in time.
        ClientError: API errors without a command (the root group turns them into exit codes).
    """
    app = app_of(ctx)
    request = CommandRequest(type=command_type, target=target, args=args, idempotency_key=idempotency_key or None)
    async with app.open_api() as api:
        try:
            command = await _submit(app, api, request, wait)
        except ApiError as exc:
            if exc.command is None:
                raise
            command = exc.command  # failed, timed out, or the node is offline
    _report(app, command, wait)


@command_options
@click.command("start")
@click.argument("project")
@click.option("--prompt", help="First prompt (default: continue from .context/PROGRESS.md).")
@click.option("--model", help="Model as provider/model, e.g. anthropic/claude-sonnet-4.")
@click.option("--agent", help="opencode agent to run.")
@click.pass_context
async def start(
    ctx: click.Context,
    project: str,
    prompt: str | None,
    model: str | None,
    agent: str | None,
    wait: float,
    idempotency_key: str | None,
) -> None:
    """Start a new session for PROJECT on the node that hosts it."""
    args = command_args(StartArgs(prompt=prompt, model=model, agent=agent))
    await run_command(ctx, "start_session", project, args, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("inject")
@click.argument("target")
@click.argument("prompt")
@click.pass_context
async def inject(ctx: click.Context, target: str, prompt: str, wait: float, idempotency_key: str | None) -> None:
    """Send PROMPT to a session (TARGET: session id or project name)."""
    args = command_args(PromptArgs(prompt=prompt))
    await run_command(ctx, "prompt_session", target, args, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("resume")
@click.argument("target")
@click.option("--prompt", help="What to continue with (default: the configured continue prompt).")
@click.pass_context
async def resume(ctx: click.Context, target: str, prompt: str | None, wait: float, idempotency_key: str | None) -> None:
    """Resume an idle or stuck session."""
    args = command_args(ResumeArgs(prompt=prompt))
    await run_command(ctx, "resume_session", target, args, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("restart")
@click.argument("target")
@click.option(
    "--handover/--no-handover",
    default=True,
    show_default=True,
    help="Have the old session write its context to .context/ first.",
)
@click.pass_context
async def restart(ctx: click.Context, target: str, handover: bool, wait: float, idempotency_key: str | None) -> None:
    """End a session and start its successor; prints the new session id."""
    args = command_args(RestartArgs(handover=handover))
    await run_command(ctx, "restart_session", target, args, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("abort")
@click.argument("target")
@click.pass_context
async def abort(ctx: click.Context, target: str, wait: float, idempotency_key: str | None) -> None:
    """Stop a session's current turn; the session stays and goes idle."""
    await run_command(ctx, "abort_session", target, {}, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("kill")
@click.argument("target")
@click.pass_context
async def kill(ctx: click.Context, target: str, wait: float, idempotency_key: str | None) -> None:
    """End a session for good (it becomes completed)."""
    await run_command(ctx, "kill_session", target, {}, wait=wait, idempotency_key=idempotency_key)


#: Added to ``halctl sessions`` by :mod:`halswarm.cli.main`.
SESSION_ACTIONS: Final[tuple[click.Command, ...]] = (start, inject, resume, restart, abort, kill)


@click.group()
def commands() -> None:
    """Commands sent through the supervisor, and their outcomes."""


@output_option
@commands.command("get")
@click.argument("command_id", metavar="COMMAND_ID")
@click.option(
    "--wait",
    type=click.FloatRange(0, MAX_WAIT),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait up to this long for a running command to finish.",
)
@click.pass_context
async def get_command(ctx: click.Context, command_id: str, wait: float) -> None:
    """Show a command and its outcome (exit 1 if it failed or timed out)."""
    app = app_of(ctx)
    async with app.open_api() as api:
        try:
            command = await api.command(command_id, wait=wait)
        except ApiError as exc:
            if exc.command is None:
                raise
            command = exc.command
    _report(app, command, wait, detail=True)
