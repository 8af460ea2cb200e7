"""Applying a changed environment to the running opencode (issue #9).

opencode reads its environment once, at start. When the manifest's values change, a
spawned server keeps the old ones: the environment checks report each such variable
(``env:NAME``, fix ``safe``: "opencode was started with an older value of NAME") and
provisioning applies them by restarting the spawned server, but only while no session
is busy, retrying or waiting for an answer. Idle sessions survive a restart (opencode
keeps them on disk); a running turn would be cut off, so then nothing is restarted and
the change is reported as pending (provision again when the sessions are idle). Never
automatic: a restart happens only when an operator provisions.

:func:`decide_restart` is the decision (pure); :class:`OpencodeServer` is what the
agent's checker needs from the backend that runs opencode
(:class:`~halswarm.agent.opencode.backend.OpencodeBackend`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, Protocol, runtime_checkable

from halswarm.envcheck.views import OpencodeRestart

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from halswarm.envcheck.environment import ServerEnvironment

__all__ = ["BUSY_STATUSES", "OpencodeServer", "RestartOutcome", "busy_text", "decide_restart", "restart_reason"]

#: Session statuses a restart would interrupt (a turn runs, or waits for a person).
BUSY_STATUSES: Final = frozenset({"starting", "busy", "retry", "waiting"})

RestartOutcome = Literal["restarted", "pending", "failed"]
"""A restart asked for: done (the new server answers), refused (nothing was stopped), or
done but the new server does not answer (the runner keeps trying, with backoff)."""


@runtime_checkable
class OpencodeServer(Protocol):
    """The opencode server a backend runs, as the environment checker sees it."""

    def use_manifest_environment(self, source: Callable[[], Mapping[str, str]]) -> None:
        """Where a spawned server's manifest values come from (read at every start)."""

    def server_environment(self) -> ServerEnvironment | None:
        """What is known of the running server's environment (None: no server runs now)."""

    async def busy_sessions(self) -> dict[str, str]:
        """Sessions a restart would interrupt: id -> status.

        Raises:
            CommandFailedError: opencode could not say (then nothing is restarted).
        """

    async def restart_server(self, reason: str) -> tuple[RestartOutcome, str]:
        """Restart the spawned server (the node's health shows *reason* meanwhile) unless
        it cannot be or a session became busy since :meth:`busy_sessions`.

        Returns:
            The outcome, and what happened in words.
        """


def restart_reason(checks: Sequence[str]) -> str:
    """What the node's health says while the server restarts."""
    return f"to apply a changed environment ({', '.join(checks)})"


def busy_text(busy: Mapping[str, str]) -> str:
    """``ses_1 (busy), ses_2 (waiting)``."""
    return ", ".join(f"{session} ({status})" for session, status in sorted(busy.items()))


def decide_restart(
    checks: Sequence[str], busy: Mapping[str, str], *, unavailable: str | None = None
) -> OpencodeRestart | None:
    """Whether provisioning may restart the spawned opencode to apply *checks* now.

    Args:
        checks: the env checks the running server fails because it was started with
            older values (``plan.restart_opencode`` of every project provisioned).
        busy: the sessions a restart would interrupt (id -> status).
        unavailable: why the agent cannot restart or ask now (no server, opencode
            could not list its sessions); None when it can.

    Returns:
        None when nothing needs a restart; ``planned`` when no session is busy (the
        caller restarts, unless it is a dry run); ``pending`` with the reason otherwise.
    """
    wanted = sorted(set(checks))
    if not wanted:
        return None
    if unavailable is not None:
        return OpencodeRestart("pending", wanted, f"opencode serve not restarted: {unavailable}; provision again")
    if busy:
        return OpencodeRestart(
            "pending",
            wanted,
            f"opencode serve not restarted: it would interrupt session(s) {busy_text(busy)}; "
            "provision again when no session is busy",
        )
    return OpencodeRestart("planned", wanted, "no session is busy now")
