"""Which keys changed between two supervisor configs, and which of them a reload applies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from halswarm.config import parse_supervisor_config
from halswarm.config.changes import changed_keys, is_reloadable, with_reloadable

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
