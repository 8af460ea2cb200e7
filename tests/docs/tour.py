"""A walk through the README's commands on a real cluster, for ``test_readme.py``.

The :class:`Tour` runs each README command the way an operator would, in a scratch
directory: shell lines through ``bash`` (``.venv/bin/<program>`` becomes this
interpreter running that program's entry point, so the worktree's code runs without a
``.venv``; ``localhost:8420``/``8421`` become the ports actually bound), daemons as real
processes, ``halctl`` in-process (``halswarm.testing.halctl``) against them. A quiet
simulated agent with sessions waiting on known requests (the ``permission`` commands
need them; the README's own ``--simulate`` agent asks and answers at random) joins the
same supervisor in-process.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import trio

from halswarm.agent.outbox import open_outbox
from halswarm.convert import converter
from halswarm.models import Pending, PermissionRequest, Project, Question, QuestionRequest, Session
from halswarm.runtime import terminate
from halswarm.testing import agent_config, free_port, open_sim_agent, wait_until
from halswarm.testing.halctl import Result, run_halctl
from tests.docs.markdown import Command, normalise, synopsis_words

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.jsontypes import JSONObject

__all__ = ["QUIET", "Daemon", "Tour", "open_tour"]

ROOT: Final = Path(__file__).resolve().parents[2]

#: ``.venv/bin/<program>`` -> the module whose ``main()`` is that console script.
ENTRY_POINTS: Final = {
    "hal-supervisor": "halswarm.supervisor.main",
    "hal-agent": "halswarm.agent.main",
    "halctl": "halswarm.cli.main",
}
_SHELL_TIMEOUT: Final = 30.0
_STOP_GRACE: Final = 10.0


@attrs.frozen
class Quiet:
    """The quiet agent's node, project and seeded sessions and requests."""

    node: str = "quiet-node"
    project: str = "docs-site"
    idle: str = "ses_a10000000000000000000001"
    asks: str = "ses_a20000000000000000000002"  # two permissions: approve them
    refused: str = "ses_a30000000000000000000003"  # two permissions: reject them
    asking: str = "ses_a40000000000000000000004"  # a question request of two questions
    approve_once: str = "per_b10000000000000000000001"
    approve_always: str = "per_b20000000000000000000002"
    reject_with_message: str = "per_b30000000000000000000003"
    reject_bare: str = "per_b40000000000000000000004"
    question: str = "que_c10000000000000000000001"


QUIET: Final = Quiet()


def _permission(request_id: str, command: str) -> PermissionRequest:
    return PermissionRequest(request_id, "bash", [command], command, "2026-01-01T12:00:00Z")


def _seeded_sessions(directory: str) -> list[Session]:
    q = QUIET
    questions = [
        Question("Which approach should I take?", "Approach", ["minimal", "thorough"]),
        Question("Which files may I touch?", "Files", ["src/a.py", "src/b.py", "docs"]),
    ]
    pending = {
        q.idle: Pending(),
        q.asks: Pending([_permission(q.approve_once, "npm test"), _permission(q.approve_always, "pytest -q")]),
        q.refused: Pending(
            [_permission(q.reject_with_message, "git push"), _permission(q.reject_bare, "rm -rf build")]
        ),
        q.asking: Pending(questions=[QuestionRequest(q.question, questions, "2026-01-01T12:01:00Z")]),
    }
    return [
        Session(
            id=session_id,
            node_id=q.node,
            project=q.project,
            directory=directory,
            status="idle" if waiting.is_empty() else "waiting",
            title=f"Work on {q.project}",
            pending=waiting,
            started_at="2026-01-01T11:00:00Z",
            last_activity="2026-01-01T11:00:00Z",
        )
        for session_id, waiting in pending.items()
    ]


@attrs.define
class Daemon:
    """A README daemon (``... &``) and its log."""

    process: trio.Process
    log: Path

    def log_text(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace")


async def git_init(directory: Path) -> None:
    """Make *directory* (and its parents) a git work tree; no commits needed: the checks ask rev-parse."""
    with trio.fail_after(_SHELL_TIMEOUT):
        await trio.run_process(["git", "init", "-q", str(directory)], capture_stdout=True, capture_stderr=True)


@attrs.define
class Tour:
    """State shared by the README's steps: the scratch directory, ports, processes, values."""

    cwd: Path
    stack: AsyncExitStack
    env: dict[str, str]
    ws_port: int
    http_port: int
    values: dict[str, str] = attrs.Factory(dict)  # placeholder -> real value (<session-id>...)
    daemons: list[Daemon] = attrs.Factory(list)
    current: Command | None = None
    halctl_runs: dict[str, list[list[str]]] = attrs.Factory(dict)  # README command -> argv run for it
    _quiet_started: bool = False

    # ---- the current README command --------------------------------------------------------

    @property
    def command(self) -> Command:
        """The README command being run."""
        assert self.current is not None, "no README command is being run"
        return self.current

    @property
    def token(self) -> str:
        """The API token in effect (set by the README's ``export HALSWARM_AUTH_TOKEN=...``)."""
        return self.env["HALSWARM_AUTH_TOKEN"]

    def substitute(self, text: str) -> str:
        """The README's *text* made runnable here: entry points, ports, placeholders."""
        for program, module in ENTRY_POINTS.items():
            runnable = shlex.join([sys.executable, "-c", f"import {module} as m; m.main()"])
            text = re.sub(rf"(?<![\w/.-])\.venv/bin/{program}\b", runnable.replace("\\", "\\\\"), text)
        text = text.replace("localhost:8420", f"127.0.0.1:{self.ws_port}")
        text = text.replace("localhost:8421", f"127.0.0.1:{self.http_port}")
        for name, value in self.values.items():
            text = text.replace(f"<{name}>", value)
        leftover = re.findall(r"<[a-z][a-z-]*>", text)
        assert not leftover, f"no value for {leftover} in {text!r}"
        return text

    async def shell(
        self, text: str | None = None, *, expect: int = 0, suffix: str = "", variant: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the current README command (or *text*, which must be it) with bash, here.

        *suffix* is appended to the line (to print what a command left in the shell).
        *variant* runs a spelling of a synopsis instead (``[--output json]`` taken or
        left out): each of its words must be one of the README command's.
        """
        if variant is not None:
            words = set(self.command.key.replace("[", " ").replace("]", " ").split())
            assert set(variant.split()) <= words, f"{variant!r} is not a spelling of {self.command.key!r}"
            line = variant
        else:
            line = self.command.text if text is None else text
            assert normalise(line) == self.command.key, f"{line!r} is not the README's {self.command.key!r}"
        script = self.substitute(line) + suffix
        with trio.fail_after(_SHELL_TIMEOUT):
            done = await trio.run_process(
                ["bash", "-c", script],
                cwd=self.cwd,
                env=self.env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
        assert result.returncode == expect, (
            f"{self.command.where}: `{self.command.key}` exited {result.returncode}, expected {expect}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    async def start_daemon(self) -> Daemon:
        """Start the current README command as a real background process (a trailing ``&``
        is what the README writes for one; the last daemon of a block runs in the foreground)."""
        line = self.command.text.removesuffix("&").strip()
        script = "exec " + self.substitute(line)
        log = self.cwd / "logs" / f"daemon-{len(self.daemons) + 1}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("ab") as out:
            process = await trio.lowlevel.open_process(
                ["bash", "-c", script], cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        daemon = Daemon(process, log)
        self.daemons.append(daemon)
        return daemon

    async def halctl(
        self, *args: str, expect: int = 0, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Result:
        """``halctl ARGS`` in-process against the cluster, for the current README command."""
        self.halctl_runs.setdefault(self.command.key, []).append(["halctl", *args])
        settings = {**self.env, "HALCTL_URL": self.url, "HALCTL_TOKEN": self.token}
        result = await run_halctl(list(args), env=settings if env is None else env, cwd=cwd or self.cwd)
        assert result.exit_code == expect, (
            f"{self.command.where}: `halctl {shlex.join(args)}` (for `{self.command.key}`) exited "
            f"{result.exit_code}, expected {expect}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def unused_words(self, key: str) -> set[str]:
        """Words of README command *key* that none of its halctl runs used."""
        used = {word for argv in self.halctl_runs.get(key, []) for word in argv}
        return synopsis_words(key) - used

    # ---- the cluster -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The supervisor's HTTP API."""
        return f"http://127.0.0.1:{self.http_port}"

    async def api(self, path: str, **params: str) -> JSONObject:
        """``GET`` an API route with the token in effect; the JSON body (200 expected)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(10.0)) as client:
            response = await client.get(path, params=params, headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, dict)
        return body

    async def sessions(self, **params: str) -> list[JSONObject]:
        """``GET /api/v1/sessions`` with *params*."""
        sessions = (await self.api("/api/v1/sessions", **params))["sessions"]
        assert isinstance(sessions, list)
        return [s for s in sessions if isinstance(s, dict)]

    async def quiet(self) -> Quiet:
        """Start the quiet agent (once): its saved sessions wait on known requests."""
        if not self._quiet_started:
            self._quiet_started = True
            directory = self.cwd / "projects" / QUIET.project
            await git_init(directory)
            data_dir = self.cwd / "quiet-agent"
            data_dir.mkdir()
            seeded = _seeded_sessions(str(directory))
            async with open_outbox(data_dir) as outbox:
                await outbox.put_kv("simulated_sessions", orjson.dumps(converter.unstructure(seeded)))
            config = agent_config(
                self.ws_port, data_dir, node_id=QUIET.node, token=self.token,
                projects=[Project(QUIET.project, str(directory))],
            )  # fmt: skip
            # Almost no events of its own and no human answering: it only reacts to commands.
            agent = open_sim_agent(config, sessions=0, rate=0.001, human_in_loop=False)
            await self.stack.enter_async_context(agent)

            async def all_tracked() -> bool:
                tracked = {s["id"]: s for s in await self.sessions(node=QUIET.node)}
                return all(s.id in tracked and tracked[s.id]["status"] == s.status for s in seeded)

            await wait_until(all_tracked, within=15, what="the quiet agent's seeded sessions")
        return QUIET

    async def stop_quiet(self) -> None:
        """Stop the quiet agent (before the supervisor it is connected to)."""
        await self.stack.aclose()

    async def stop_daemons(self) -> list[int]:
        """SIGTERM every daemon, newest first (agents before the supervisor); their exit codes."""
        codes = []
        for daemon in reversed(self.daemons):
            await terminate(daemon.process, _STOP_GRACE)
            codes.append(daemon.process.returncode if daemon.process.returncode is not None else -9)
        return codes


@asynccontextmanager
async def open_tour(tmp_path: Path) -> AsyncGenerator[Tour]:
    """A scratch directory laid out like a checkout (``examples/`` linked in), a clean
    environment (own HOME and XDG directories, no HALSWARM_/HALCTL_ variables), free ports."""
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    (cwd / "examples").symlink_to(ROOT / "examples")
    for name in ("home", "state", "config"):
        (cwd / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HALSWARM_", "HALCTL_", "XDG_"))}
    env.update(HOME=str(cwd / "home"), XDG_STATE_HOME=str(cwd / "state"), XDG_CONFIG_HOME=str(cwd / "config"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    ws_port, http_port = free_port(), free_port()
    while http_port == ws_port:
        http_port = free_port()
    async with AsyncExitStack() as stack:
        tour = Tour(cwd, stack, env, ws_port, http_port)
        try:
            yield tour
        finally:
            with trio.move_on_after(2 * _STOP_GRACE + 5, shield=True):
                for daemon in tour.daemons:
                    if daemon.process.returncode is None:
                        daemon.process.kill()
                    await daemon.process.wait()
