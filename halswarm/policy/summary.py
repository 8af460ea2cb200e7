"""The config the engine runs with, and each policy's summary for the API (pure).

- :func:`kill_on_cost_limits`: kill_on_cost without limits of its own uses the daily
  budgets (``budgets.daily_usd`` / ``budgets.projects``): the issue drives it "by the
  fleet's daily total and budgets". Its own limits, when any is set, replace both.
- :func:`effective_config`: the config file with runtime overrides and that fallback.
- :func:`summarize`: one :class:`~halswarm.policy.views.PolicyInfo`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from halswarm.config.policies import (
    ErrorLoopPolicy,
    KillOnCostPolicy,
    NodeOfflinePolicy,
    PoliciesConfig,
    RestartOnCompactionPolicy,
    ResumeOnIdlePolicy,
    StuckBusyPolicy,
)
from halswarm.convert import unstructure
from halswarm.jsontypes import is_json_object
from halswarm.policy.model import POLICY_NAMES, PolicyName
from halswarm.policy.views import PolicyInfo, RetryScope, RetryUse
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.config.supervisor import BudgetsConfig
    from halswarm.policy.retry import RetryWindow
    from halswarm.policy.state import PolicyStates
    from halswarm.policy.views import LastAction, PolicyOverride

__all__ = [
    "PolicySection",
    "effective_config",
    "epoch_ts",
    "kill_on_cost_limits",
    "policy_name",
    "section",
    "summarize",
    "uses_budget_limits",
]

PolicySection = (
    ResumeOnIdlePolicy
    | RestartOnCompactionPolicy
    | KillOnCostPolicy
    | ErrorLoopPolicy
    | StuckBusyPolicy
    | NodeOfflinePolicy
)

P = TypeVar(
    "P",
    ResumeOnIdlePolicy,
    RestartOnCompactionPolicy,
    KillOnCostPolicy,
    ErrorLoopPolicy,
    StuckBusyPolicy,
    NodeOfflinePolicy,
)

_NAMES: Final[dict[str, PolicyName]] = {name: name for name in POLICY_NAMES}


def policy_name(name: str) -> PolicyName | None:
    """*name* as a known policy name, or None."""
    return _NAMES.get(name)


def epoch_ts(seconds: float) -> str:
    """Epoch seconds (the policies' timeline) as an RFC 3339 UTC string."""
    return format_ts(dt.datetime.fromtimestamp(seconds, dt.UTC))


def section(config: PoliciesConfig, name: PolicyName) -> PolicySection:
    """One policy's config section."""
    match name:
        case "resume_on_idle":
            return config.resume_on_idle
        case "restart_on_compaction":
            return config.restart_on_compaction
        case "kill_on_cost":
            return config.kill_on_cost
        case "error_loop":
            return config.error_loop
        case "stuck_busy":
            return config.stuck_busy
        case "node_offline":
            return config.node_offline


def uses_budget_limits(policy: KillOnCostPolicy) -> bool:
    """True when kill_on_cost has no limit of its own (the budgets' apply)."""
    return policy.daily_limit_usd is None and not policy.projects


def kill_on_cost_limits(policy: KillOnCostPolicy, budgets: BudgetsConfig) -> KillOnCostPolicy:
    """kill_on_cost with the limits it acts on: its own, or else the daily budgets."""
    if not uses_budget_limits(policy):
        return policy
    return attrs.evolve(policy, daily_limit_usd=budgets.daily_usd, projects=dict(budgets.projects))


def _apply(policy: P, override: PolicyOverride | None) -> P:
    if override is None or override.enabled == policy.enabled:
        return policy
    return attrs.evolve(policy, enabled=override.enabled)


def effective_config(
    config: PoliciesConfig, budgets: BudgetsConfig, overrides: Mapping[PolicyName, PolicyOverride]
) -> PoliciesConfig:
    """The config file with runtime overrides applied and kill_on_cost's limits filled in."""
    return attrs.evolve(
        config,
        resume_on_idle=_apply(config.resume_on_idle, overrides.get("resume_on_idle")),
        restart_on_compaction=_apply(config.restart_on_compaction, overrides.get("restart_on_compaction")),
        kill_on_cost=kill_on_cost_limits(_apply(config.kill_on_cost, overrides.get("kill_on_cost")), budgets),
        error_loop=_apply(config.error_loop, overrides.get("error_loop")),
        stuck_busy=_apply(config.stuck_busy, overrides.get("stuck_busy")),
        node_offline=_apply(config.node_offline, overrides.get("node_offline")),
    )


def _caps(
    name: PolicyName, config: PoliciesConfig, states: PolicyStates
) -> tuple[int, RetryScope, float, Mapping[str, RetryWindow]] | None:
    match name:
        case "resume_on_idle":
            c = config.resume_on_idle
            return c.max_retries, "session", c.reset_window_seconds, states.resume_on_idle.windows
        case "restart_on_compaction":
            r = config.restart_on_compaction
            return r.max_retries, "project", r.reset_window_seconds, states.restart_on_compaction.windows
        case "error_loop":
            e = config.error_loop
            return e.max_retries, "project", e.reset_window_seconds, states.error_loop.windows
    return None


def summarize(
    name: PolicyName,
    *,
    effective: PoliciesConfig,
    configured: PoliciesConfig,
    override: PolicyOverride | None,
    states: PolicyStates,
    last_action: LastAction | None,
    now: float,
) -> PolicyInfo:
    """One policy as ``GET /api/v1/policies`` shows it.

    Args:
        name: the policy.
        effective: the config the engine runs with (:func:`effective_config`).
        configured: the config file as loaded.
        override: its runtime override, if any.
        states: every policy's current state.
        last_action: the last command or alert it decided.
        now: the current time (epoch seconds): only windows still open count.
    """
    current = section(effective, name)
    body = unstructure(current)
    config = body if is_json_object(body) else {}
    notes: list[str] = []
    if isinstance(current, KillOnCostPolicy) and uses_budget_limits(configured.kill_on_cost):
        if current.daily_limit_usd is None and not current.projects:
            notes.append("no limit set: neither its own limits nor budgets.daily_usd / budgets.projects")
        else:
            notes.append("no limits of its own: acts on budgets.daily_usd and budgets.projects")
    info = PolicyInfo(
        name=name,
        enabled=current.enabled,
        configured=section(configured, name).enabled,
        override=override,
        dry_run=False if isinstance(current, NodeOfflinePolicy) else current.dry_run,
        config=config,
        last_action=last_action,
        notes=notes,
    )
    caps = _caps(name, effective, states)
    if caps is None:
        return info
    max_retries, scope, window_length, windows = caps
    open_windows = sorted(
        ((key, w) for key, w in windows.items() if w.started is not None and w.is_open(now, window_length)),
        key=lambda kw: (kw[1].started or 0.0, kw[0]),
    )
    uses = [RetryUse(key, w.used, epoch_ts((w.started or 0.0) + window_length)) for key, w in open_windows]
    # The fullest window (the first to reset among equals), as halctl shows it: the cap
    # binds per session or project, so a sum over windows could exceed max_retries.
    fullest = max(uses, key=lambda u: u.used, default=None)
    return attrs.evolve(
        info,
        max_retries=max_retries,
        retry_scope=scope,
        retries_used=fullest.used if fullest is not None else 0,
        next_reset=fullest.next_reset if fullest is not None else None,
        windows=uses,
    )
