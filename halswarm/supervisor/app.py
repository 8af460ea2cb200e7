"""``run_supervisor``: the supervisor's nursery tree.

::

    run_supervisor
    └─ store (thread gate)                 open for the whole run, closed last
       └─ core nursery                     pipeline, dispatcher, heartbeat monitor, cost poller, policy engine,
          │                                dependencies (completions -> dependant starts)
          │                                Discord channel (commands, gateway, alerts) when configured
          │                                event router (routes -> Discord, webhooks, Slack; idle without routes)
          │                                retention job (old events, sessions, commands; docs/DATA.md)
          │                                once ready: systemd monitor (watchdog, status), config reloader
          └─ edge nursery                  hub (:8420), HTTP API (:8421)

Ready (the hub and HTTP API listen, the store is open and migrated): ``task_status``
gets the handle and systemd ``READY=1``. Reload requests (SIGHUP) are served from then
on (:mod:`halswarm.supervisor.reload`).

Shutdown (the ``shutdown`` event): systemd hears ``STOPPING=1``; the hub and HTTP server
stop accepting; in-flight batches are committed and acknowledged; connections close
with 1001; then the core is cancelled and the store closed. All within
``server.shutdown_grace_sec`` per stage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.channels.discord.service import DiscordService
from halswarm.channels.discord.supervisor_backend import SupervisorDiscordBackend
from halswarm.channels.router_service import PostDiscord, RouterService, RouterTuning
from halswarm.cost.budgets import today_spend, unmapped_budget_warnings
from halswarm.cost.poller import CostPoller
from halswarm.cost.providers import sources_from_config
from halswarm.cost.reporter import CostReporter
from halswarm.http.context import ApiContext
from halswarm.http.server import HttpServer
from halswarm.models import ACTIVE_STATUSES
from halswarm.obs.logging import ctx
from halswarm.obs.metrics import ChannelState, LiveState, Metrics
from halswarm.policy.completions import COMPLETED_EVENT
from halswarm.policy.dependency_engine import DependencyEngine
from halswarm.policy.engine import PolicyEngine
from halswarm.sdnotify import Notifier, ServiceMonitor
from halswarm.store import Store, open_store
from halswarm.supervisor.dispatcher import Dispatcher
from halswarm.supervisor.env import EnvService
from halswarm.supervisor.heartbeat import HeartbeatMonitor
from halswarm.supervisor.hub import Hub
from halswarm.supervisor.installs import InstallApprovals
from halswarm.supervisor.liveness import supervisor_problem
from halswarm.supervisor.pipeline import SUPERVISOR_NODE_ID, Pipeline
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.reload import ConfigReloader, ReloadRequest
from halswarm.supervisor.retention import RetentionJob, RetentionTuning
from halswarm.supervisor.tracker import SessionTracker
from halswarm.timeutil import Clock, format_ts, system_now
from halswarm.tls import server_ssl_context

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from halswarm.config.supervisor import SupervisorConfig
    from halswarm.cost.budgets import TodaySpend
    from halswarm.cost.model import CostSource

__all__ = ["SupervisorHandle", "run_supervisor"]

log = logging.getLogger(__name__)


@attrs.frozen
class SupervisorHandle:
    """What a running supervisor exposes to its starter (tests, the demo)."""

    ws_port: int
    http_port: int
    store: Store
    tracker: SessionTracker
    registry: NodeRegistry
    dispatcher: Dispatcher
    pipeline: Pipeline
    metrics: Metrics
    shutdown: trio.Event
    policies: PolicyEngine
    dependencies: DependencyEngine
    #: The event router (issue #7); idle while no ``routes`` are configured.
    router: RouterService
    #: Reloads the config file (SIGHUP; issue 10).
    reloader: ConfigReloader
    #: systemd's watchdog and status (issue 10).
    monitor: ServiceMonitor
    #: The Discord channel (``post_alert`` for the event router), when configured.
    discord: DiscordService | None = None
    #: The environment manifest and check reports (issue #9).
    env: EnvService | None = None
    #: The retention job (issue #10).
    retention: RetentionJob | None = None
    #: Approvals of declared installs (issue #9), when the environment manifest is configured.
    installs: InstallApprovals | None = None


async def run_supervisor(
    config: SupervisorConfig,
    *,
    shutdown: trio.Event,
    now: Clock = system_now,
    cost_sources: Sequence[CostSource] | None = None,
    post_discord: PostDiscord | None = None,
    retention: RetentionTuning | None = None,
    notifier: Notifier | None = None,
    config_path: Path | None = None,
    reload_requests: trio.MemoryReceiveChannel[ReloadRequest] | None = None,
    task_status: trio.TaskStatus[SupervisorHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the supervisor until *shutdown* is set.

    *cost_sources* replaces the provider APIs built from ``config.cost`` (tests).
    *post_discord* replaces the Discord service for the router's ``discord#<name>``
    deliveries (tests); without either they are logged "discord not configured".
    *retention* replaces the retention job's schedule and batch sizes (tests).
    *notifier* tells systemd about readiness, reloads and shutdown and pings its
    watchdog (default: none). *config_path* is the file *config* came from, re-read on
    each of *reload_requests* (:mod:`halswarm.supervisor.reload`).

    Raises:
        StoreError: the database cannot be opened.
        OSError: a port cannot be bound.
        TlsConfigError: (an OSError) the TLS certificate or key cannot be loaded.

    Cancellation: cancelling skips the graceful drain; the store is still closed.
    """
    if notes := config.not_yet_active():
        log.warning(
            "configured but not active in this version: %s (accepted so configs keep working)", ", ".join(notes)
        )
    async with open_store(Path(config.database.path)) as store:
        state = await store.load_state()
        # Nobody waits for these any more, and their outcome is unknown: say so.
        orphaned = await store.fail_unfinished_commands(
            format_ts(now()), "supervisor restarted before the command finished; its outcome is unknown"
        )
        if orphaned:
            log.warning("marked %d unfinished commands from the previous run as failed", orphaned)
        tracker = SessionTracker()
        registry = NodeRegistry(on_reachability=tracker.set_node_reachable)
        registry.load(state.nodes)
        tracker.load(state.sessions)
        metrics = Metrics()
        last_seqs = {n.id: n.last_seq for n in state.nodes}
        last_seqs[SUPERVISOR_NODE_ID] = state.supervisor_seq
        pipeline = Pipeline(store, tracker, metrics, now=now, last_seqs=last_seqs)
        dispatcher = Dispatcher(
            store, registry, tracker, metrics, now=now, default_timeout=config.server.command_timeout_sec
        )

        def node_offline(node_id: str, reason: str) -> None:
            metrics.nodes_offline_total.labels("heartbeat" if "heartbeat" in reason else "disconnect").inc()
            pipeline.emit("node.offline", {"node_id": node_id, "reason": reason})

        monitor = HeartbeatMonitor(
            registry,
            interval=config.server.heartbeat_interval_sec,
            count=config.server.heartbeat_timeout_count,
            on_offline=node_offline,
            congested=pipeline.congested,
        )
        env = EnvService(
            store,
            path=config.env.resolved_manifest_path(),
            emit=pipeline.emit,
            now=now,
        )
        await env.load()
        pipeline.on_committed(env.committed)
        tls = config.security.tls
        tls_files = (tls.cert_path, tls.key_path) if tls.enabled and tls.cert_path and tls.key_path else None
        hub = Hub(
            config.server,
            registry=registry,
            tracker=tracker,
            pipeline=pipeline,
            store=store,
            metrics=metrics,
            now=now,
            on_result=dispatcher.on_result,
            on_node_offline=node_offline,
            shutdown=shutdown,
            # WSS with security.tls (a bad certificate or key fails here, naming the file).
            ssl_context=server_ssl_context(*tls_files) if tls_files is not None else None,
            origin_allowlist=config.security.origin_allowlist,
            env=env,
        )
        metrics.attach_live_state(
            LiveState(
                nodes_online=registry.online_count,
                connections=lambda: hub.connections,
                sessions_by_status=tracker.counts_by_status,
                fleet=registry.fleet_figures,
            )
        )

        sources: list[CostSource] = list(cost_sources) if cost_sources is not None else sources_from_config(config.cost)
        for warning in unmapped_budget_warnings(config.cost, config.budgets):
            log.warning("config: %s", warning)
        cost_poller = CostPoller(
            config.cost,
            config.budgets,
            sources,
            store,
            sessions=tracker.sessions,
            emit=pipeline.try_emit,
            now=now,
            metrics=metrics,
            secrets=config.secrets(),
        )

        # After a restart every node shows offline until it reconnects.
        reconnect_grace = config.server.heartbeat_interval_sec * config.server.heartbeat_timeout_count
        policies = PolicyEngine(
            config.policies,
            config.budgets,
            store=store,
            tracker=tracker,
            registry=registry,
            commands=dispatcher,
            emit=pipeline.try_emit,  # a dropped event is logged by name (its audit row remains)
            now=now,
            coverage=cost_poller.coverage,
            startup_grace=reconnect_grace,  # no node_offline alerts meanwhile
        )
        dependencies = DependencyEngine(
            config.dependencies,
            config.dependency_start,
            store=store,
            registry=registry,
            tracker=tracker,
            commands=dispatcher,
            emit=pipeline.emit,
            now=now,
            retry_interval=config.policies.tick_seconds,
            unknown_grace=reconnect_grace,  # no "unhosted project" warning meanwhile
        )
        pipeline.on_stored(COMPLETED_EVENT, dependencies.events_stored)

        # One approval path for declared installs: the HTTP API and Discord share it.
        installs = InstallApprovals(env, store=store, dispatcher=dispatcher, registry=registry, now=now)
        cost_reporter = CostReporter(
            store, coverage=cost_poller.coverage, statuses=cost_poller.source_statuses, budgets=config.budgets, now=now
        )
        discord: DiscordService | None = None
        if config.channels.discord is not None:
            discord_backend = SupervisorDiscordBackend(
                store=store,
                tracker=tracker,
                registry=registry,
                dispatcher=dispatcher,
                cost=cost_reporter,
                now=now,
                installs=installs,
            )
            discord = DiscordService(
                config.channels.discord,
                discord_backend,
                now=now,
                sessions=tracker.get,
                metrics=metrics,
                manifest_hash=lambda: env.hash,
            )

        async def spend_of(day: dt.date) -> TodaySpend | None:
            buckets = await store.cost_buckets(day, day)
            return today_spend(buckets, cost_poller.coverage) if buckets else None

        # Event routing (issue #7): every committed event -> Discord, webhooks, Slack. Always
        # there (idle without routes), so that a reload can add the first routes.
        router = RouterService(
            config.routes,
            webhooks=config.channels.webhooks,
            slack=config.channels.slack,
            # Tests may record instead; otherwise the Discord service renders and posts.
            post_discord=post_discord or (discord.post_event if discord is not None else None),
            sessions=tracker.get,
            spend=spend_of,
            metrics=metrics,
            now=now,
            tuning=RouterTuning(tick_seconds=config.policies.tick_seconds),
        )
        pipeline.on_committed(router.committed)

        async def readiness() -> dict[str, str]:
            components = {"database": "ok", "hub": "ok", "pipeline": "ok", "http": "ok"}
            try:
                with trio.fail_after(2):
                    await store.ping()
                if not store.healthy:
                    components["database"] = f"last write failed: {store.last_error}"
            except Exception as exc:
                components["database"] = f"unavailable: {exc}"
            if hub.port is None or shutdown.is_set():
                components["hub"] = "not accepting connections"
            if pipeline.stalled_since is not None:
                components["pipeline"] = f"stalled for {trio.current_time() - pipeline.stalled_since:.0f}s"
            if cost_poller.sources:  # degraded (not failing) while a provider cannot be polled
                components["cost"] = cost_poller.readiness()
            # Chat and webhooks are degraded at worst: an outage there must not take the
            # supervisor out of service.
            if router.active:
                components["routing"] = router.health()
            if discord is not None:
                components["discord"] = discord.health()
            return components

        metrics.attach_channels(
            ChannelState(
                route_queues=router.queue_stats,
                discord=discord.figures if discord is not None else None,
            )
        )

        api = ApiContext(
            token=config.server.auth_token,
            store=store,
            tracker=tracker,
            registry=registry,
            dispatcher=dispatcher,
            metrics=metrics,
            readiness=readiness,
            queue_stats=pipeline.queue_stats,
            cost=cost_reporter,
            policies=policies,
            projects=dependencies,
            discord=discord,
            tokens=config.server.tokens,
            origin_allowlist=config.security.origin_allowlist,
            now=now,
            env=env,
            installs=installs,
        )
        retention_job = RetentionJob(
            config.database.retention_days,
            store,
            forget_sessions=tracker.forget,
            now=now,
            metrics=metrics,
            tuning=retention or RetentionTuning(),
        )
        http = HttpServer(
            api,
            host=config.server.host,
            port=config.server.http_port,
            grace=config.server.shutdown_grace_sec,
            shutdown=shutdown,
            tls_files=tls_files,  # HTTPS with security.tls
        )
        notify = notifier if notifier is not None else Notifier(None)

        def status_line() -> str:
            """The one-line state systemd shows (``systemctl status``)."""
            counts = tracker.counts_by_status()
            active = sum(n for status, n in counts.items() if status in ACTIVE_STATUSES)
            nodes = sum(1 for _ in registry)
            parts = [f"{registry.online_count()} of {nodes} nodes online", f"{active} active sessions"]
            if pipeline.stalled_since is not None:
                parts.append(f"storing events failing for {trio.current_time() - pipeline.stalled_since:.0f}s")
            if reloader.last is not None:
                parts.append(f"last reload: {reloader.last.summary()}")
            return ("stopping; " if shutdown.is_set() else "") + "; ".join(parts)

        reloader = ConfigReloader(
            config,
            path=config_path,
            policies=policies,
            router=router,
            dependencies=dependencies,
            store=store,
            notifier=notify,
            status=status_line,
            now=now,
        )
        # Wedged means one call or commit longer than the watchdog period (see liveness.py).
        period = notify.watchdog_period
        service_monitor = ServiceMonitor(
            notify, health=lambda: supervisor_problem(store, pipeline, period), status=status_line
        )
        async with trio.open_nursery() as core:
            await core.start(pipeline.run)
            await core.start(dispatcher.run)
            await core.start(monitor.run)
            await core.start(cost_poller.run)
            await core.start(policies.run)
            await core.start(dependencies.run)
            await core.start(env.run)
            await core.start(retention_job.run)
            await core.start(router.run)
            if discord is not None:
                await core.start(discord.run)
            async with trio.open_nursery() as edge:
                ws_port = await edge.start(hub.run)
                http_port = await edge.start(http.run)
                log.info(
                    "supervisor ready",
                    extra=ctx(ws_port=ws_port, http_port=http_port, db=config.database.path, nodes=len(state.nodes)),
                )
                notify.ready(status_line())
                core.start_soon(service_monitor.run)
                core.start_soon(_announce_stopping, shutdown, notify)
                if reload_requests is not None:
                    core.start_soon(_serve_reloads, reloader, reload_requests, shutdown)
                task_status.started(
                    SupervisorHandle(
                        ws_port=ws_port,
                        http_port=http_port,
                        store=store,
                        tracker=tracker,
                        registry=registry,
                        dispatcher=dispatcher,
                        pipeline=pipeline,
                        metrics=metrics,
                        shutdown=shutdown,
                        policies=policies,
                        dependencies=dependencies,
                        router=router,
                        reloader=reloader,
                        monitor=service_monitor,
                        discord=discord,
                        env=env,
                        retention=retention_job,
                        installs=installs,
                    )
                )
            # The hub and HTTP server have drained; flush what is still queued.
            with trio.move_on_after(config.server.shutdown_grace_sec):
                await pipeline.wait_idle()
            core.cancel_scope.cancel()
    log.info("supervisor stopped")


async def _announce_stopping(shutdown: trio.Event, notifier: Notifier) -> None:
    """``STOPPING=1`` as soon as the graceful shutdown starts."""
    await shutdown.wait()
    notifier.stopping("stopping: draining agent connections and queued events")


async def _serve_reloads(
    reloader: ConfigReloader, requests: trio.MemoryReceiveChannel[ReloadRequest], shutdown: trio.Event
) -> None:
    """Serve reload requests until the shutdown starts (a reload must not follow ``STOPPING=1``)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reloader.run, requests)
        await shutdown.wait()
        nursery.cancel_scope.cancel()
