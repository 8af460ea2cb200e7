"""Encode and decode wire protocol v1 frames. Sans-IO: bytes/str in, messages out.

Control messages go through the strict cattrs converter (unknown keys rejected).
``events`` frames carry up to thousands of events per second per node, so they take a
hand-written validator with the same rules: about five times faster than the generic
path on this hot loop (see bench/ingest).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import attrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from halswarm.convert import ConversionError, converter, strict, structure_strict
from halswarm.jsontypes import JSONObject, is_json_object
from halswarm.models import SESSION_STATUSES, Pending, Session, Tokens
from halswarm.proto.errors import CloseCode, ProtocolError
from halswarm.proto.messages import PROTOCOL_VERSION, TAGS, CommandResult, Events, Heartbeat, Message, WireEvent
from halswarm.timeutil import is_ts

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    import cattrs

__all__ = ["decode", "encode", "encode_event_body", "encode_events_raw"]


def _omit_data_json(conv: cattrs.Converter) -> None:
    """``WireEvent.data_json`` is a local cache: never serialised, never accepted."""
    conv.register_unstructure_hook(WireEvent, make_dict_unstructure_fn(WireEvent, conv, data_json=override(omit=True)))
    conv.register_structure_hook(
        WireEvent,
        make_dict_structure_fn(
            WireEvent, conv, data_json=override(omit=True), _cattrs_forbid_extra_keys=conv.forbid_extra_keys
        ),
    )


_omit_data_json(converter)
_omit_data_json(strict)

_BY_TAG: Final[dict[str, type[Message]]] = {tag: cls for cls, tag in TAGS.items()}
_EVENT_KEYS: Final = frozenset({"seq", "ts", "type", "session_id", "project", "data", "state"})
_EVENTS_PREFIX: Final = b'{"v":1,"type":"events","events":['
_SESSION_KEYS: Final = frozenset(a.name for a in attrs.fields(Session))
_TOKENS_KEYS: Final = frozenset(a.name for a in attrs.fields(Tokens))
_PENDING_KEYS: Final = frozenset(a.name for a in attrs.fields(Pending))
_STATUSES: Final = frozenset(SESSION_STATUSES)
_NO_TOKENS: Final = Tokens()
_NO_PENDING: Final = Pending()


# Fields added after v1 shipped (issue 8), left off the wire at their defaults so a peer
# that predates them (and rejects unknown keys) still accepts the frame.
_OMIT_AT_DEFAULT: Final[dict[type[Message], tuple[tuple[str, object], ...]]] = {
    Heartbeat: (("outbox_backlog", None),),
    CommandResult: (("correlation_id", ""),),
}


def encode(msg: Message) -> str:
    """Serialise a message to one JSON text frame."""
    body = converter.unstructure(msg)
    for name, default in _OMIT_AT_DEFAULT.get(type(msg), ()):
        if body.get(name) == default:
            del body[name]
    return orjson.dumps({"v": PROTOCOL_VERSION, "type": TAGS[type(msg)], **body}).decode()


def encode_event_body(event: WireEvent) -> bytes:
    """Serialise an event without its ``seq`` (the outbox assigns and splices it)."""
    body = converter.unstructure(event)
    del body["seq"]
    return orjson.dumps(body)


def encode_events_raw(rows: Sequence[tuple[int, bytes]]) -> str:
    """Build an ``events`` frame from outbox rows ``(seq, body)`` without re-encoding.

    *body* is :func:`encode_event_body` output; the seq is spliced in front of its keys.
    """
    parts = [b'{"seq":%d,%s' % (seq, body[1:]) for seq, body in rows]
    return (_EVENTS_PREFIX + b",".join(parts) + b"]}").decode()


def decode(frame: str | bytes) -> Message:
    """Parse and validate one frame.

    Raises:
        ProtocolError: the frame is not JSON, not an object, of another protocol
            version, of an unknown type, or of the wrong shape. The error names the
            problem and carries the close code to use.
    """
    with _no_cyclic_gc():
        return _decode(frame)


@contextmanager
def _no_cyclic_gc() -> Generator[None, None, None]:
    """Pause the cycle collector while a frame is parsed.

    An events frame of 1,000 events allocates some 20,000 containers; with the default
    thresholds that starts dozens of collections per frame, each walking every object
    the process holds, and measured 40 % of the decode time (docs/PERFORMANCE.md).
    Decoding makes no reference cycles, so pausing loses nothing: one collection runs
    at the next allocation after the frame if the thresholds say so.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _decode(frame: str | bytes) -> Message:
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(CloseCode.MALFORMED, f"frame is not valid JSON: {exc}") from None
    if not is_json_object(obj):
        raise ProtocolError(CloseCode.MALFORMED, "frame must be a JSON object")
    version = obj.pop("v", None)
    # type() check: true and 1.0 compare equal to 1 but are not version 1.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            CloseCode.UNSUPPORTED_VERSION,
            f"unsupported protocol version {version!r}; this peer speaks v{PROTOCOL_VERSION}",
        )
    tag = obj.pop("type", None)
    if not isinstance(tag, str) or tag not in _BY_TAG:
        raise ProtocolError(CloseCode.MALFORMED, f"unknown frame type {tag!r}; expected one of {', '.join(_BY_TAG)}")
    cls = _BY_TAG[tag]
    if cls is Events:
        return _decode_events(obj)
    try:
        return structure_strict(obj, cls, path=tag)
    except ConversionError as exc:
        raise ProtocolError(CloseCode.MALFORMED, f"invalid {tag} frame: {exc}") from None


def _decode_events(obj: JSONObject) -> Events:
    raw = obj.get("events")
    if len(obj) != 1 or not isinstance(raw, list):
        raise ProtocolError(CloseCode.MALFORMED, "invalid events frame: expects exactly one key, events (a list)")
    return Events([_decode_event(item, i) for i, item in enumerate(raw)])


def _bad(i: int, what: str) -> ProtocolError:
    return ProtocolError(CloseCode.MALFORMED, f"invalid events frame: {what} @ events[{i}]")


def _decode_event(item: object, i: int) -> WireEvent:
    if type(item) is not dict:
        raise _bad(i, "event must be an object")
    if not item.keys() <= _EVENT_KEYS:
        raise _bad(i, f"unknown key(s): {', '.join(sorted(set(item) - _EVENT_KEYS))}")
    seq = item.get("seq")
    ts = item.get("ts")
    etype = item.get("type")
    session_id = item.get("session_id")
    project = item.get("project")
    data = item.get("data", {})
    if type(seq) is not int or seq < 1:
        raise _bad(i, "seq must be a positive integer")
    if type(etype) is not str or not etype:
        raise _bad(i, "type must be a non-empty string")
    if not is_ts(ts):
        raise _bad(i, "ts must be an RFC 3339 UTC time like 2026-01-01T00:00:00.000000Z")
    if session_id is not None and type(session_id) is not str:
        raise _bad(i, "session_id must be a string or null")
    if project is not None and type(project) is not str:
        raise _bad(i, "project must be a string or null")
    if type(data) is not dict:
        raise _bad(i, "data must be an object")
    try:
        # orjson parses 1023 levels of nesting but serialises only 254: a payload the
        # store could never write must be refused here, not crash the writer later.
        data_json = orjson.dumps(data)
    except TypeError:
        raise _bad(i, "data is nested too deeply") from None
    raw_state = item.get("state")
    state: Session | None = None
    if raw_state is not None:
        state = _fast_session(raw_state)
        if state is None:  # unusual or invalid: the strict converter decides and explains
            try:
                state = structure_strict(raw_state, Session, path=f"events[{i}].state")
            except ConversionError as exc:
                raise ProtocolError(CloseCode.MALFORMED, f"invalid events frame: {exc}") from None
    return WireEvent(seq, ts, etype, session_id, project, data, state, data_json=data_json)


def _opt_str(value: object) -> bool:
    return value is None or type(value) is str


def _fast_session(raw: object) -> Session | None:
    """The common shape of a session state, validated by hand; None for anything else.

    About a third of all events carry a state, and the generic strict converter spent
    most of the supervisor's ingest CPU on them (docs/PERFORMANCE.md). This accepts
    exactly what ``structure_strict(raw, Session)`` accepts and builds an equal value,
    but only for states without pending requests; it returns None (never raises) for
    every other input, which then takes the strict path, errors included.
    """
    if type(raw) is not dict or not raw.keys() <= _SESSION_KEYS:
        return None
    get = raw.get
    sid, node_id, project = get("id"), get("node_id"), get("project")
    directory, status, title, model = (
        get("directory", ""),
        get("status", "starting"),
        get("title", ""),
        get("model", ""),
    )
    if not (
        type(sid) is str
        and type(node_id) is str
        and type(project) is str
        and type(directory) is str
        and type(status) is str
        and type(title) is str
        and type(model) is str
        and status in _STATUSES
    ):
        return None
    cost = get("cost_usd", 0.0)
    if type(cost) is int:
        cost = float(cost)
    compactions, errors = get("compaction_count", 0), get("consecutive_errors", 0)
    if type(cost) is not float or type(compactions) is not int or type(errors) is not int:
        return None
    task, predecessor = get("current_task"), get("predecessor_id")
    started, last = get("started_at"), get("last_activity")
    if not (_opt_str(task) and _opt_str(predecessor) and _opt_str(started) and _opt_str(last)):
        return None
    tokens = _NO_TOKENS
    if "tokens" in raw:
        t = raw["tokens"]
        if type(t) is not dict or not t.keys() <= _TOKENS_KEYS:
            return None
        values = (
            t.get("input", 0),
            t.get("output", 0),
            t.get("reasoning", 0),
            t.get("cache_read", 0),
            t.get("cache_write", 0),
        )
        if any(type(v) is not int for v in values):
            return None
        tokens = Tokens(*values)
    if "pending" in raw:
        p = raw["pending"]
        # Requests are rare and nested: the strict converter handles those.
        if type(p) is not dict or not p.keys() <= _PENDING_KEYS or any(v != [] for v in p.values()):
            return None
    return Session(
        sid,
        node_id,
        project,
        directory,
        status,  # checked against SESSION_STATUSES above
        title,
        model,
        tokens,
        cost,
        compactions,
        errors,
        _NO_PENDING,
        task,
        predecessor,
        started,
        last,
    )
