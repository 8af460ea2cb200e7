"""Prometheus metrics with the product's public names (``hal_o_swarm_*``).

Each supervisor owns its own registry (tests run several in one process). Gauges that
describe current state (nodes online, sessions by status, connections) are computed
at scrape time from the live registry and tracker, so they can never drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from halswarm.models import SESSION_STATUSES

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["STORE_WRITE_OPS", "ChannelState", "DiscordFigures", "FleetFigures", "LiveState", "Metrics"]

_MAX_EVENT_TYPES: Final = 200  # bound label cardinality: agents choose event type names
#: The ``op`` label values of ``hal_o_swarm_store_write_seconds`` (a closed set).
STORE_WRITE_OPS: Final = ("ingest", "command_insert", "command_update")
# Store writes and ingest lag: an fsync on a busy disk can take seconds; a stalled store
# (retried with backoff) minutes. Buckets up to 60 s, then +Inf.
_SLOW_IO_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@attrs.frozen
class FleetFigures:
    """The node registry's link figures at scrape time."""

    #: Unacknowledged events per online node (as of its last heartbeat).
    outbox_backlog: Mapping[str, int]
    reconnects: int  # connections from a node that had already connected this run
    unclean_disconnects: int  # connections that dropped without a close frame


@attrs.frozen
class LiveState:
    """Callables the scrape-time collector reads."""

    nodes_online: Callable[[], int]
    connections: Callable[[], int]
    sessions_by_status: Callable[[], Mapping[str, int]]
    fleet: Callable[[], FleetFigures] | None = None


class _LiveCollector(Collector):
    def __init__(self, live: LiveState) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        nodes = GaugeMetricFamily("hal_o_swarm_nodes_online", "Nodes currently online.")
        nodes.add_metric([], self.live.nodes_online())
        yield nodes
        conns = GaugeMetricFamily("hal_o_swarm_connections_active", "Agent WebSocket connections open now.")
        conns.add_metric([], self.live.connections())
        yield conns
        sessions = GaugeMetricFamily("hal_o_swarm_sessions_active", "Tracked sessions by status.", labels=["status"])
        counts = self.live.sessions_by_status()
        for status in SESSION_STATUSES:
            sessions.add_metric([status], counts.get(status, 0))
        yield sessions
        if self.live.fleet is not None:
            yield from _fleet_metrics(self.live.fleet())


def _fleet_metrics(fleet: FleetFigures) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "hal_o_swarm_node_outbox_backlog",
        "Events waiting in a node's outbox for the supervisor's ack (online nodes, as of their last heartbeat).",
        labels=["node_id"],
    )
    for node_id, pending in sorted(fleet.outbox_backlog.items()):
        backlog.add_metric([node_id], pending)
    yield backlog
    yield CounterMetricFamily(
        "hal_o_swarm_node_reconnects",
        "Connections from a node that had already connected since start.",
        fleet.reconnects,
    )
    yield CounterMetricFamily(
        "hal_o_swarm_node_unclean_disconnects",
        "Agent connections that dropped without a close handshake.",
        fleet.unclean_disconnects,
    )


@attrs.frozen
class DiscordFigures:
    """The Discord channel's state at scrape time."""

    up: bool  # its health is "ok"
    gateway_connects: int  # gateway connection attempts so far
    rate_limited: int  # REST 429 answers so far


@attrs.frozen
class ChannelState:
    """Callables the channels' scrape-time collector reads (None: not configured)."""

    route_queues: Callable[[], Mapping[str, int]] | None = None
    discord: Callable[[], DiscordFigures] | None = None


class _ChannelCollector(Collector):
    def __init__(self, state: ChannelState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        if self.state.route_queues is not None:
            depth = GaugeMetricFamily(
                "hal_o_swarm_route_queue_depth",
                "Waiting in the router: committed transactions (queue=events) or deliveries per target.",
                labels=["queue"],
            )
            for queue, size in self.state.route_queues().items():
                depth.add_metric([queue], size)
            yield depth
        if self.state.discord is not None:
            figures = self.state.discord()
            up = GaugeMetricFamily("hal_o_swarm_discord_up", "1 while the Discord channel is healthy (see /readyz).")
            up.add_metric([], 1 if figures.up else 0)
            yield up
            yield CounterMetricFamily(
                "hal_o_swarm_discord_gateway_connects", "Discord gateway connection attempts.", figures.gateway_connects
            )
            yield CounterMetricFamily(
                "hal_o_swarm_discord_rate_limited", "Discord REST answers that were 429.", figures.rate_limited
            )


class Metrics:
    """All supervisor metrics, registered in a private registry."""

    def __init__(self) -> None:
        # *_created series double the scrape size and nobody alerts on them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_total = Counter("hal_o_swarm_events", "Events stored, by type.", ["type"], registry=r)
        self.commands_total = Counter(
            "hal_o_swarm_commands", "Commands finished, by type and status.", ["type", "status"], registry=r
        )
        self.command_duration = Histogram(
            "hal_o_swarm_command_duration_seconds",
            "Time from submission to outcome, by type.",
            ["type"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.ingest_batches = Counter(
            "hal_o_swarm_ingest_transactions", "Store transactions of event batches.", registry=r
        )
        self.ingest_errors = Counter("hal_o_swarm_ingest_errors", "Failed store transactions (retried).", registry=r)
        self.ingest_lag = Histogram(
            "hal_o_swarm_ingest_lag_seconds",
            "Time from a batch's arrival at the supervisor to its commit (includes queueing and retries).",
            buckets=_SLOW_IO_BUCKETS,
            registry=r,
        )
        self.store_write = Histogram(
            "hal_o_swarm_store_write_seconds",
            "Duration of one store write transaction, by operation (ingest, command_insert, command_update).",
            ["op"],
            buckets=_SLOW_IO_BUCKETS,
            registry=r,
        )
        self.duplicates_dropped = Counter(
            "hal_o_swarm_duplicate_events_dropped",
            "Events dropped before storing because they were stored already (resends after a reconnect).",
            registry=r,
        )
        self.start_time = Gauge(
            "hal_o_swarm_start_time_seconds", "When this supervisor started, in Unix seconds.", registry=r
        )
        self.start_time.set_to_current_time()
        self.frames_rejected = Counter(
            "hal_o_swarm_frames_rejected", "Agent frames rejected, by close code.", ["code"], registry=r
        )
        self.auth_failures = Counter(
            "hal_o_swarm_auth_failures", "Rejected credentials, by listener.", ["listener"], registry=r
        )
        self.nodes_offline_total = Counter(
            "hal_o_swarm_node_offline_transitions", "Nodes marked offline.", ["reason"], registry=r
        )
        # Cost tracking (issue 5): set by the cost poller.
        self.cost_polls = Counter(
            "hal_o_swarm_cost_polls",
            "Provider cost polls, by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.cost_poll_duration = Histogram(
            "hal_o_swarm_cost_poll_duration_seconds",
            "Time one provider poll took (every part of its window), whatever its outcome.",
            ["provider"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.cost_today_usd = Gauge(
            "hal_o_swarm_cost_today_usd",
            "Today's (UTC) spend by provider: the provider's bill once a poll covers today, else opencode's estimate.",
            ["provider"],
            registry=r,
        )
        self.cost_budget_used_percent = Gauge(
            "hal_o_swarm_cost_budget_used_percent",
            "Today's spend as a percentage of each daily budget (scope: fleet or a project).",
            ["scope"],
            registry=r,
        )
        # Event routing (issue 7): set by the router service.
        self.route_deliveries = Counter(
            "hal_o_swarm_route_deliveries",
            "Routed deliveries by target (discord#x, webhook#x, slack#x) and outcome "
            "(delivered, failed, dropped: the target's queue was full, unavailable: no sender).",
            ["target", "outcome"],
            registry=r,
        )
        self.route_events_dropped = Counter(
            "hal_o_swarm_route_events_dropped",
            "Committed events the router never saw: its queue was full.",
            registry=r,
        )
        self.discord_interactions = Counter(
            "hal_o_swarm_discord_interactions",
            "Discord interactions by kind (command, click, autocomplete, ping) and answer "
            "(immediate, deferred: the handler took longer than the guard, failed, busy: too many at once).",
            ["kind", "answer"],
            registry=r,
        )
        # Data retention (issue 10): set by the retention job.
        self.retention_deleted = Counter(
            "hal_o_swarm_retention_deleted_rows",
            "Rows the retention job deleted, by table (events, sessions, commands).",
            ["table"],
            registry=r,
        )
        self.retention_pages_freed = Counter(
            "hal_o_swarm_retention_pages_freed",
            "Database pages the retention job gave back to the file system (incremental vacuum).",
            registry=r,
        )
        self.retention_passes = Counter(
            "hal_o_swarm_retention_passes", "Retention passes, by outcome (ok, failed).", ["outcome"], registry=r
        )
        self.retention_duration = Histogram(
            "hal_o_swarm_retention_pass_duration_seconds",
            "Time one retention pass took (every batch and the vacuum), whatever its outcome.",
            buckets=_SLOW_IO_BUCKETS,
            registry=r,
        )
        self._event_types: set[str] = set()

    def attach_live_state(self, live: LiveState) -> None:
        """Register the scrape-time gauges (once the registry and tracker exist)."""
        self.registry.register(_LiveCollector(live))

    def observe_store_write(self, op: str, seconds: float) -> None:
        """Record one store write transaction's duration (*op* in ``STORE_WRITE_OPS``)."""
        self.store_write.labels(op if op in STORE_WRITE_OPS else "other").observe(seconds)

    def attach_channels(self, channels: ChannelState) -> None:
        """Register the router's and Discord's scrape-time figures."""
        self.registry.register(_ChannelCollector(channels))

    def count_events(self, counts: Mapping[str, int]) -> None:
        """Add per-type event counts of one committed transaction."""
        for event_type, n in counts.items():
            label = event_type
            if label not in self._event_types:
                if len(self._event_types) >= _MAX_EVENT_TYPES:
                    label = "other"
                else:
                    self._event_types.add(label)
            self.events_total.labels(label).inc(n)

    def render(self) -> bytes:
        """The text exposition format (0.0.4)."""
        return self.exposition(None)[0]

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition the scraper asked for, and its content type.

        Args:
            accept: the request's ``Accept`` header. An OpenMetrics type gets
                OpenMetrics; anything else (or nothing) the text format 0.0.4.

        Returns:
            ``(body, content_type)``; the content type is never blank (Prometheus 3
            rejects a scrape without one).
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
