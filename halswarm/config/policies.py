"""Auto-intervention policy config (``policies.*`` in the supervisor config; issue #6).

Keys follow the seed README (``policies.resume_on_idle.{enabled, idle_threshold_seconds,
max_retries}``) and the product spec's auto-intervention group. Everything that acts on
sessions is off by default; ``node_offline`` (an alert, never a command) is on.

The decisions that read this config live in :mod:`halswarm.policy`; docs/POLICIES.md
describes each policy's semantics.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "ErrorLoopPolicy",
    "KillOnCostPolicy",
    "NodeOfflinePolicy",
    "PoliciesConfig",
    "RestartOnCompactionPolicy",
    "ResumeOnIdlePolicy",
    "StuckBusyPolicy",
    "check_policies",
]

#: Default reset window of the retry caps: the budget of ``max_retries`` actions
#: comes back one hour after the first action of a window.
DEFAULT_RESET_WINDOW_SECONDS = 3600.0

#: Default interval of the policy engine's ticks (``policies.tick_seconds``).
DEFAULT_TICK_SECONDS = 10.0


@attrs.frozen
class ResumeOnIdlePolicy:
    """Resume a session idle beyond a threshold, once per idle period."""

    enabled: bool = False
    idle_threshold_seconds: float = 300.0
    #: Resumes per session within one reset window.
    max_retries: int = 3
    reset_window_seconds: float = DEFAULT_RESET_WINDOW_SECONDS
    #: The continue prompt; None: the agent's configured ``opencode.continue_prompt``.
    prompt: str | None = None
    dry_run: bool = False


@attrs.frozen
class RestartOnCompactionPolicy:
    """Hand a session over to a fresh one once its context was compacted N times."""

    enabled: bool = False
    compaction_threshold: int = 2
    #: Restarts per project within one reset window.
    max_retries: int = 3
    reset_window_seconds: float = DEFAULT_RESET_WINDOW_SECONDS
    dry_run: bool = False


@attrs.frozen
class KillOnCostPolicy:
    """Stop the fleet's (or a project's) active sessions when today's spend reaches a limit.

    Driven by the day's totals from cost tracking, never by one session's cost. With
    neither ``daily_limit_usd`` nor ``projects`` set, the engine uses the daily budgets
    (``budgets.daily_usd`` and ``budgets.projects``) as the limits.
    """

    enabled: bool = False
    #: Fleet-wide daily limit in USD (None: no fleet limit).
    daily_limit_usd: float | None = None
    #: Project name -> daily limit in USD.
    projects: dict[str, float] = attrs.Factory(dict)
    #: ``abort`` stops the current turn (history kept); ``kill`` is the harder stop.
    action: Literal["abort", "kill"] = "abort"
    dry_run: bool = False


@attrs.frozen
class ErrorLoopPolicy:
    """Alert on (or restart) a session that failed N turns in a row."""

    enabled: bool = False
    consecutive_errors: int = 3
    action: Literal["alert", "restart"] = "alert"
    #: Actions (alerts or restarts) per project within one reset window.
    max_retries: int = 3
    reset_window_seconds: float = DEFAULT_RESET_WINDOW_SECONDS
    dry_run: bool = False


@attrs.frozen
class StuckBusyPolicy:
    """Alert on (or abort) a session busy with no activity for N minutes."""

    enabled: bool = False
    minutes: float = 30.0
    action: Literal["alert", "abort"] = "alert"
    dry_run: bool = False


@attrs.frozen
class NodeOfflinePolicy:
    """Alert once when a node goes offline (its sessions become unreachable)."""

    enabled: bool = True
    action: Literal["alert"] = "alert"


@attrs.frozen
class PoliciesConfig:
    """Auto-intervention policies."""

    resume_on_idle: ResumeOnIdlePolicy = ResumeOnIdlePolicy()
    restart_on_compaction: RestartOnCompactionPolicy = RestartOnCompactionPolicy()
    kill_on_cost: KillOnCostPolicy = KillOnCostPolicy()
    error_loop: ErrorLoopPolicy = ErrorLoopPolicy()
    stuck_busy: StuckBusyPolicy = StuckBusyPolicy()
    node_offline: NodeOfflinePolicy = NodeOfflinePolicy()
    #: Seconds between two runs of every enabled policy (the engine's tick).
    tick_seconds: float = DEFAULT_TICK_SECONDS


def _positive(key: str, value: float) -> list[str]:
    return [] if value > 0 else [f"{key}: must be greater than 0"]


def _at_least_one(key: str, value: int) -> list[str]:
    return [] if value >= 1 else [f"{key}: must be at least 1"]


def _retry_caps(key: str, max_retries: int, reset_window_seconds: float) -> list[str]:
    problems = [] if max_retries >= 0 else [f"{key}.max_retries: must not be negative"]
    return problems + _positive(f"{key}.reset_window_seconds", reset_window_seconds)


def check_policies(config: PoliciesConfig, *, budget_limits: bool = False) -> list[str]:
    """Semantic checks of ``policies``: every problem, each naming its key path.

    Types, unknown keys and ``action`` values are checked when the file is structured;
    this adds ranges and combinations.

    Args:
        config: the ``policies`` section.
        budget_limits: ``budgets`` sets a daily limit (fleet or project), which
            ``kill_on_cost`` falls back to when it has no limit of its own.
    """
    problems = _positive("policies.tick_seconds", config.tick_seconds)
    key = "policies.resume_on_idle"
    idle = config.resume_on_idle
    problems += _positive(f"{key}.idle_threshold_seconds", idle.idle_threshold_seconds)
    problems += _retry_caps(key, idle.max_retries, idle.reset_window_seconds)
    if idle.prompt is not None and not idle.prompt.strip():
        problems.append(f"{key}.prompt: must not be empty (leave it out to use the agent's continue prompt)")

    key = "policies.restart_on_compaction"
    compaction = config.restart_on_compaction
    problems += _at_least_one(f"{key}.compaction_threshold", compaction.compaction_threshold)
    problems += _retry_caps(key, compaction.max_retries, compaction.reset_window_seconds)

    key = "policies.kill_on_cost"
    cost = config.kill_on_cost
    if cost.daily_limit_usd is not None:
        problems += _positive(f"{key}.daily_limit_usd", cost.daily_limit_usd)
    for project, limit in sorted(cost.projects.items()):
        if not project:
            problems.append(f"{key}.projects: a project name must not be empty")
        else:
            problems += _positive(f"{key}.projects.{project}", limit)
    if cost.enabled and cost.daily_limit_usd is None and not cost.projects and not budget_limits:
        problems.append(
            f"{key}: enabled but no limit is set (daily_limit_usd or projects, or budgets.daily_usd / budgets.projects)"
        )

    key = "policies.error_loop"
    errors = config.error_loop
    problems += _at_least_one(f"{key}.consecutive_errors", errors.consecutive_errors)
    problems += _retry_caps(key, errors.max_retries, errors.reset_window_seconds)

    problems += _positive("policies.stuck_busy.minutes", config.stuck_busy.minutes)
    return problems
