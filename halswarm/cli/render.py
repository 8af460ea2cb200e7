"""Rich renderings of nodes, sessions, events and commands (pure: no I/O here).

Times shown relative ("12s ago") are computed against the ``now`` passed in, so the
wall clock stays injected (house-style rule 14).
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, Final

import orjson
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import RenderableType

    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import Command, Event, Node, Session

__all__ = [
    "ago",
    "command_detail",
    "event_line",
    "follow_up_hint",
    "node_detail",
    "nodes_table",
    "outcome_line",
    "pending_line",
    "relative",
    "session_detail",
    "sessions_table",
    "sessions_totals",
    "short_id",
    "status_text",
    "usd",
]

SHORT_ID_LEN: Final = 12  # "ses_" plus 8 hex digits: unique in practice, and accepted as a prefix
_SUMMARY_MAX: Final = 200

STATUS_STYLES: Final[dict[str, str]] = {
    # sessions
    "starting": "cyan",
    "busy": "green",
    "idle": "blue",
    "retry": "yellow",
    "waiting": "bold magenta",
    "error": "bold red",
    "completed": "dim",
    "unreachable": "red",
    # nodes
    "online": "green",
    "degraded": "yellow",
    "offline": "red",
    # commands
    "pending": "cyan",
    "sent": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "timed_out": "bold red",
}


def status_text(status: str) -> Text:
    """A status word in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def short_id(value: str) -> str:
    """An id cut to :data:`SHORT_ID_LEN` characters (halctl accepts unique prefixes)."""
    return value if len(value) <= SHORT_ID_LEN else value[:SHORT_ID_LEN]


_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60))


def relative(ts: str | None, now: datetime, *, future: bool = False) -> str:
    """How far an RFC 3339 time is from *now*, in its largest whole unit.

    ``"12s ago"``, ``"3m ago"``... (``"just now"`` under a second); with *future*
    ``"in 12m"``, ``"in 3h"``... (``"now"``). ``"-"`` when there is no time, the text
    itself when it is not one.
    """
    if not ts:
        return "-"
    try:
        seconds = (parse_ts(ts) - now).total_seconds()
    except ValueError:
        return ts
    if not future:
        seconds = -seconds
    if seconds < 1:
        return "now" if future else "just now"
    span = next((f"{int(seconds // size)}{unit}" for unit, size in _UNITS if seconds >= size), f"{int(seconds)}s")
    return f"in {span}" if future else f"{span} ago"


def ago(ts: str | None, now: datetime) -> str:
    """``"12s ago"``, ``"3m ago"``... for an RFC 3339 time; ``"-"`` when unknown (see :func:`relative`)."""
    return relative(ts, now)


def _when(ts: str | None, now: datetime) -> str:
    """The time itself and how long ago it was."""
    return f"{ts} ({ago(ts, now)})" if ts else "-"


def usd(value: float, *, decimals: int = 2) -> str:
    """Dollars with *decimals* places: ``$1,234.50``, ``-$0.25``.

    A non-zero amount smaller than the last place keeps two significant digits instead
    (``$0.0004``, ``$0.000012``), so a small spend never reads as no spend.
    """
    sign = "-" if value < 0 else ""
    size = abs(value)
    if 0 < size < 10**-decimals:
        places = 1 - math.floor(math.log10(size))  # two significant digits
        digits = f"{size:.{places}f}".rstrip("0").removesuffix(".")
        return f"{sign}${digits}"
    return f"{sign}${size:,.{decimals}f}"


def _usd(value: float) -> str:
    return usd(value, decimals=4)


def _mem(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _details(title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    if title:
        table.title = title
        table.title_justify = "left"
        table.title_style = "bold"
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


# ---- nodes ------------------------------------------------------------------------------


_DROP_HOSTNAME_BELOW: Final = 100


def nodes_table(nodes: list[Node], now: datetime, width: int = 120) -> Table:
    """One row per node: id, status, hostname, projects, sessions, cpu/mem, heartbeat.

    On terminals narrower than 100 columns the hostname is left out (``nodes get`` has
    it); project names are never broken.
    """
    show_host = width >= _DROP_HOSTNAME_BELOW
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("NODE", no_wrap=True, min_width=8)
    table.add_column("STATUS", no_wrap=True, min_width=8)
    if show_host:
        table.add_column("HOSTNAME", overflow="fold", max_width=20)
    longest = max((len(p.name) for n in nodes for p in n.projects), default=8)
    table.add_column("PROJECTS", overflow="fold", min_width=min(longest, 24))
    table.add_column("SESSIONS", justify="right", no_wrap=True)
    table.add_column("CPU / MEM", justify="right", no_wrap=True)
    table.add_column("HEARTBEAT", no_wrap=True, min_width=9)
    for node in nodes:
        row: list[str | Text] = [node.id, status_text(node.status)]
        if show_host:
            row.append(node.hostname or "-")
        row += [
            "\n".join(p.name for p in node.projects) or "-",
            str(node.sessions),
            f"{node.resources.cpu_percent:.0f}% / {_mem(node.resources.mem_used_mb)}",
            ago(node.last_heartbeat, now),
        ]
        table.add_row(*row)
    online = sum(1 for n in nodes if n.status == "online")
    table.caption = f"{len(nodes)} nodes, {online} online"
    table.caption_justify = "left"
    return table


def node_detail(node: Node, now: datetime) -> RenderableType:
    """Every field of a node, its projects, health checks and facts."""
    table = _details()
    table.add_row("id", node.id)
    table.add_row("status", status_text(node.status))
    table.add_row("hostname", node.hostname or "-")
    table.add_row("version", node.version or "-")
    table.add_row("sessions", str(node.sessions))
    table.add_row("cpu", f"{node.resources.cpu_percent:.1f}%")
    table.add_row("memory used", _mem(node.resources.mem_used_mb))
    table.add_row("disk used", f"{node.resources.disk_used_gb:.1f} GB")
    table.add_row("last heartbeat", _when(node.last_heartbeat, now))
    table.add_row("connected at", _when(node.connected_at, now))
    parts: list[RenderableType] = [table]
    projects = _details("projects")
    for project in node.projects:
        projects.add_row(project.name, project.directory)
    parts.append(projects if node.projects else Text("projects: none"))
    health = _details("health")
    for name, state in sorted(node.health.items()):
        health.add_row(name, Text(state, style="green" if state == "ok" else "yellow"))
    parts.append(health if node.health else Text("health: nothing reported"))
    if node.facts:
        facts = _details("facts")
        for name, value in sorted(node.facts.items()):
            facts.add_row(name, value)
        parts.append(facts)
    return Group(*parts)


# ---- sessions ---------------------------------------------------------------------------


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


# Columns a narrow terminal drops first, and the width below which each goes.
_DROP_NODE_BELOW: Final = 110
_DROP_TITLE_BELOW: Final = 90
_FIXED: Final = 12 + 11 + 7 + 8 + 8  # session, status, tokens, cost, active


def sessions_table(sessions: list[Session], now: datetime, width: int = 120) -> Table:
    """One row per session, fitted to *width* columns.

    Session id, status, tokens, cost and activity always show in full; on narrow
    terminals the node and then the title columns are dropped (``sessions get`` has
    them) and long text is clipped with an ellipsis rather than wrapped. Ids are
    shortened; any unique prefix is accepted back.
    """
    show_node = width >= _DROP_NODE_BELOW
    show_title = width >= _DROP_TITLE_BELOW
    project_w = min(20, max((len(s.project) for s in sessions), default=7))
    node_w = min(16, max((len(s.node_id) for s in sessions), default=4)) if show_node else 0
    columns = 6 + show_node + show_title
    title_w = max(10, width - _FIXED - project_w - node_w - 3 * (columns - 1))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("SESSION", no_wrap=True, min_width=12)
    table.add_column("PROJECT", no_wrap=True)
    if show_node:
        table.add_column("NODE", no_wrap=True)
    table.add_column("STATUS", no_wrap=True, min_width=11)
    if show_title:
        table.add_column("TITLE", no_wrap=True)
    table.add_column("TOKENS", justify="right", no_wrap=True, min_width=7)
    table.add_column("COST", justify="right", no_wrap=True, min_width=8)
    table.add_column("ACTIVE", no_wrap=True, min_width=8)
    for s in sessions:
        row: list[str | Text] = [short_id(s.id), _clip(s.project, project_w)]
        if show_node:
            row.append(_clip(s.node_id, node_w))
        row.append(status_text(s.status))
        if show_title:
            row.append(_clip(s.title or "-", title_w))
        row += [f"{s.tokens.total():,}", _usd(s.cost_usd), ago(s.last_activity, now)]
        table.add_row(*row)
    return table


def sessions_totals(sessions: list[Session]) -> Text:
    """``6 sessions (3 busy, 2 idle, 1 waiting) · 123,456 tokens · $1.2345``."""
    counts = collections.Counter(s.status for s in sessions)
    by_status = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    tokens = sum(s.tokens.total() for s in sessions)
    cost = sum(s.cost_usd for s in sessions)
    text = Text(f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}", style="bold")
    if by_status:
        text.append(f" ({by_status})")
    text.append(f" · {tokens:,} tokens · {_usd(cost)}")
    return text


def session_detail(session: Session, now: datetime) -> RenderableType:
    """Every field of a session, with its pending permissions and questions."""
    s = session
    table = _details()
    table.add_row("id", s.id)
    table.add_row("project", s.project)
    table.add_row("node", s.node_id)
    table.add_row("directory", s.directory or "-")
    table.add_row("status", status_text(s.status))
    table.add_row("title", s.title or "-")
    table.add_row("model", s.model or "-")
    table.add_row("current task", s.current_task or "-")
    t = s.tokens
    table.add_row(
        "tokens",
        f"{t.total():,} total (input {t.input:,}, output {t.output:,}, reasoning {t.reasoning:,}, "
        f"cache read {t.cache_read:,}, cache write {t.cache_write:,})",
    )
    table.add_row("cost", _usd(s.cost_usd))
    table.add_row("compactions", str(s.compaction_count))
    table.add_row("consecutive errors", str(s.consecutive_errors))
    table.add_row("predecessor", s.predecessor_id or "-")
    table.add_row("started", _when(s.started_at, now))
    table.add_row("last activity", _when(s.last_activity, now))
    parts: list[RenderableType] = [table]
    if s.pending.is_empty():
        parts.append(Text("pending: nothing waits for a human"))
    if s.pending.permissions:
        permissions = Table(
            title="pending permissions", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
        )
        for column in ("REQUEST", "PERMISSION", "PATTERNS", "TITLE", "ASKED"):
            permissions.add_column(column, overflow="fold")
        for p in s.pending.permissions:
            permissions.add_row(p.id, p.permission, ", ".join(p.patterns) or "-", p.title or "-", ago(p.asked_at, now))
        parts.append(permissions)
    if s.pending.questions:
        questions = Table(
            title="pending questions", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
        )
        for column in ("REQUEST", "QUESTION", "OPTIONS", "ASKED"):
            questions.add_column(column, overflow="fold")
        for q in s.pending.questions:
            for i, item in enumerate(q.questions or []):
                label = f"{item.header}: {item.question}" if item.header else item.question
                questions.add_row(
                    q.id if i == 0 else "",
                    label,
                    " | ".join(item.options) or "-",
                    ago(q.asked_at, now) if i == 0 else "",
                )
            if not q.questions:
                questions.add_row(q.id, "-", "-", ago(q.asked_at, now))
        parts.append(questions)
    return Group(*parts)


# ---- events -----------------------------------------------------------------------------


def _compact(value: JSONValue) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _summary(event: Event) -> str:
    data: JSONObject = event.data
    text = data.get("text")
    part = data.get("part")
    status = data.get("status")
    if isinstance(text, str):
        role = data.get("role")
        summary = f"{role}: {text}" if isinstance(role, str) else text
    elif isinstance(part, dict) and isinstance(part.get("text"), str):
        summary = f"{_compact(part.get('type'))}: {_compact(part.get('text'))}"
    elif isinstance(status, dict) and isinstance(status.get("type"), str):
        summary = _compact(status.get("type"))
    else:
        summary = " ".join(f"{key}={_compact(value)}" for key, value in data.items())
    summary = " ".join(summary.split())  # one line per event
    return summary if len(summary) <= _SUMMARY_MAX else summary[: _SUMMARY_MAX - 1] + "…"


def event_line(event: Event) -> Text:
    """``2026-01-01 12:00:00.123  message.updated  user: hello`` (UTC, one line)."""
    ts = event.ts.replace("T", " ").removesuffix("Z")
    if len(ts) > len("2026-01-01 12:00:00.123"):
        ts = ts[: len("2026-01-01 12:00:00.123")]
    line = Text(ts, style="dim")
    line.append("  ")
    line.append(f"{event.type:<22}", style="bold" if not event.type.startswith("session.error") else "bold red")
    summary = _summary(event)
    if summary:
        line.append(" ")
        line.append(summary)
    return line


# ---- commands ---------------------------------------------------------------------------


def _result_str(result: JSONObject | None, key: str) -> str:
    value = (result or {}).get(key)
    return value if isinstance(value, str) else "?"


def _succeeded_detail(command: Command) -> str:
    result = command.result or {}
    session = _result_str(result, "session_id")
    match command.type:
        case "start_session":
            return f"new session {session}"
        case "prompt_session":
            return f"prompt sent to session {session}"
        case "resume_session":
            return f"session {session} resumed"
        case "restart_session":
            handover = "with" if result.get("handover", True) is not False else "without"
            return f"new session {session} (predecessor {_result_str(result, 'predecessor_id')}, {handover} handover)"
        case "abort_session":
            return f"session {session} aborted (was {_result_str(result, 'previous_status')})"
        case "kill_session":
            return f"session {session} killed"
        case "reply_permission":
            reply = _result_str(command.args, "reply")
            verdict = "rejected" if reply == "reject" else f"approved ({reply})"
            return f"permission {_result_str(command.args, 'request_id')} {verdict}"
        case "answer_question":
            return f"question {_result_str(command.args, 'request_id')} answered"
    return _compact(result) if result else "done"


def outcome_line(command: Command) -> str:
    """``restart_session on proj-1: succeeded — new session ses_…`` and the like."""
    head = f"{command.type} on {command.target}"
    match command.status:
        case "succeeded":
            return f"{head}: succeeded — {_succeeded_detail(command)}"
        case "failed":
            return f"{head}: failed — {command.error or 'the agent reported a failure'}"
        case "timed_out":
            return f"{head}: timed out — {command.error or 'no answer from the node'}"
    return f"{head}: {command.status} (command {command.id})"


def follow_up_hint(command: Command) -> str:
    """How to follow a command that has no outcome yet: its status and the command to ask again."""
    return f"command {command.id} is {command.status}; check with: halctl commands get {command.id} --wait 60"


def pending_line(command: Command, wait: float) -> str:
    """``env_check on n1: no outcome within 5s — command … is sent; check with: …``: the
    command was neither done nor failed when halctl stopped waiting (*wait* seconds)."""
    return f"{command.type} on {command.target}: no outcome within {wait:g}s — {follow_up_hint(command)}"


def command_detail(command: Command) -> RenderableType:
    """Every field of a command."""
    table = _details()
    table.add_row("id", command.id)
    table.add_row("type", command.type)
    table.add_row("target", command.target)
    table.add_row("status", status_text(command.status))
    table.add_row("node", command.node_id or "-")
    table.add_row("args", _compact(command.args) if command.args else "-")
    table.add_row("result", _compact(command.result) if command.result else "-")
    table.add_row("error", command.error or "-")
    table.add_row("actor", f"{command.actor or '-'} via {command.source or '-'}")
    table.add_row("idempotency key", command.idempotency_key or "-")
    table.add_row("correlation id", command.correlation_id or "-")
    table.add_row("created", command.created_at or "-")
    table.add_row("finished", command.finished_at or "-")
    return table
