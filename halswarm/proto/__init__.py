"""Wire protocol v1 between hal-agent and hal-supervisor (sans-IO: imports no trio)."""

from __future__ import annotations

from halswarm.proto.codec import decode, encode, encode_event_body, encode_events_raw
from halswarm.proto.errors import CloseCode, ProtocolError
from halswarm.proto.link import (
    AckReceived,
    AgentEvent,
    AgentProtocol,
    BatchReceived,
    CommandReceived,
    HeartbeatReceived,
    HelloReceived,
    HubEvent,
    HubProtocol,
    LinkState,
    ResultReceived,
    WelcomeReceived,
)
from halswarm.proto.messages import (
    PROTOCOL_VERSION,
    Ack,
    CommandMsg,
    CommandResult,
    Events,
    Heartbeat,
    Hello,
    Message,
    SessionSnapshot,
    Welcome,
    WireEvent,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AckReceived",
    "AgentEvent",
    "AgentProtocol",
    "BatchReceived",
    "CloseCode",
    "CommandMsg",
    "CommandReceived",
    "CommandResult",
    "Events",
    "Heartbeat",
    "HeartbeatReceived",
    "Hello",
    "HelloReceived",
    "HubEvent",
    "HubProtocol",
    "LinkState",
    "Message",
    "ProtocolError",
    "ResultReceived",
    "SessionSnapshot",
    "Welcome",
    "WelcomeReceived",
    "WireEvent",
    "decode",
    "encode",
    "encode_event_body",
    "encode_events_raw",
]
