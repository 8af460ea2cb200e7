"""The supervisor's latest environment report per (node, project): kept across a restart
(table ``env_reports`` in the real SQLite file) and ordered by arrival, not by the agent's
clock (issue #9)."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from halswarm.agent.app import AgentHandle, run_agent
from halswarm.agent.simulate import simulated_factory
from halswarm.convert import structure_strict
from halswarm.envcheck.views import EnvStatus
from halswarm.testing import api_client, open_sim_agent, open_supervisor, wait_until
from halswarm.timeutil import format_ts, system_now
from tests.envcheck.conftest import env_supervisor_config, workspace_agent_config
from tests.envcheck.test_env_wiring import MANIFEST

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable
    from datetime import datetime
    from pathlib import Path

    from halswarm.config import AgentConfig, SupervisorConfig
    from halswarm.supervisor.app import SupervisorHandle
    from halswarm.timeutil import Clock
    from tests.envcheck.conftest import Workspace

NODE: Final = "n1"


def _configs(tmp_path: Path, workspace: Workspace) -> tuple[SupervisorConfig, Callable[[int], AgentConfig]]:
    sup = env_supervisor_config(tmp_path, MANIFEST)

    def agent(ws_port: int) -> AgentConfig:
        return workspace_agent_config(ws_port, tmp_path / "agent", workspace, node_id=NODE)

    return sup, agent


async def _status(sup: SupervisorHandle) -> EnvStatus:
    async with api_client(sup) as client:
        response = await client.get("/api/v1/env/status")
    assert response.status_code == 200, response.text
    return structure_strict(response.json(), EnvStatus)


async def test_reports_survive_a_supervisor_restart(tmp_path: Path, workspace: Workspace) -> None:
    sup_config, agent = _configs(tmp_path, workspace)
    with trio.fail_after(60):
        async with open_supervisor(sup_config) as sup:
            async with open_sim_agent(agent(sup.ws_port), sessions=1, rate=0):
                await wait_until(lambda: bool(_reports_of(sup)), what="the agent's report")
            before = await _status(sup)
            # Stopped at once: the report need not have reached the table yet.
        async with open_supervisor(sup_config) as sup:
            assert sup.registry.online_count() == 0  # no agent reconnected
            after = await _status(sup)
    (report,) = before.reports
    assert report.state == "degraded"  # no AGENT.md, no hook yet
    assert after.reports == before.reports
    assert after.manifest_hash == report.manifest_hash


def _reports_of(sup: SupervisorHandle) -> list[str]:
    assert sup.env is not None
    return [r.checked_at for r in sup.env.status(NODE, "app")]


@asynccontextmanager
async def _agent_with_clock(config: AgentConfig, now: Clock) -> AsyncGenerator[AgentHandle, None]:
    """A simulated agent whose wall clock is *now* (skewed on purpose)."""
    projects = list(config.projects)
    factory = simulated_factory(node_id=NODE, projects=projects, sessions=1, rate=0, seed=0)
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        start = partial(run_agent, config, factory, shutdown=shutdown, projects=projects, now=now, rng=random.Random(0))
        handle: AgentHandle = await nursery.start(start)
        try:
            yield handle
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + 15


async def test_a_later_report_wins_even_when_the_agents_clock_went_back(tmp_path: Path, workspace: Workspace) -> None:
    sup_config, agent = _configs(tmp_path, workspace)
    skew = [timedelta(0)]

    def agent_now() -> datetime:
        return system_now() + skew[0]

    with trio.fail_after(60):
        async with open_supervisor(sup_config) as sup, _agent_with_clock(agent(sup.ws_port), agent_now):
            await wait_until(lambda: bool(_reports_of(sup)), what="the first report")
            first = (await _status(sup)).reports[0]
            # The node's clock is put back a day (NTP, a VM restored...); it fixes its
            # project and checks again: this report is stamped earlier but is newer.
            skew[0] = -timedelta(days=1)
            async with api_client(sup) as client:
                done = await client.post(f"/api/v1/env/provision/{NODE}")
            assert done.status_code == 200, done.text
            await wait_until(lambda: any(at < first.checked_at for at in _reports_of(sup)), what="the backdated report")
            (latest,) = (await _status(sup)).reports
        # And the table kept it too (it used to keep the one with the later stamp).
        async with open_supervisor(sup_config) as sup:
            (stored,) = (await _status(sup)).reports
    assert first.state == "degraded"
    assert (latest.state, stored.state) == ("ready", "ready")
    assert latest.checked_at < first.checked_at
    assert stored == latest
    assert latest.checked_at <= format_ts(system_now() - timedelta(hours=23))
