"""opencode events and REST snapshots -> halswarm sessions and events (sans-IO).

Feed it every ``/global/event`` envelope (:meth:`SessionMapper.feed`) and, after every
(re)connect, the REST view (:meth:`SessionMapper.resync`); it answers with the events
to forward, each carrying the session's new state when that changed.

The rules (see the opencode API notes):

- One halswarm session per *root* opencode session in a configured project. Subagent
  child sessions are folded into their root: their tokens and cost add to it, their
  permission requests and questions make it ``waiting``.
- ``session.status`` is level-triggered and repeats: only changes are forwarded, and of
  the (often doubled) ``session.idle`` only the first of a turn.
- Status shown: ``completed`` once deleted or archived; else ``waiting`` while a
  permission or question is pending; else opencode's ``busy``/``retry``; at rest
  ``error`` if the last turn failed, otherwise ``idle``.
- A ``session.error`` of the root counts one consecutive error (an abort is not an
  error, a subagent's error is reported but not counted); a turn that ends without one
  resets the count.
- A resync that finds a turn ended which the stream left running judges it by the
  session's newest message (its error, or its completion; unknown leaves the count
  alone). The stream's events that were in flight meanwhile are older than that view:
  status events are not taken for a new turn until a message of another turn shows.
- Forwarded: ``session.*``, completed assistant messages (as ``message.completed``),
  ``permission.*``, ``question.*``, ``file.edited``, ``todo.updated``. Dropped: streaming
  deltas, part updates, the ``sync`` log and server noise. Long strings are cut.
"""

from __future__ import annotations

import collections
import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from halswarm.agent.backend import OutEvent
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object
from halswarm.models import Pending, PermissionRequest, Project, Question, QuestionRequest, Session, Tokens
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from halswarm.models import SessionStatus
    from halswarm.timeutil import Clock

__all__ = ["PREDECESSOR_KEY", "RestSnapshot", "SessionMapper"]

log = logging.getLogger(__name__)

_Request = TypeVar("_Request", PermissionRequest, QuestionRequest)

#: Session metadata key under which a restarted session records its predecessor.
PREDECESSOR_KEY: Final = "halswarm_predecessor"
_MAX_STRING: Final = 2000
_MAX_LIST: Final = 200
_ACTIVITY_EVERY: Final = 30.0  # seconds: busy sessions with only dropped events still show activity
_SEEN_MESSAGES: Final = 4096
_KEEP_ENDED: Final = 500  # ended sessions remembered (commands on them get "has ended")
_ABORT_ERRORS: Final = frozenset({"MessageAbortedError"})
_FORWARDED_AS_IS: Final = frozenset({"file.edited", "todo.updated"})


def _str(value: JSONValue, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _int(value: JSONValue) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _num(value: JSONValue) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _obj(value: JSONValue) -> JSONObject:
    return value if is_json_object(value) else {}


def _ms_ts(value: JSONValue) -> str | None:
    """opencode's epoch milliseconds -> our timestamp."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return format_ts(datetime.fromtimestamp(value / 1000, tz=UTC))
    except (OverflowError, OSError, ValueError):  # a time no clock can show
        return None


def trim(value: JSONValue, depth: int = 0) -> JSONValue:
    """Cut long strings and lists so an event stays small (the sink caps the rest)."""
    if isinstance(value, str):
        return value if len(value) <= _MAX_STRING else value[:_MAX_STRING] + f"… [{len(value)} chars]"
    if depth > 8 and isinstance(value, list | dict):
        return "…"  # lists too: a deeply nested list would otherwise hit the recursion limit
    if isinstance(value, list):
        return [trim(v, depth + 1) for v in value[:_MAX_LIST]]
    if is_json_object(value):
        return {k: trim(v, depth + 1) for k, v in value.items()}
    return value


def parse_tokens(raw: JSONValue) -> Tokens:
    """opencode's ``{input, output, reasoning, cache: {read, write}}``."""
    tokens = _obj(raw)
    cache = _obj(tokens.get("cache"))
    return Tokens(
        _int(tokens.get("input")),
        _int(tokens.get("output")),
        _int(tokens.get("reasoning")),
        _int(cache.get("read")),
        _int(cache.get("write")),
    )


def _add(a: Tokens, b: Tokens) -> Tokens:
    return Tokens(
        a.input + b.input,
        a.output + b.output,
        a.reasoning + b.reasoning,
        a.cache_read + b.cache_read,
        a.cache_write + b.cache_write,
    )


def _model_of(info: JSONObject) -> str:
    model = _obj(info.get("model"))
    provider, model_id = _str(model.get("providerID")), _str(model.get("id") or model.get("modelID"))
    return f"{provider}/{model_id}" if provider and model_id else ""


def permission_request(raw: JSONObject, asked_at: str) -> PermissionRequest:
    """A pending permission from ``permission.asked`` or ``GET /permission``."""
    raw_patterns = raw.get("patterns")
    patterns = [p for p in raw_patterns if isinstance(p, str)] if isinstance(raw_patterns, list) else []
    metadata = _obj(raw.get("metadata"))
    title = _str(metadata.get("command")) or _str(metadata.get("description")) or " ".join(patterns)
    return PermissionRequest(_str(raw.get("id")), _str(raw.get("permission")), patterns, title[:_MAX_STRING], asked_at)


def question_request(raw: JSONObject, asked_at: str) -> QuestionRequest:
    """A pending question from ``question.asked`` or ``GET /question``."""
    questions: list[Question] = []
    items = raw.get("questions")
    for item in items if isinstance(items, list) else []:
        q = _obj(item)
        options = q.get("options")
        labels = [_str(_obj(o).get("label")) for o in options] if isinstance(options, list) else []
        questions.append(Question(_str(q.get("question"))[:_MAX_STRING], _str(q.get("header")), labels))
    return QuestionRequest(_str(raw.get("id")), questions, asked_at)


@attrs.frozen
class RestSnapshot:
    """What a resync reads over REST: every session, and per directory the busy ones
    and the pending requests (merged over the configured projects); for the sessions
    :meth:`SessionMapper.turns_ending` names, the newest message's info (absent when it
    could not be read)."""

    sessions: list[JSONObject]
    statuses: dict[str, JSONObject]
    permissions: list[JSONObject]
    questions: list[JSONObject]
    last_messages: dict[str, JSONObject] = attrs.field(factory=dict)


@attrs.define
class _Root:
    """A tracked root session and the bookkeeping its status is derived from."""

    state: Session
    own_tokens: Tokens = attrs.field(factory=Tokens)
    own_cost: float = 0.0
    base: str = "idle"  # opencode's level: idle | busy | retry
    turn_failed: bool = False
    idle_sent: bool = True
    turns: int = 0  # turns finished, for waiters (handover)
    ended: bool = False
    compaction_auto: bool | None = None
    last_emit: float = 0.0
    #: Ids (the reply and its prompt) of a turn a resync ended while the stream may still
    #: deliver its events: while set, status events are that turn's, not a new one's.
    settled: frozenset[str] = frozenset()
    #: Subagent sessions (at any depth) whose spend adds to this one.
    children: set[str] = attrs.field(factory=set)


@attrs.define
class _Child:
    parent: str
    tokens: Tokens = attrs.field(factory=Tokens)
    cost: float = 0.0


class SessionMapper:
    """Tracks opencode sessions of the configured projects."""

    def __init__(self, node_id: str, projects: list[Project], *, now: Clock) -> None:
        self.node_id = node_id
        self.projects = projects
        self.now = now
        self._roots: dict[str, _Root] = {}
        self._children: dict[str, _Child] = {}
        self._tasks: dict[str, str | None] = {}
        self._seen_messages: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()

    # ---- lookups -----------------------------------------------------------------------

    def project_for(self, directory: str) -> Project | None:
        """The configured project *directory* is in (the deepest match)."""
        if not directory:
            return None
        path = PurePosixPath(directory)
        best: Project | None = None
        for project in self.projects:
            root = PurePosixPath(project.directory)
            if (path == root or root in path.parents) and (
                best is None or len(project.directory) > len(best.directory)
            ):
                best = project
        return best

    def get(self, session_id: str) -> Session | None:
        """A root session's state (None for unknown and child sessions)."""
        root = self._roots.get(session_id)
        return root.state if root else None

    def sessions(self) -> list[Session]:
        """Every tracked root session."""
        return [r.state for r in self._roots.values()]

    def turns(self, session_id: str) -> int:
        """Turns the session finished so far (grows at each idle)."""
        root = self._roots.get(session_id)
        return root.turns if root else 0

    def is_busy(self, session_id: str) -> bool:
        """True while opencode runs a turn of the session."""
        root = self._roots.get(session_id)
        return root is not None and root.base != "idle"

    def turns_ending(self, statuses: Mapping[str, JSONObject]) -> list[Session]:
        """Sessions running here but at rest in opencode's *statuses*: a resync ends their
        turn, and their newest message (:attr:`RestSnapshot.last_messages`) tells how."""
        running = ((sid, r) for sid, r in self._roots.items() if not r.ended and r.base != "idle")
        return [r.state for sid, r in running if _level(statuses, sid) == "idle"]

    def root_of(self, session_id: str) -> str | None:
        """The tracked root a session (itself or a subagent child) belongs to."""
        seen = 0
        current = session_id
        while current not in self._roots:
            child = self._children.get(current)
            if child is None or seen > 64:
                return None
            current, seen = child.parent, seen + 1
        return current

    # ---- derived state -----------------------------------------------------------------

    def _ts(self) -> str:
        return format_ts(self.now())

    def _status(self, root: _Root) -> SessionStatus:
        if root.ended:
            return "completed"
        if not root.state.pending.is_empty():
            return "waiting"
        if root.base == "busy":
            return "busy"
        if root.base == "retry":
            return "retry"
        return "error" if root.turn_failed else "idle"

    def _totals(self, root_id: str) -> tuple[Tokens, float]:
        root = self._roots[root_id]
        tokens, cost = root.own_tokens, root.own_cost
        for child_id in root.children:
            child = self._children[child_id]
            tokens, cost = _add(tokens, child.tokens), cost + child.cost
        return tokens, round(cost, 9)

    def _attach(self, child_id: str) -> str | None:
        """File a child under its root (once the chain up to a tracked root is known)."""
        root_id = self.root_of(child_id)
        if root_id is not None:
            self._roots[root_id].children.add(child_id)
        return root_id

    def _refresh(self, root_id: str, **changes: object) -> bool:
        """Recompute the derived fields; True when the state changed."""
        root = self._roots[root_id]
        before = root.state
        if changes:
            root.state = attrs.evolve(root.state, **changes)  # type: ignore[arg-type]
        tokens, cost = self._totals(root_id)
        state = attrs.evolve(
            root.state,
            status=self._status(root),
            tokens=tokens,
            cost_usd=cost,
            current_task=self._tasks.get(root.state.project, root.state.current_task),
        )
        if state == before:
            root.state = state
            return False
        root.state = attrs.evolve(state, last_activity=self._ts())
        return True

    def _out(self, etype: str, root_id: str, data: JSONObject, changed: bool) -> OutEvent:
        root = self._roots[root_id]
        root.last_emit = self.now().timestamp()
        return OutEvent(etype, root_id, root.state.project, data, root.state if changed else None)

    # ---- adopting sessions -------------------------------------------------------------

    def _track(self, info: JSONObject) -> str | None:
        """Start tracking a session from its info; returns its root id (None: not ours)."""
        sid = _str(info.get("id"))
        if not sid:
            return None
        parent = _str(info.get("parentID"))
        if parent:
            if sid not in self._children and self.root_of(parent) is None:
                return None  # a subagent of a session we do not track: no record kept
            child = self._children.setdefault(sid, _Child(parent))
            child.parent = parent
            child.tokens, child.cost = parse_tokens(info.get("tokens")), _num(info.get("cost"))
            return self._attach(sid)
        if sid in self._roots:
            return sid
        project = self.project_for(_str(info.get("directory")))
        if project is None:
            return None
        time = _obj(info.get("time"))
        metadata = _obj(info.get("metadata"))
        predecessor = _str(metadata.get(PREDECESSOR_KEY)) or None
        self._roots[sid] = _Root(
            Session(
                id=sid,
                node_id=self.node_id,
                project=project.name,
                directory=_str(info.get("directory")),
                status="idle",
                title=_str(info.get("title")),
                model=_model_of(info),
                predecessor_id=predecessor,
                current_task=self._tasks.get(project.name),
                started_at=_ms_ts(time.get("created")) or self._ts(),
                last_activity=_ms_ts(time.get("updated")) or self._ts(),
            )
        )
        return sid

    def _apply_info(self, root_id: str, info: JSONObject) -> bool:
        """Fold a root's session info (title, model, totals, archive) in; True if changed."""
        root = self._roots[root_id]
        root.own_tokens, root.own_cost = parse_tokens(info.get("tokens")), _num(info.get("cost"))
        if _obj(info.get("time")).get("archived"):
            self._end(root_id)
        return self._refresh(
            root_id,
            title=_str(info.get("title")) or root.state.title,
            model=_model_of(info) or root.state.model,
        )

    def adopt(self, info: JSONObject, *, predecessor: str | None = None) -> list[OutEvent]:
        """A session this agent just created (``POST /session`` answer)."""
        if _str(info.get("parentID")):
            return self._on_session_info({"info": info}, "session.created")
        new = _str(info.get("id")) not in self._roots
        root_id = self._track(info)
        if root_id is None:
            return []
        if predecessor:
            self._roots[root_id].state = attrs.evolve(self._roots[root_id].state, predecessor_id=predecessor)
        changed = self._apply_info(root_id, info) or new
        if not changed:
            return []
        data: JSONObject = {"title": self._roots[root_id].state.title}
        if predecessor:
            data["predecessor_id"] = predecessor
        return [self._out("session.created" if new else "session.updated", root_id, data, True)]

    def mark_prompted(self, session_id: str, prompt: str, turns_before: int | None = None) -> list[OutEvent]:
        """We queued a prompt: the session is busy from now (opencode confirms soon).

        *turns_before* is :meth:`turns` from before the prompt was sent: if that turn
        already ended (the stream was faster than this call), the session stays idle.
        """
        root = self._roots.get(session_id)
        if root is None:
            return []
        if root.base == "idle" and (turns_before is None or root.turns == turns_before):
            self._begin_turn(root)
        changed = self._refresh(session_id)
        return [self._out("session.prompted", session_id, {"prompt": trim(prompt)}, changed)]

    def mark_ended(self, session_id: str, etype: str, data: JSONObject) -> list[OutEvent]:
        """We killed or replaced the session: it is ``completed`` from now on."""
        root = self._roots.get(session_id)
        if root is None or root.ended:
            return []
        self._end(session_id)
        self._refresh(session_id, pending=Pending())
        out = [self._out(etype, session_id, data, True)]
        self._evict()
        return out

    def _end(self, root_id: str) -> None:
        """The session is over for good: remembered for a while, then forgotten."""
        root = self._roots[root_id]
        root.ended, root.base = True, "idle"
        self._ended[root_id] = None

    def _evict(self) -> None:
        """Forget the oldest ended sessions beyond the cap (memory stays bounded)."""
        while len(self._ended) > _KEEP_ENDED:
            root_id, _ = self._ended.popitem(last=False)
            root = self._roots.pop(root_id, None)
            if root is not None:
                for child_id in root.children:
                    self._children.pop(child_id, None)

    def set_current_task(self, project: str, task: str | None) -> list[OutEvent]:
        """The project's ``.context/CURRENT_TASK.md`` changed: update its live sessions."""
        if self._tasks.get(project, "\0") == task:
            return []
        self._tasks[project] = task
        out: list[OutEvent] = []
        for root_id, root in self._roots.items():
            if root.state.project == project and not root.ended and self._refresh(root_id):
                out.append(self._out("session.task", root_id, {"current_task": task}, True))
        return out

    # ---- the event stream --------------------------------------------------------------

    def feed(self, envelope: JSONObject) -> list[OutEvent]:
        """Map one ``/global/event`` envelope."""
        payload = _obj(envelope.get("payload"))
        etype = _str(payload.get("type"))
        props = _obj(payload.get("properties"))
        if not etype or etype == "sync" or etype.startswith(("server.", "plugin.", "catalog.", "lsp.", "mcp.")):
            return []
        handler = _HANDLERS.get(etype)
        if handler is not None:
            return handler(self, props)
        if etype in _FORWARDED_AS_IS:
            return self._forward_plain(etype, envelope, props)
        return self._activity(props)

    def _root_for_event(self, props: JSONObject) -> str | None:
        sid = _str(props.get("sessionID"))
        return self.root_of(sid) if sid else None

    def _activity(self, props: JSONObject) -> list[OutEvent]:
        """A dropped event of a busy session: show life at most every 30 s."""
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        root = self._roots[root_id]
        now = self.now().timestamp()
        if root.base != "idle" and now - root.last_emit >= _ACTIVITY_EVERY:
            root.state = attrs.evolve(root.state, last_activity=self._ts())
            return [self._out("session.activity", root_id, {}, True)]
        return []

    def _forward_plain(self, etype: str, envelope: JSONObject, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is not None:
            return [self._out(etype, root_id, _data(props), False)]
        project = self.project_for(_str(envelope.get("directory")))
        if project is None:
            return []
        return [OutEvent(etype, None, project.name, _data(props))]

    def _on_session_info(self, props: JSONObject, etype: str) -> list[OutEvent]:
        info = _obj(props.get("info"))
        sid = _str(info.get("id")) or _str(props.get("sessionID"))
        if not sid:
            return []
        info = {**info, "id": sid}
        known = sid in self._roots
        root_id = self._track(info)
        if root_id is None:
            return []
        if root_id != sid:
            # A subagent child: its totals roll into the root.
            changed = self._refresh(root_id)
            if etype == "session.created":
                return [self._out("session.child", root_id, {"child_session_id": sid}, changed)]
            return [self._out("session.updated", root_id, {"child_session_id": sid}, True)] if changed else []
        changed = self._apply_info(root_id, info)
        if etype == "session.created" and not known:
            return [self._out("session.created", root_id, {"title": self._roots[root_id].state.title}, True)]
        if not changed:
            return []
        return [self._out("session.updated", root_id, {"title": self._roots[root_id].state.title}, True)]

    def _on_created(self, props: JSONObject) -> list[OutEvent]:
        return self._on_session_info(props, "session.created")

    def _on_updated(self, props: JSONObject) -> list[OutEvent]:
        return self._on_session_info(props, "session.updated")

    def _on_deleted(self, props: JSONObject) -> list[OutEvent]:
        info = _obj(props.get("info"))
        sid = _str(info.get("id")) or _str(props.get("sessionID"))
        if sid in self._children:
            return []  # a child's spend stays with its root
        return self.mark_ended(sid, "session.deleted", {})

    def _begin_turn(self, root: _Root) -> None:
        root.base = "busy"
        root.turn_failed = False
        root.idle_sent = False

    def _on_status(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None or root_id != _str(props.get("sessionID")):
            return self._activity(props)  # a child's status: its root's status covers it
        root = self._roots[root_id]
        if root.settled:
            return []  # late news of the turn the resync ended (see resync)
        status = _obj(props.get("status"))
        level = _str(status.get("type"), "idle")
        if level not in ("busy", "retry", "idle"):
            return []
        if level == root.base:
            return []
        if level == "idle":
            return self._finish_turn(root_id, "session.status", {"status": {"type": "idle"}})
        if root.base == "idle":
            self._begin_turn(root)
        root.base = level
        changed = self._refresh(root_id)
        data: JSONObject = {"status": _data(status)}
        return [self._out("session.status", root_id, data, changed)]

    def _finish_turn(self, root_id: str, etype: str, data: JSONObject) -> list[OutEvent]:
        root = self._roots[root_id]
        out: list[OutEvent] = []
        if root.base != "idle":
            root.base = "idle"
            root.turns += 1
            # Nothing can wait for a human once the turn is over.
            changes: dict[str, object] = {"pending": Pending()}
            if not root.turn_failed:
                changes["consecutive_errors"] = 0
            changed = self._refresh(root_id, **changes)
            out.append(self._out(etype, root_id, data, changed))
        if not root.idle_sent:
            root.idle_sent = True
            if etype != "session.idle":
                out.append(self._out("session.idle", root_id, {}, False))
        return out

    def _on_idle(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None or root_id != _str(props.get("sessionID")):
            return []
        root = self._roots[root_id]
        if root.settled or (root.idle_sent and root.base == "idle"):
            return []  # opencode's duplicate idle, or one of the turn the resync ended
        out = self._finish_turn(root_id, "session.idle", {})
        self._roots[root_id].idle_sent = True
        return out

    def _on_error(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        summary = _error_summary(_obj(props.get("error")))
        name = _str(summary["name"])
        data: JSONObject = {"error": summary}
        root = self._roots[root_id]
        if name in _ABORT_ERRORS:
            data["aborted"] = True
        if root_id != _str(props.get("sessionID")):
            # A subagent failed: the task tool reports it to the parent, whose own turn
            # goes on; only the parent's errors count.
            data["child_session_id"] = _str(props.get("sessionID"))
            return [self._out("session.error", root_id, data, False)]
        if name in _ABORT_ERRORS:
            return [self._out("session.error", root_id, data, False)]
        if root.settled and root.turn_failed:
            return []  # late news of a failure the resync already counted
        root.turn_failed = True
        changed = self._refresh(root_id, consecutive_errors=root.state.consecutive_errors + 1)
        return [self._out("session.error", root_id, data, changed)]

    def _on_compacted(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        root = self._roots[root_id]
        data: JSONObject = {}
        if root.compaction_auto is not None:
            data["auto"] = root.compaction_auto
            root.compaction_auto = None
        if root_id != _str(props.get("sessionID")):
            data["child_session_id"] = _str(props.get("sessionID"))
        changed = self._refresh(root_id, compaction_count=root.state.compaction_count + 1)
        return [self._out("session.compacted", root_id, data, changed)]

    def _on_part(self, props: JSONObject) -> list[OutEvent]:
        part = _obj(props.get("part"))
        if _str(part.get("type")) == "compaction":
            root_id = self._root_for_event({"sessionID": part.get("sessionID") or props.get("sessionID")})
            if root_id is not None:
                self._roots[root_id].compaction_auto = part.get("auto") is True
        return self._activity(props)

    def _on_message(self, props: JSONObject) -> list[OutEvent]:
        info = _obj(props.get("info"))
        sid = _str(props.get("sessionID")) or _str(info.get("sessionID"))
        root_id = self.root_of(sid) if sid else None
        if root_id is None:
            return []
        mid = _str(info.get("id"))
        if sid == root_id:
            self._note_turn(self._roots[root_id], info)
        completed = _obj(info.get("time")).get("completed")
        if _str(info.get("role")) != "assistant" or not completed or mid in self._seen_messages:
            return self._activity({"sessionID": sid})
        self._seen_messages[mid] = None
        while len(self._seen_messages) > _SEEN_MESSAGES:
            self._seen_messages.popitem(last=False)
        provider, model_id = _str(info.get("providerID")), _str(info.get("modelID"))
        model = f"{provider}/{model_id}" if provider and model_id else ""
        data: JSONObject = {
            "role": "assistant",
            "message_id": mid,
            "model": model,
            "agent": _str(info.get("agent")),
            "tokens": trim(_obj(info.get("tokens"))),
            "cost": _num(info.get("cost")),
            "finish": _str(info.get("finish")),
        }
        if info.get("error"):
            data["error"] = _error_summary(_obj(info.get("error")))
        if sid != root_id:
            data["child_session_id"] = sid
        root = self._roots[root_id]
        changed = self._refresh(root_id, model=root.state.model or model) if model else False
        return [self._out("message.completed", root_id, data, changed)]

    @staticmethod
    def _note_turn(root: _Root, info: JSONObject) -> None:
        """A message of the root: one of another turn than the one a resync ended means
        that turn's late events are past (a new turn starts with a new prompt)."""
        if not root.settled:
            return
        mid, parent = _str(info.get("id")), _str(info.get("parentID"))
        if mid not in root.settled and not (_str(info.get("role")) == "assistant" and parent in root.settled):
            root.settled = frozenset()

    def _on_permission_asked(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        request = permission_request(props, self._ts())
        root = self._roots[root_id]
        pending = root.state.pending
        if any(p.id == request.id for p in pending.permissions):
            return []
        changed = self._refresh(root_id, pending=Pending([*pending.permissions, request], pending.questions))
        return [self._out("permission.asked", root_id, _data(props), changed)]

    def _on_permission_replied(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        rid = _str(props.get("requestID") or props.get("permissionID"))
        root = self._roots[root_id]
        pending = root.state.pending
        changed = self._refresh(
            root_id, pending=Pending([p for p in pending.permissions if p.id != rid], pending.questions)
        )
        return [self._out("permission.replied", root_id, _data(props), changed)]

    def _on_question_asked(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        request = question_request(props, self._ts())
        root = self._roots[root_id]
        pending = root.state.pending
        if any(q.id == request.id for q in pending.questions):
            return []
        changed = self._refresh(root_id, pending=Pending(pending.permissions, [*pending.questions, request]))
        return [self._out("question.asked", root_id, _data(props), changed)]

    def _on_question_done(self, props: JSONObject, etype: str) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        rid = _str(props.get("requestID"))
        root = self._roots[root_id]
        pending = root.state.pending
        changed = self._refresh(
            root_id, pending=Pending(pending.permissions, [q for q in pending.questions if q.id != rid])
        )
        return [self._out(etype, root_id, _data(props), changed)]

    def _on_question_replied(self, props: JSONObject) -> list[OutEvent]:
        return self._on_question_done(props, "question.replied")

    def _on_question_rejected(self, props: JSONObject) -> list[OutEvent]:
        return self._on_question_done(props, "question.rejected")

    def _on_diff(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        files: list[JSONValue] = []
        diff = props.get("diff")
        for item in diff if isinstance(diff, list) else []:
            entry = _obj(item)
            files.append(
                {
                    "file": _str(entry.get("file")),
                    "additions": _int(entry.get("additions")),
                    "deletions": _int(entry.get("deletions")),
                    "status": _str(entry.get("status")),
                }
            )
        if not files:
            return []
        return [self._out("session.diff", root_id, {"files": trim(files)}, False)]

    # ---- resync ------------------------------------------------------------------------

    def resync(self, snapshot: RestSnapshot) -> list[OutEvent]:
        """Bring every session up to date with the REST view after a (re)connect."""
        out: list[OutEvent] = []
        seen: set[str] = set()
        new: set[str] = set()
        # Children need their parents known: roots first, then children level by level
        # (a grandchild may be listed before its parent).
        children: list[JSONObject] = []
        for info in snapshot.sessions:
            sid = _str(info.get("id"))
            if _str(info.get("parentID")):
                children.append(info)
                continue
            if sid not in self._roots:
                new.add(sid)
            if self._track(info) is not None:
                seen.add(sid)
        while children:
            left = [info for info in children if self._track(info) is None]
            if len(left) == len(children):
                break  # the rest belong to sessions we do not track
            children = left
        asks = self._pending_by_root(snapshot)
        by_id = {_str(i.get("id")): i for i in snapshot.sessions}
        for root_id, root in list(self._roots.items()):
            if root.ended:
                continue
            if root_id not in seen:
                self._end(root_id)
                self._refresh(root_id, pending=Pending())
                out.append(self._out("session.deleted", root_id, {"resync": True}, True))
                continue
            info = by_id.get(root_id, {})
            level = _level(snapshot.statuses, root_id)
            was = root.base
            errors = root.state.consecutive_errors
            failure: JSONObject | None = None
            root.settled = frozenset()  # a new stream: the old one's late events are gone
            if level in ("busy", "retry"):
                if was == "idle":
                    self._begin_turn(root)
                root.base = level
            elif was != "idle":
                # The turn ended unseen; its newest message says how (as _on_error and
                # _finish_turn would have). The stream's buffered events are older.
                last = snapshot.last_messages.get(root_id)
                root.base, root.idle_sent = "idle", True
                root.turns += 1
                root.settled = _turn_ids(last)
                failure = _turn_error(last) if not root.turn_failed else None
                if failure is not None:
                    root.turn_failed, errors = True, errors + 1
                elif not root.turn_failed and _turn_completed(last):
                    errors = 0
            root.own_tokens, root.own_cost = parse_tokens(info.get("tokens")), _num(info.get("cost"))
            if _obj(info.get("time")).get("archived"):
                self._end(root_id)
            permissions, questions = asks.get(root_id, ([], []))
            changed = self._refresh(
                root_id,
                title=_str(info.get("title")) or root.state.title,
                model=_model_of(info) or root.state.model,
                consecutive_errors=errors,
                pending=Pending(
                    self._keep_asked_at(root.state.pending.permissions, permissions),
                    self._keep_asked_at(root.state.pending.questions, questions),
                ),
            )
            if root_id in new:
                out.append(self._out("session.created", root_id, {"title": root.state.title, "resync": True}, True))
            elif failure is not None:
                out.append(self._out("session.error", root_id, {"error": failure, "resync": True}, changed))
            elif changed:
                out.append(self._out("session.updated", root_id, {"resync": True}, True))
        self._evict()
        return out

    def _pending_by_root(
        self, snapshot: RestSnapshot
    ) -> dict[str, tuple[list[PermissionRequest], list[QuestionRequest]]]:
        by_root: dict[str, tuple[list[PermissionRequest], list[QuestionRequest]]] = {}
        now = self._ts()
        for raw in snapshot.permissions:
            root_id = self.root_of(_str(raw.get("sessionID")))
            if root_id is not None:
                by_root.setdefault(root_id, ([], []))[0].append(permission_request(raw, now))
        for raw in snapshot.questions:
            root_id = self.root_of(_str(raw.get("sessionID")))
            if root_id is not None:
                by_root.setdefault(root_id, ([], []))[1].append(question_request(raw, now))
        return by_root

    @staticmethod
    def _keep_asked_at(known: Iterable[_Request], fresh: list[_Request]) -> list[_Request]:
        """Fresh requests, keeping the time we first saw each."""
        first_seen = {r.id: r.asked_at for r in known}
        return [attrs.evolve(r, asked_at=first_seen.get(r.id, r.asked_at)) for r in fresh]

    # ---- persistence -------------------------------------------------------------------

    def export(self) -> list[Session]:
        """Live states to save so a restarted agent does not re-announce unchanged sessions
        (ended ones are final: their last state is already in the outbox)."""
        return [r.state for r in self._roots.values() if not r.ended]

    def restore(self, states: list[Session]) -> None:
        """Load saved states (before the first resync)."""
        for state in states:
            root = _Root(state, base="busy" if state.status in ("busy", "retry", "waiting") else "idle")
            root.ended = state.status == "completed"
            root.turn_failed = state.status == "error"
            root.idle_sent = root.base == "idle"  # a turn in flight still forwards its one idle
            # Until the resync reads the real figures, the saved totals stand (children
            # are not known yet): never show a live session at zero cost.
            root.own_tokens, root.own_cost = state.tokens, state.cost_usd
            self._roots[state.id] = root
            if root.ended:
                self._ended[state.id] = None
        self._evict()


def _level(statuses: Mapping[str, JSONObject], session_id: str) -> str:
    """opencode's level for a session in ``GET /session/status`` (idle ones are omitted)."""
    return _str(_obj(statuses.get(session_id)).get("type"), "idle")


def _reply(message: JSONObject | None) -> JSONObject:
    """*message* if it is an assistant reply, else ``{}``."""
    return message if message is not None and _str(message.get("role")) == "assistant" else {}


def _turn_error(message: JSONObject | None) -> JSONObject | None:
    """The error a turn failed with, from its newest message (an abort is no failure)."""
    error = _obj(_reply(message).get("error"))
    if not error or _str(error.get("name")) in _ABORT_ERRORS:
        return None
    return _error_summary(error)


def _turn_completed(message: JSONObject | None) -> bool:
    """True when the turn's newest message is a reply that finished (or was aborted);
    False when that is unknown: no reply yet, one cut off (opencode died), or not read."""
    reply = _reply(message)
    return bool(_obj(reply.get("time")).get("completed") or reply.get("error"))


def _turn_ids(message: JSONObject | None) -> frozenset[str]:
    """The ids of a finished turn's reply and of the prompt it answers."""
    reply = _reply(message)
    return frozenset(i for i in (_str(reply.get("id")), _str(reply.get("parentID"))) if i)


def _error_summary(error: JSONObject) -> JSONObject:
    """Name, message, status and retryability of an opencode error; never the provider's
    response body, headers or URL."""
    err_data = _obj(error.get("data"))
    summary: JSONObject = {
        "name": _str(error.get("name"), "UnknownError"),
        "message": trim(_str(err_data.get("message"))),
    }
    for key in ("statusCode", "isRetryable"):
        if isinstance(err_data.get(key), int | bool):
            summary[key] = err_data[key]
    return summary


def _data(props: JSONObject) -> JSONObject:
    value = trim(props)
    return value if is_json_object(value) else {}


_HANDLERS: Final = {
    "session.created": SessionMapper._on_created,
    "session.updated": SessionMapper._on_updated,
    "session.deleted": SessionMapper._on_deleted,
    "session.status": SessionMapper._on_status,
    "session.idle": SessionMapper._on_idle,
    "session.error": SessionMapper._on_error,
    "session.compacted": SessionMapper._on_compacted,
    "session.diff": SessionMapper._on_diff,
    "message.updated": SessionMapper._on_message,
    "message.part.updated": SessionMapper._on_part,
    "permission.asked": SessionMapper._on_permission_asked,
    "permission.replied": SessionMapper._on_permission_replied,
    "question.asked": SessionMapper._on_question_asked,
    "question.replied": SessionMapper._on_question_replied,
    "question.rejected": SessionMapper._on_question_rejected,
}
