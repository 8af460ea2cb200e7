"""What a route reads: the event's own fields, the caller's derived values, and dedup key templates.

The router is sans-IO, so values that need the tracker or the cost store (how long a
session has been idle, today's spend) come from the caller as a :class:`RouteContext`.
A value nobody supplied is null (None): every comparison with it is false.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs
import orjson

from halswarm.channels.evaluate import Lookup, fields_read
from halswarm.channels.expr import ExprError, Field, parse_field
from halswarm.models import SUPERVISOR_NODE_ID

if TYPE_CHECKING:
    from collections.abc import Iterable

    from halswarm.channels.expr import Expr
    from halswarm.models import Event, Session

__all__ = [
    "EVENT_KEY",
    "MAX_KEY_LENGTH",
    "KeyTemplate",
    "RouteContext",
    "condition_key",
    "event_node",
    "field_value",
    "lookup_for",
]

#: Rendered dedup keys longer than this are replaced by a digest, so a huge ``data``
#: value cannot make the router's state large.
MAX_KEY_LENGTH: Final = 256

# Fields that identify a session's state: a condition reading one is tracked per session.
_SESSION_SCOPED: Final = frozenset({"session", "status", "idle_for", "consecutive_errors", "compaction_count"})
_PROJECT_SCOPED: Final = frozenset({"project", "cost.project_daily"})


@attrs.frozen
class RouteContext:
    """Derived values for one event, supplied by the router's caller; None means unknown (null).

    Attributes:
        status: the tracked status of the event's session (``idle``, ``waiting``...).
        idle_for: seconds the event's session has been idle (None unless it is idle).
        consecutive_errors: failed turns in a row of the event's session.
        compaction_count: context compactions of the event's session.
        cost_daily: today's spend of the whole fleet in USD.
        cost_project_daily: today's spend of the event's project in USD.
        day: the day (UTC date, ``2026-08-01``) the cost values belong to; when it
            changes, condition routes re-arm (see docs/ROUTING.md, "Conditions").
        node_id: the node of the event's session, for events the supervisor raised
            about a session (their own node is ``supervisor``).
    """

    status: str | None = None
    idle_for: float | None = None
    consecutive_errors: int | None = None
    compaction_count: int | None = None
    cost_daily: Decimal | float | None = None
    cost_project_daily: Decimal | float | None = None
    day: str | None = None
    node_id: str | None = None

    @classmethod
    def of_session(
        cls,
        session: Session | None,
        *,
        idle_for: float | None = None,
        cost_daily: Decimal | float | None = None,
        cost_project_daily: Decimal | float | None = None,
        day: str | None = None,
    ) -> RouteContext:
        """The context of an event of *session* (None: the event has no tracked session)."""
        costs = cls(idle_for=idle_for, cost_daily=cost_daily, cost_project_daily=cost_project_daily, day=day)
        if session is None:
            return costs
        return attrs.evolve(
            costs,
            status=session.status,
            consecutive_errors=session.consecutive_errors,
            compaction_count=session.compaction_count,
            node_id=session.node_id,
        )


def event_node(event: Event, context: RouteContext) -> str:
    """The node an event is about.

    An agent's events: the node that sent them. The supervisor's own events (node id
    ``supervisor``): ``data.node_id`` when it has one (``node.online``, ``node.offline``),
    else the node of the session the context describes, else ``supervisor``.
    """
    if event.node_id != SUPERVISOR_NODE_ID:
        return event.node_id
    about = event.data.get("node_id")
    if isinstance(about, str) and about:
        return about
    return context.node_id or event.node_id


def _data_value(data: object, path: tuple[str, ...]) -> object:
    value = data
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def field_value(event: Event, context: RouteContext, field: Field) -> object:
    """The value of *field* for *event*; None when the event or the context lacks it."""
    match field.name:
        case "type":
            return event.type
        case "node":
            return event_node(event, context)
        case "project":
            return event.project
        case "session":
            return event.session_id
        case "data":
            return _data_value(event.data, field.path)
        case "status":
            return context.status
        case "idle_for":
            return context.idle_for
        case "consecutive_errors":
            return context.consecutive_errors
        case "compaction_count":
            return context.compaction_count
        case "cost.daily":
            return context.cost_daily
        case "cost.project_daily":
            return context.cost_project_daily
        case _:
            return None


def lookup_for(event: Event, context: RouteContext) -> Lookup:
    """A :data:`halswarm.channels.expr.Lookup` over *event* and *context*."""

    def lookup(field: Field) -> object:
        return field_value(event, context, field)

    return lookup


def _render_value(value: object) -> str:
    match value:
        case None:
            return ""
        case str():
            return value
        case bool():
            return "true" if value else "false"
        case int() | float() | Decimal():
            return str(value)
        case _:
            try:
                return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
            except TypeError:
                return repr(value)


@attrs.frozen
class KeyTemplate:
    """A dedup key template: literal text with ``{field}`` placeholders (``{{`` and ``}}`` for braces).

    Placeholders take the fields of the match language (``{project}``, ``{data.reason}``);
    a null value renders as the empty string.
    """

    parts: tuple[str | Field, ...]

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Parse a template such as ``{type}:{project}``.

        Raises:
            ExprError: an unknown field, an empty or unclosed placeholder, or a lone ``}``.
        """
        parts: list[str | Field] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char in "{}" and text[i + 1 : i + 2] == char:
                literal.append(char)
                i += 2
            elif char == "}":
                raise ExprError("single '}' in a key template (write '}}' for a literal brace)", i)
            elif char == "{":
                end = text.find("}", i + 1)
                if end < 0:
                    raise ExprError("unclosed '{' in a key template", i)
                name = text[i + 1 : end]
                if not name:
                    raise ExprError("empty '{}' in a key template: name a field, e.g. {project}", i)
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(parse_field(name, i + 1))
                i = end + 1
            else:
                literal.append(char)
                i += 1
        if literal:
            parts.append("".join(literal))
        return cls(tuple(parts))

    @classmethod
    def of_fields(cls, names: Iterable[str]) -> KeyTemplate:
        """``{a}|{b}|...`` over the named fields (an empty key for none)."""
        parts: list[str | Field] = []
        for i, name in enumerate(names):
            if i:
                parts.append("|")
            parts.append(parse_field(name))
        return cls(tuple(parts))

    def render(self, lookup: Lookup) -> str:
        """The key for one event; keys over :data:`MAX_KEY_LENGTH` become ``sha256:<hex>``."""
        key = "".join(part if isinstance(part, str) else _render_value(lookup(part)) for part in self.parts)
        if len(key) > MAX_KEY_LENGTH:
            return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return key

    def __str__(self) -> str:
        return "".join(
            part.replace("{", "{{").replace("}", "}}") if isinstance(part, str) else f"{{{part}}}"
            for part in self.parts
        )


#: The default key of an event route: one window per event type and subject.
EVENT_KEY: Final = KeyTemplate.of_fields(("type", "session", "node", "project"))


def condition_key(expr: Expr) -> KeyTemplate:
    """The default key of a condition route: the subjects its fields are about.

    A condition on a session's state (``status``, ``idle_for``...) is tracked per
    session, one on a project's spend per project, one on a node per node; one on the
    fleet's spend (``cost.daily``) once for the route.
    """
    read = fields_read(expr)
    names = []
    if read & _SESSION_SCOPED:
        names.append("session")
    if "node" in read:
        names.append("node")
    if read & _PROJECT_SCOPED:
        names.append("project")
    return KeyTemplate.of_fields(names)
