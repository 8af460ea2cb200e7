"""Per-policy state: plain attrs data the engine persists as JSON, one row per policy.

A supervisor restart restores it, so retry counters, reset windows and "already acted
in this episode" marks survive. Entries of sessions (and nodes) that are no longer in
the snapshot are pruned by the decisions; per-project retry windows are kept until
they expire, because a project's next session may appear later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeVar

import attrs

from halswarm.convert import dumps, load_json_row
from halswarm.policy.model import POLICY_NAMES, PolicyName
from halswarm.policy.retry import RetryWindow

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CostBrake",
    "ErrorEpisode",
    "ErrorLoopState",
    "IdleEpisode",
    "KillOnCostState",
    "NodeOfflineState",
    "Outcome",
    "PolicyStates",
    "RestartOnCompactionState",
    "ResumeOnIdleState",
    "StuckBusyState",
    "restore_states",
]

#: How an episode was handled: the action was taken, or the retry cap suppressed it.
Outcome = Literal["acted", "suppressed"]


@attrs.frozen
class IdleEpisode:
    """A handled idle period of one session, identified by its ``status_since``."""

    since: float
    outcome: Outcome


@attrs.frozen
class ResumeOnIdleState:
    """Handled idle periods and retry windows, both per session."""

    episodes: dict[str, IdleEpisode] = attrs.Factory(dict)
    windows: dict[str, RetryWindow] = attrs.Factory(dict)


@attrs.frozen
class RestartOnCompactionState:
    """Sessions handled (restarted or suppressed) and retry windows per project."""

    sessions: dict[str, Outcome] = attrs.Factory(dict)
    windows: dict[str, RetryWindow] = attrs.Factory(dict)


@attrs.frozen
class CostBrake:
    """One scope's UTC day at or over its limit, and the sessions kill_on_cost stopped in it.

    ``commanded`` holds the sessions sent a command that day, ``reported`` those a dry
    run reported without sending anything (each sorted). A session in neither, or only
    in ``reported`` once dry run is off, is still to be stopped.
    """

    day: str
    commanded: tuple[str, ...] = ()
    reported: tuple[str, ...] = ()


@attrs.frozen
class KillOnCostState:
    """Scope key (``fleet`` or ``project:<name>``) -> its day over the limit (today's only)."""

    scopes: dict[str, CostBrake] = attrs.Factory(dict)

    def handled(self, *, dry_run: bool) -> frozenset[str]:
        """Sessions no scope is to command again today (a dry run also skips those it reported)."""
        done: set[str] = set()
        for brake in self.scopes.values():
            done.update(brake.commanded)
            if dry_run:
                done.update(brake.reported)
        return frozenset(done)


@attrs.frozen
class ErrorEpisode:
    """A handled error streak of one session.

    ``errors`` is the last ``consecutive_errors`` seen: a lower count means the streak
    was reset (a turn succeeded) even if it climbed back over the threshold between two
    ticks. ``started`` is when the streak was first handled; it names the episode.
    """

    started: float
    errors: int
    outcome: Outcome


@attrs.frozen
class ErrorLoopState:
    """Handled error streaks per session and retry windows per project."""

    episodes: dict[str, ErrorEpisode] = attrs.Factory(dict)
    windows: dict[str, RetryWindow] = attrs.Factory(dict)


@attrs.frozen
class StuckBusyState:
    """Session id -> the start of the quiet stretch already acted upon."""

    episodes: dict[str, float] = attrs.Factory(dict)


@attrs.frozen
class NodeOfflineState:
    """Node id -> ``status_since`` of the offline period already alerted.

    The entry is dropped only when the node is seen in another status, so a supervisor
    restart (which restores every node as offline until it reconnects) does not alert
    again for the same outage.
    """

    alerted: dict[str, float] = attrs.Factory(dict)


@attrs.frozen
class PolicyStates:
    """The state of every policy, as one value the engine threads through its ticks."""

    resume_on_idle: ResumeOnIdleState = ResumeOnIdleState()
    restart_on_compaction: RestartOnCompactionState = RestartOnCompactionState()
    kill_on_cost: KillOnCostState = KillOnCostState()
    error_loop: ErrorLoopState = ErrorLoopState()
    stuck_busy: StuckBusyState = StuckBusyState()
    node_offline: NodeOfflineState = NodeOfflineState()

    def dump(self) -> dict[str, str]:
        """Each policy's state as JSON text, for the ``policy_state`` table."""
        return {name: dumps(getattr(self, name)).decode() for name in POLICY_NAMES}

    def changed(self, before: PolicyStates) -> dict[str, str]:
        """JSON text of the policies whose state differs from *before* (what to write)."""
        return {
            name: dumps(getattr(self, name)).decode()
            for name in POLICY_NAMES
            if getattr(self, name) != getattr(before, name)
        }


T = TypeVar("T")

_KNOWN: Final[frozenset[str]] = frozenset(POLICY_NAMES)


def _load(rows: Mapping[str, str | bytes], name: PolicyName, cls: type[T], problems: list[str]) -> T:
    value, more = load_json_row(rows.get(name), cls, name)
    problems += more
    return value


def restore_states(rows: Mapping[str, str | bytes]) -> tuple[PolicyStates, list[str]]:
    """Rebuild every policy's state from persisted JSON texts (policy name -> text).

    A missing row gives the empty state. An unreadable row also does, with a problem
    line for the log: refusing to start over a corrupt row would stop every policy.
    The price: that policy forgets its handled episodes *and* its retry windows (both
    are in its row), so each episode still going may act once more, and its retry caps
    start over.

    Returns:
        The states and one problem line per unreadable or unknown row.
    """
    problems = [f"{name}: unknown policy, state ignored" for name in sorted(rows) if name not in _KNOWN]
    states = PolicyStates(
        resume_on_idle=_load(rows, "resume_on_idle", ResumeOnIdleState, problems),
        restart_on_compaction=_load(rows, "restart_on_compaction", RestartOnCompactionState, problems),
        kill_on_cost=_load(rows, "kill_on_cost", KillOnCostState, problems),
        error_loop=_load(rows, "error_loop", ErrorLoopState, problems),
        stuck_busy=_load(rows, "stuck_busy", StuckBusyState, problems),
        node_offline=_load(rows, "node_offline", NodeOfflineState, problems),
    )
    return states, problems
