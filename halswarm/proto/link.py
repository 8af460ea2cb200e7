"""Link state machines for both ends of a connection. Sans-IO: frames in, events out.

Invariants (both ends):

* The first agent frame is ``hello``; the first supervisor frame is ``welcome``.
  Nothing else is accepted before them, and neither is accepted twice.
* Event seqs on one connection are strictly increasing and start after
  ``welcome.ack_seq``.
* Acks are cumulative and never go backwards or past the last seq sent.
* At most ``window`` batches are unacknowledged at any time; the agent never exceeds it,
  the hub closes a connection that does (``WINDOW_EXCEEDED``).
* After a :class:`ProtocolError` the machine is ``CLOSED`` and accepts nothing more.
"""

from __future__ import annotations

import collections
import enum
from typing import TYPE_CHECKING

import attrs

from halswarm.proto.codec import decode, encode, encode_events_raw
from halswarm.proto.errors import CloseCode, ProtocolError
from halswarm.proto.messages import (
    ENV_CAPABILITY,
    Ack,
    CommandMsg,
    CommandResult,
    EnvManifest,
    Events,
    Heartbeat,
    Hello,
    Message,
    Welcome,
    WireEvent,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AckReceived",
    "AgentEvent",
    "AgentProtocol",
    "BatchReceived",
    "CommandReceived",
    "HeartbeatReceived",
    "HelloReceived",
    "HubEvent",
    "HubProtocol",
    "LinkState",
    "ManifestReceived",
    "ResultReceived",
    "WelcomeReceived",
]


class LinkState(enum.Enum):
    """Where a link is in its life."""

    HANDSHAKE = "handshake"  # waiting for hello (hub) or welcome (agent)
    OPEN = "open"
    CLOSED = "closed"


# ---- events the machines emit ------------------------------------------------------


@attrs.frozen
class WelcomeReceived:
    """The supervisor accepted us. ``lost_state``: it holds seqs we never assigned."""

    welcome: Welcome
    lost_state: bool


@attrs.frozen
class AckReceived:
    """Everything up to ``seq`` is stored; ``freed`` batches left the window."""

    seq: int
    freed: int


@attrs.frozen
class CommandReceived:
    """A command to run (outside the reader loop)."""

    command: CommandMsg


@attrs.frozen
class HeartbeatReceived:
    """A heartbeat from the peer (liveness is refreshed by any frame, though)."""

    heartbeat: Heartbeat


@attrs.frozen
class ManifestReceived:
    """The supervisor sent the environment manifest (issue #9)."""

    manifest: EnvManifest


@attrs.frozen
class HelloReceived:
    """An agent introduced itself; answer with :meth:`HubProtocol.welcome`."""

    hello: Hello


@attrs.frozen
class BatchReceived:
    """A batch of events to persist, then acknowledge with :meth:`HubProtocol.ack`."""

    events: list[WireEvent]


@attrs.frozen
class ResultReceived:
    """The outcome of a command."""

    result: CommandResult


AgentEvent = WelcomeReceived | AckReceived | CommandReceived | HeartbeatReceived | ManifestReceived
HubEvent = HelloReceived | BatchReceived | ResultReceived | HeartbeatReceived


def _closed_error() -> ProtocolError:
    return ProtocolError(CloseCode.MALFORMED, "link is closed")


# ---- agent side ----------------------------------------------------------------------


class AgentProtocol:
    """The agent's end: handshake, send window and cumulative acks."""

    def __init__(self, hello: Hello) -> None:
        self.state = LinkState.HANDSHAKE
        self.hello = hello
        self.welcome: Welcome | None = None
        self.acked_seq = 0
        self.sent_seq = 0
        # Last seq of each unacknowledged batch, oldest first.
        self._in_flight: collections.deque[int] = collections.deque()

    def hello_frame(self) -> str:
        """The first frame to send."""
        return encode(self.hello)

    def receive(self, frame: str | bytes) -> list[AgentEvent]:
        """Feed one frame from the supervisor.

        Raises:
            ProtocolError: the frame is invalid or out of order; the link is closed.
        """
        if self.state is LinkState.CLOSED:
            raise _closed_error()
        try:
            return self._receive(decode(frame))
        except ProtocolError:
            self.state = LinkState.CLOSED
            raise

    def _receive(self, msg: Message) -> list[AgentEvent]:
        if self.state is LinkState.HANDSHAKE:
            if not isinstance(msg, Welcome):
                raise ProtocolError(CloseCode.MALFORMED, f"expected welcome first, got {type(msg).__name__}")
            if msg.window < 1 or msg.max_batch_events < 1 or msg.ack_seq < 0:
                raise ProtocolError(CloseCode.MALFORMED, "welcome has a window or batch size below 1, or ack_seq < 0")
            if not msg.heartbeat_interval > 0:  # the agent's heartbeat schedule divides by it
                raise ProtocolError(
                    CloseCode.MALFORMED, f"welcome has heartbeat_interval {msg.heartbeat_interval!r}; must be above 0"
                )
            self.state = LinkState.OPEN
            self.welcome = msg
            self.acked_seq = self.sent_seq = msg.ack_seq
            return [WelcomeReceived(msg, lost_state=msg.ack_seq > self.hello.last_seq)]
        if isinstance(msg, Ack):
            return [self._on_ack(msg.seq)]
        if isinstance(msg, CommandMsg):
            return [CommandReceived(msg)]
        if isinstance(msg, Heartbeat):
            return [HeartbeatReceived(msg)]
        if isinstance(msg, EnvManifest):
            return [ManifestReceived(msg)]
        raise ProtocolError(CloseCode.MALFORMED, f"unexpected {type(msg).__name__} from supervisor")

    def _on_ack(self, seq: int) -> AckReceived:
        if seq < self.acked_seq or seq > self.sent_seq:
            raise ProtocolError(
                CloseCode.MALFORMED, f"ack {seq} outside [{self.acked_seq}, {self.sent_seq}] (acked..sent)"
            )
        freed = 0
        while self._in_flight and self._in_flight[0] <= seq:
            self._in_flight.popleft()
            freed += 1
        self.acked_seq = seq
        return AckReceived(seq, freed)

    def can_send(self) -> bool:
        """True when the window has room for another batch."""
        assert self.welcome is not None or self.state is not LinkState.OPEN
        return self.state is LinkState.OPEN and self.welcome is not None and len(self._in_flight) < self.welcome.window

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet acknowledged."""
        return len(self._in_flight)

    def events_frame(self, rows: Sequence[tuple[int, bytes]]) -> str:
        """Frame a batch of outbox rows ``(seq, body)`` and count it against the window.

        Raises:
            RuntimeError: called without room in the window, with no rows, or with seqs
                that do not follow the last one sent (a bug in the caller).
        """
        if not self.can_send():
            raise RuntimeError("send window is full or the link is not open")
        if not rows:
            raise RuntimeError("empty batch")
        assert self.welcome is not None
        if len(rows) > self.welcome.max_batch_events:
            raise RuntimeError(
                f"batch of {len(rows)} exceeds the supervisor's limit of {self.welcome.max_batch_events}"
            )
        previous = self.sent_seq
        for seq, _ in rows:
            if seq <= previous:
                raise RuntimeError(f"seq {seq} does not follow {previous}")
            previous = seq
        self.sent_seq = previous
        self._in_flight.append(previous)
        return encode_events_raw(rows)

    def heartbeat_frame(self, heartbeat: Heartbeat) -> str:
        """Frame a heartbeat."""
        return encode(heartbeat)

    def result_frame(self, result: CommandResult) -> str:
        """Frame a command result."""
        return encode(result)


# ---- hub side ------------------------------------------------------------------------


class HubProtocol:
    """The supervisor's end: requires hello, validates batches, enforces the window."""

    def __init__(self, *, window: int, max_batch_events: int) -> None:
        self.state = LinkState.HANDSHAKE
        self.window = window
        self.max_batch_events = max_batch_events
        self.hello: Hello | None = None
        self.received_seq = 0
        self.acked_seq = 0
        self._unacked: collections.deque[int] = collections.deque()

    def receive(self, frame: str | bytes) -> list[HubEvent]:
        """Feed one frame from an agent.

        Raises:
            ProtocolError: the frame is invalid or out of order; the link is closed.
        """
        if self.state is LinkState.CLOSED:
            raise _closed_error()
        try:
            return self._receive(decode(frame))
        except ProtocolError:
            self.state = LinkState.CLOSED
            raise

    def _receive(self, msg: Message) -> list[HubEvent]:
        if isinstance(msg, Hello):
            if self.hello is not None:
                raise ProtocolError(CloseCode.MALFORMED, "hello sent twice")
            if not msg.node_id or not msg.instance_key:
                raise ProtocolError(CloseCode.MALFORMED, "hello needs a non-empty node_id and instance_key")
            if msg.last_seq < 0:
                raise ProtocolError(CloseCode.MALFORMED, "hello.last_seq must not be negative")
            self.hello = msg
            return [HelloReceived(msg)]
        if self.hello is None:
            raise ProtocolError(CloseCode.MALFORMED, f"first frame must be hello, got {type(msg).__name__}")
        if self.state is not LinkState.OPEN:
            raise ProtocolError(CloseCode.MALFORMED, "frame before welcome was sent")
        if isinstance(msg, Events):
            return [self._on_events(msg)]
        if isinstance(msg, CommandResult):
            return [ResultReceived(msg)]
        if isinstance(msg, Heartbeat):
            return [HeartbeatReceived(msg)]
        raise ProtocolError(CloseCode.MALFORMED, f"unexpected {type(msg).__name__} from agent")

    def _on_events(self, msg: Events) -> BatchReceived:
        events = msg.events
        if not events:
            raise ProtocolError(CloseCode.MALFORMED, "empty events batch")
        if len(events) > self.max_batch_events:
            raise ProtocolError(
                CloseCode.MALFORMED, f"batch of {len(events)} events exceeds the limit of {self.max_batch_events}"
            )
        previous = self.received_seq
        assert self.hello is not None
        node_id = self.hello.node_id
        for event in events:
            if event.state is not None and event.state.node_id != node_id:
                raise ProtocolError(
                    CloseCode.MALFORMED, f"event seq {event.seq} carries a session of node {event.state.node_id!r}"
                )
            if event.seq <= previous:
                raise ProtocolError(CloseCode.MALFORMED, f"event seq {event.seq} does not follow {previous}")
            previous = event.seq
        if len(self._unacked) >= self.window:
            raise ProtocolError(CloseCode.WINDOW_EXCEEDED, f"more than {self.window} unacknowledged batches")
        self.received_seq = previous
        self._unacked.append(previous)
        return BatchReceived(events)

    def welcome(self, welcome: Welcome) -> str:
        """Accept the agent: frame the welcome and open the link."""
        if self.hello is None or self.state is not LinkState.HANDSHAKE:
            raise RuntimeError("welcome before hello, or twice")
        self.state = LinkState.OPEN
        self.received_seq = self.acked_seq = welcome.ack_seq
        return encode(welcome)

    def ack(self, seq: int) -> str:
        """Frame a cumulative ack once everything up to *seq* is durably stored."""
        if seq < self.acked_seq or seq > self.received_seq:
            raise RuntimeError(f"ack {seq} outside [{self.acked_seq}, {self.received_seq}]")
        while self._unacked and self._unacked[0] <= seq:
            self._unacked.popleft()
        self.acked_seq = seq
        return encode(Ack(seq))

    def command_frame(self, command: CommandMsg) -> str:
        """Frame a command for the agent."""
        return encode(command)

    def heartbeat_frame(self, heartbeat: Heartbeat) -> str:
        """Frame a heartbeat for the agent."""
        return encode(heartbeat)

    def manifest_frame(self, manifest: EnvManifest) -> str:
        """Frame the environment manifest (only for agents announcing ``ENV_CAPABILITY``).

        Raises:
            RuntimeError: the agent did not announce the capability, or before the welcome.
        """
        if self.hello is None or self.state is not LinkState.OPEN:
            raise RuntimeError("manifest before the welcome")
        if ENV_CAPABILITY not in self.hello.capabilities:
            raise RuntimeError("the agent does not accept env_manifest frames")
        return encode(manifest)
