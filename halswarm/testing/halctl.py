"""Run halctl in-process (inside trio), capturing what it prints: for tests.

``await run_halctl([...], env=..., cwd=...)`` runs the real command tree with
``standalone_mode=False`` and rich consoles writing to strings (house-style rule 24);
:class:`Halctl` points it at a :class:`halswarm.testing.Cluster`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import asyncclick as click
import attrs
import orjson
import trio
from rich.console import Console

from halswarm.cli.context import Io
from halswarm.cli.main import cli
from halswarm.jsontypes import JSONObject, is_json_object
from halswarm.testing import TEST_TOKEN, Cluster, wait_until

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.models import Session

__all__ = ["Halctl", "Result", "plain_console", "run_halctl"]

_RUN_TIMEOUT = 20.0


@attrs.frozen
class Result:
    """What one halctl run did."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> JSONObject:
        """Standard output parsed as one JSON object."""
        value = orjson.loads(self.stdout)
        if not is_json_object(value):
            raise AssertionError(f"expected a JSON object on stdout, got: {self.stdout!r}")
        return value


def plain_console(buffer: io.StringIO, width: int = 120) -> Console:
    """A plain, fixed-width console writing to *buffer* (house-style rule 24)."""
    return Console(file=buffer, width=width, color_system=None)


async def run_halctl(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: io.StringIO | None = None,
) -> Result:
    """``halctl ARGS`` in this process (trio), capturing standard output and error.

    Args:
        args: the command line after ``halctl``.
        env: the environment halctl sees (default: the real ``os.environ``).
        cwd: the directory it runs in (default: the real current directory).
        stdout: a buffer to print into, to watch output while it runs (follow mode).

    Usage errors (click exceptions) are shown the way click shows them and give their
    exit code, as a real run would.
    """
    out = stdout if stdout is not None else io.StringIO()
    err = io.StringIO()
    obj = Io(console=plain_console(out), err_console=plain_console(err))
    if env is not None:
        obj = attrs.evolve(obj, env=env)
    if cwd is not None:
        obj = attrs.evolve(obj, cwd=cwd)
    with trio.fail_after(_RUN_TIMEOUT):
        try:
            returned = await cli.main(args, prog_name="halctl", standalone_mode=False, obj=obj)
        except click.ClickException as exc:
            exc.show(file=err)
            returned = exc.exit_code
    return Result(returned if isinstance(returned, int) else 0, out.getvalue(), err.getvalue())


@attrs.frozen
class Halctl:
    """halctl pointed at a cluster through the environment (``HALCTL_URL``/``HALCTL_TOKEN``)."""

    cluster: Cluster
    cwd: Path
    home: Path

    @property
    def url(self) -> str:
        """The supervisor's HTTP API."""
        return f"http://127.0.0.1:{self.cluster.supervisor.http_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """An isolated environment (its own HOME) reaching the cluster."""
        return {"HOME": str(self.home), "HALCTL_URL": self.url, "HALCTL_TOKEN": TEST_TOKEN, **extra}

    async def __call__(self, *args: str, stdout: io.StringIO | None = None) -> Result:
        """Run ``halctl ARGS``."""
        return await run_halctl(list(args), env=self.env(), cwd=self.cwd, stdout=stdout)

    async def live_session(self, node_id: str | None = None) -> Session:
        """A tracked session that is not completed (the simulation keeps most alive)."""
        tracker = self.cluster.supervisor.tracker
        await wait_until(lambda: len(tracker) == 6, what="6 sessions tracked")
        for session in tracker.sessions(node_id=node_id):
            if session.status != "completed":
                return session
        raise AssertionError("no live session")
