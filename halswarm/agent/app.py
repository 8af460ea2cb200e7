"""``run_agent``: the agent's nursery tree.

::

    run_agent
    └─ outbox (SQLite, thread gate)        open for the whole run
       └─ nursery
          ├─ env checker                   manifest -> checks -> env.* events (issue #9)
          ├─ executor                      commands, each in its own task
          ├─ backend                       produces events into the sink -> outbox
          └─ link                          connect loop: hello, sender, reader, heartbeats

On shutdown the link closes cleanly (the supervisor marks the node offline at once);
unacked events stay in the outbox and are sent after the next start.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
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
from halswarm.obs.logging import ctx
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
    task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent until *shutdown* is set.

    *env_factory* builds the environment checker (default: one for the announced
    projects with ``env_check_interval_sec``); it is started before the backend, so a
    spawned opencode gets the stored manifest's environment. A backend that runs opencode
    (:class:`~halswarm.agent.envapply.OpencodeServer`) gets the manifest's values from it
    and is given to it as its server.

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
            task_status.started(AgentHandle(link.node_id, outbox, link, backend, env))
            await shutdown.wait()
            # The link sees the same event and closes cleanly; give it a moment.
            with trio.move_on_after(config.link.close_timeout_sec):
                await link.stopped.wait()
            nursery.cancel_scope.cancel()
    log.info("agent stopped", extra=ctx(node_id=config.resolved_node_id()))
