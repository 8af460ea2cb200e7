"""Run one subprocess with a deadline and bounded output capture (issue #9).

Every check and every approved install command goes through :func:`run_bounded`: a
missing binary is a result (``exit_code`` None, ``error`` set), not an exception, and
a process still running at the deadline is killed together with its children (it runs
in its own session, and the whole process group gets SIGKILL).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from typing import TYPE_CHECKING, Final

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["DEFAULT_OUTPUT_LIMIT", "ProcessResult", "run_bounded"]

#: Bytes kept of each of stdout and stderr; the rest is read and dropped.
DEFAULT_OUTPUT_LIMIT: Final = 64 * 1024
_CHUNK: Final = 16 * 1024


@attrs.frozen
class ProcessResult:
    """What a bounded run did.

    ``exit_code`` is None when the process could not be started (``error`` says why)
    or was killed at the deadline (``timed_out``).
    """

    argv: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    error: str | None = None

    @property
    def output(self) -> str:
        """Standard output then standard error (java prints its version on stderr)."""
        return self.stdout + self.stderr


async def _kill_group(process: trio.Process) -> None:
    # The process leads its own session: kill its children too, or a shell script's
    # `sleep` would keep the pipes open after the shell died.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def _drain(stream: trio.abc.ReceiveStream | None, into: bytearray, limit: int, cut: list[bool]) -> None:
    if stream is None:
        return
    while chunk := await stream.receive_some(_CHUNK):
        room = limit - len(into)
        if len(chunk) > room:
            cut.append(True)
        into += chunk[: max(room, 0)]


async def run_bounded(
    argv: Sequence[str],
    *,
    timeout_sec: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> ProcessResult:
    """Run *argv* for at most *timeout_sec* seconds, keeping at most *output_limit* bytes of each stream.

    Args:
        argv: the program and its arguments (never a shell string).
        timeout_sec: seconds before the process group is killed (a subprocess limit,
            not an await deadline: the process is the thing that must stop).
        cwd: the working directory.
        env: the whole environment of the process (None: this process's).
        output_limit: bytes kept of stdout and of stderr each.

    Returns:
        The result; never raises for a missing binary, a failure exit or a timeout.

    Cancellation: the process group is killed and reaped before the cancellation
    propagates. Resource handling: pipes are closed by trio when the process ends.
    """
    out, err = bytearray(), bytearray()
    cut: list[bool] = []
    exit_code: int | None = None
    start_error: str | None = None
    with trio.move_on_after(timeout_sec) as scope:
        try:
            async with trio.open_nursery() as nursery:
                start = functools.partial(
                    trio.run_process,
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                    cwd=cwd,
                    env=dict(env) if env is not None else None,
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
                process: trio.Process = await nursery.start(start)
                nursery.start_soon(_drain, process.stdout, out, output_limit, cut)
                nursery.start_soon(_drain, process.stderr, err, output_limit, cut)
            exit_code = process.returncode
        except* OSError as group:
            # Only the start can raise OSError here (missing binary, not executable, bad cwd).
            reason = "; ".join(str(e.strerror or e) for e in group.exceptions if isinstance(e, OSError))
            start_error = f"cannot run {argv[0]}: {reason}"
    if start_error is not None:
        return ProcessResult(list(argv), None, "", "", error=start_error)
    return ProcessResult(
        list(argv),
        exit_code,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        timed_out=scope.cancelled_caught,
        truncated=bool(cut),
    )
