"""``hal-supervisor db backup|migrate|stats``: the operator's tools for the supervisor's database.

Each command reads ``database.path`` (and ``retention_days``) from the supervisor config:
its own ``--config``, else the one given before ``db``, else the default path. Only the
``database`` section is checked beyond types, so a backup job needs no secrets. SQLite
runs in a worker thread; nothing here needs the supervisor to be running or stopped
(except ``migrate --vacuum``: see docs/DATA.md).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import asyncclick as click
import attrs
import orjson
import trio

from halswarm.config import ConfigError
from halswarm.config.supervisor import load_database_config
from halswarm.store import SchemaTooNewError, StoreError
from halswarm.store.backup import STEP_PAGES, backup_database
from halswarm.store.dbfile import migrate_database
from halswarm.store.stats import database_stats

if TYPE_CHECKING:
    from halswarm.config.supervisor import DatabaseConfig
    from halswarm.store.stats import DatabaseStats

__all__ = ["DB_EXIT_CODES_HELP", "EXIT_FAILED", "EXIT_SCHEMA_NEWER", "EXIT_USAGE", "db"]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_SCHEMA_NEWER: Final = 3

DB_EXIT_CODES_HELP: Final = """\b
Exit codes:
  0  done (a backup is written and passed its integrity check)
  1  failed: database missing, unreadable or not a supervisor database;
     backup target exists (without --force) or cannot be written; backup
     failed its integrity check; SQLite error
  2  invalid configuration or usage
  3  the database was migrated by a newer halswarm (never downgraded)"""


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"hal-supervisor db: {message}", err=True)
    sys.exit(code)


def _database(ctx: click.Context, config_path: Path | None) -> DatabaseConfig:
    """The database section of this command's config (or the group's, or the default)."""
    path = config_path or ctx.find_root().params.get("config_path")
    if not isinstance(path, Path):
        _fail(EXIT_USAGE, "no config file given (--config FILE)")
    try:
        return load_database_config(path)
    except ConfigError as exc:
        click.echo(f"{exc.source}: invalid configuration:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_USAGE)


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Supervisor config file [default: the one given before `db`, else the default path].",
)


@click.group("db", epilog=DB_EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
def db() -> None:
    """The supervisor's SQLite database: online backup, migrations, figures (docs/DATA.md)."""


@attrs.define
class _ProgressPrinter:
    """Prints ``copied N/M pages`` to stderr every 10 % (databases of more than one step)."""

    step_pages: int
    printed: int = -1

    def __call__(self, copied: int, total: int) -> None:
        if total <= self.step_pages:
            return
        tenth = copied * 10 // total
        if tenth > self.printed:
            self.printed = tenth
            click.echo(f"  copied {copied}/{total} pages ({copied * 100 // total}%)", err=True)


@db.command("backup", epilog=DB_EXIT_CODES_HELP)
@click.argument("target", metavar="PATH", type=click.Path(path_type=Path))
@_config_option
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
# Progress granularity; hidden: only tests (small databases in many steps) need another.
@click.option("--step-pages", type=click.IntRange(min=1), default=STEP_PAGES, hidden=True)
@click.pass_context
async def backup(ctx: click.Context, target: Path, config_path: Path | None, force: bool, step_pages: int) -> None:
    """Write an online backup of the database to PATH and verify it.

    Safe while the supervisor runs: the backup is the database as committed when it
    began, so it holds every event acknowledged before then. It is written to a
    temporary file beside PATH, checked with PRAGMA integrity_check, then renamed.
    """
    source = Path(_database(ctx, config_path).path)
    started = trio.current_time()
    try:
        result = await trio.to_thread.run_sync(
            functools.partial(
                backup_database,
                source,
                target,
                force=force,
                step_pages=step_pages,
                progress=_ProgressPrinter(step_pages),
            )
        )
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    seconds = trio.current_time() - started
    click.echo(
        f"backup written to {result.path}: {_size(result.bytes)}, {result.events} events, "
        f"{result.pages} pages, in {seconds:.1f} s; integrity check: {result.integrity}"
    )


@db.command("migrate", epilog=DB_EXIT_CODES_HELP)
@_config_option
@click.option(
    "--vacuum",
    is_flag=True,
    help="Also switch a database created before halswarm enabled it to incremental auto-vacuum "
    "(a VACUUM rewrites the file: needs as much free disk, stop the supervisor first).",
)
@click.pass_context
async def migrate(ctx: click.Context, config_path: Path | None, vacuum: bool) -> None:
    """Apply pending schema migrations (the supervisor also does at start); never downgrade."""
    path = Path(_database(ctx, config_path).path)
    started = trio.current_time()
    try:
        result = await trio.to_thread.run_sync(functools.partial(migrate_database, path, vacuum=vacuum))
    except SchemaTooNewError as exc:
        _fail(EXIT_SCHEMA_NEWER, str(exc))
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    if result.applied:
        click.echo(f"{path}: schema version {result.before} -> {result.after} ({', '.join(result.applied)})")
    else:
        click.echo(f"{path}: schema version {result.after}, up to date")
    if result.vacuumed:
        seconds = trio.current_time() - started
        click.echo(f"auto_vacuum: {result.auto_vacuum_before} -> {result.auto_vacuum} (VACUUM took {seconds:.1f} s)")
    elif result.auto_vacuum != "incremental":
        click.echo(
            f"auto_vacuum is {result.auto_vacuum}: retention frees space for reuse but the file never shrinks; "
            "`hal-supervisor db migrate --vacuum` (supervisor stopped) enables it"
        )


@db.command("stats", epilog=DB_EXIT_CODES_HELP)
@_config_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
async def stats(ctx: click.Context, config_path: Path | None, output: str) -> None:
    """Sizes, schema version, rows per table, event times and counts per node, retention."""
    database = _database(ctx, config_path)
    try:
        figures = await trio.to_thread.run_sync(
            functools.partial(database_stats, Path(database.path), retention_days=database.retention_days)
        )
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    if output == "json":
        click.echo(orjson.dumps(attrs.asdict(figures), option=orjson.OPT_INDENT_2).decode())
        return
    for line in _stats_lines(figures):
        click.echo(line)


def _stats_lines(s: DatabaseStats) -> list[str]:
    schema = f"{s.schema_version} (this hal-supervisor: {s.code_schema_version})"
    if s.pending_migrations:
        schema += f"; pending: {', '.join(s.pending_migrations)}"
    if s.newer_migrations:
        schema += f"; from a newer halswarm: {', '.join(s.newer_migrations)}"
    events = s.tables.get("events", 0)
    span = f" (oldest {s.oldest_event}, newest {s.newest_event})" if s.oldest_event else ""
    lines = [
        f"database        {s.path}",
        f"file size       {_size(s.file_bytes)} ({s.page_count} pages of {s.page_size} bytes, {s.freelist_count} free)",
        f"wal size        {_size(s.wal_bytes)}",
        f"journal mode    {s.journal_mode}",
        f"auto vacuum     {s.auto_vacuum}",
        f"schema version  {schema}",
        f"retention       {s.retention_days} days",
        f"events          {events}{span}",
        "rows per table:",
    ]
    width = max((len(name) for name in s.tables), default=0)
    lines += [f"  {name:<{width}}  {rows}" for name, rows in s.tables.items()]
    if s.events_per_node:
        lines.append("events per node:")
        width = max(len(node) for node in s.events_per_node)
        lines += [f"  {node:<{width}}  {n}" for node, n in s.events_per_node.items()]
    return lines
