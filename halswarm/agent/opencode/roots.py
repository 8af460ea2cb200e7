"""The bookkeeping of one tracked opencode session (sans-IO).

:class:`Root` is a root session as :class:`~halswarm.agent.opencode.mapper.SessionMapper`
tracks it: the :class:`~halswarm.models.Session` state it reports and the facts that
state is derived from (opencode's level, whether the turn failed, turns finished, the
subagent children whose spend adds to it). :class:`Child` is such a subagent session.
The mapper owns the collections of both; what concerns a single root lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import attrs

from halswarm.agent.opencode.shapes import (
    PREDECESSOR_KEY,
    as_obj,
    as_str,
    model_of,
    ms_ts,
    turn_completed,
    turn_error,
    turn_ids,
)
from halswarm.models import Pending, PermissionRequest, Project, QuestionRequest, Session, Tokens

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from halswarm.jsontypes import JSONObject
    from halswarm.models import SessionStatus

__all__ = ["Child", "Root"]

_Request = TypeVar("_Request", PermissionRequest, QuestionRequest)


@attrs.define
class Root:
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

    @classmethod
    def from_info(
        cls, info: JSONObject, *, node_id: str, project: Project, current_task: str | None, ts: Callable[[], str]
    ) -> Root:
        """A newly tracked root session from its opencode info; *ts* gives the time now."""
        time = as_obj(info.get("time"))
        metadata = as_obj(info.get("metadata"))
        predecessor = as_str(metadata.get(PREDECESSOR_KEY)) or None
        return cls(
            Session(
                id=as_str(info.get("id")),
                node_id=node_id,
                project=project.name,
                directory=as_str(info.get("directory")),
                status="idle",
                title=as_str(info.get("title")),
                model=model_of(info),
                predecessor_id=predecessor,
                current_task=current_task,
                started_at=ms_ts(time.get("created")) or ts(),
                last_activity=ms_ts(time.get("updated")) or ts(),
            )
        )

    @classmethod
    def from_saved(cls, state: Session) -> Root:
        """A root restored from the state a previous agent saved."""
        root = cls(state, base="busy" if state.status in ("busy", "retry", "waiting") else "idle")
        root.ended = state.status == "completed"
        root.turn_failed = state.status == "error"
        root.idle_sent = root.base == "idle"  # a turn in flight still forwards its one idle
        # Until the resync reads the real figures, the saved totals stand (children
        # are not known yet): never show a live session at zero cost.
        root.own_tokens, root.own_cost = state.tokens, state.cost_usd
        return root

    def status(self) -> SessionStatus:
        """The status shown: see the rules in :mod:`halswarm.agent.opencode.mapper`."""
        if self.ended:
            return "completed"
        if not self.state.pending.is_empty():
            return "waiting"
        if self.base == "busy":
            return "busy"
        if self.base == "retry":
            return "retry"
        return "error" if self.turn_failed else "idle"

    def begin_turn(self) -> None:
        """A turn starts: busy, not failed, its idle still to be forwarded."""
        self.base = "busy"
        self.turn_failed = False
        self.idle_sent = False

    def note_turn(self, info: JSONObject) -> None:
        """A message of the root: one of another turn than the one a resync ended means
        that turn's late events are past (a new turn starts with a new prompt)."""
        if not self.settled:
            return
        mid, parent = as_str(info.get("id")), as_str(info.get("parentID"))
        if mid not in self.settled and not (as_str(info.get("role")) == "assistant" and parent in self.settled):
            self.settled = frozenset()

    def catch_up(self, level: str, last: JSONObject | None) -> tuple[JSONObject | None, int]:
        """Take opencode's *level* from a resync; a turn that ended unseen is judged by
        *last*, its newest message (as the stream's error and idle would have).

        Returns the error the turn failed with (None: no new failure) and the consecutive
        error count to show.
        """
        was = self.base
        errors = self.state.consecutive_errors
        failure: JSONObject | None = None
        self.settled = frozenset()  # a new stream: the old one's late events are gone
        if level in ("busy", "retry"):
            if was == "idle":
                self.begin_turn()
            self.base = level
        elif was != "idle":
            # The stream's buffered events are older than this view.
            self.base, self.idle_sent = "idle", True
            self.turns += 1
            self.settled = turn_ids(last)
            failure = turn_error(last) if not self.turn_failed else None
            if failure is not None:
                self.turn_failed, errors = True, errors + 1
            elif not self.turn_failed and turn_completed(last):
                errors = 0
        return failure, errors

    def fresh_pending(self, permissions: list[PermissionRequest], questions: list[QuestionRequest]) -> Pending:
        """The requests opencode lists now, keeping the time we first saw each."""
        known = self.state.pending
        return Pending(_keep_asked_at(known.permissions, permissions), _keep_asked_at(known.questions, questions))


@attrs.define
class Child:
    """A subagent session: its spend adds to its root's."""

    parent: str
    tokens: Tokens = attrs.field(factory=Tokens)
    cost: float = 0.0


def _keep_asked_at(known: Iterable[_Request], fresh: list[_Request]) -> list[_Request]:
    """Fresh requests, keeping the time we first saw each."""
    first_seen = {r.id: r.asked_at for r in known}
    return [attrs.evolve(r, asked_at=first_seen.get(r.id, r.asked_at)) for r in fresh]
