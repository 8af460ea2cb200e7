"""A supervisor and one hal-agent driving a real ``opencode serve`` against the stub LLM."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import httpx
import trio

from halswarm.agent.app import AgentHandle
from halswarm.agent.opencode.backend import OpencodeBackend, opencode_factory
from halswarm.config.agent import AgentConfig, OpencodeConfig
from halswarm.convert import converter
from halswarm.models import Command, Event, Node, Project, Session
from halswarm.supervisor.app import SupervisorHandle
from halswarm.testing import agent_config, api_client, open_supervisor, supervisor_config, wait_until
from halswarm.testing.halctl import Result, run_halctl
from halswarm.testing.harness import TEST_TOKEN, open_agent
from halswarm.testing.processes import free_port
from tests.opencode.realserver import make_project, opencode_binary, opencode_env
from tests.opencode.stub_llm import StubLLM, open_stub_llm

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable
    from pathlib import Path

NODE_ID = "oc-node"
#: Environment the spawned server needs from the test's isolated one (not the whole os.environ).
_PASSED_ENV = ("XDG_CONFIG_HOME", "HOME")


@attrs.frozen
class Fleet:
    """Everything a test of the opencode backend touches."""

    supervisor: SupervisorHandle
    agent: AgentHandle
    api: httpx.AsyncClient
    stub: StubLLM
    projects: list[Project]
    config: AgentConfig

    @property
    def backend(self) -> OpencodeBackend:
        """The agent's opencode backend (runner, client, mapper)."""
        backend = self.agent.backend
        assert isinstance(backend, OpencodeBackend)
        return backend

    async def halctl(self, *args: str) -> Result:
        """Run ``halctl ARGS`` against the supervisor."""
        env = {"HALCTL_URL": f"http://127.0.0.1:{self.supervisor.http_port}", "HALCTL_TOKEN": TEST_TOKEN}
        return await run_halctl(list(args), env={**env, "HOME": str(self.config.data_dir), "COLUMNS": "200"})

    def opencode(self) -> httpx.AsyncClient:
        """A client straight to the spawned opencode (what the agent does, checked independently)."""
        runner = self.backend.runner
        auth = (self.config.opencode.username, runner.password) if runner.password else None
        return httpx.AsyncClient(base_url=runner.url, auth=auth, timeout=httpx.Timeout(10.0))

    async def command(self, type_: str, target: str, **args: object) -> Command:
        """POST a command and wait (up to 60 s) for its outcome."""
        body = {"type": type_, "target": target, "args": args}
        response = await self.api.post("/api/v1/commands", params={"wait": "60"}, json=body)
        assert response.status_code in (200, 202, 502, 504), response.text
        return converter.structure(response.json()["command"], Command)

    async def started(self, prompt: str | None = None, *, project: int = 0, **args: object) -> str:
        """Start a session (optionally prompted); its id."""
        if prompt is not None:
            args["prompt"] = prompt
        command = await self.command("start_session", self.projects[project].name, **args)
        assert command.status == "succeeded", command
        assert command.result is not None
        return str(command.result["session_id"])

    async def turn_done(self, prompt: str) -> tuple[str, Session]:
        """Start a session with *prompt* and wait until its first turn ended (idle)."""
        session_id = await self.started(prompt)
        return session_id, await self.wait_session(session_id, "idle", lambda s: s.status == "idle")

    async def session(self, session_id: str) -> Session:
        """GET one session from the supervisor."""
        response = await self.api.get(f"/api/v1/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return converter.structure(response.json()["session"], Session)

    async def node(self) -> Node:
        """GET the agent's node from the supervisor."""
        response = await self.api.get(f"/api/v1/nodes/{NODE_ID}")
        assert response.status_code == 200, response.text
        return converter.structure(response.json()["node"], Node)

    async def events(self, session_id: str) -> list[Event]:
        """The session's stored events, oldest first."""
        response = await self.api.get(f"/api/v1/sessions/{session_id}/events", params={"limit": "1000"})
        assert response.status_code == 200, response.text
        return converter.structure(response.json()["events"], list[Event])

    async def event_types(self, session_id: str) -> list[str]:
        """Types of the session's stored events, oldest first."""
        return [e.type for e in await self.events(session_id)]

    async def wait_session(
        self, session_id: str, what: str, check: Callable[[Session], bool], within: float = 60.0
    ) -> Session:
        """Poll the session until ``check(session)`` holds; the session then."""
        latest: Session | None = None

        async def holds() -> bool:
            nonlocal latest
            response = await self.api.get(f"/api/v1/sessions/{session_id}")
            if response.status_code != 200:
                return False
            latest = converter.structure(response.json()["session"], Session)
            return check(latest)

        try:
            await wait_until(holds, within=within, interval=0.1, what=f"session {session_id}: {what}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {latest}") from None
        assert latest is not None
        return latest


@asynccontextmanager
async def open_fleet(
    tmp_path: Path,
    *,
    opencode: OpencodeConfig | None = None,
    port: int | None = None,
    projects: int = 1,
    ready: bool = True,
    through_link: bool = False,
) -> AsyncGenerator[Fleet, None]:
    """Stub LLM, supervisor (fast heartbeats) and an agent spawning the real opencode
    (or attaching to one on *port*); waits until opencode is usable when *ready*.
    With *through_link* the agent config names the projects through a symlinked folder."""
    binary = opencode_binary()
    async with open_stub_llm() as stub:
        made = [make_project(tmp_path / "projects", f"app{i + 1}", stub.base_url) for i in range(projects)]
        named = made
        if through_link:
            link = tmp_path / "linked-projects"
            link.symlink_to(tmp_path / "projects", target_is_directory=True)
            named = [link / p.name for p in made]
        project_list = [Project(p.name, str(p)) for p in named]
        env = opencode_env(tmp_path / "opencode-home")
        passed = {k: v for k, v in env.items() if k in _PASSED_ENV or k.startswith("OPENCODE_")}
        oc = opencode or OpencodeConfig()
        oc = attrs.evolve(
            oc,
            binary=str(binary) if oc.binary == OpencodeConfig().binary else oc.binary,
            env={**passed, **oc.env},
            restart_backoff_initial_sec=min(oc.restart_backoff_initial_sec, 0.5),
            restart_backoff_max_sec=min(oc.restart_backoff_max_sec, 2.0),
        )
        sup_config = supervisor_config(tmp_path / "supervisor.db", heartbeat_interval_sec=1.0)
        async with open_supervisor(sup_config) as sup:
            config = attrs.evolve(
                agent_config(sup.ws_port, tmp_path / "agent", node_id=NODE_ID, projects=project_list),
                opencode_port=port or free_port(),
                opencode=oc,
            )
            factory = opencode_factory(config, tmp_path / "agent")
            async with open_agent(config, factory) as agent, api_client(sup) as api:
                fleet = Fleet(sup, agent, api, stub, project_list, config)
                await wait_until(lambda: sup.registry.online_count() == 1, within=15, what="agent online")
                if ready:
                    with trio.fail_after(45):
                        await fleet.backend.runner.wait_ready()
                yield fleet
