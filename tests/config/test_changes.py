"""Which keys changed between two supervisor configs, and which of them a reload applies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from halswarm.config import parse_supervisor_config
from halswarm.config.changes import RELOADABLE, changed_keys, is_reloadable, with_reloadable

if TYPE_CHECKING:
    from halswarm.config import SupervisorConfig
    from halswarm.jsontypes import JSONObject, JSONValue

TOKEN = "changes-token-0123456789"


def config(**sections: JSONValue) -> SupervisorConfig:
    raw: JSONObject = {"server": {"auth_token": TOKEN}, **sections}
    return parse_supervisor_config(raw, env={})


def test_unchanged_configs_have_no_changed_keys() -> None:
    assert changed_keys(config(), config()) == []


def test_changed_keys_are_named_by_path_never_by_value() -> None:
    old = config(
        channels={"webhooks": {"n8n": {"url": "https://n8n.example/hook/old-secret-path"}}},
        policies={"resume_on_idle": {"enabled": False}},
    )
    new = config(
        server={"auth_token": TOKEN, "http_port": 9000, "node_tokens": {"build-01": "node-token-0123456789"}},
        channels={
            "webhooks": {"n8n": {"url": "https://n8n.example/hook/new-secret-path"}, "ops": {"url": "https://x.test"}},
            "slack": {"team": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}},
        },
        policies={"resume_on_idle": {"enabled": True}, "tick_seconds": 5},
        routes=[{"match": "session.error", "target": "webhook#ops"}],
    )
    keys = changed_keys(old, new)
    assert keys == [
        "channels.slack['team']",
        "channels.webhooks['n8n'].url",
        "channels.webhooks['ops']",
        "policies.resume_on_idle.enabled",
        "policies.tick_seconds",
        "routes",
        "server.http_port",
        "server.node_tokens['build-01']",
    ]
    assert not any("secret-path" in key or "node-token" in key for key in keys)


def test_a_section_appearing_is_one_changed_key() -> None:
    old = config()
    new = config(channels={"discord": {"bot_token": "b" * 30, "channels": {"alerts": "1"}}})
    assert changed_keys(old, new) == ["channels.discord"]


@pytest.mark.parametrize(
    ("path", "reloadable"),
    [
        ("routes", True),
        ("channels.webhooks['n8n'].url", True),
        ("channels.slack['team']", True),
        ("policies.kill_on_cost.daily_limit_usd", True),
        ("policies.tick_seconds", True),
        ("channels.discord.channels['alerts']", False),
        ("budgets.daily_usd", False),
        ("server.http_port", False),
        ("dependencies['app']", False),
        ("routes_extra", False),
    ],
)
def test_reloadable_keys(path: str, reloadable: bool) -> None:
    assert is_reloadable(path) is reloadable


def test_with_reloadable_takes_only_the_live_parts_of_the_new_file() -> None:
    running = config(channels={"webhooks": {"n8n": {"url": "https://a.test"}}})
    new = config(
        server={"auth_token": TOKEN, "http_port": 9000},
        budgets={"daily_usd": 10},
        channels={"webhooks": {"n8n": {"url": "https://b.test"}}},
        policies={"stuck_busy": {"enabled": True}},
        routes=[{"match": "*", "target": "webhook#n8n"}],
    )
    result = with_reloadable(running, new)
    assert result.server == running.server
    assert result.budgets == running.budgets
    assert (result.routes, result.policies, result.channels.webhooks) == (
        new.routes,
        new.policies,
        new.channels.webhooks,
    )
    assert changed_keys(result, new) == ["budgets.daily_usd", "server.http_port"]
    assert attrs.evolve(result, server=new.server, budgets=new.budgets) == new


def test_with_reloadable_takes_exactly_the_keys_a_reload_reports_as_applied() -> None:
    """Guards: a key listed as reloadable (so reported as applied) that the running config
    never took, or a restart-only key slipping in with a reloadable one."""
    running = config(channels={"slack": {"old": {"webhook_url": "https://hooks.slack.com/services/T/B/O"}}})
    new = config(
        server={"auth_token": TOKEN, "http_port": 9000},
        budgets={"daily_usd": 10},
        channels={
            "webhooks": {"n8n": {"url": "https://b.test"}},
            "slack": {"team": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}},
            "discord": {"bot_token": "b" * 30, "channels": {"alerts": "1"}},
        },
        policies={"stuck_busy": {"enabled": True}},
        routes=[{"match": "*", "target": "webhook#n8n"}],
    )
    changed = changed_keys(running, new)
    # Every reloadable key differs here, so the checks below cover each of them.
    touched = {key for key in RELOADABLE for p in changed if p == key or p.startswith((f"{key}.", f"{key}["))}
    assert touched == set(RELOADABLE)
    result = with_reloadable(running, new)
    assert changed_keys(running, result) == [path for path in changed if is_reloadable(path)]
    assert changed_keys(result, new) == ["budgets.daily_usd", "channels.discord", "server.http_port"]
