"""What the engine saw at its last tick, and the views the decisions get from it (issue #6).

The decisions identify episodes by ``status_since`` (:class:`~halswarm.policy.model.SessionView`),
but the tracker only knows a session's current status, not since when. The engine
therefore remembers, per session and node, the status it saw and since when, and
persists that next to the policy states, so a supervisor restart keeps every
``status_since`` of a status that did not change meanwhile (and with it every episode).

Rules of :func:`observe` (pure: no trio, no store, no clock):

- A status not seen before (new session, or another status than last time) is stamped
  with ``now``: the engine's first sight of it, on the supervisor's clock, so an agent
  whose clock is ahead cannot make anything fire early.
- An unchanged status keeps its stamp, with one exception: an ``idle`` session with new
  activity since the last tick starts a new idle period (stamped ``now``). A turn
  shorter than a tick (a resume answered in two seconds) shows only that way: the
  session went busy and idle again between two ticks, and a new idle period is what
  lets resume_on_idle act again.
- Finished (``completed``) sessions are left out: no policy acts on them, and leaving
  them out prunes their state.
- Entries of sessions and nodes no longer seen are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from halswarm.convert import dumps, load_json_row
from halswarm.models import ACTIVE_STATUSES, NodeStatus, Session
from halswarm.policy.model import NodeView, SessionView

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["NodeSeen", "Observation", "Observed", "SessionSeen", "TrackedNode", "TrackedSession", "observe"]

_NEW_PERIOD_ON_ACTIVITY: Final = frozenset({"idle"})


@attrs.frozen
class SessionSeen:
    """A session's status at the last tick, since when, and (idle only) its last activity."""

    status: str
    since: float
    #: Epoch seconds of the last activity seen while idle: newer activity starts a new idle period.
    activity: float | None = None


@attrs.frozen
class NodeSeen:
    """A node's status at the last tick and since when."""

    status: str
    since: float


@attrs.frozen
class Observed:
    """Everything the engine remembers between ticks (persisted as one JSON row)."""

    sessions: dict[str, SessionSeen] = attrs.Factory(dict)
    nodes: dict[str, NodeSeen] = attrs.Factory(dict)

    def dump(self) -> str:
        """As JSON text, for the ``policy_state`` table."""
        return dumps(self).decode()

    @classmethod
    def restore(cls, text: str | bytes | None) -> tuple[Observed, list[str]]:
        """Read :meth:`dump`'s text; unreadable text gives the empty value and a problem line."""
        return load_json_row(text, cls, "observed statuses")


@attrs.frozen
class TrackedSession:
    """A session as the tracker has it, with the status its node last reported."""

    session: Session
    #: Its node is online (commands can reach it).
    reachable: bool


@attrs.frozen
class TrackedNode:
    """A node's status, and whether it is in the engine's startup grace (see ``NodeView.grace``)."""

    id: str
    status: NodeStatus
    grace: bool = False


@attrs.frozen
class Observation:
    """What one tick sees: the decisions' views and what to remember for the next tick."""

    sessions: tuple[SessionView, ...]
    nodes: tuple[NodeView, ...]
    observed: Observed


def _view(tracked: TrackedSession) -> SessionView:
    try:
        return SessionView.from_session(tracked.session, status_since=0.0, reachable=tracked.reachable)
    except ValueError:  # a last_activity that is not RFC 3339: count no activity
        session = attrs.evolve(tracked.session, last_activity=None)
        return SessionView.from_session(session, status_since=0.0, reachable=tracked.reachable)


def _session_since(view: SessionView, seen: SessionSeen | None, now: float) -> float:
    if seen is None or seen.status != view.status:
        return now
    activity = view.last_activity
    if view.status in _NEW_PERIOD_ON_ACTIVITY and activity is not None and (seen.activity or 0.0) < activity:
        return now
    return seen.since


def observe(
    previous: Observed, sessions: Iterable[TrackedSession], nodes: Iterable[TrackedNode], now: float
) -> Observation:
    """Stamp every session's and node's status with when it started (see the module doc).

    Args:
        previous: what the last tick (or the store, after a restart) remembered.
        sessions: every tracked session; finished ones are skipped.
        nodes: every known node.
        now: the current time (epoch seconds on the supervisor's clock).

    Returns:
        The views in id order and what to remember.
    """
    views: list[SessionView] = []
    seen_sessions: dict[str, SessionSeen] = {}
    for tracked in sorted(sessions, key=lambda t: t.session.id):
        if tracked.session.status not in ACTIVE_STATUSES:
            continue
        view = _view(tracked)
        since = _session_since(view, previous.sessions.get(view.id), now)
        activity = view.last_activity if view.status in _NEW_PERIOD_ON_ACTIVITY else None
        seen_sessions[view.id] = SessionSeen(view.status, since, activity)
        views.append(attrs.evolve(view, status_since=since))
    node_views: list[NodeView] = []
    seen_nodes: dict[str, NodeSeen] = {}
    for node in sorted(nodes, key=lambda n: n.id):
        before = previous.nodes.get(node.id)
        since = before.since if before is not None and before.status == node.status else now
        seen_nodes[node.id] = NodeSeen(node.status, since)
        node_views.append(NodeView(node.id, node.status, since, grace=node.grace))
    return Observation(tuple(views), tuple(node_views), Observed(seen_sessions, seen_nodes))
