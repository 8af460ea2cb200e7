"""In-process supervisor and simulated agents on loopback, for tests and benchmarks.

Everything here runs the real components (``run_supervisor``, ``run_agent``) on real
sockets bound to port 0; nothing is faked but the session backend (simulated).
"""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import trio

from halswarm.agent.app import AgentHandle, BackendFactory, run_agent
from halswarm.agent.simulate import default_projects, simulated_factory
from halswarm.config import AgentConfig, SupervisorConfig
from halswarm.config.agent import LinkConfig
from halswarm.config.supervisor import DatabaseConfig, SecurityConfig, ServerConfig
from halswarm.models import Project
from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from halswarm.timeutil import Clock, system_now
from halswarm.tls import client_ssl_context

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
    from pathlib import Path


__all__ = [
    "TEST_TOKEN",
    "Cluster",
    "agent_config",
    "api_client",
    "open_agent",
    "open_cluster",
    "open_sim_agent",
    "open_supervisor",
    "supervisor_config",
    "wait_until",
]

TEST_TOKEN: Final = "test-token-" + "0" * 16
_STOP_TIMEOUT: Final = 15.0


def supervisor_config(
    db_path: Path,
    *,
    token: str = TEST_TOKEN,
    node_tokens: Mapping[str, str] | None = None,
    security: SecurityConfig | None = None,
    **server: float | int | str,
) -> SupervisorConfig:
    """A supervisor config on 127.0.0.1 with OS-chosen ports and a database at *db_path*.

    Keyword arguments override ``server.*`` keys (e.g. ``heartbeat_interval_sec=0.2``);
    *node_tokens* sets ``server.node_tokens`` and *security* the ``security`` section
    (TLS, origin allowlist).
    """
    fields: dict[str, float | int | str] = {"auth_token": token, "port": 0, "http_port": 0, "host": "127.0.0.1"}
    fields.update(server)
    return SupervisorConfig(
        server=ServerConfig(**fields, node_tokens=dict(node_tokens or {})),  # type: ignore[arg-type]
        database=DatabaseConfig(path=str(db_path)),
        security=security or SecurityConfig(),
    )


def agent_config(
    ws_port: int,
    data_dir: Path,
    *,
    node_id: str,
    token: str = TEST_TOKEN,
    projects: list[Project] | None = None,
    link: LinkConfig | None = None,
    tls: bool = False,
    tls_ca_file: str | None = None,
) -> AgentConfig:
    """An agent config pointing at a supervisor on 127.0.0.1:*ws_port*.

    *tls* dials ``wss://`` (verified with *tls_ca_file*, or the system's CAs).
    """
    return AgentConfig(
        supervisor_url=f"{'wss' if tls else 'ws'}://127.0.0.1:{ws_port}",
        tls_ca_file=tls_ca_file,
        auth_token=token,
        projects=projects or [],
        node_id=node_id,
        data_dir=str(data_dir),
        link=link or LinkConfig(backoff_initial_sec=0.1, backoff_max_sec=1.0, stable_after_sec=2.0),
    )


@asynccontextmanager
async def open_supervisor(
    config: SupervisorConfig, *, now: Clock = system_now
) -> AsyncGenerator[SupervisorHandle, None]:
    """Run a supervisor for the duration of the block; graceful shutdown on exit."""
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        handle: SupervisorHandle = await nursery.start(_run_supervisor, config, shutdown, now)
        try:
            yield handle
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _STOP_TIMEOUT


async def _run_supervisor(
    config: SupervisorConfig, shutdown: trio.Event, now: Clock, *, task_status: trio.TaskStatus[SupervisorHandle]
) -> None:
    await run_supervisor(config, shutdown=shutdown, now=now, task_status=task_status)


@asynccontextmanager
async def open_sim_agent(
    config: AgentConfig,
    *,
    sessions: int = 3,
    rate: float = 20.0,
    max_events: int | None = None,
    seed: int = 0,
    human_in_loop: bool = True,
) -> AsyncGenerator[AgentHandle, None]:
    """Run an agent with simulated sessions for the duration of the block."""
    node_id = config.resolved_node_id()
    projects = list(config.projects) or default_projects(node_id, sessions)

    factory = simulated_factory(
        node_id=node_id,
        projects=projects,
        sessions=sessions,
        rate=rate,
        max_events=max_events,
        seed=seed,
        human_in_loop=human_in_loop,
    )
    async with open_agent(config, factory, projects=projects, seed=seed) as handle:
        yield handle


@asynccontextmanager
async def open_agent(
    config: AgentConfig, factory: BackendFactory, *, projects: list[Project] | None = None, seed: int = 0
) -> AsyncGenerator[AgentHandle, None]:
    """Run an agent with the backend *factory* builds for the duration of the block."""
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        announced = projects if projects is not None else list(config.projects)
        handle: AgentHandle = await nursery.start(_run_agent, config, factory, shutdown, announced, seed)
        try:
            yield handle
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _STOP_TIMEOUT


async def _run_agent(
    config: AgentConfig,
    factory: BackendFactory,
    shutdown: trio.Event,
    projects: list[Project],
    seed: int,
    *,
    task_status: trio.TaskStatus[AgentHandle],
) -> None:
    await run_agent(
        config, factory, shutdown=shutdown, projects=projects, rng=random.Random(seed), task_status=task_status
    )


def api_client(
    handle: SupervisorHandle, *, token: str | None = TEST_TOKEN, tls_ca_file: str | None = None
) -> httpx.AsyncClient:
    """An httpx client for the supervisor's HTTP API (bearer token set unless None).

    With *tls_ca_file* it speaks HTTPS and verifies the certificate with that CA.
    """
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    scheme = "https" if tls_ca_file is not None else "http"
    verify = client_ssl_context(tls_ca_file) if tls_ca_file is not None else True
    return httpx.AsyncClient(
        base_url=f"{scheme}://127.0.0.1:{handle.http_port}",
        headers=headers,
        timeout=httpx.Timeout(30.0),
        verify=verify,
    )


async def wait_until(
    predicate: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    within: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll *predicate* until true (bounded in time), for real-socket tests.

    Raises:
        AssertionError: still false after *within* seconds.
    """
    with trio.move_on_after(within):
        while True:
            value = predicate()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await trio.sleep(interval)
    raise AssertionError(f"timed out after {within:g}s waiting for {what}")


@attrs.frozen
class Cluster:
    """A supervisor with simulated agents."""

    supervisor: SupervisorHandle
    agents: list[AgentHandle]
    client: httpx.AsyncClient


@asynccontextmanager
async def open_cluster(
    tmp_path: Path,
    *,
    agents: int = 1,
    sessions: int = 3,
    rate: float = 20.0,
    projects_per_agent: int = 2,
    **server: float | int | str,
) -> AsyncGenerator[Cluster, None]:
    """A supervisor plus *agents* simulated agents, each with its own projects, all online."""
    config = supervisor_config(tmp_path / "supervisor.db", token=TEST_TOKEN, node_tokens=None, security=None, **server)
    async with open_supervisor(config) as sup, trio.open_nursery() as nursery:
        handles: list[AgentHandle] = []
        stop = trio.Event()
        for i in range(agents):
            node_id = f"node-{i + 1}"
            projects = [
                Project(f"proj-{i + 1}-{j + 1}", str(tmp_path / node_id / f"p{j + 1}"))
                for j in range(projects_per_agent)
            ]
            cfg = agent_config(sup.ws_port, tmp_path / f"agent-{node_id}", node_id=node_id, projects=projects)
            handles.append(await nursery.start(_hold_agent, cfg, sessions, rate, i, stop))
        async with api_client(sup) as client:
            await wait_until(lambda: sup.registry.online_count() == agents, within=15, what=f"{agents} agents online")
            try:
                yield Cluster(sup, handles, client)
            finally:
                stop.set()


async def _hold_agent(
    cfg: AgentConfig,
    sessions: int,
    rate: float,
    seed: int,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[AgentHandle],
) -> None:
    async with open_sim_agent(cfg, sessions=sessions, rate=rate, seed=seed) as handle:
        task_status.started(handle)
        await stop.wait()
