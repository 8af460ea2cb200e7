"""Agent config: the seed README's example, defaults, every problem with its key path,
HALSWARM_AUTH_TOKEN, the hub's ``/ws`` URL and the per-node default data directory.
"""

from __future__ import annotations

import copy
import socket
from typing import TYPE_CHECKING

import orjson
import pytest

from halswarm.config import (
    AgentConfig,
    ConfigError,
    LinkConfig,
    OpencodeConfig,
    load_agent_config,
    missing_project_directories,
    parse_agent_config,
)
from halswarm.config.agent import resolved_projects
from halswarm.models import Project

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject, JSONValue

TOKEN = "your-shared-secret-token-here"

# Verbatim from the seed README, "Agent Configuration".
SEED_EXAMPLE: JSONObject = {
    "supervisor_url": "ws://supervisor-host:8420",
    "auth_token": TOKEN,
    "opencode_port": 4096,
    "projects": [{"name": "my-project", "directory": "/home/user/my-project"}],
}


def example(**changes: JSONValue) -> JSONObject:
    raw = copy.deepcopy(SEED_EXAMPLE)
    raw.update(changes)
    return raw


def problems_of(raw: JSONObject, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(raw, env={} if env is None else env)
    return info.value.problems


def test_seed_example_validates() -> None:
    config = parse_agent_config(example(), env={})
    assert config.supervisor_url == "ws://supervisor-host:8420"
    assert config.auth_token == TOKEN
    assert config.opencode_port == 4096
    assert config.projects == [Project("my-project", "/home/user/my-project")]
    assert config.secrets() == [TOKEN]


def test_defaults() -> None:
    config = parse_agent_config({"supervisor_url": "wss://hub.example.com"}, env={"HALSWARM_AUTH_TOKEN": TOKEN})
    assert config.opencode_port == 4096
    assert config.projects == []
    assert config.node_id is None
    assert config.data_dir is None
    assert config.link == LinkConfig()


def test_every_problem_is_reported_with_its_key_path() -> None:
    raw = example(
        supervisor_url="http://supervisor-host:8420",
        auth_token="",
        opencode_port=70000,
        projects=[
            {"name": "web", "directory": "relative/web"},
            {"name": "web", "directory": "/srv/web2"},
            {"name": "bad name!", "directory": "/srv/x"},
            {"name": "api", "directory": ""},
        ],
        node_id="has space",
    )
    assert problems_of(raw) == [
        "supervisor_url: must be a ws:// or wss:// URL with a host, got 'http://supervisor-host:8420'",
        "auth_token: required (or set HALSWARM_AUTH_TOKEN)",
        "opencode_port: must be between 1 and 65535, got 70000",
        "node_id: use letters, digits, '.', '_' or '-' (at most 128 characters)",
        "projects[0].directory: must be an absolute path, got 'relative/web'",
        "projects[1].name: duplicate project name 'web'",
        "projects[2].name: use letters, digits, '.', '_' or '-', got 'bad name!'",
        "projects[3].directory: required",
    ]


def test_type_problems_are_reported_with_key_paths() -> None:
    raw = example(opencode_port="4096", projects=[{"name": "p"}, "q"], link={"backof_max_sec": 1})
    raw["supervisor"] = "typo"
    assert sorted(problems_of(raw)) == sorted(
        [
            "opencode_port: expected an integer, got str",
            "projects[0].directory: required key is missing",
            "projects[1]: expected a JSON object, got str",
            "link: unknown key(s): backof_max_sec",
            "(top level): unknown key(s): supervisor",
        ]
    )


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("ws://supervisor-host:8420", True),
        ("wss://hub.example.com", True),
        ("", False),
        ("http://supervisor-host:8420", False),
        ("supervisor-host:8420", False),
        ("ws://", False),
    ],
)
def test_supervisor_url_must_be_websocket(url: str, ok: bool) -> None:
    raw = example(supervisor_url=url)
    if ok:
        assert parse_agent_config(raw, env={}).supervisor_url == url
    else:
        (problem,) = problems_of(raw)
        assert problem.startswith("supervisor_url: ")


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ({"connect_timeout_sec": 0}, "link.connect_timeout_sec: must be greater than 0"),
        ({"backoff_initial_sec": 5, "backoff_max_sec": 1}, "link.backoff_max_sec: must be at least"),
        ({"batch_max_events": 0}, "link.batch_max_events: must be at least 1"),
        ({"batch_max_bytes": 100}, "link.batch_max_bytes: must be at least 4096"),
        ({"stable_after_sec": 5}, "link.stable_after_sec: must be greater than link.connect_timeout_sec"),
        ({"data_dir_is_not_here": 1}, "link: unknown key(s): data_dir_is_not_here"),
    ],
)
def test_link_checks(link: JSONObject, problem: str) -> None:
    # connect_timeout_sec defaults to 10: a shorter "stable" period would let a hanging
    # connect attempt reset the backoff.
    (only,) = problems_of(example(link=link))
    assert only.startswith(problem)


def test_env_token_fills_a_missing_token() -> None:
    raw = example()
    del raw["auth_token"]
    config = parse_agent_config(raw, env={"HALSWARM_AUTH_TOKEN": "env-token-value"})
    assert config.auth_token == "env-token-value"


def test_env_token_wins_over_the_file() -> None:
    config = parse_agent_config(example(), env={"HALSWARM_AUTH_TOKEN": "env-token-value"})
    assert config.auth_token == "env-token-value"


def test_process_environment_is_not_read_when_env_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALSWARM_AUTH_TOKEN", "from-the-real-environment")
    assert parse_agent_config(example(), env={}).auth_token == TOKEN


@pytest.mark.parametrize(
    ("url", "ws_url"),
    [
        ("ws://supervisor-host:8420", "ws://supervisor-host:8420/ws"),
        ("ws://supervisor-host:8420/", "ws://supervisor-host:8420/ws"),
        ("wss://hub.example.com", "wss://hub.example.com/ws"),
        ("wss://hub.example.com/halswarm/ws", "wss://hub.example.com/halswarm/ws"),
        ("ws://10.0.0.5:8420?region=eu", "ws://10.0.0.5:8420/ws?region=eu"),
    ],
)
def test_ws_url_appends_the_hub_path(url: str, ws_url: str) -> None:
    assert parse_agent_config(example(supervisor_url=url), env={}).ws_url() == ws_url


def test_node_id_defaults_to_hostname() -> None:
    config = parse_agent_config(example(), env={})
    assert config.resolved_node_id() == socket.gethostname()
    assert parse_agent_config(example(node_id="worker-1"), env={}).resolved_node_id() == "worker-1"


def test_default_data_dir_is_per_node_under_xdg_state_home(tmp_path: Path) -> None:
    config = parse_agent_config(example(node_id="worker-1"), env={})
    env = {"XDG_STATE_HOME": str(tmp_path)}
    assert config.resolved_data_dir(env) == tmp_path / "halswarm" / "agent" / "worker-1"
    other = parse_agent_config(example(node_id="worker-2"), env={})
    assert other.resolved_data_dir(env) != config.resolved_data_dir(env)


def test_default_data_dir_falls_back_to_local_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_agent_config(example(node_id="worker-1"), env={})
    assert config.resolved_data_dir({}) == tmp_path / ".local" / "state" / "halswarm" / "agent" / "worker-1"


def test_explicit_data_dir_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_agent_config(example(data_dir="~/agent-data"), env={})
    assert config.resolved_data_dir({"XDG_STATE_HOME": "/elsewhere"}) == tmp_path / "agent-data"


def test_load_example_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.config.json"
    path.write_bytes(orjson.dumps(SEED_EXAMPLE))
    config = load_agent_config(path, env={})
    assert isinstance(config, AgentConfig)
    assert config == parse_agent_config(example(), env={})


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.config.json"
    with pytest.raises(ConfigError) as info:
        load_agent_config(path, env={})
    assert info.value.problems == ["cannot read config file: No such file or directory"]
    assert str(path) in str(info.value)


def test_non_json_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.config.json"
    path.write_text("supervisor_url = ws://x\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(path, env={})
    (problem,) = info.value.problems
    assert problem.startswith("config file is not valid JSON")


def test_relative_data_dir_is_refused() -> None:
    (only,) = problems_of(example(data_dir="state/agent"))
    assert only == "data_dir: must be an absolute path, got 'state/agent'"


def test_seed_keys_alone_spawn_opencode_from_path_on_opencode_port() -> None:
    config = parse_agent_config(example(opencode_port=4111), env={})
    assert config.opencode == OpencodeConfig()
    assert (config.opencode.mode, config.opencode.binary, config.opencode.host) == ("spawn", "opencode", "127.0.0.1")
    assert config.opencode.base_url(config.opencode_port) == "http://127.0.0.1:4111"


@pytest.mark.parametrize(
    ("opencode", "problem"),
    [
        ({"mode": "remote"}, "opencode.mode:"),
        ({"binary": " "}, "opencode.binary: must not be empty"),
        ({"host": "0.0.0.0"}, "opencode.host: spawn mode binds to loopback only"),
        ({"handover_timeout_sec": 0}, "opencode.handover_timeout_sec: must be greater than 0"),
        ({"restart_backoff_initial_sec": 9, "restart_backoff_max_sec": 1}, "opencode.restart_backoff_max_sec:"),
        ({"env": {"BAD-NAME": "x"}}, "opencode.env.BAD-NAME: not a valid environment variable name"),
        ({"continue_prompt": "  "}, "opencode.continue_prompt: must not be empty"),
        ({"pasword": "typo"}, "opencode: unknown key(s): pasword"),
    ],
)
def test_opencode_checks(opencode: JSONObject, problem: str) -> None:
    (only,) = problems_of(example(opencode=opencode))
    assert only.startswith(problem)


def test_attach_mode_may_use_another_host() -> None:
    config = parse_agent_config(example(opencode={"mode": "attach", "host": "10.0.0.5"}), env={})
    assert config.opencode.base_url(4096) == "http://10.0.0.5:4096"


def test_opencode_password_and_provider_keys_are_secrets() -> None:
    raw = example(opencode={"env": {"ANTHROPIC_API_KEY": "sk-ant-not-a-real-key", "DEBUG": "1"}})
    config = parse_agent_config(raw, env={"HALSWARM_OPENCODE_PASSWORD": "server-password"})
    assert config.opencode.password == "server-password"
    # Short values like "1" are not redacted: they would mangle every log line.
    assert sorted(config.secrets()) == sorted([TOKEN, "server-password", "sk-ant-not-a-real-key"])


def test_missing_project_directories_are_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    raw = example(
        projects=[
            {"name": "here", "directory": str(tmp_path)},
            {"name": "gone", "directory": str(tmp_path / "gone")},
            {"name": "file", "directory": str(tmp_path / "file")},
        ]
    )
    config = parse_agent_config(raw, env={})
    assert missing_project_directories(config) == [
        f"projects[1].directory: {tmp_path / 'gone'} does not exist ('gone')",
        f"projects[2].directory: {tmp_path / 'file'} is not a directory ('file')",
    ]


def test_project_directories_are_resolved_as_opencode_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "data" / "app"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    configured = [Project("linked", str(tmp_path / "link" / "app")), Project("home", "~/data/app")]
    resolved = str(real.resolve())
    assert resolved_projects(configured) == [Project("linked", resolved), Project("home", resolved)]
