"""Wire protocol v1 messages (agent <-> supervisor), as attrs value objects.

Every frame is one JSON text frame ``{"v": 1, "type": <tag>, ...fields}``. The tag of
each class is in :data:`TAGS`. This module imports no I/O library (sans-IO).
"""

from __future__ import annotations

from typing import Final, TypeAlias

import attrs

from halswarm.jsontypes import JSONObject
from halswarm.models import CommandType, Project, Resources, Session

__all__ = [
    "ENV_CAPABILITY",
    "PROTOCOL_VERSION",
    "TAGS",
    "Ack",
    "CommandMsg",
    "CommandResult",
    "EnvManifest",
    "Events",
    "Heartbeat",
    "Hello",
    "Message",
    "SessionSnapshot",
    "Welcome",
    "WireEvent",
]

PROTOCOL_VERSION: Final = 1
#: An agent listing this in ``hello.capabilities`` accepts :class:`EnvManifest` frames.
#: The supervisor never sends one to an agent that does not (older agents would close
#: the connection on an unknown frame type).
ENV_CAPABILITY: Final = "env_manifest"


@attrs.frozen
class SessionSnapshot:
    """A session's state as of event ``seq`` (the last event that changed it)."""

    seq: int
    session: Session


@attrs.frozen
class Hello:
    """Agent -> supervisor, first frame: who the node is and what it holds.

    ``instance_key`` is persisted in the agent's data dir: the same instance may replace
    its own stale connection, a different one may not take a live ``node_id``.
    ``last_seq`` is the last event seq the agent assigned (0 if none).
    """

    node_id: str
    instance_key: str
    hostname: str
    version: str
    projects: list[Project] = attrs.field(factory=list)
    capabilities: list[str] = attrs.field(factory=list)
    last_seq: int = 0
    sessions: list[SessionSnapshot] = attrs.field(factory=list)
    #: Component health and facts as of connecting (then kept current by heartbeats),
    #: so a node never shows "online" with a previous connection's health.
    health: dict[str, str] = attrs.field(factory=dict)
    facts: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Welcome:
    """Supervisor -> agent: accepted. Send everything after ``ack_seq``."""

    ack_seq: int
    heartbeat_interval: float
    window: int
    max_batch_events: int
    max_frame_bytes: int
    server_version: str


@attrs.frozen
class WireEvent:
    """One event. ``state`` is the session's full state after the event, when it changed."""

    seq: int
    ts: str
    type: str
    session_id: str | None = None
    project: str | None = None
    data: JSONObject = attrs.field(factory=dict)
    state: Session | None = None
    #: ``data`` as JSON, when the codec already produced it (never on the wire): the
    #: store writes these bytes instead of serialising every event a second time.
    data_json: bytes | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)


@attrs.frozen
class Events:
    """Agent -> supervisor: a batch of events with strictly increasing seqs."""

    events: list[WireEvent]


@attrs.frozen
class Ack:
    """Supervisor -> agent: every event with seq <= ``seq`` is durably stored."""

    seq: int


@attrs.frozen
class Heartbeat:
    """Both directions. Agents add their resource usage and component health."""

    ts: str
    resources: Resources | None = None
    health: dict[str, str] | None = None
    #: What the node runs (e.g. ``opencode_version``): shown, never judged.
    facts: dict[str, str] | None = None
    #: Agents: events in the outbox not yet acknowledged (``None``: not reported, as
    #: from agents older than issue 8). Exported as ``hal_o_swarm_node_outbox_backlog``.
    outbox_backlog: int | None = None


@attrs.frozen
class CommandMsg:
    """Supervisor -> agent: run a command. ``deadline`` is the seconds allowed to finish.

    A relative budget rather than an absolute time, because node clocks drift. The
    command's type travels as ``command_type``: ``type`` is the envelope's tag.
    """

    command_id: str
    idempotency_key: str
    command_type: CommandType
    target: str
    args: JSONObject = attrs.field(factory=dict)
    deadline: float = 60.0
    correlation_id: str = ""


@attrs.frozen
class CommandResult:
    """Agent -> supervisor: the outcome of a command, sent exactly once per delivery."""

    command_id: str
    ok: bool
    result: JSONObject | None = None
    error: str | None = None
    #: The command's correlation id, echoed back ("" from agents older than issue 8);
    #: the supervisor logs with its own record's id and uses this only as a fallback.
    correlation_id: str = ""


@attrs.frozen
class EnvManifest:
    """Supervisor -> agent: the environment manifest (issue #9), after the welcome and on change.

    ``manifest`` is the parsed, self-contained manifest (file references already read
    in, defaults merged) as JSON; ``manifest_hash`` its SHA-256 (``manifest_hash()``), so
    an agent can tell a resend from a change. ``None``: the supervisor holds no manifest.
    Sent only to agents whose hello lists :data:`ENV_CAPABILITY`.
    """

    manifest_hash: str
    manifest: JSONObject | None = None


Message: TypeAlias = Hello | Welcome | Events | Ack | Heartbeat | CommandMsg | CommandResult | EnvManifest

TAGS: Final[dict[type[Message], str]] = {
    Hello: "hello",
    Welcome: "welcome",
    Events: "events",
    Ack: "ack",
    Heartbeat: "heartbeat",
    CommandMsg: "command",
    CommandResult: "command_result",
    EnvManifest: "env_manifest",
}
