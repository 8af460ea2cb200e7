"""``halctl``: the operator CLI for a halswarm supervisor (asyncclick on trio, rich output).

Commands::

    halctl nodes list | get NODE
    halctl sessions list [--status S] [--project P] [--node N]
    halctl sessions get SESSION
    halctl sessions logs SESSION [--limit N] [--type T] [--since TIME] [--follow]
    halctl sessions start PROJECT [--prompt P] [--model M] [--agent A]
    halctl sessions inject TARGET PROMPT
    halctl sessions resume TARGET [--prompt P]
    halctl sessions restart TARGET [--no-handover]
    halctl sessions abort TARGET
    halctl sessions kill TARGET
    halctl sessions permissions [--project P] [--node N] [--session S]
    halctl sessions approve REQUEST [--always] [--message TEXT]
    halctl sessions reject REQUEST [--message TEXT]
    halctl sessions answer REQUEST --answer LABEL[,LABEL...] [--answer ...]
    halctl commands get COMMAND_ID [--wait S]
    halctl cost [today|week|month] [--by project|model|provider|day] [--from DAY [--to DAY]]
    halctl policies list | enable NAME | disable NAME
    halctl projects list | complete NAME [--detail TEXT]
    halctl audit [--actor A] [--action A] [--target T] [--since TIME] [--until TIME] [--limit N] [--before ID]
    halctl health
    halctl env status [--node N] [--project P]
    halctl env drift [--node N] [--project P]
    halctl env check|provision [--project P] [--manifest FILE] [--agent-config FILE | --dir DIR] [--dry-run]
    halctl env check|provision --node N [--project P] [--dry-run] [--wait S]
    halctl env approve --node N --project P INSTALL [--wait S]
    halctl env manifest show | set FILE
    halctl agent-md show PROJECT | diff PROJECT
    halctl agent-md sync [--node N] [--project P] [--dry-run] [--wait S]

Session commands take ``--wait S`` (default 60) and ``--idempotency-key K``. Every
command takes ``-o/--output table|json``; JSON is the API's own shape, for scripts.
Settings (URL and token) are resolved as described in :mod:`halswarm.cli.settings`.

Exit codes: 0 ok; 1 the command failed or timed out (the agent reported a failure or
gave no answer) or another API error; 2 usage error (click's default, also a bad
config file); 3 supervisor unreachable; 4 authentication failed; 5 not found; ``env
status|check|provision`` only: 6 a project is degraded, 7 a project is missing. Errors
go to standard error as one line, never a traceback.

Embedding and tests: ``await cli.main([...], standalone_mode=False, obj=Io(...))``
returns the exit code for errors halctl reports itself (``None`` on success) and
raises ``click.ClickException`` for usage errors.
"""

from __future__ import annotations

from pathlib import Path

import asyncclick as click
from rich.text import Text

from halswarm import __version__
from halswarm.cli.actions import SESSION_ACTIONS, commands
from halswarm.cli.agent_md import agent_md
from halswarm.cli.audit import audit
from halswarm.cli.client import ClientError
from halswarm.cli.context import OUTPUT_FORMATS, App, Io, app_of, fail, output_option
from halswarm.cli.cost import cost
from halswarm.cli.env import env
from halswarm.cli.exits import EXIT_CODES_HELP, EXIT_USAGE, describe_error
from halswarm.cli.hitl import PENDING_COMMANDS
from halswarm.cli.logs import logs
from halswarm.cli.nodes import nodes
from halswarm.cli.policies import policies
from halswarm.cli.projects import projects
from halswarm.cli.sessions import sessions
from halswarm.cli.settings import DEFAULT_URL, SettingsError, resolve_settings

__all__ = ["cli", "main"]

_EPILOG = f"""{EXIT_CODES_HELP}

\b
Settings, first found wins:
  --url / --token / --ca-file
  HALCTL_URL / HALCTL_TOKEN (or HALSWARM_AUTH_TOKEN) / HALSWARM_CA_FILE
  ./.halswarm/halctl.json   {{"url": "...", "token": "...", "ca_file": "..."}}
  $XDG_CONFIG_HOME/halswarm/halctl.json (~/.config/...)
--config FILE replaces the two files. Default URL: {DEFAULT_URL}"""


class HalctlGroup(click.Group):
    """The root group: turns client errors into one stderr line and an exit code."""

    async def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand; a :class:`ClientError` becomes its exit code (exits.py)."""
        try:
            return await super().invoke(ctx)
        except ClientError as exc:
            app = app_of(ctx)
            code, message = describe_error(exc, app.settings)
            app.fail(code, message)


@click.group(
    cls=HalctlGroup,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--url", metavar="URL", help=f"Supervisor URL [default: {DEFAULT_URL}].")
@click.option("--token", metavar="TOKEN", help="API token (prefer HALCTL_TOKEN: flags show up in ps).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Read url/token from this JSON file instead of the usual ones.",
)
@click.option(
    "--ca-file",
    metavar="FILE",
    help="PEM file of the CA that signed an https:// supervisor's certificate [default: system CAs].",
)
@click.option(
    "-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True, help="Output format."
)
@click.version_option(__version__, prog_name="halctl")
@click.pass_context
def cli(
    ctx: click.Context, url: str | None, token: str | None, config_path: Path | None, ca_file: str | None, output: str
) -> None:
    """Operate a halswarm fleet: nodes, agent sessions and their commands."""
    io = ctx.obj if isinstance(ctx.obj, Io) else Io()
    try:
        settings = resolve_settings(url=url, token=token, config=config_path, env=io.env, cwd=io.cwd, ca_file=ca_file)
    except SettingsError as exc:
        fail(io, EXIT_USAGE, str(exc))
    ctx.obj = App(io, settings, output="json" if output == "json" else "table")


@output_option
@cli.command("health")
@click.pass_context
async def health(ctx: click.Context) -> None:
    """Check that the supervisor answers (GET /healthz, no token needed)."""
    app = app_of(ctx)
    async with app.open_api() as api:
        body = await api.health()
    if app.json:
        app.print_json(body)
        return
    status = body.get("status")
    app.print(Text(f"supervisor at {app.settings.url}: {status if isinstance(status, str) else 'unknown'}"))


sessions.add_command(logs)
for _action in (*SESSION_ACTIONS, *PENDING_COMMANDS):
    sessions.add_command(_action)
cli.add_command(nodes)
cli.add_command(sessions)
cli.add_command(commands)
cli.add_command(cost)
cli.add_command(policies)
cli.add_command(projects)
cli.add_command(audit)
cli.add_command(env)
cli.add_command(agent_md)


def main() -> None:
    """Console-script entry point (runs asyncclick on trio)."""
    cli(_anyio_backend="trio")
