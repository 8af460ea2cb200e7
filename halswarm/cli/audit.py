"""``halctl audit``: the audit log, newest first.

Every command (from people, scripts and policies), every policy alert, suppression and
dry run, and every runtime enable/disable of a policy leaves a row. Filters: ``--actor``
and ``--action`` (a trailing ``*`` matches a prefix: ``--actor 'policy:*'``), ``--target``,
``--since``/``--until`` (RFC 3339, or a duration ago such as ``30m``, ``2h``, ``1d``) and
``--limit``; ``--before ID`` shows the page of older rows (the caption says which id to
pass). ``-o json`` prints ``{"audit": [...]}`` as the API sends it
(:class:`halswarm.audit.AuditEntry`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Final

import asyncclick as click
import orjson
from rich import box
from rich.table import Table
from rich.text import Text

from halswarm.cli.context import app_of, output_option
from halswarm.timeutil import format_ts, parse_ts

if TYPE_CHECKING:
    from halswarm.audit import AuditEntry

__all__ = ["audit", "audit_table", "detail_text", "fitted_table", "parse_time"]

_MAX_LIMIT: Final = 1000
_DURATION: Final = re.compile(r"([0-9]+)([smhd])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WIDE: Final = 120  # ids, sources and full times from this width on
_MEDIUM: Final = 96  # seconds from this width on
_OUTCOME_STYLES: Final = {
    "succeeded": "green",
    "ok": "green",
    "accepted": "cyan",
    "raised": "yellow",
    "dry_run": "yellow",
    "suppressed": "magenta",
    "failed": "bold red",
    "timed_out": "bold red",
    "refused": "bold red",
}


def parse_time(value: str | None, now: dt.datetime, option: str) -> str | None:
    """An RFC 3339 time, or a duration ago (``30m``), as the API's canonical form.

    Raises:
        click.BadParameter: neither (exit 2, naming the option).
    """
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is not None:
        return format_ts(now - dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]]))
    try:
        return format_ts(parse_ts(value))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a duration (30m, 2h, 1d)",
            param_hint=f"'{option}'",
        ) from None


def detail_text(entry: AuditEntry) -> str:
    """The row's detail on one line: its reason or error first, then the rest as key=value."""
    detail = dict(entry.detail)
    parts = [str(detail.pop(key)) for key in ("reason", "error") if isinstance(detail.get(key), str)]
    for key, value in detail.items():
        if value is not None:
            shown = value if isinstance(value, str) else orjson.dumps(value).decode()
            parts.append(f"{key}={shown}")
    return " · ".join(parts)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


_GAP: Final = 3  # between two columns of a SIMPLE_HEAD table without edges


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def fitted_table(
    headers: list[str], rows: list[list[str | Text]], *, width: int, flex: str, right: frozenset[str] = frozenset()
) -> Table:
    """A table of *width* columns at most: every column as wide as its widest cell, except
    *flex*, which gets the rest (clipped with an ellipsis, never wrapped; left out when
    fewer than 10 columns remain for it)."""
    flex_at = headers.index(flex)
    fixed = [max([len(h)] + [len(_plain(r[i])) for r in rows]) for i, h in enumerate(headers) if i != flex_at]
    room = width - sum(fixed) - _GAP * (len(headers) - 1)
    keep_flex = room >= 10
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, header in enumerate(headers):
        if i != flex_at or keep_flex:
            table.add_column(header, no_wrap=True, justify="right" if header in right else "left")
    for r in rows:
        cells = list(r)
        if keep_flex:
            cells[flex_at] = _clip(_plain(cells[flex_at]), room)
        else:
            del cells[flex_at]
        table.add_row(*cells)
    return table


def audit_table(entries: list[AuditEntry], width: int = 120) -> Table:
    """One row per audit entry, newest first, fitted to *width* (the detail is clipped).

    Narrower than 120 columns the id and the source go and times lose their year;
    narrower than 96 they lose their seconds and long names are clipped sooner
    (``-o json`` has everything).
    """
    wide, medium = width >= _WIDE, width >= _MEDIUM
    actor_w, action_w, target_w = (24, 28, 20) if wide else (22, 24, 14) if medium else (16, 20, 11)
    headers = (["ID"] if wide else []) + ["TIME (UTC)", "ACTOR"] + (["SOURCE"] if wide else [])
    headers += ["ACTION", "TARGET", "OUTCOME", "DETAIL"]
    rows: list[list[str | Text]] = []
    for e in entries:
        when = e.ts.replace("T", " ")
        row: list[str | Text] = [str(e.id), when[:19]] if wide else [when[5:19] if medium else when[5:16]]
        row.append(_clip(e.actor, actor_w))
        if wide:
            row.append(e.source)
        row += [_clip(e.action, action_w), _clip(e.target, target_w)]
        row += [Text(e.outcome, style=_OUTCOME_STYLES.get(e.outcome, "")), detail_text(e)]
        rows.append(row)
    return fitted_table(headers, rows, width=width, flex="DETAIL", right=frozenset({"ID"}))


@output_option
@click.command("audit")
@click.option("--actor", metavar="ACTOR", help="Only this actor (api, policy:resume_on_idle...); 'policy:*' for all.")
@click.option("--action", metavar="ACTION", help="Only this action (command.abort_session...); 'policy.*': a prefix.")
@click.option("--target", metavar="TARGET", help="Only this target (a session id, project, node or policy).")
@click.option("--since", metavar="TIME", help="Rows at or after TIME: RFC 3339, or a duration ago (30m, 2h, 1d).")
@click.option("--until", metavar="TIME", help="Rows before TIME (same forms as --since).")
@click.option("-n", "--limit", type=click.IntRange(1, _MAX_LIMIT), default=50, show_default=True, help="Rows to show.")
@click.option("--before", type=click.IntRange(min=1), metavar="ID", help="Only rows older than this id (next page).")
@click.pass_context
async def audit(
    ctx: click.Context,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    before: int | None,
) -> None:
    """Show the audit log, newest first: who did what to which target, and how it went."""
    app = app_of(ctx)
    now = app.io.now()
    since_ts, until_ts = parse_time(since, now, "--since"), parse_time(until, now, "--until")
    async with app.open_api() as api:
        entries = await api.audit(
            limit=limit, actor=actor, action=action, target=target, since=since_ts, until=until_ts, before=before
        )
    if app.json:
        app.print_json({"audit": entries})
        return
    if not entries:
        app.print(Text("no audit rows match"))
        return
    table = audit_table(entries, width=app.io.console.width)
    if len(entries) == limit:
        table.caption = f"{len(entries)} newest rows shown; older ones: halctl audit ... --before {entries[-1].id}"
    else:
        table.caption = f"{len(entries)} rows"
    table.caption_justify = "left"
    app.print(table)
