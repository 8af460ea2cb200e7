"""Domain value objects shared by the supervisor, the agent, the wire protocol and halctl.

One set of models on both sides of every boundary, so the CLI can never read field
names the server does not send (a bug the original had). Conversion to and from JSON
happens only in :mod:`halswarm.convert`.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import attrs

from halswarm.jsontypes import JSONObject

__all__ = [
    "ACTIVE_STATUSES",
    "COMMAND_STATUSES",
    "COMMAND_TYPES",
    "NODE_STATUSES",
    "SESSION_STATUSES",
    "SUPERVISOR_NODE_ID",
    "TERMINAL_COMMAND_STATUSES",
    "Command",
    "CommandStatus",
    "CommandType",
    "Event",
    "Node",
    "NodeStatus",
    "Pending",
    "PermissionRequest",
    "Project",
    "Question",
    "QuestionRequest",
    "Resources",
    "Session",
    "SessionStatus",
    "Tokens",
]

#: Node id of the events the supervisor raises itself (node.online, node.offline...).
SUPERVISOR_NODE_ID: Final = "supervisor"

SessionStatus = Literal["starting", "busy", "idle", "retry", "waiting", "error", "completed", "unreachable"]
SESSION_STATUSES: Final[tuple[SessionStatus, ...]] = get_args(SessionStatus)
#: Statuses of a session that is still alive on its node (not finished).
ACTIVE_STATUSES: Final[frozenset[str]] = frozenset({"starting", "busy", "idle", "retry", "waiting", "error"})

NodeStatus = Literal["online", "degraded", "offline"]
NODE_STATUSES: Final[tuple[NodeStatus, ...]] = get_args(NodeStatus)

CommandType = Literal[
    "start_session",
    "prompt_session",
    "resume_session",
    "restart_session",
    "abort_session",
    "kill_session",
    "reply_permission",
    "answer_question",
    "env_check",
    "env_provision",
    "env_install",
]
COMMAND_TYPES: Final[tuple[CommandType, ...]] = get_args(CommandType)

CommandStatus = Literal["pending", "sent", "succeeded", "failed", "timed_out"]
COMMAND_STATUSES: Final[tuple[CommandStatus, ...]] = get_args(CommandStatus)
TERMINAL_COMMAND_STATUSES: Final[frozenset[str]] = frozenset({"succeeded", "failed", "timed_out"})


@attrs.frozen
class Project:
    """A project an agent hosts: a name unique in the fleet and its directory on the node."""

    name: str
    directory: str


@attrs.frozen
class Tokens:
    """Token counts of a session (its own plus its subagent children)."""

    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def total(self) -> int:
        """All tokens, as an operator would add them up."""
        return self.input + self.output + self.reasoning + self.cache_read + self.cache_write


@attrs.frozen
class PermissionRequest:
    """A tool call waiting for a human's approval (opencode ``permission.asked``)."""

    id: str
    permission: str
    patterns: list[str] = attrs.field(factory=list)
    title: str = ""
    asked_at: str | None = None


@attrs.frozen
class Question:
    """One question of a question request, with the labels it offers."""

    question: str
    header: str = ""
    options: list[str] = attrs.field(factory=list)


@attrs.frozen
class QuestionRequest:
    """A question the coding agent asked and waits to have answered."""

    id: str
    questions: list[Question] = attrs.field(factory=list)
    asked_at: str | None = None


@attrs.frozen
class Pending:
    """Human-in-the-loop requests of a session; any entry makes the session ``waiting``."""

    permissions: list[PermissionRequest] = attrs.field(factory=list)
    questions: list[QuestionRequest] = attrs.field(factory=list)

    def is_empty(self) -> bool:
        """True when nothing waits for a human."""
        return not self.permissions and not self.questions


@attrs.frozen
class Session:
    """The tracked state of one agent session, as the API and the wire carry it."""

    id: str
    node_id: str
    project: str
    directory: str = ""
    status: SessionStatus = "starting"
    title: str = ""
    model: str = ""
    tokens: Tokens = Tokens()
    cost_usd: float = 0.0
    compaction_count: int = 0
    consecutive_errors: int = 0
    pending: Pending = Pending()
    current_task: str | None = None
    predecessor_id: str | None = None
    started_at: str | None = None
    last_activity: str | None = None


@attrs.frozen
class Resources:
    """Resource usage a node reports with its heartbeats."""

    cpu_percent: float = 0.0
    mem_used_mb: float = 0.0
    disk_used_gb: float = 0.0


@attrs.frozen
class Node:
    """A node (one hal-agent) as the API shows it."""

    id: str
    hostname: str = ""
    status: NodeStatus = "offline"
    projects: list[Project] = attrs.field(factory=list)
    version: str = ""
    resources: Resources = Resources()
    health: dict[str, str] = attrs.field(factory=dict)
    facts: dict[str, str] = attrs.field(factory=dict)
    last_heartbeat: str | None = None
    connected_at: str | None = None
    sessions: int = 0


@attrs.frozen
class Event:
    """A stored event, as ``GET /sessions/{id}/events`` and ``GET /events`` answer it."""

    id: int
    node_id: str
    seq: int
    ts: str
    type: str
    session_id: str | None = None
    project: str | None = None
    data: JSONObject = attrs.field(factory=dict)


@attrs.frozen
class Command:
    """A command as persisted, audited and answered by ``POST /api/v1/commands``."""

    id: str
    type: CommandType
    target: str
    args: JSONObject = attrs.field(factory=dict)
    status: CommandStatus = "pending"
    result: JSONObject | None = None
    error: str | None = None
    actor: str = ""
    source: str = ""
    correlation_id: str = ""
    idempotency_key: str = ""
    node_id: str | None = None
    created_at: str = ""
    finished_at: str | None = None
