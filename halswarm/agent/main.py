"""``hal-agent``: runs on every node, drives ``opencode serve`` (or simulated sessions),
forwards session events, executes commands.

Exit codes: 0 stopped cleanly (or ``--validate`` passed), 1 runtime failure, 2 invalid
configuration or arguments.

Signals: SIGTERM/SIGINT stop gracefully (a second one at once); SIGHUP is logged and
otherwise ignored: the agent's config is read at start only (restart it to apply a
change). Under systemd (``Type=notify``) it reports readiness and shutdown and pings
the watchdog (:mod:`halswarm.sdnotify`).
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path
from typing import Final

import asyncclick as click
import trio

from halswarm import __version__
from halswarm.agent.app import BackendFactory, run_agent
from halswarm.agent.opencode.backend import opencode_factory
from halswarm.agent.outbox import OutboxError
from halswarm.agent.simulate import default_projects, simulated_factory
from halswarm.config import AgentConfig, ConfigError, load_agent_config, missing_project_directories
from halswarm.config.agent import DEFAULT_AGENT_CONFIG
from halswarm.obs.logging import LogFormat, configure_logging
from halswarm.runtime import exception_leaves, watch_signals
from halswarm.sdnotify import Notifier

__all__ = ["cli", "main"]

log = logging.getLogger("halswarm.agent")

DEFAULT_CONFIG: Final = DEFAULT_AGENT_CONFIG
EXIT_RUNTIME: Final = 1
EXIT_CONFIG: Final = 2


def _hangup() -> None:
    log.info("SIGHUP received: hal-agent has nothing to reload at runtime; restart it to apply config changes")


async def _serve(
    config: AgentConfig, sessions: int | None, rate: float, max_events: int | None, notifier: Notifier
) -> None:
    node_id = config.resolved_node_id()
    factory: BackendFactory
    if sessions is None:
        projects = list(config.projects)
        # run_agent gives the spawned opencode the manifest's environment (issue #9).
        factory = opencode_factory(config, config.resolved_data_dir())
    else:
        # The agent announces the simulator's projects: the configured ones, or made-up ones.
        projects = list(config.projects) or default_projects(node_id, sessions)
        factory = simulated_factory(
            node_id=node_id, projects=projects, sessions=sessions, rate=rate, max_events=max_events
        )
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(watch_signals, shutdown, nursery.cancel_scope, on_hangup=_hangup))
        await run_agent(config, factory, shutdown=shutdown, projects=projects, notifier=notifier)
        nursery.cancel_scope.cancel()


def _fail_config(source: str, problems: list[str]) -> None:
    click.echo(f"{source}: invalid configuration:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(EXIT_CONFIG)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Agent config file (JSON).",
)
@click.option("--validate", is_flag=True, help="Check the config, print every problem, and exit (0 ok, 2 invalid).")
@click.option(
    "--simulate",
    "sessions",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="Run N simulated sessions instead of driving opencode (demo, tests, load).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="With --simulate: events per second in total (0 = as fast as the link allows).",
)
@click.option(
    "--max-events",
    type=click.IntRange(min=1),
    default=None,
    help="With --simulate: stop producing once this node has emitted this many events.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True)
@click.version_option(__version__, prog_name="hal-agent")
async def cli(
    config_path: Path,
    validate: bool,
    sessions: int | None,
    rate: float,
    max_events: int | None,
    log_level: str,
    log_format: LogFormat,
) -> None:
    """Run a halswarm node agent: drive `opencode serve` for the configured projects (see
    docs/OPENCODE.md), or simulated sessions with --simulate."""
    configure_logging(log_level, log_format)
    try:
        config = load_agent_config(config_path)
    except ConfigError as exc:
        _fail_config(exc.source, exc.problems)
    if validate:
        # The file only: it may be checked on another machine than the node.
        click.echo(f"{config_path}: configuration is valid")
        return
    if sessions is None and (missing := missing_project_directories(config)):
        # opencode accepts any directory and would create sessions in a typo'd path.
        _fail_config(str(config_path), missing)
    configure_logging(log_level, log_format, secrets=config.secrets())
    # Taken out of the environment here: opencode, spawned later, must not inherit them.
    notifier = Notifier.from_environ()
    notifier.enable_fault_dumps()
    try:
        await _serve(config, sessions, rate, max_events, notifier)
    except* OutboxError as group:
        for error in exception_leaves(group):
            log.error("%s", error)
        sys.exit(EXIT_RUNTIME)


def main() -> None:
    """Console-script entry point (runs asyncclick on trio)."""
    cli(_anyio_backend="trio")
