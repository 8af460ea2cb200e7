"""What policies see and what they decide: immutable snapshots in, actions out (issue #6).

Everything here is plain data: no trio, no store, no clock. The engine
(:mod:`halswarm.policy.engine`) builds a :class:`Snapshot` each tick, calls the decision
functions with the persisted policy state and ``now`` (seconds on one timeline,
wall-clock epoch seconds in production), then persists the returned state and sends
each :class:`PolicyAction` as a normal command with actor ``policy:<name>``.

Times (``now``, ``status_since``, ``last_activity``) are floats on the caller's timeline;
tests use small plain numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar

import attrs

from halswarm.jsontypes import JSONObject
from halswarm.models import ACTIVE_STATUSES, CommandType, NodeStatus, SessionStatus
from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    from halswarm.models import Node, Session

__all__ = [
    "POLICY_NAMES",
    "Action",
    "ActionKind",
    "Decision",
    "NodeView",
    "PolicyAction",
    "PolicyName",
    "SessionView",
    "Snapshot",
    "SpendView",
    "Suppressed",
]

PolicyName = Literal[
    "resume_on_idle", "restart_on_compaction", "kill_on_cost", "error_loop", "stuck_busy", "node_offline"
]
#: Every policy, in the order :func:`halswarm.policy.decide_all` runs them (highest
#: priority first: a session commanded by one is left alone by the later ones that tick).
POLICY_NAMES: Final[tuple[PolicyName, ...]] = (
    "kill_on_cost",
    "restart_on_compaction",
    "error_loop",
    "stuck_busy",
    "resume_on_idle",
    "node_offline",
)

ActionKind = Literal["command", "alert"]


def _epoch(text: str | None) -> float | None:
    return parse_ts(text).timestamp() if text else None


@attrs.frozen
class SessionView:
    """One tracked session as policies see it.

    ``status`` is the status the node last reported; ``reachable`` is False while its
    node is offline (the API shows such sessions as ``unreachable``). Keeping the two
    apart means a short node outage does not end an idle or busy episode. A status of
    ``unreachable`` is accepted too and treated as not reachable.

    ``status_since`` is when the engine first saw the current status (on ``now``'s
    timeline). It identifies an episode: a new value means the session left the status
    and came back, so it must be stable across supervisor restarts for episodes to be.
    """

    id: str
    node_id: str
    project: str
    status: SessionStatus
    status_since: float
    compaction_count: int = 0
    consecutive_errors: int = 0
    last_activity: float | None = None
    reachable: bool = True
    predecessor_id: str | None = None

    @property
    def is_reachable(self) -> bool:
        """Commands can reach it: its node is online and it is not shown as unreachable."""
        return self.reachable and self.status != "unreachable"

    @property
    def is_active(self) -> bool:
        """Still alive on its node (not completed), whether reachable or not."""
        return self.status in ACTIVE_STATUSES or self.status == "unreachable"

    @property
    def quiet_since(self) -> float:
        """Start of the current quiet stretch: the later of ``status_since`` and ``last_activity``."""
        if self.last_activity is None:
            return self.status_since
        return max(self.status_since, self.last_activity)

    @classmethod
    def from_session(cls, session: Session, *, status_since: float, reachable: bool = True) -> SessionView:
        """Build from a tracked :class:`~halswarm.models.Session` (``last_activity`` to epoch seconds).

        Raises:
            ValueError: ``last_activity`` is not an RFC 3339 timestamp.
        """
        return cls(
            id=session.id,
            node_id=session.node_id,
            project=session.project,
            status=session.status,
            status_since=status_since,
            compaction_count=session.compaction_count,
            consecutive_errors=session.consecutive_errors,
            last_activity=_epoch(session.last_activity),
            reachable=reachable,
            predecessor_id=session.predecessor_id,
        )


@attrs.frozen
class NodeView:
    """One known node: its status and when the engine first saw that status.

    ``grace`` marks a node shown offline during the engine's startup grace without
    having been seen in this run: after a supervisor restart every node is offline
    until its agent reconnects, so that status says nothing yet. node_offline neither
    alerts on such a node nor forgets an outage it already reported.
    """

    id: str
    status: NodeStatus
    status_since: float
    grace: bool = False

    @classmethod
    def from_node(cls, node: Node, *, status_since: float, grace: bool = False) -> NodeView:
        """Build from a :class:`~halswarm.models.Node`."""
        return cls(id=node.id, status=node.status, status_since=status_since, grace=grace)


@attrs.frozen
class SpendView:
    """Today's spend from cost tracking (the totals rule of :mod:`halswarm.cost.budgets`)."""

    #: The UTC day the totals are for (``YYYY-MM-DD``); a new day re-arms kill_on_cost.
    day: str
    fleet: Decimal
    projects: Mapping[str, Decimal] = attrs.field(factory=dict)

    def of(self, project: str | None) -> Decimal:
        """The fleet's total (None) or one project's."""
        return self.fleet if project is None else self.projects.get(project, Decimal(0))


@attrs.frozen
class Snapshot:
    """Everything one tick of the policies looks at.

    ``in_flight`` holds the ids of sessions that have a command still pending or sent
    (from anyone): policies other than kill_on_cost leave them alone until it finishes,
    so a policy never piles a resume onto a human's prompt or a restart in progress.
    ``spend`` is None when cost tracking has no figure for today yet.
    """

    sessions: tuple[SessionView, ...] = ()
    nodes: tuple[NodeView, ...] = ()
    spend: SpendView | None = None
    in_flight: frozenset[str] = frozenset()

    def session_ids(self) -> frozenset[str]:
        """Ids of every session in the snapshot (state of others is pruned)."""
        return frozenset(s.id for s in self.sessions)


@attrs.frozen
class PolicyAction:
    """One thing a policy decided to do: a command to send, or an alert to raise.

    ``idempotency_key`` is derived from the episode (same episode, same key), so if the
    engine sends a decision again after a crash the command layer runs it once.
    ``dry_run`` actions are logged and emitted but never sent; the policy state still
    advanced as if they had been (docs/POLICIES.md).
    """

    policy: PolicyName
    kind: ActionKind
    target: str  # a session id (commands and session alerts) or a node id
    reason: str
    idempotency_key: str
    command_type: CommandType | None = None
    args: JSONObject = attrs.field(factory=dict)
    project: str | None = None
    node_id: str | None = None
    dry_run: bool = False

    @property
    def actor(self) -> str:
        """The actor commands and audit rows carry: ``policy:<name>``."""
        return f"policy:{self.policy}"


@attrs.frozen
class Suppressed:
    """A policy would act but its retry cap is used up (``policy.suppressed``, once per episode)."""

    policy: PolicyName
    target: str
    reason: str
    project: str | None = None
    retries_used: int = 0
    #: When the retry budget comes back (None: never within this window, e.g. max_retries 0).
    next_reset: float | None = None
    dry_run: bool = False

    @property
    def actor(self) -> str:
        """``policy:<name>``."""
        return f"policy:{self.policy}"


Action = PolicyAction | Suppressed

S = TypeVar("S")


@attrs.frozen
class Decision(Generic[S]):
    """The outcome of one policy's tick: what to do, the state to persist, log notes."""

    actions: tuple[Action, ...]
    state: S
    notes: tuple[str, ...] = ()

    def commands(self) -> list[PolicyAction]:
        """The command actions (dry run included), in decision order."""
        return [a for a in self.actions if isinstance(a, PolicyAction) and a.kind == "command"]
