"""``hal-supervisor``: the central hub, and ``hal-supervisor db ...`` for its database.

Exit codes: 0 stopped cleanly (or ``--validate`` passed), 1 runtime failure (port in
use, database unusable), 2 invalid configuration, 3 the database was migrated by a newer
halswarm. The ``db`` commands' codes are in :mod:`halswarm.supervisor.db_cli`.

Signals: SIGTERM/SIGINT stop gracefully (a second one at once); SIGHUP reloads the
config file (:mod:`halswarm.supervisor.reload`). Under systemd (``Type=notify``) it
reports readiness, reloads, shutdown and watchdog pings (:mod:`halswarm.sdnotify`).
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import asyncclick as click
import trio

from halswarm import __version__
from halswarm.config import ConfigError, load_supervisor_config
from halswarm.obs.logging import LogFormat, configure_logging
from halswarm.runtime import exception_leaves, watch_signals
from halswarm.sdnotify import Notifier
from halswarm.store import SchemaTooNewError, StoreError
from halswarm.supervisor.app import run_supervisor
from halswarm.supervisor.db_cli import EXIT_SCHEMA_NEWER, db
from halswarm.supervisor.reload import ReloadRequest

if TYPE_CHECKING:
    from halswarm.config.supervisor import SupervisorConfig

__all__ = ["cli", "main"]

log = logging.getLogger("halswarm.supervisor")

DEFAULT_CONFIG: Final = "/etc/hal-o-swarm/supervisor.config.json"
EXIT_RUNTIME: Final = 1
EXIT_CONFIG: Final = 2

_EPILOG: Final = """\b
Exit codes:
  0  stopped cleanly, or --validate passed
  1  runtime failure (port in use, database unusable)
  2  invalid configuration
  3  the database was migrated by a newer halswarm (never downgraded)

\b
Database commands (hal-supervisor db --help):
  hal-supervisor db backup PATH [--config FILE] [--force]
  hal-supervisor db migrate [--config FILE] [--vacuum]
  hal-supervisor db stats [--config FILE] [--output json]"""


async def _serve(config: SupervisorConfig, config_path: Path, notifier: Notifier) -> None:
    shutdown = trio.Event()
    # One reload waiting is enough: a SIGHUP while one is queued reads the same file.
    send, receive = trio.open_memory_channel[ReloadRequest](1)

    def hangup() -> None:
        try:
            send.send_nowait(ReloadRequest("signal:SIGHUP", "signal"))
        except trio.WouldBlock:
            log.info("SIGHUP received: a config reload is already queued")
        else:
            log.info("SIGHUP received: reloading the config file")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(watch_signals, shutdown, nursery.cancel_scope, on_hangup=hangup))
        await run_supervisor(
            config, shutdown=shutdown, notifier=notifier, config_path=config_path, reload_requests=receive
        )
        nursery.cancel_scope.cancel()


@click.group(
    invoke_without_command=True,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Supervisor config file (JSON).",
)
@click.option("--validate", is_flag=True, help="Check the config, print every problem, and exit (0 ok, 2 invalid).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True)
@click.version_option(__version__, prog_name="hal-supervisor")
@click.pass_context
async def cli(ctx: click.Context, config_path: Path, validate: bool, log_level: str, log_format: LogFormat) -> None:
    """Run the halswarm supervisor: agent hub, HTTP API and storage.

    With a subcommand (`db ...`), run that instead; its --config defaults to this one.
    """
    configure_logging(log_level, log_format)
    if ctx.invoked_subcommand is not None:
        if validate:
            raise click.UsageError("--validate cannot be combined with a subcommand")
        return
    try:
        config = load_supervisor_config(config_path)
    except ConfigError as exc:
        click.echo(f"{exc.source}: invalid configuration:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    if validate:
        click.echo(f"{config_path}: configuration is valid")
        return
    configure_logging(log_level, log_format, secrets=config.secrets())
    notifier = Notifier.from_environ()
    notifier.enable_fault_dumps()
    try:
        # Absolute: the audit rows of reloads name the file.
        await _serve(config, Path(await trio.Path(config_path).absolute()), notifier)
    except* SchemaTooNewError as newer:
        for schema_error in exception_leaves(newer):
            log.error("%s", schema_error)
        sys.exit(EXIT_SCHEMA_NEWER)
    except* StoreError as group:
        for store_error in exception_leaves(group):
            log.error("%s", store_error)
        sys.exit(EXIT_RUNTIME)
    except* OSError as os_group:
        for os_error in exception_leaves(os_group):
            log.error("cannot start: %s", os_error)
        sys.exit(EXIT_RUNTIME)


cli.add_command(db)


def main() -> None:
    """Console-script entry point (runs asyncclick on trio)."""
    cli(_anyio_backend="trio")
