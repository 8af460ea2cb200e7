"""Node registry: who is connected, who is online, and which agent instance owns each id.

A node is ``online`` from its hello until it closes cleanly or goes silent for
``heartbeat_interval x heartbeat_timeout_count``; an abrupt disconnect alone does not
make it offline (a quick agent restart should not page anyone). ``degraded`` is an
online node whose agent reports an unhealthy component.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from halswarm.models import Node, NodeStatus, Resources
from halswarm.obs.logging import ctx
from halswarm.obs.metrics import FleetFigures
from halswarm.proto.errors import CloseCode
from halswarm.store.sql import NodeRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from halswarm.proto.messages import CommandMsg, Heartbeat, Hello

__all__ = ["LinkGoneError", "NodeConflictError", "NodeEntry", "NodeLink", "NodeRegistry"]

log = logging.getLogger(__name__)


class LinkGoneError(Exception):
    """The connection closed before a frame could be sent."""


class NodeLink(Protocol):
    """What the registry and dispatcher need from a live agent connection."""

    async def send_command(self, command: CommandMsg) -> None:
        """Send a command frame. Raises ``LinkGoneError`` when the connection is closed."""

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Ask the connection to close (without waiting)."""


class NodeConflictError(Exception):
    """Another agent instance holds this node id on a live connection."""


@attrs.define
class NodeEntry:
    """Live and persisted facts about one node."""

    record: NodeRecord
    online: bool = False
    link: NodeLink | None = None
    last_seen: float = 0.0
    resources: Resources = attrs.field(factory=Resources)
    health: dict[str, str] = attrs.field(factory=dict)
    facts: dict[str, str] = attrs.field(factory=dict)  # live only: back with the next heartbeat
    last_heartbeat: str | None = None
    connected_at: str | None = None
    #: Unacknowledged events in the agent's outbox, as of its last heartbeat (None: not reported).
    outbox_backlog: int | None = None
    #: What the connected agent announced in its hello (e.g. ``env_manifest``).
    capabilities: frozenset[str] = frozenset()
    # Set (and replaced) whenever link or online changes: dispatchers wait on it.
    changed: trio.Event = attrs.field(factory=trio.Event)

    def status(self) -> NodeStatus:
        """online, degraded (online but a component is unhealthy) or offline."""
        if not self.online:
            return "offline"
        if any(v != "ok" for v in self.health.values()):
            return "degraded"
        return "online"

    def notify(self) -> None:
        """Wake everyone waiting for a change of this node."""
        self.changed.set()
        self.changed = trio.Event()


class NodeRegistry:
    """All known nodes. Mutated only on the trio thread (no locks needed)."""

    def __init__(self, on_reachability: Callable[[str, bool], None]) -> None:
        self._nodes: dict[str, NodeEntry] = {}
        self._on_reachability = on_reachability
        # Metrics (issue 8): read at scrape time by the metrics collector.
        self._attached: set[str] = set()  # node ids that connected during this run
        self.reconnects = 0
        self.unclean_disconnects = 0

    def load(self, records: list[NodeRecord]) -> None:
        """Known nodes from the store; all start offline until they connect."""
        for record in records:
            self._nodes[record.id] = NodeEntry(
                record=record,
                resources=record.resources or Resources(),
                health=dict(record.health),
                last_heartbeat=record.last_heartbeat,
                connected_at=record.connected_at,
            )

    def get(self, node_id: str) -> NodeEntry | None:
        """A node by id."""
        return self._nodes.get(node_id)

    def __iter__(self) -> Iterator[NodeEntry]:
        return iter(list(self._nodes.values()))

    def online_count(self) -> int:
        """Nodes online (including degraded)."""
        return sum(1 for e in self._nodes.values() if e.online)

    def nodes_hosting(self, project: str) -> list[NodeEntry]:
        """Nodes whose agent declared *project*, online ones first."""
        hosts = [e for e in self._nodes.values() if any(p.name == project for p in e.record.projects)]
        hosts.sort(key=lambda e: (not e.online, e.record.id))
        return hosts

    def attach(self, hello: Hello, link: NodeLink, *, now: float, wall: str) -> tuple[NodeEntry, bool]:
        """Register a connection that said hello.

        Returns:
            The entry and whether the node just came online.

        Raises:
            NodeConflictError: a different instance holds this node id on a live link.
        """
        entry = self._nodes.get(hello.node_id)
        if entry is not None and entry.link is not None:
            if entry.record.instance_key != hello.instance_key:
                raise NodeConflictError(
                    f"node_id {hello.node_id!r} is in use by another agent instance "
                    f"(host {entry.record.hostname!r}, connected since {entry.connected_at}); "
                    "give each agent its own node_id"
                )
            log.info("node reconnected, replacing its previous connection", extra=ctx(node_id=hello.node_id))
            entry.link.close_soon(CloseCode.REPLACED, "replaced by a newer connection of the same agent")
        if entry is None:
            entry = NodeEntry(record=NodeRecord(id=hello.node_id, first_seen=wall))
            self._nodes[hello.node_id] = entry
        elif entry.record.instance_key and entry.record.instance_key != hello.instance_key:
            log.warning(
                "node is now served by a different agent instance",
                extra=ctx(node_id=hello.node_id, hostname=hello.hostname),
            )
        entry.record = attrs.evolve(
            entry.record,
            instance_key=hello.instance_key,
            hostname=hello.hostname,
            version=hello.version,
            projects=list(hello.projects),
            first_seen=entry.record.first_seen or wall,
            connected_at=wall,
        )
        came_online = not entry.online
        if hello.node_id in self._attached:
            self.reconnects += 1
        self._attached.add(hello.node_id)
        entry.outbox_backlog = None  # until the first heartbeat of this connection
        entry.link = link
        entry.online = True
        entry.last_seen = now
        entry.connected_at = wall
        entry.health = dict(hello.health)
        entry.facts = dict(hello.facts)
        entry.capabilities = frozenset(hello.capabilities)
        entry.notify()
        if came_online:
            self._on_reachability(hello.node_id, True)
        return entry, came_online

    def detach(self, node_id: str, link: NodeLink, *, clean: bool) -> bool:
        """Forget a closed connection. A clean close takes the node offline at once.

        Returns:
            True when the node went offline because of this.
        """
        entry = self._nodes.get(node_id)
        if entry is None or entry.link is not link:
            return False  # already replaced by a newer connection
        entry.link = None
        if not clean:
            self.unclean_disconnects += 1
        went_offline = clean and entry.online
        if went_offline:
            entry.online = False
            self._on_reachability(node_id, False)
        entry.notify()
        return went_offline

    def touch(self, node_id: str, now: float) -> None:
        """Any frame from the node proves it is alive."""
        entry = self._nodes.get(node_id)
        if entry is not None:
            entry.last_seen = now

    def heartbeat(self, node_id: str, heartbeat: Heartbeat, wall: str) -> None:
        """Record what a heartbeat reports."""
        entry = self._nodes.get(node_id)
        if entry is None:
            return
        entry.last_heartbeat = wall
        if heartbeat.resources is not None:
            entry.resources = heartbeat.resources
        if heartbeat.health is not None:
            entry.health = dict(heartbeat.health)
        if heartbeat.facts is not None:
            entry.facts = dict(heartbeat.facts)
        if heartbeat.outbox_backlog is not None:
            entry.outbox_backlog = heartbeat.outbox_backlog

    def expire(self, node_id: str, reason: str) -> bool:
        """Mark a silent node offline and drop its connection. Returns True if it was online."""
        entry = self._nodes.get(node_id)
        if entry is None or not entry.online:
            return False
        entry.online = False
        if entry.link is not None:
            entry.link.close_soon(CloseCode.HEARTBEAT_TIMEOUT, reason)
            entry.link = None
        self._on_reachability(node_id, False)
        entry.notify()
        return True

    def fleet_figures(self) -> FleetFigures:
        """What ``/metrics`` shows about the fleet's links.

        The backlog covers online nodes that reported one: its label set is bounded by
        the known nodes, and a node's series disappears when it goes offline.
        """
        return FleetFigures(
            outbox_backlog={
                e.record.id: e.outbox_backlog for e in self._nodes.values() if e.online and e.outbox_backlog is not None
            },
            reconnects=self.reconnects,
            unclean_disconnects=self.unclean_disconnects,
        )

    def online_entries(self) -> list[NodeEntry]:
        """Entries of online nodes (a copy: safe to mutate the registry while iterating)."""
        return [e for e in self._nodes.values() if e.online]

    def to_node(self, entry: NodeEntry, sessions: int) -> Node:
        """The API view of a node."""
        r = entry.record
        return Node(
            id=r.id,
            hostname=r.hostname,
            status=entry.status(),
            projects=list(r.projects),
            version=r.version,
            resources=entry.resources,
            health=dict(entry.health),
            facts=dict(entry.facts),
            last_heartbeat=entry.last_heartbeat,
            connected_at=entry.connected_at,
            sessions=sessions,
        )

    def snapshot_record(self, entry: NodeEntry) -> NodeRecord:
        """The persisted form, with the live resource and health facts folded in."""
        return attrs.evolve(
            entry.record,
            resources=entry.resources,
            health=dict(entry.health),
            connected_at=entry.connected_at,
            last_heartbeat=entry.last_heartbeat,
        )
