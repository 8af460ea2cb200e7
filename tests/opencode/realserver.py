"""Run the real ``opencode serve`` for tests, offline, against the stub LLM (reference §13).

Typical use::

    async with open_stub_llm() as stub:
        project = make_project(tmp_path, "app", stub.base_url)
        async with run_opencode(project, opencode_env(tmp_path / "oc")) as oc:
            async with oc.client() as client:
                ...
"""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import trio

from halswarm.runtime import terminate
from tests.required import unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

__all__ = [
    "OPENCODE_VERSION",
    "OpencodeStartError",
    "RunningOpencode",
    "make_project",
    "opencode_binary",
    "opencode_env",
    "run_opencode",
]

OPENCODE_VERSION: Final = "1.18.33"
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_BINARY: Final = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "opencode"

_PROBE_TIMEOUT: Final = 1.5
_PROBE_SLEEP: Final = 0.2
_READY_DEADLINE: Final = 30.0
_STOP_GRACE: Final = 5.0
_LOG_TAIL: Final = 4000
_GIT_IDENTITY: Final = {
    "GIT_AUTHOR_NAME": "halswarm tests",
    "GIT_AUTHOR_EMAIL": "tests@halswarm.invalid",
    "GIT_COMMITTER_NAME": "halswarm tests",
    "GIT_COMMITTER_EMAIL": "tests@halswarm.invalid",
}


class OpencodeStartError(RuntimeError):
    """opencode exited or never became healthy; the message carries the log tail."""


def opencode_binary() -> Path:
    """The opencode executable: ``$OPENCODE_BIN``, else ``.tools/node_modules/.bin/opencode``.

    Returns:
        An existing executable path.

    Raises:
        pytest.fail.Exception: when missing and ``CI=true`` (CI must run the real-server tests).
        pytest.skip.Exception: when missing on a developer machine, with the reason.
    """
    configured = os.environ.get("OPENCODE_BIN")
    path = Path(configured) if configured else DEFAULT_BINARY
    if path.is_file() and os.access(path, os.X_OK):
        return path
    reason = (
        f"opencode binary not found at {path} "
        f"({'from $OPENCODE_BIN' if configured else 'set $OPENCODE_BIN or run `make opencode`'})"
    )
    unavailable(reason)


def opencode_config(stub_base_url: str) -> dict[str, object]:
    """The ``opencode.json`` of §13: provider ``stub`` with ``stub-model`` and ``stub-tiny``, bash asks."""
    limits = {"stub-model": (100000, 4000), "stub-tiny": (8000, 1000)}
    models = {
        model: {
            "name": "Stub" if model == "stub-model" else "Stub small",
            "cost": {"input": 3, "output": 15},
            "limit": {"context": context, "output": output},
        }
        for model, (context, output) in limits.items()
    }
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "stub": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Stub LLM",
                "options": {"baseURL": stub_base_url, "apiKey": "test"},
                "models": models,
            }
        },
        "model": "stub/stub-model",
        "small_model": "stub/stub-model",
        "permission": {"bash": "ask"},
        "autoupdate": False,
        "share": "disabled",
    }


def make_project(root: Path, name: str, stub_base_url: str) -> Path:
    """Create ``root/name``: a git repo with one commit holding a README and ``opencode.json``.

    The commit gives the project a real ``projectID`` (hash of the root commit).

    Returns:
        The project directory (absolute).
    """
    project = (root / name).resolve()
    project.mkdir(parents=True)
    (project / "README.md").write_text(f"# {name}\n\nA test project for halswarm.\n")
    (project / "opencode.json").write_bytes(
        orjson.dumps(opencode_config(stub_base_url), option=orjson.OPT_INDENT_2) + b"\n"
    )
    env = {**os.environ, **_GIT_IDENTITY}
    for args in (
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", "add", "README.md", "opencode.json"],
        ["git", "commit", "--quiet", "--no-gpg-sign", "-m", "initial"],
    ):
        subprocess.run(args, cwd=project, env=env, check=True, capture_output=True)
    return project


def opencode_env(base: Path) -> dict[str, str]:
    """Environment for one isolated opencode server: fresh ``XDG_*`` dirs and ``HOME`` under *base*.

    Starts from ``os.environ`` (for ``PATH``), drops any ``OPENCODE_*`` variables inherited from
    the developer's shell, and turns off update checks, model fetches, sharing and LSP downloads.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_")}
    for name in ("data", "config", "cache", "state"):
        directory = base / name
        directory.mkdir(parents=True, exist_ok=True)
        env[f"XDG_{name.upper()}_HOME"] = str(directory)
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env.update(
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_SHARE="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_DISABLE_CLAUDE_CODE="1",
    )
    return env


@attrs.frozen
class RunningOpencode:
    """A healthy ``opencode serve`` process."""

    url: str
    """``http://127.0.0.1:<port>``."""
    pid: int
    password: str | None
    version: str
    """As reported by ``GET /global/health``."""
    log_path: Path
    """stdout and stderr (``--print-logs``) of the process."""

    def client(self, *, timeout: float = 10.0) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on :attr:`url`, with Basic auth when a password is set."""
        auth = ("opencode", self.password) if self.password is not None else None
        return httpx.AsyncClient(base_url=self.url, auth=auth, timeout=httpx.Timeout(timeout), trust_env=False)

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _probe(client: httpx.AsyncClient) -> str | None:
    """One readiness probe: the version when healthy, else None (§1.2)."""
    try:
        response = await client.get("/global/health", timeout=_PROBE_TIMEOUT)
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("application/json"):
        return None
    body = response.json()
    if isinstance(body, dict) and body.get("healthy") is True:
        return str(body.get("version", ""))
    return None


async def _wait_ready(process: trio.Process, url: str, password: str | None, log_path: Path) -> str:
    auth = ("opencode", password) if password is not None else None
    async with httpx.AsyncClient(base_url=url, auth=auth, trust_env=False) as client:
        with trio.move_on_after(_READY_DEADLINE):
            while process.returncode is None:
                version = await _probe(client)
                if version is not None:
                    return version
                await trio.sleep(_PROBE_SLEEP)
    log = trio.Path(log_path)
    tail = (await log.read_text(errors="replace"))[-_LOG_TAIL:] if await log.exists() else ""
    state = f"exited with {process.returncode}" if process.returncode is not None else "not healthy after 30 s"
    raise OpencodeStartError(f"opencode serve at {url} {state}; log tail:\n{tail}")


async def _stop(process: trio.Process) -> None:
    """SIGTERM, bounded wait, then SIGKILL (shielded: runs in cleanup)."""
    await terminate(process, _STOP_GRACE)


@asynccontextmanager
async def run_opencode(
    cwd: Path,
    env: dict[str, str],
    password: str | None = None,
    *,
    log_path: Path | None = None,
    port: int | None = None,
) -> AsyncGenerator[RunningOpencode, None]:
    """Start ``opencode serve`` on a free loopback port in *cwd* and wait until it is healthy.

    Args:
        cwd: the server's working directory (its default instance).
        env: full process environment, usually from :func:`opencode_env`.
        password: sets ``OPENCODE_SERVER_PASSWORD`` (Basic auth, user ``opencode``).
        port: the port to listen on (default: a free one).
        log_path: where stdout/stderr go; default ``opencode-<port>.log`` next to ``$XDG_STATE_HOME``
            (or in *cwd*'s parent without it).

    Returns:
        A :class:`RunningOpencode` once ``GET /global/health`` answered healthy.

    Raises:
        OpencodeStartError: the process exited or stayed unhealthy for 30 s (message has the log tail).

    Resource handling: the process runs under ``trio.run_process`` in a nursery owned by this
    context manager; leaving the block sends SIGTERM, waits up to 5 s, then SIGKILLs.
    """
    binary = opencode_binary()
    port = port or _free_port()
    if log_path is None:
        state = env.get("XDG_STATE_HOME")
        log_path = (Path(state).parent if state else cwd.parent) / f"opencode-{port}.log"
    full_env = dict(env)
    if password is not None:
        full_env["OPENCODE_SERVER_PASSWORD"] = password
    command = [str(binary), "serve", "--hostname", "127.0.0.1", "--port", str(port), "--print-logs"]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log_file:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    cwd=cwd,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    check=False,
                    deliver_cancel=_stop,
                )
            )
            try:
                version = await _wait_ready(process, url, password, log_path)
                yield RunningOpencode(url=url, pid=process.pid, password=password, version=version, log_path=log_path)
            finally:
                with trio.move_on_after(_STOP_GRACE * 2 + 1, shield=True):
                    await _stop(process)
