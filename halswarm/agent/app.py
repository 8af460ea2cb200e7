"""``run_agent``: the agent's nursery tree.

::

    run_agent
    └─ outbox (SQLite, thread gate)        open for the whole run
       └─ nursery
          ├─ env checker                   manifest -> checks -> env.* events (issue #9)
          ├─ executor                      commands, each in its own task
          ├─ backend                       produces events into the sink -> outbox
          ├─ link                          connect loop: hello, sender, reader, heartbeats
          └─ systemd monitor               once ready: watchdog pings, status (issue 10)

Ready (systemd ``READY=1``) once the outbox is open and every task above started; not
waiting for the supervisor, which may be down: the link keeps trying. The watchdog is
pinged while the outbox is not stuck inside one SQLite call for longer than the
watchdog period (a full disk fails fast and is no reason to restart).

On shutdown (``STOPPING=1``) the link closes cleanly (the supervisor marks the node
offline at once); unacked events stay in the outbox and are sent after the next start.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.agent.backend import EventSink, SessionBackend
from halswarm.agent.envapply import OpencodeServer
from halswarm.agent.envchecker import EnvChecker
from halswarm.agent.executor import Executor
from halswarm.agent.link import AgentLink, Connector, LinkStatus
from halswarm.agent.outbox import Outbox, open_outbox
from halswarm.agent.resources import ResourceSampler
from halswarm.envcheck.environment import OpencodeEnvironment
from halswarm.liveness import Stall, first_stall
from halswarm.obs.logging import ctx, redact
from halswarm.sdnotify import Notifier, ServiceMonitor
from halswarm.timeutil import Clock, system_now

if TYPE_CHECKING:
    from halswarm.config.agent import AgentConfig
    from halswarm.models import Project

__all__ = ["AgentHandle", "BackendFactory", "default_env_checker", "run_agent"]

log = logging.getLogger(__name__)

BackendFactory = Callable[[Outbox], SessionBackend]
"""Builds the backend once the outbox (and its stored state) is open."""


@attrs.frozen
class AgentHandle:
    """What a running agent exposes to its starter."""

    node_id: str
    outbox: Outbox
    link: AgentLink
    backend: SessionBackend
    env: EnvChecker

    @property
    def status(self) -> LinkStatus:
        """The link's current status."""
        return self.link.status


def default_env_checker(
    config: AgentConfig, projects: list[Project], outbox: Outbox, now: Clock = system_now
) -> EnvChecker:
    """The environment checker for *projects*: checks see what a spawned opencode gets
    (:class:`~halswarm.envcheck.environment.OpencodeEnvironment`: the agent's environment,
    the manifest's values, ``opencode.env``)."""
    return EnvChecker(
        config.resolved_node_id(),
        projects,
        outbox=outbox,
        now=now,
        interval_sec=config.env_check_interval_sec,
        environment=OpencodeEnvironment.for_agent(config),
    )


async def run_agent(
    config: AgentConfig,
    backend_factory: BackendFactory,
    *,
    shutdown: trio.Event,
    projects: list[Project] | None = None,
    connector: Connector | None = None,
    now: Clock = system_now,
    rng: random.Random | None = None,
    env_factory: Callable[[Outbox], EnvChecker] | None = None,
    notifier: Notifier | None = None,
    task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent until *shutdown* is set.

    *env_factory* builds the environment checker (default: one for the announced
    projects with ``env_check_interval_sec``); it is started before the backend, so a
    spawned opencode gets the stored manifest's environment. A backend that runs opencode
    (:class:`~halswarm.agent.envapply.OpencodeServer`) gets the manifest's values from it
    and is given to it as its server. *notifier* tells systemd
    about readiness and shutdown and pings its watchdog (default: none).

    Raises:
        OutboxError: the data dir cannot be used.
    """
    data_dir = config.resolved_data_dir()
    rng = rng or random.Random()
    async with open_outbox(data_dir) as outbox:
        announced = projects if projects is not None else list(config.projects)
        env = env_factory(outbox) if env_factory is not None else default_env_checker(config, announced, outbox, now)
        backend = backend_factory(outbox)
        if isinstance(backend, OpencodeServer):
            # A spawned server gets the manifest's values; checks compare with what the
            # running one got; provisioning restarts it to apply a change.
            backend.use_manifest_environment(env.opencode_env)
            env.server = backend
        sink = EventSink(outbox, now=now)
        executor = Executor(backend, outbox, env=env)
        link = AgentLink(
            config,
            outbox=outbox,
            sink=sink,
            executor=executor,
            shutdown=shutdown,
            now=now,
            rng=rng,
            resources=ResourceSampler(data_dir),
            health=backend.health,
            facts=backend.facts,
            health_changed=backend.health_changed,
            projects=projects,
            connector=connector,
            env=env,
        )
        log.info(
            "agent starting",
            extra=ctx(node_id=link.node_id, data_dir=str(data_dir), pending=outbox.pending, last_seq=outbox.last_seq),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(env.run, sink)
            await nursery.start(executor.run)
            await nursery.start(backend.run, sink)
            await nursery.start(link.run)
            notify = notifier if notifier is not None else Notifier(None)
            status = partial(_status, link, config.secrets())
            monitor = ServiceMonitor(
                notify, health=partial(_agent_problem, outbox, notify.watchdog_period), status=status
            )
            notify.ready(status())
            await nursery.start(monitor.run)
            task_status.started(AgentHandle(link.node_id, outbox, link, backend, env))
            await shutdown.wait()
            notify.stopping("stopping: closing the supervisor connection")
            # The link sees the same event and closes cleanly; give it a moment.
            with trio.move_on_after(config.link.close_timeout_sec):
                await link.stopped.wait()
            nursery.cancel_scope.cancel()
    log.info("agent stopped", extra=ctx(node_id=config.resolved_node_id()))


def _agent_problem(outbox: Outbox, limit: float | None) -> str | None:
    """Why the agent is wedged (None: it is not): its outbox stuck in one call beyond *limit*
    (the rule both daemons share: :mod:`halswarm.liveness`)."""
    return first_stall([Stall("the outbox database has been inside one call for {:.1f}s", outbox.stuck_for)], limit)


def _status(link: AgentLink, secrets: list[str]) -> str:
    """The one-line state systemd shows (``systemctl status``, readable by every local user: redacted)."""
    status = link.status
    pending = f"{link.outbox.pending} events waiting to be sent"
    if status.connected:
        return f"connected to the supervisor; {pending}"
    reason = f" ({status.last_error})" if status.last_error else ""
    return redact(f"not connected to the supervisor{reason}, retrying; {pending}", secrets)
