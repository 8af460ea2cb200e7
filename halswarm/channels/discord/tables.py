"""Answers to the read commands: /status, /nodes, /logs and /cost (pure, clock injected).

Lists go into a code block in the embed description (≤ 4096 characters): monospace
columns read well on desktop and mobile, and one description holds far more rows than
25 fields would. Rows that do not fit are counted in a last line ("… and 12 more"), so a
big fleet still gets a valid message and knows it is cut. Agent text inside code blocks
has its backticks replaced, so it cannot close the block.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Final

from halswarm.channels.discord.messages import (
    EMBED_DESCRIPTION_MAX,
    EMBED_FIELD_VALUE_MAX,
    EMBED_FIELDS_MAX,
    Embed,
    EmbedField,
    Message,
    text_length,
    truncate,
)
from halswarm.channels.discord.render import COLOR_ERROR, COLOR_INFO, STATUS_EMOJI, format_duration
from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from halswarm.cost.model import CostReport, TokenCounts
    from halswarm.models import Event, Node, Session

__all__ = ["code_block", "cost_message", "logs_message", "nodes_message", "status_message"]

_FENCE: Final = "```"
_ID_WIDTH: Final = 16
_NAME_WIDTH: Final = 18
_EVENT_TEXT_MAX: Final = 120


def _clean(text: str) -> str:
    """One line of agent text that cannot break out of a code block."""
    return " ".join(text.replace("`", "'").split())


def code_block(lines: Sequence[str], *, limit: int = EMBED_DESCRIPTION_MAX, keep: str = "head") -> str:
    """*lines* in a code block of at most *limit* characters.

    Args:
        lines: the rows, already formatted.
        limit: the size of the whole text, fences included.
        keep: ``head`` keeps the first rows, ``tail`` the last (for logs: the newest).

    Returns:
        The block; when rows are left out, a last line says how many.
    """
    budget = limit - 2 * len(_FENCE) - 2 - len("\n… and 1000000 more")
    rows = list(lines) if keep == "head" else list(reversed(lines))
    chosen: list[str] = []
    used = 0
    for row in rows:
        size = text_length(row) + 1
        if used + size > budget:
            break
        chosen.append(row)
        used += size
    if keep == "tail":
        chosen.reverse()
    text = _FENCE + "\n" + "\n".join(chosen) + "\n" + _FENCE
    left_out = len(lines) - len(chosen)
    if left_out:
        where = "more" if keep == "head" else "earlier"
        text += f"\n… and {left_out} {where}"
    return text


def _ago(ts: str | None, now: datetime) -> str:
    if not ts:
        return "-"
    try:
        return format_duration((now - parse_ts(ts)).total_seconds()) + " ago"
    except ValueError:
        return "-"


def _cell(text: str, width: int) -> str:
    text = _clean(text)
    return truncate(text, width).ljust(width)


def status_message(sessions: Sequence[Session], *, now: datetime, project: str | None = None) -> Message:
    """``/status [project]``: one row per session, a count per status in the footer."""
    title = f"Sessions of {project}" if project else "Sessions"
    if not sessions:
        where = f" for project {project}" if project else ""
        return Message(embeds=(Embed(title=title, description=f"No sessions{where}.", color=COLOR_INFO),))
    ordered = sorted(sessions, key=lambda s: (s.project, s.status, s.id))
    header = f"  {'SESSION':<{_ID_WIDTH}} {'PROJECT':<{_NAME_WIDTH}} {'STATUS':<11} {'TOKENS':>9} {'COST':>8}  ACTIVE"
    rows = [header] + [
        f"{STATUS_EMOJI.get(s.status, '?')} {_cell(s.id, _ID_WIDTH)} {_cell(s.project, _NAME_WIDTH)} "
        f"{s.status:<11} {s.tokens.total():>9,} {f'${s.cost_usd:,.2f}':>8}  {_ago(s.last_activity, now)}"
        for s in ordered
    ]
    counts = collections.Counter(s.status for s in sessions)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    embed = Embed(
        title=title,
        description=code_block(rows),
        color=COLOR_INFO,
        footer=f"{len(sessions)} sessions: {summary}",
    )
    return Message(embeds=(embed,))


def nodes_message(nodes: Sequence[Node], *, now: datetime) -> Message:
    """``/nodes``: one row per node with its status, sessions, load and last heartbeat."""
    if not nodes:
        return Message(embeds=(Embed(title="Nodes", description="No nodes have connected yet.", color=COLOR_INFO),))
    marks = {"online": "🟢", "degraded": "🟠", "offline": "⚫"}
    header = f"  {'NODE':<{_NAME_WIDTH}} {'STATUS':<9} {'SESS':>4} {'CPU':>5} {'MEM MB':>8}  HEARTBEAT"
    rows = [header] + [
        f"{marks.get(n.status, '?')} {_cell(n.id, _NAME_WIDTH)} {n.status:<9} {n.sessions:>4} "
        f"{n.resources.cpu_percent:>4.0f}% {n.resources.mem_used_mb:>8,.0f}  {_ago(n.last_heartbeat, now)}"
        for n in sorted(nodes, key=lambda n: n.id)
    ]
    online = sum(1 for n in nodes if n.status == "online")
    embed = Embed(
        title="Nodes", description=code_block(rows), color=COLOR_INFO, footer=f"{online} of {len(nodes)} online"
    )
    return Message(embeds=(embed,))


def _event_summary(event: Event) -> str:
    for key in ("title", "error", "message", "text", "status"):
        value = event.data.get(key)
        if isinstance(value, str) and value:
            return truncate(_clean(value), _EVENT_TEXT_MAX)
    return ""


def logs_message(target: str, events: Sequence[Event]) -> Message:
    """``/logs <target> [count]``: the events oldest first; the newest kept if they do not all fit."""
    title = f"Events of {target}"
    if not events:
        return Message(embeds=(Embed(title=title, description="No events yet.", color=COLOR_INFO),))
    rows = []
    for e in events:
        clock = e.ts[11:19] if len(e.ts) >= 19 else e.ts
        rows.append(f"{clock} {e.type:<22} {_event_summary(e)}".rstrip())
    embed = Embed(title=title, description=code_block(rows, keep="tail"), color=COLOR_INFO, footer="times in UTC")
    return Message(embeds=(embed,))


def _tokens(t: TokenCounts) -> str:
    return f"{t.input + t.cache_read + t.cache_write:,} in / {t.output:,} out"


def cost_message(report: CostReport) -> Message:
    """``/cost [period]``: total and daily average, then one field per provider with its models."""
    span = report.start if report.start == report.end else f"{report.start} to {report.end}"
    lines = [
        f"**Total ${report.total_usd:,.2f}** · daily average ${report.daily_average_usd:,.2f}",
        f"Tokens: {_tokens(report.tokens)}",
    ]
    if report.bill_usd is not None and report.bill_usd != report.total_usd:
        lines.append(f"Provider bill ${report.bill_usd:,.2f}; the rest is opencode's estimate")
    fields: list[EmbedField] = []
    providers = sorted(report.providers, key=lambda p: -p.cost_usd)
    for provider in providers[: EMBED_FIELDS_MAX - 1]:
        models = sorted(provider.models, key=lambda m: -m.cost_usd)
        body = "\n".join(f"{_clean(m.model) or '?'}: ${m.cost_usd:,.2f} ({_tokens(m.tokens)})" for m in models)
        fields.append(
            EmbedField(
                f"{provider.provider}: ${provider.cost_usd:,.2f}",
                truncate(body or "-", EMBED_FIELD_VALUE_MAX),
            )
        )
    if len(providers) > EMBED_FIELDS_MAX - 1:
        fields.append(EmbedField("…", f"and {len(providers) - (EMBED_FIELDS_MAX - 1)} more providers"))
    failing = [s for s in report.sources if s.status == "error"]
    footer = "; ".join(f"{s.provider}: polling fails ({truncate(s.last_error or '?', 80)})" for s in failing)
    embed = Embed(
        title=f"Cost: {report.period or 'custom'} ({span})",
        description="\n".join(lines),
        color=COLOR_ERROR if failing else COLOR_INFO,
        fields=tuple(fields),
        footer=footer,
    )
    return Message(embeds=(embed,))
