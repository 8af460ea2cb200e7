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
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.agent.backend import OutEvent
from halswarm.agent.opencode.roots import Child, Root
from halswarm.agent.opencode.shapes import (
    ABORT_ERRORS,
    add_tokens,
    as_num,
    as_obj,
    as_str,
    diff_files,
    error_summary,
    event_data,
    level_of,
    message_data,
    model_of,
    parse_tokens,
    permission_request,
    question_request,
    trim,
)
from halswarm.models import Pending, Project, Session, Tokens
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.agent.opencode.snapshot import RestSnapshot
    from halswarm.jsontypes import JSONObject
    from halswarm.timeutil import Clock

__all__ = ["SessionMapper"]

log = logging.getLogger(__name__)

_ACTIVITY_EVERY: Final = 30.0  # seconds: busy sessions with only dropped events still show activity
_SEEN_MESSAGES: Final = 4096
_KEEP_ENDED: Final = 500  # ended sessions remembered (commands on them get "has ended")
_FORWARDED_AS_IS: Final = frozenset({"file.edited", "todo.updated"})


class SessionMapper:
    """Tracks opencode sessions of the configured projects."""

    def __init__(self, node_id: str, projects: list[Project], *, now: Clock) -> None:
        self.node_id = node_id
        self.projects = projects
        self.now = now
        self._roots: dict[str, Root] = {}
        self._children: dict[str, Child] = {}
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
        return [r.state for sid, r in running if level_of(statuses, sid) == "idle"]

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

    def _totals(self, root_id: str) -> tuple[Tokens, float]:
        root = self._roots[root_id]
        tokens, cost = root.own_tokens, root.own_cost
        for child_id in root.children:
            child = self._children[child_id]
            tokens, cost = add_tokens(tokens, child.tokens), cost + child.cost
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
            status=root.status(),
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
        sid = as_str(info.get("id"))
        if not sid:
            return None
        parent = as_str(info.get("parentID"))
        if parent:
            if sid not in self._children and self.root_of(parent) is None:
                return None  # a subagent of a session we do not track: no record kept
            child = self._children.setdefault(sid, Child(parent))
            child.parent = parent
            child.tokens, child.cost = parse_tokens(info.get("tokens")), as_num(info.get("cost"))
            return self._attach(sid)
        if sid in self._roots:
            return sid
        project = self.project_for(as_str(info.get("directory")))
        if project is None:
            return None
        current_task = self._tasks.get(project.name)
        self._roots[sid] = Root.from_info(
            info, node_id=self.node_id, project=project, current_task=current_task, ts=self._ts
        )
        return sid

    def _apply_info(self, root_id: str, info: JSONObject) -> bool:
        """Fold a root's session info (title, model, totals, archive) in; True if changed."""
        root = self._roots[root_id]
        root.own_tokens, root.own_cost = parse_tokens(info.get("tokens")), as_num(info.get("cost"))
        if as_obj(info.get("time")).get("archived"):
            self._end(root_id)
        return self._refresh(
            root_id,
            title=as_str(info.get("title")) or root.state.title,
            model=model_of(info) or root.state.model,
        )

    def adopt(self, info: JSONObject, *, predecessor: str | None = None) -> list[OutEvent]:
        """A session this agent just created (``POST /session`` answer)."""
        if as_str(info.get("parentID")):
            return self._on_session_info({"info": info}, "session.created")
        new = as_str(info.get("id")) not in self._roots
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
            root.begin_turn()
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
        payload = as_obj(envelope.get("payload"))
        etype = as_str(payload.get("type"))
        props = as_obj(payload.get("properties"))
        if not etype or etype == "sync" or etype.startswith(("server.", "plugin.", "catalog.", "lsp.", "mcp.")):
            return []
        handler = _HANDLERS.get(etype)
        if handler is not None:
            return handler(self, props)
        if etype in _FORWARDED_AS_IS:
            return self._forward_plain(etype, envelope, props)
        return self._activity(props)

    def _root_for_event(self, props: JSONObject) -> str | None:
        sid = as_str(props.get("sessionID"))
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
            return [self._out(etype, root_id, event_data(props), False)]
        project = self.project_for(as_str(envelope.get("directory")))
        if project is None:
            return []
        return [OutEvent(etype, None, project.name, event_data(props))]

    def _on_session_info(self, props: JSONObject, etype: str) -> list[OutEvent]:
        info = as_obj(props.get("info"))
        sid = as_str(info.get("id")) or as_str(props.get("sessionID"))
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
        info = as_obj(props.get("info"))
        sid = as_str(info.get("id")) or as_str(props.get("sessionID"))
        if sid in self._children:
            return []  # a child's spend stays with its root
        return self.mark_ended(sid, "session.deleted", {})

    def _on_status(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None or root_id != as_str(props.get("sessionID")):
            return self._activity(props)  # a child's status: its root's status covers it
        root = self._roots[root_id]
        if root.settled:
            return []  # late news of the turn the resync ended (see resync)
        status = as_obj(props.get("status"))
        level = as_str(status.get("type"), "idle")
        if level not in ("busy", "retry", "idle"):
            return []
        if level == root.base:
            return []
        if level == "idle":
            return self._finish_turn(root_id, "session.status", {"status": {"type": "idle"}})
        if root.base == "idle":
            root.begin_turn()
        root.base = level
        changed = self._refresh(root_id)
        data: JSONObject = {"status": event_data(status)}
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
        if root_id is None or root_id != as_str(props.get("sessionID")):
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
        summary = error_summary(as_obj(props.get("error")))
        name = as_str(summary["name"])
        data: JSONObject = {"error": summary}
        root = self._roots[root_id]
        if name in ABORT_ERRORS:
            data["aborted"] = True
        if root_id != as_str(props.get("sessionID")):
            # A subagent failed: the task tool reports it to the parent, whose own turn
            # goes on; only the parent's errors count.
            data["child_session_id"] = as_str(props.get("sessionID"))
            return [self._out("session.error", root_id, data, False)]
        if name in ABORT_ERRORS:
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
        if root_id != as_str(props.get("sessionID")):
            data["child_session_id"] = as_str(props.get("sessionID"))
        changed = self._refresh(root_id, compaction_count=root.state.compaction_count + 1)
        return [self._out("session.compacted", root_id, data, changed)]

    def _on_part(self, props: JSONObject) -> list[OutEvent]:
        part = as_obj(props.get("part"))
        if as_str(part.get("type")) == "compaction":
            root_id = self._root_for_event({"sessionID": part.get("sessionID") or props.get("sessionID")})
            if root_id is not None:
                self._roots[root_id].compaction_auto = part.get("auto") is True
        return self._activity(props)

    def _on_message(self, props: JSONObject) -> list[OutEvent]:
        info = as_obj(props.get("info"))
        sid = as_str(props.get("sessionID")) or as_str(info.get("sessionID"))
        root_id = self.root_of(sid) if sid else None
        if root_id is None:
            return []
        mid = as_str(info.get("id"))
        if sid == root_id:
            self._roots[root_id].note_turn(info)
        completed = as_obj(info.get("time")).get("completed")
        if as_str(info.get("role")) != "assistant" or not completed or mid in self._seen_messages:
            return self._activity({"sessionID": sid})
        self._seen_messages[mid] = None
        while len(self._seen_messages) > _SEEN_MESSAGES:
            self._seen_messages.popitem(last=False)
        data = message_data(info)
        model = as_str(data["model"])
        if sid != root_id:
            data["child_session_id"] = sid
        root = self._roots[root_id]
        changed = self._refresh(root_id, model=root.state.model or model) if model else False
        return [self._out("message.completed", root_id, data, changed)]

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
        return [self._out("permission.asked", root_id, event_data(props), changed)]

    def _on_permission_replied(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        rid = as_str(props.get("requestID") or props.get("permissionID"))
        root = self._roots[root_id]
        pending = root.state.pending
        changed = self._refresh(
            root_id, pending=Pending([p for p in pending.permissions if p.id != rid], pending.questions)
        )
        return [self._out("permission.replied", root_id, event_data(props), changed)]

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
        return [self._out("question.asked", root_id, event_data(props), changed)]

    def _on_question_done(self, props: JSONObject, etype: str) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        rid = as_str(props.get("requestID"))
        root = self._roots[root_id]
        pending = root.state.pending
        changed = self._refresh(
            root_id, pending=Pending(pending.permissions, [q for q in pending.questions if q.id != rid])
        )
        return [self._out(etype, root_id, event_data(props), changed)]

    def _on_question_replied(self, props: JSONObject) -> list[OutEvent]:
        return self._on_question_done(props, "question.replied")

    def _on_question_rejected(self, props: JSONObject) -> list[OutEvent]:
        return self._on_question_done(props, "question.rejected")

    def _on_diff(self, props: JSONObject) -> list[OutEvent]:
        root_id = self._root_for_event(props)
        if root_id is None:
            return []
        files = diff_files(props)
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
            sid = as_str(info.get("id"))
            if as_str(info.get("parentID")):
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
        asks = snapshot.pending_by_root(self.root_of, self._ts())
        by_id = {as_str(i.get("id")): i for i in snapshot.sessions}
        for root_id, root in list(self._roots.items()):
            if root.ended:
                continue
            if root_id not in seen:
                self._end(root_id)
                self._refresh(root_id, pending=Pending())
                out.append(self._out("session.deleted", root_id, {"resync": True}, True))
                continue
            info = by_id.get(root_id, {})
            level = level_of(snapshot.statuses, root_id)
            # A turn that ended unseen: its newest message says how (see Root.catch_up).
            failure, errors = root.catch_up(level, snapshot.last_messages.get(root_id))
            root.own_tokens, root.own_cost = parse_tokens(info.get("tokens")), as_num(info.get("cost"))
            if as_obj(info.get("time")).get("archived"):
                self._end(root_id)
            permissions, questions = asks.get(root_id, ([], []))
            changed = self._refresh(
                root_id,
                title=as_str(info.get("title")) or root.state.title,
                model=model_of(info) or root.state.model,
                consecutive_errors=errors,
                pending=root.fresh_pending(permissions, questions),
            )
            if root_id in new:
                out.append(self._out("session.created", root_id, {"title": root.state.title, "resync": True}, True))
            elif failure is not None:
                out.append(self._out("session.error", root_id, {"error": failure, "resync": True}, changed))
            elif changed:
                out.append(self._out("session.updated", root_id, {"resync": True}, True))
        self._evict()
        return out

    # ---- persistence -------------------------------------------------------------------

    def export(self) -> list[Session]:
        """Live states to save so a restarted agent does not re-announce unchanged sessions
        (ended ones are final: their last state is already in the outbox)."""
        return [r.state for r in self._roots.values() if not r.ended]

    def restore(self, states: list[Session]) -> None:
        """Load saved states (before the first resync)."""
        for state in states:
            root = self._roots[state.id] = Root.from_saved(state)
            if root.ended:
                self._ended[state.id] = None
        self._evict()


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
