"""Supervisor config: the seed README's example, its documented defaults, every problem
reported at once with its key path, secrets from the environment, and file loading.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import orjson
import pytest

from halswarm.config import ConfigError, SupervisorConfig, load_supervisor_config, parse_supervisor_config

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject

TOKEN = "your-shared-secret-token-here"
ENV_TOKEN = "token-from-the-environment"

# Verbatim from the seed README, "Supervisor Configuration".
SEED_EXAMPLE: JSONObject = {
    "server": {"port": 8420, "http_port": 8421, "auth_token": TOKEN},
    "database": {"path": "/var/lib/hal-o-swarm/supervisor.db"},
    "channels": {"discord": {"bot_token": "your-discord-bot-token", "guild_id": "your-guild-id"}},
    "cost": {
        "poll_interval_minutes": 60,
        "providers": {"anthropic": {"admin_api_key": "sk-ant-..."}, "openai": {"org_api_key": "sk-..."}},
    },
    "policies": {"resume_on_idle": {"enabled": True, "idle_threshold_seconds": 300, "max_retries": 3}},
}


def example() -> JSONObject:
    return copy.deepcopy(SEED_EXAMPLE)


def problems_of(raw: JSONObject, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_supervisor_config(raw, env={} if env is None else env)
    return info.value.problems


def test_seed_example_validates() -> None:
    config = parse_supervisor_config(example(), env={})
    assert config.server.auth_token == TOKEN
    assert (config.server.port, config.server.http_port) == (8420, 8421)
    assert config.channels.discord is not None
    assert config.channels.discord.guild_id == "your-guild-id"
    assert config.cost.poll_interval_minutes == 60.0
    assert config.policies.resume_on_idle.enabled


def test_seed_example_flags_features_not_active_yet() -> None:
    config = parse_supervisor_config(example(), env={})
    assert config.not_yet_active() == []


def test_secrets_lists_every_credential_for_redaction() -> None:
    config = parse_supervisor_config(example(), env={})
    assert sorted(config.secrets()) == sorted([TOKEN, "your-discord-bot-token", "sk-ant-...", "sk-..."])


def test_defaults_match_the_configuration_reference() -> None:
    config = parse_supervisor_config({"server": {"auth_token": TOKEN}}, env={})
    assert config.server.port == 8420
    assert config.server.http_port == 8421
    assert config.server.heartbeat_interval_sec == 30
    assert config.server.heartbeat_timeout_count == 3
    assert config.database.path == "/var/lib/hal-o-swarm/supervisor.db"
    assert config.security.tls.enabled is False
    assert config.security.tls.cert_path is None
    assert config.security.tls.key_path is None
    assert config.security.origin_allowlist == ["*"]
    policy = config.policies.resume_on_idle
    assert (policy.enabled, policy.idle_threshold_seconds, policy.max_retries) == (False, 300, 3)
    assert config.not_yet_active() == []


def test_type_problems_are_all_reported_with_key_paths() -> None:
    raw = example()
    raw["server"] = {"port": "8420", "auth_token": TOKEN, "prot": 1}
    raw["databse"] = {}
    raw["policies"] = {"resume_on_idle": {"enabled": "yes", "max_retries": 1.5}}
    raw["security"] = {"origin_allowlist": "https://ops.example.com"}
    assert sorted(problems_of(raw)) == sorted(
        [
            "server.port: expected an integer, got str",
            "server: unknown key(s): prot",
            "(top level): unknown key(s): databse",
            "policies.resume_on_idle.enabled: expected true or false, got str",
            "policies.resume_on_idle.max_retries: expected an integer, got float",
            "security.origin_allowlist: expected a list, got str",
        ]
    )


def test_range_problems_are_all_reported_with_key_paths() -> None:
    raw: JSONObject = {
        "server": {"port": 70000, "http_port": -1, "heartbeat_interval_sec": 0, "heartbeat_timeout_count": 0},
        "database": {"path": ""},
        "policies": {"resume_on_idle": {"idle_threshold_seconds": -5}},
    }
    assert problems_of(raw) == [
        "server.auth_token: required (or set HALSWARM_AUTH_TOKEN)",
        "server.port: must be between 0 and 65535, got 70000",
        "server.http_port: must be between 0 and 65535, got -1",
        "server.heartbeat_interval_sec: must be greater than 0",
        "server.heartbeat_timeout_count: must be at least 1",
        "database.path: required",
        "policies.resume_on_idle.idle_threshold_seconds: must be greater than 0",
    ]


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({}, "server.auth_token: required (or set HALSWARM_AUTH_TOKEN)"),
        ({"auth_token": "short"}, "server.auth_token: must be at least 16 characters"),
        ({"auth_token": TOKEN, "port": 9000, "http_port": 9000}, "server.http_port: must differ from server.port"),
        ({"auth_token": TOKEN, "window": 0}, "server.window: must be at least 1"),
        ({"auth_token": TOKEN, "max_frame_bytes": 1000}, "server.max_frame_bytes: must be at least 65536"),
    ],
)
def test_server_checks(server: JSONObject, problem: str) -> None:
    (only,) = problems_of({"server": server})
    assert only.startswith(problem)


def test_port_zero_is_allowed_for_tests() -> None:
    config = parse_supervisor_config({"server": {"auth_token": TOKEN, "port": 0, "http_port": 0}}, env={})
    assert (config.server.port, config.server.http_port) == (0, 0)


# ---- environment ------------------------------------------------------------------------


def test_env_token_fills_a_missing_token() -> None:
    config = parse_supervisor_config({}, env={"HALSWARM_AUTH_TOKEN": ENV_TOKEN})
    assert config.server.auth_token == ENV_TOKEN


def test_env_token_wins_over_the_file() -> None:
    config = parse_supervisor_config(example(), env={"HALSWARM_AUTH_TOKEN": ENV_TOKEN})
    assert config.server.auth_token == ENV_TOKEN
    assert config.server.port == 8420  # the rest of the section is kept


def test_empty_env_var_is_ignored() -> None:
    config = parse_supervisor_config(example(), env={"HALSWARM_AUTH_TOKEN": ""})
    assert config.server.auth_token == TOKEN


def test_explicit_env_is_used_instead_of_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALSWARM_AUTH_TOKEN", ENV_TOKEN)
    (problem,) = problems_of({}, env={})
    assert problem.startswith("server.auth_token: required")


def test_env_secrets_fill_their_sections() -> None:
    env = {"HALSWARM_DISCORD_BOT_TOKEN": "bot-from-env", "HALSWARM_ANTHROPIC_ADMIN_KEY": "ant-from-env"}
    config = parse_supervisor_config(example(), env=env)
    assert config.channels.discord is not None
    assert config.channels.discord.bot_token == "bot-from-env"
    assert config.channels.discord.guild_id == "your-guild-id"
    assert config.cost.providers.anthropic is not None
    assert config.cost.providers.anthropic.admin_api_key == "ant-from-env"


def test_env_token_does_not_hide_a_wrong_section_type() -> None:
    # "server": 5 must be reported, not silently replaced by defaults plus the token.
    problems = problems_of({"server": 5}, env={"HALSWARM_AUTH_TOKEN": ENV_TOKEN})
    assert problems == ["server: expected a JSON object, got int"]


# ---- files ---------------------------------------------------------------------------------


def test_load_example_file(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.config.json"
    path.write_bytes(orjson.dumps(SEED_EXAMPLE))
    assert load_supervisor_config(path, env={}) == parse_supervisor_config(example(), env={})


def test_loaded_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.config.json"
    path.write_text('{"server": {"auth_token": "x"}}')
    with pytest.raises(ConfigError) as info:
        load_supervisor_config(path, env={})
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert info.value.problems == ["server.auth_token: must be at least 16 characters"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_supervisor_config(path, env={"HALSWARM_AUTH_TOKEN": ENV_TOKEN})
    assert info.value.problems == ["cannot read config file: No such file or directory"]
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("server:\n  port: 8420\n", "config file is not valid JSON"),
        ('{"server": {},}', "config file is not valid JSON"),
        ("", "config file is not valid JSON"),
        ("[1, 2]", "config file must be a JSON object, got list"),
    ],
    ids=["yaml", "trailing-comma", "empty", "array"],
)
def test_unparseable_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "supervisor.config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_supervisor_config(path, env={"HALSWARM_AUTH_TOKEN": ENV_TOKEN})
    (only,) = info.value.problems
    assert only.startswith(problem)


def test_config_is_a_frozen_value() -> None:
    config = parse_supervisor_config(example(), env={})
    assert isinstance(config, SupervisorConfig)
    assert config == parse_supervisor_config(example(), env={})


def test_routes_name_their_problems_and_are_active() -> None:
    raw = example()
    raw["channels"] = {"discord": {"bot_token": "bot-token-0123456789", "channels": {"alerts": "123"}}}
    good: JSONObject = {"match": "session.error", "target": "discord#alerts", "throttle": "5m"}
    raw["routes"] = [good, {"match": "session.idle && idle_for >", "target": "webhook#n8n"}]
    with pytest.raises(ConfigError) as failed:
        parse_supervisor_config(raw, env={})
    problems = failed.value.problems
    assert any(p.startswith("routes[1].match: expected a literal") and "position 26" in p for p in problems)
    assert any(p.startswith("routes[1].target: webhook#n8n: no webhook named 'n8n'") for p in problems)
    assert not any(p.startswith("routes[0]") for p in problems)
    raw["routes"] = [good]
    config = parse_supervisor_config(raw, env={})
    assert config.channels.discord is not None
    assert config.channels.discord.transport == "gateway"
    assert config.not_yet_active() == []  # routes, webhooks and Slack run (issue 7)


def test_discord_urls_and_public_key_are_checked_at_load() -> None:
    raw = example()
    raw["channels"] = {
        "discord": {
            "bot_token": "bot-token-0123456789",
            "transport": "interactions",
            "gateway_url": "https://gateway.discord.gg",
            "api_base_url": "discord.com/api/v10",
        }
    }
    with pytest.raises(ConfigError) as failed:
        parse_supervisor_config(raw, env={})
    assert failed.value.problems == [
        "channels.discord.api_base_url: must start with http:// or https://",
        "channels.discord.gateway_url: must start with ws:// or wss://",
        "channels.discord.public_key: required when transport is 'interactions'",
    ]
