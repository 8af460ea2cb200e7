"""policies.*: documented defaults, unknown keys rejected, bad values named by key path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config import ConfigError, parse_supervisor_config
from halswarm.config import supervisor as supervisor_module
from halswarm.config.policies import (
    ErrorLoopPolicy,
    KillOnCostPolicy,
    NodeOfflinePolicy,
    PoliciesConfig,
    RestartOnCompactionPolicy,
    ResumeOnIdlePolicy,
    StuckBusyPolicy,
    check_policies,
)

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

TOKEN = "your-shared-secret-token-here"


def parse(policies: JSONObject) -> PoliciesConfig:
    return parse_supervisor_config({"server": {"auth_token": TOKEN}, "policies": policies}, env={}).policies


def problems_of(policies: JSONObject) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(policies)
    return info.value.problems


def test_defaults() -> None:
    config = parse({})
    assert config == PoliciesConfig()
    assert config.resume_on_idle == ResumeOnIdlePolicy(
        enabled=False, idle_threshold_seconds=300, max_retries=3, reset_window_seconds=3600, prompt=None, dry_run=False
    )
    assert config.restart_on_compaction == RestartOnCompactionPolicy(
        enabled=False, compaction_threshold=2, max_retries=3, reset_window_seconds=3600, dry_run=False
    )
    assert config.kill_on_cost == KillOnCostPolicy(
        enabled=False, daily_limit_usd=None, projects={}, action="abort", dry_run=False
    )
    assert config.error_loop == ErrorLoopPolicy(
        enabled=False, consecutive_errors=3, action="alert", max_retries=3, reset_window_seconds=3600, dry_run=False
    )
    assert config.stuck_busy == StuckBusyPolicy(enabled=False, minutes=30, action="alert", dry_run=False)
    # An alert, never a command: on unless switched off.
    assert config.node_offline == NodeOfflinePolicy(enabled=True, action="alert")
    assert check_policies(config) == []


def test_the_seed_keys() -> None:
    config = parse({"resume_on_idle": {"enabled": True, "idle_threshold_seconds": 300, "max_retries": 3}})
    assert config.resume_on_idle.enabled
    assert config.resume_on_idle.idle_threshold_seconds == 300.0


def test_every_key() -> None:
    raw: JSONObject = {
        "resume_on_idle": {
            "enabled": True,
            "idle_threshold_seconds": 120,
            "max_retries": 5,
            "reset_window_seconds": 7200,
            "prompt": "Carry on.",
            "dry_run": True,
        },
        "restart_on_compaction": {
            "enabled": True,
            "compaction_threshold": 3,
            "max_retries": 1,
            "reset_window_seconds": 60,
            "dry_run": True,
        },
        "kill_on_cost": {
            "enabled": True,
            "daily_limit_usd": 50,
            "projects": {"alpha": 12.5},
            "action": "kill",
            "dry_run": True,
        },
        "error_loop": {
            "enabled": True,
            "consecutive_errors": 5,
            "action": "restart",
            "max_retries": 2,
            "reset_window_seconds": 600,
            "dry_run": False,
        },
        "stuck_busy": {"enabled": True, "minutes": 45, "action": "abort", "dry_run": True},
        "node_offline": {"enabled": False, "action": "alert"},
    }
    config = parse(raw)
    assert config.resume_on_idle.prompt == "Carry on."
    assert config.restart_on_compaction.compaction_threshold == 3
    assert (config.kill_on_cost.daily_limit_usd, config.kill_on_cost.projects) == (50.0, {"alpha": 12.5})
    assert config.kill_on_cost.action == "kill"
    assert (config.error_loop.action, config.error_loop.consecutive_errors) == ("restart", 5)
    assert (config.stuck_busy.minutes, config.stuck_busy.action) == (45.0, "abort")
    assert not config.node_offline.enabled


def test_unknown_keys_are_rejected_with_their_path() -> None:
    problems = problems_of(
        {
            "resume_on_idle": {"idle_threshold_minutes": 5},
            "kill_on_cost": {"limit": 5},
            "stuck": {},
        }
    )
    assert sorted(problems) == [
        "policies.kill_on_cost: unknown key(s): limit",
        "policies.resume_on_idle: unknown key(s): idle_threshold_minutes",
        "policies: unknown key(s): stuck",
    ]


def test_type_and_choice_problems_are_named() -> None:
    problems = problems_of(
        {
            "kill_on_cost": {"action": "explode", "projects": {"alpha": "ten"}},
            "error_loop": {"action": "abort"},
            "stuck_busy": {"action": "restart", "minutes": "30"},
            "node_offline": {"action": "page"},
            "resume_on_idle": {"dry_run": "yes", "prompt": 5},
        }
    )
    assert sorted(problems) == [
        "policies.error_loop.action: must be one of: alert, restart",
        "policies.kill_on_cost.action: must be one of: abort, kill",
        "policies.kill_on_cost.projects['alpha']: expected a number, got str",  # cattrs' path for dict keys
        "policies.node_offline.action: must be one of: alert",
        "policies.resume_on_idle.dry_run: expected true or false, got str",
        "policies.resume_on_idle.prompt: expected a string, got int",
        "policies.stuck_busy.action: must be one of: alert, abort",
        "policies.stuck_busy.minutes: expected a number, got str",
    ]


def test_range_problems_are_all_named() -> None:
    problems = problems_of(
        {
            "resume_on_idle": {
                "idle_threshold_seconds": 0,
                "max_retries": -1,
                "reset_window_seconds": 0,
                "prompt": " ",
            },
            "restart_on_compaction": {"compaction_threshold": 0, "max_retries": -2, "reset_window_seconds": -5},
            "kill_on_cost": {"daily_limit_usd": 0, "projects": {"alpha": -1, "": 5}},
            "error_loop": {"consecutive_errors": 0, "max_retries": -1, "reset_window_seconds": 0},
            "stuck_busy": {"minutes": 0},
        }
    )
    assert problems == [
        "policies.resume_on_idle.idle_threshold_seconds: must be greater than 0",
        "policies.resume_on_idle.max_retries: must not be negative",
        "policies.resume_on_idle.reset_window_seconds: must be greater than 0",
        "policies.resume_on_idle.prompt: must not be empty (leave it out to use the agent's continue prompt)",
        "policies.restart_on_compaction.compaction_threshold: must be at least 1",
        "policies.restart_on_compaction.max_retries: must not be negative",
        "policies.restart_on_compaction.reset_window_seconds: must be greater than 0",
        "policies.kill_on_cost.daily_limit_usd: must be greater than 0",
        "policies.kill_on_cost.projects: a project name must not be empty",
        "policies.kill_on_cost.projects.alpha: must be greater than 0",
        "policies.error_loop.consecutive_errors: must be at least 1",
        "policies.error_loop.max_retries: must not be negative",
        "policies.error_loop.reset_window_seconds: must be greater than 0",
        "policies.stuck_busy.minutes: must be greater than 0",
    ]


def test_zero_retries_is_allowed() -> None:
    assert parse({"resume_on_idle": {"max_retries": 0}}).resume_on_idle.max_retries == 0


def test_kill_on_cost_needs_a_limit_when_enabled() -> None:
    assert problems_of({"kill_on_cost": {"enabled": True}}) == [
        "policies.kill_on_cost: enabled but no limit is set "
        "(daily_limit_usd or projects, or budgets.daily_usd / budgets.projects)"
    ]
    assert parse({"kill_on_cost": {"enabled": True, "projects": {"alpha": 5}}}).kill_on_cost.enabled
    assert parse({"kill_on_cost": {"enabled": True, "daily_limit_usd": 50}}).kill_on_cost.enabled
    # Off, a limit-less section is fine (the documented default).
    assert not parse({"kill_on_cost": {}}).kill_on_cost.enabled


def test_supervisor_module_re_exports_the_policy_type() -> None:
    assert supervisor_module.ResumeOnIdlePolicy is ResumeOnIdlePolicy


def test_tick_seconds() -> None:
    assert parse({}).tick_seconds == 10.0
    assert parse({"tick_seconds": 2}).tick_seconds == 2.0
    assert problems_of({"tick_seconds": 0}) == ["policies.tick_seconds: must be greater than 0"]


def test_kill_on_cost_may_rely_on_the_budgets_for_its_limits() -> None:
    raw: JSONObject = {"server": {"auth_token": TOKEN}, "policies": {"kill_on_cost": {"enabled": True}}}
    choices: list[JSONObject] = [{"daily_usd": 20}, {"projects": {"alpha": 5}}]
    for budgets in choices:
        config = parse_supervisor_config({**raw, "budgets": budgets}, env={})
        assert config.policies.kill_on_cost.enabled
