"""Run an approved install command (a risky fix) with a timeout, capturing its output (issue #9).

Provisioning never calls this: a declared install command appears as a ``risky``
:class:`~halswarm.envcheck.provision.ManualItem` until a human approves it. The
agent runs it for an ``env_install`` command, which ``POST /api/v1/env/approve/{node}``
submits (audited) once a human approved it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.envcheck.process import DEFAULT_OUTPUT_LIMIT, ProcessResult, run_bounded

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["run_install"]


async def run_install(
    command: Sequence[str],
    *,
    timeout_sec: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> ProcessResult:
    """Run an approved install *command* (an argument list, never a shell string).

    Args:
        command: the program and its arguments, as declared in the manifest.
        timeout_sec: seconds before the command and its children are killed.
        cwd: where it runs (the project directory).
        env: its whole environment (None: the agent's own).
        output_limit: bytes of stdout and of stderr kept each (the rest is dropped,
            ``truncated`` says so).

    Returns:
        Exit code (None when it could not start or timed out), the captured output,
        ``timed_out``, ``truncated`` and ``error``. Never raises for a failing command.

    Cancellation: the command's process group is killed and reaped first.
    """
    return await run_bounded(command, timeout_sec=timeout_sec, cwd=cwd, env=env, output_limit=output_limit)
