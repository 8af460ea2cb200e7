"""What the agent needs from a session backend (opencode, or simulated) and the sink
backends emit events into."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import orjson
import trio

from halswarm.convert import converter
from halswarm.jsontypes import JSONObject
from halswarm.models import ACTIVE_STATUSES, Session
from halswarm.obs.logging import ctx
from halswarm.proto.messages import CommandMsg, SessionSnapshot
from halswarm.sync import Signal
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from halswarm.agent.outbox import Outbox

__all__ = ["AlwaysHealthy", "CommandFailedError", "EventSink", "OutEvent", "SessionBackend"]

log = logging.getLogger(__name__)

#: Event payloads above this are replaced by a truncated preview (frames stay bounded).
MAX_DATA_BYTES: Final = 64 * 1024
_PREVIEW_CHARS: Final = 2048


class CommandFailedError(Exception):
    """A command could not be carried out; the message goes back to the operator."""


@attrs.frozen
class OutEvent:
    """An event a backend emits; the sink stamps time and seq."""

    type: str
    session_id: str | None = None
    project: str | None = None
    data: JSONObject = attrs.field(factory=dict)
    state: Session | None = None


class SessionBackend(Protocol):
    """A source of sessions: produces events and carries out commands."""

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Produce events into *sink* until cancelled; ``started()`` once sessions are known."""

    async def execute(self, command: CommandMsg) -> JSONObject:
        """Carry out a command and return its result. Raises :class:`CommandFailedError`."""

    def health(self) -> dict[str, str]:
        """Component -> "ok" or what is wrong (reported in heartbeats)."""

    def facts(self) -> dict[str, str]:
        """What the node runs (versions, modes), reported in heartbeats."""

    @property
    def health_changed(self) -> Signal:
        """Fired when :meth:`health` changes, so a heartbeat reports it at once."""


class AlwaysHealthy:
    """Health reporting of a backend with nothing that can fail (simulator, test doubles)."""

    #: Never fired: the health never changes.
    health_changed: Final = Signal()

    def health(self) -> dict[str, str]:
        """Always healthy."""
        return {"backend": "ok"}

    def facts(self) -> dict[str, str]:
        """Which backend this is."""
        return {"backend": type(self).__name__}


class EventSink:
    """Turns backend events into outbox rows and remembers each session's latest state."""

    def __init__(self, outbox: Outbox, *, now: Clock) -> None:
        self.outbox = outbox
        self.now = now
        self._snapshots: dict[str, SessionSnapshot] = {}
        self.truncated = 0

    async def emit(self, events: list[OutEvent]) -> None:
        """Commit events to the outbox (one transaction); they are durable on return."""
        if not events:
            return
        ts = format_ts(self.now())
        bodies = [self._body(ev, ts) for ev in events]
        seqs = await self.outbox.append(bodies)
        for seq, ev in zip(seqs, events, strict=True):
            if ev.state is None:
                continue
            if ev.state.status in ACTIVE_STATUSES:
                self._snapshots[ev.state.id] = SessionSnapshot(seq, ev.state)
            else:
                # Finished sessions leave the hello snapshot (their last state travels in
                # the outbox), so a long-lived agent's hello stays small.
                self._snapshots.pop(ev.state.id, None)

    def _body(self, ev: OutEvent, ts: str) -> bytes:
        # Built by hand rather than through cattrs: this runs for every event.
        data = ev.data
        encoded = orjson.dumps(data)
        if len(encoded) > MAX_DATA_BYTES:
            self.truncated += 1
            log.warning(
                "event payload of %d bytes replaced by a preview (limit %d)",
                len(encoded),
                MAX_DATA_BYTES,
                extra=ctx(type=ev.type, session_id=ev.session_id),
            )
            data = {
                "truncated": True,
                "bytes": len(encoded),
                "preview": encoded[:_PREVIEW_CHARS].decode(errors="replace"),
            }
        body: dict[str, object] = {
            "ts": ts,
            "type": ev.type,
            "session_id": ev.session_id,
            "project": ev.project,
            "data": data,
            "state": converter.unstructure(ev.state) if ev.state is not None else None,
        }
        return orjson.dumps(body)

    def snapshots(self) -> list[SessionSnapshot]:
        """Latest known state of every session, for the hello frame."""
        return list(self._snapshots.values())

    def shift(self, delta: int) -> None:
        """Follow an outbox renumbering."""
        if delta:
            self._snapshots = {k: SessionSnapshot(s.seq + delta, s.session) for k, s in self._snapshots.items()}
