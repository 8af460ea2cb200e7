"""Session tracker: the live view of every session, rebuilt from the store at start.

States arrive with the event seq that produced them; an older state never overwrites a
newer one, so a backlog resent after a reconnect cannot roll a session back. Sessions
of nodes that are not online show as ``unreachable`` without losing their real status,
which comes back the moment the node does.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import attrs
import orjson

from halswarm.convert import converter
from halswarm.models import ACTIVE_STATUSES, Session, SessionStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["SessionTracker"]


@attrs.define
class _Entry:
    seq: int
    session: Session
    last_activity: str | None
    cached_json: bytes | None = None
    # The list order (start time, then id), kept with the state so listing 10,000
    # sessions sorts precomputed keys instead of reading attributes in the sort.
    order: tuple[str, str] = ("", "")


class SessionTracker:
    """In-memory sessions keyed by id, with a per-node index and reachability overlay."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_node: dict[str, set[str]] = collections.defaultdict(set)
        self._reachable_nodes: set[str] = set()
        # Every entry in list order; rebuilt only when a session appears or its start
        # time changes (rare), so a list of 10,000 sessions does not sort each time.
        self._ordered: list[_Entry] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, states: Iterable[tuple[int, Session]]) -> None:
        """Fill from stored states (at start every node is unreachable until it connects)."""
        for seq, session in states:
            self.apply(seq, session)

    def apply(self, seq: int, session: Session) -> bool:
        """Take a session state produced by event *seq*; returns False if it is stale."""
        entry = self._entries.get(session.id)
        if entry is not None and seq < entry.seq:
            return False
        last = _later(entry.last_activity if entry else None, session.last_activity)
        order = (session.started_at or "", session.id)
        if entry is None:
            self._entries[session.id] = _Entry(seq, session, last, order=order)
            self._ordered = None
        else:
            if entry.session.node_id != session.node_id:
                self._by_node[entry.session.node_id].discard(session.id)
            entry.seq, entry.session, entry.last_activity, entry.cached_json = seq, session, last, None
            if entry.order != order:
                entry.order = order
                self._ordered = None
        self._by_node[session.node_id].add(session.id)
        return True

    def forget(self, deleted: Mapping[str, int]) -> int:
        """Drop sessions the retention job deleted from the store (id -> seq of the deleted state).

        A session whose state moved past that seq meanwhile (a newer state was stored after
        the deletion) stays: the store holds it again. Returns how many were dropped.
        """
        dropped = 0
        for session_id, seq in deleted.items():
            entry = self._entries.get(session_id)
            if entry is None or entry.seq > seq or entry.session.status != "completed":
                continue
            del self._entries[session_id]
            self._by_node[entry.session.node_id].discard(session_id)
            if not self._by_node[entry.session.node_id]:
                del self._by_node[entry.session.node_id]
            dropped += 1
        if dropped:
            self._ordered = None
        return dropped

    def touch(self, session_id: str, ts: str) -> None:
        """Record activity seen in an event."""
        entry = self._entries.get(session_id)
        if entry is not None and (entry.last_activity is None or ts > entry.last_activity):
            entry.last_activity = ts
            entry.cached_json = None

    def set_node_reachable(self, node_id: str, reachable: bool) -> None:
        """Show the node's sessions with their real status (True) or as unreachable."""
        if reachable == (node_id in self._reachable_nodes):
            return
        if reachable:
            self._reachable_nodes.add(node_id)
        else:
            self._reachable_nodes.discard(node_id)
        for session_id in self._by_node.get(node_id, ()):
            self._entries[session_id].cached_json = None

    def _status(self, entry: _Entry) -> SessionStatus:
        """The status to show: live sessions of a node that is not online are unreachable."""
        status = entry.session.status
        if status in ACTIVE_STATUSES and entry.session.node_id not in self._reachable_nodes:
            return "unreachable"
        return status

    def _view(self, entry: _Entry) -> Session:
        session = entry.session
        status = self._status(entry)
        if status == session.status and entry.last_activity == session.last_activity:
            return session
        return attrs.evolve(session, status=status, last_activity=entry.last_activity)

    def get(self, session_id: str) -> Session | None:
        """One session as the API shows it, or None."""
        entry = self._entries.get(session_id)
        return self._view(entry) if entry is not None else None

    def real_status(self, session_id: str) -> str | None:
        """The status the node last reported, ignoring reachability."""
        entry = self._entries.get(session_id)
        return entry.session.status if entry is not None else None

    def _matching(self, status: str | None, project: str | None, node_id: str | None) -> list[_Entry]:
        """Entries matching the filters, ordered by start time (then id).

        Filters read the entry, never a view: building 10,000 views (``attrs.evolve``)
        was most of the cost of listing them (see docs/PERFORMANCE.md, "API").
        """
        if node_id is not None:
            entries = self._entries
            matched = sorted((entries[sid] for sid in self._by_node.get(node_id, ())), key=_order)
        else:
            if self._ordered is None:
                self._ordered = sorted(self._entries.values(), key=_order)
            matched = self._ordered
        if project is not None:
            matched = [e for e in matched if e.session.project == project]
        if status is not None:
            matched = [e for e in matched if self._status(e) == status]
        return matched

    def sessions(
        self, *, status: str | None = None, project: str | None = None, node_id: str | None = None
    ) -> list[Session]:
        """Sessions matching the filters, ordered by start time (then id)."""
        return [self._view(entry) for entry in self._matching(status, project, node_id)]

    def sessions_json(
        self, *, status: str | None = None, project: str | None = None, node_id: str | None = None
    ) -> bytes:
        """``{"sessions": [...]}`` as JSON bytes, reusing each session's cached encoding.

        A view is built (and encoded) only for sessions that changed since the last list.
        """
        parts = [entry.cached_json or self._encode(entry) for entry in self._matching(status, project, node_id)]
        return b'{"sessions":[' + b",".join(parts) + b"]}"

    def _encode(self, entry: _Entry) -> bytes:
        entry.cached_json = orjson.dumps(converter.unstructure(self._view(entry)))
        return entry.cached_json

    def active_for_project(self, project: str) -> Session | None:
        """The project's live session with the latest activity (for project-targeted commands)."""
        best: _Entry | None = None
        for entry in self._entries.values():
            s = entry.session
            if s.project != project or s.status not in ACTIVE_STATUSES:
                continue
            if best is None or (entry.last_activity or "") > (best.last_activity or ""):
                best = entry
        return self._view(best) if best is not None else None

    def count_for_node(self, node_id: str) -> int:
        """Live (not completed) sessions on a node."""
        entries = self._entries
        return sum(1 for sid in self._by_node.get(node_id, ()) if entries[sid].session.status in ACTIVE_STATUSES)

    def counts_by_project(self) -> dict[str, tuple[int, int]]:
        """Per project: (sessions tracked, sessions not completed), in one pass."""
        counts: dict[str, tuple[int, int]] = {}
        for entry in self._entries.values():
            s = entry.session
            total, active = counts.get(s.project, (0, 0))
            counts[s.project] = (total + 1, active + (s.status in ACTIVE_STATUSES))
        return counts

    def counts_by_status(self) -> dict[str, int]:
        """How many sessions are in each (displayed) status."""
        counts: dict[str, int] = collections.Counter()
        for entry in self._entries.values():
            counts[self._status(entry)] += 1
        return counts


def _order(entry: _Entry) -> tuple[str, str]:
    return entry.order


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
