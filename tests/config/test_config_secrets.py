"""Secrets in configs: never in a repr (configs end up in logs and tracebacks), and provider
keys that cannot work as an HTTP header are refused at load, naming the key path but never
the value."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.config import ConfigError, parse_agent_config, parse_supervisor_config

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

TOKEN = "server-token-0123456789"
DISCORD = "discord-bot-token-0123456789"
ANTHROPIC = "sk-ant-admin01-0123456789"
OPENAI = "sk-admin-openai-0123456789"


def supervisor(anthropic_key: str = ANTHROPIC, openai_key: str = OPENAI) -> JSONObject:
    return {
        "server": {"auth_token": TOKEN},
        "channels": {"discord": {"bot_token": DISCORD, "guild_id": "1"}},
        "cost": {"providers": {"anthropic": {"admin_api_key": anthropic_key}, "openai": {"org_api_key": openai_key}}},
    }


def test_supervisor_config_repr_holds_no_secret() -> None:
    config = parse_supervisor_config(supervisor(), env={})
    assert set(config.secrets()) == {TOKEN, DISCORD, ANTHROPIC, OPENAI}
    for shown in (repr(config), repr(config.cost), repr(config.server), repr(config.channels)):
        for secret in config.secrets():
            assert secret not in shown
    assert "base_url='https://api.anthropic.com'" in repr(config.cost)  # the rest is still shown


def test_agent_config_repr_holds_no_secret() -> None:
    raw: JSONObject = {
        "supervisor_url": "ws://supervisor:8420",
        "auth_token": TOKEN,
        "opencode": {"mode": "attach", "password": "opencode-password-123", "env": {"ANTHROPIC_API_KEY": ANTHROPIC}},
    }
    config = parse_agent_config(raw, env={})
    for secret in (TOKEN, "opencode-password-123", ANTHROPIC):
        assert secret not in repr(config)
        assert secret not in repr(config.opencode)


@pytest.mark.parametrize(
    ("anthropic_key", "openai_key", "problem"),
    [
        (
            ANTHROPIC + "\n",
            OPENAI,
            "cost.providers.anthropic.admin_api_key: has leading or trailing whitespace (a copy-paste slip?); "
            "remove it",
        ),
        (
            ANTHROPIC,
            " " + OPENAI,
            "cost.providers.openai.org_api_key: has leading or trailing whitespace (a copy-paste slip?); remove it",
        ),
        (
            "sk-ant-admin01-0123456789\u2013x",
            OPENAI,
            "cost.providers.anthropic.admin_api_key: must be printable ASCII (it is sent as an HTTP header); "
            "check for pasted quotes or dashes",
        ),
        (
            ANTHROPIC,
            "sk-admin\x00-0123",
            "cost.providers.openai.org_api_key: must be printable ASCII (it is sent as an HTTP header); "
            "check for pasted quotes or dashes",
        ),
    ],
    ids=["trailing-newline", "leading-space", "en-dash", "control-character"],
)
def test_a_provider_key_that_cannot_be_a_header_is_refused(anthropic_key: str, openai_key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_supervisor_config(supervisor(anthropic_key, openai_key), env={})
    assert info.value.problems == [problem]
    assert anthropic_key.strip() not in str(info.value)
    assert openai_key.strip() not in str(info.value)


def test_a_key_from_the_environment_is_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        parse_supervisor_config(supervisor(), env={"HALSWARM_OPENAI_ADMIN_KEY": OPENAI + " "})
    assert info.value.problems == [
        "cost.providers.openai.org_api_key: has leading or trailing whitespace (a copy-paste slip?); remove it"
    ]
