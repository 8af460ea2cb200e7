"""The installed programs as an operator runs them: validation, exit codes, clear errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from halswarm.testing import free_port, write_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOKEN = "entrypoint-token-0123456789"


def run(
    program: str, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``hal-supervisor`` / ``hal-agent`` through their console-script entry points."""
    module = {"hal-supervisor": "halswarm.supervisor.main", "hal-agent": "halswarm.agent.main"}[program]
    return subprocess.run(
        [sys.executable, "-c", f"import {module} as m; m.main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(
    ("program", "example"),
    [
        ("hal-supervisor", "supervisor.config.json"),
        ("hal-supervisor", "supervisor.cost.config.json"),
        ("hal-supervisor", "supervisor.security.config.json"),
        ("hal-agent", "agent.config.json"),
        ("hal-agent", "agent.opencode.config.json"),
    ],
)
def test_examples_validate(program: str, example: str) -> None:
    result = run(program, "--config", str(EXAMPLES / example), "--validate")
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_invalid_supervisor_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = write_json(
        tmp_path / "bad.json",
        {"server": {"port": 70000, "heartbeat_timeout_count": 0, "auth_token": "short"}, "databse": {}},
    )
    result = run("hal-supervisor", "--config", str(bad), "--validate")
    assert result.returncode == 2
    assert "(top level): unknown key(s): databse" in result.stderr
    bad = write_json(tmp_path / "bad2.json", {"server": {"port": 70000, "heartbeat_timeout_count": 0}})
    result = run("hal-supervisor", "--config", str(bad), "--validate")
    assert result.returncode == 2
    for line in (
        "server.auth_token: required (or set HALSWARM_AUTH_TOKEN)",
        "server.port: must be between 0 and 65535, got 70000",
        "server.heartbeat_timeout_count: must be at least 1",
    ):
        assert line in result.stderr


def test_token_from_environment_is_accepted_and_never_printed(tmp_path: Path) -> None:
    config = write_json(tmp_path / "s.json", {"database": {"path": str(tmp_path / "db.sqlite")}})
    result = run("hal-supervisor", "--config", str(config), "--validate", env={"HALSWARM_AUTH_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_missing_and_non_json_config_files(tmp_path: Path) -> None:
    missing = run("hal-supervisor", "--config", str(tmp_path / "nope.json"), "--validate")
    assert missing.returncode == 2
    assert "cannot read config file" in missing.stderr
    (tmp_path / "broken.json").write_text("{server:")
    broken = run("hal-agent", "--config", str(tmp_path / "broken.json"), "--validate")
    assert broken.returncode == 2
    assert "config file is not valid JSON" in broken.stderr


def test_agent_refuses_a_missing_project_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-project"
    config = write_json(
        tmp_path / "a.json",
        {
            "supervisor_url": "ws://127.0.0.1:9",
            "auth_token": TOKEN,
            "data_dir": str(tmp_path / "data"),
            "projects": [{"name": "app", "directory": str(missing)}],
        },
    )
    result = run("hal-agent", "--config", str(config))
    assert result.returncode == 2
    assert f"projects[0].directory: {missing} does not exist ('app')" in result.stderr


def test_port_in_use_is_a_clear_runtime_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        config = write_json(
            tmp_path / "s.json",
            {
                "server": {"auth_token": TOKEN, "host": "127.0.0.1", "port": busy, "http_port": free_port()},
                "database": {"path": str(tmp_path / "db.sqlite")},
            },
        )
        result = run("hal-supervisor", "--config", str(config), "--log-format", "json")
    assert result.returncode == 1
    errors = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e["level"] == "error" and "cannot start" in e["msg"] and str(busy) in e["msg"] for e in errors)
    assert "Traceback" not in result.stderr


def test_unwritable_database_is_a_clear_runtime_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = write_json(
        tmp_path / "s.json",
        {
            "server": {"auth_token": TOKEN, "host": "127.0.0.1", "port": 0, "http_port": 0},
            "database": {"path": str(blocker / "db.sqlite")},
        },
    )
    result = run("hal-supervisor", "--config", str(config), "--log-format", "text")
    assert result.returncode == 1
    assert "cannot open database" in result.stderr
    assert "Traceback" not in result.stderr
