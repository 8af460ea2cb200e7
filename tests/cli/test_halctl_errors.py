"""Exit codes and error messages: one line on stderr, no traceback, never the token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.testing import TEST_TOKEN, free_port
from halswarm.testing.halctl import run_halctl

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.testing.halctl import Halctl


async def test_wrong_token_is_exit_4(halctl: Halctl) -> None:
    env = halctl.env(HALCTL_TOKEN="not-the-right-token")
    result = await run_halctl(["sessions", "list"], env=env, cwd=halctl.cwd)
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "the supervisor rejected the API token (from HALCTL_TOKEN)" in result.stderr
    assert "--token, HALCTL_TOKEN" in result.stderr
    assert "halctl.json" in result.stderr
    assert "not-the-right-token" not in result.stderr


async def test_missing_token_is_exit_4(halctl: Halctl) -> None:
    env = {"HOME": str(halctl.home), "HALCTL_URL": halctl.url}
    result = await run_halctl(["nodes", "list"], env=env, cwd=halctl.cwd)
    assert result.exit_code == 4
    assert "no API token is set" in result.stderr


async def test_health_needs_no_token(halctl: Halctl) -> None:
    env = {"HOME": str(halctl.home), "HALCTL_URL": halctl.url}
    result = await run_halctl(["health"], env=env, cwd=halctl.cwd)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"supervisor at {halctl.url}: ok"


async def test_unreachable_supervisor_is_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"HOME": str(tmp_path), "HALCTL_TOKEN": TEST_TOKEN}
    result = await run_halctl(["--url", url, "sessions", "list"], env=env, cwd=tmp_path)
    assert result.exit_code == 3
    assert result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"error: cannot reach the supervisor at {url} (connection refused)")
    assert "hal-supervisor is running" in line
    assert "--url" in line
    assert TEST_TOKEN not in result.stderr


async def test_unknown_session_is_exit_5(halctl: Halctl) -> None:
    result = await halctl("sessions", "get", "ses_0123456789abcdef01234567")
    assert result.exit_code == 5
    assert result.stderr.strip() == "error: not found: no session 'ses_0123456789abcdef01234567'"


@pytest.mark.parametrize(
    "args",
    [
        ["sessions", "frobnicate"],
        ["sessions", "logs", "ses_x", "--limit", "0"],
        ["--output", "yaml", "nodes", "list"],
        ["sessions", "inject", "only-a-target"],
        ["sessions", "start", "p", "--wait", "301"],
    ],
)
async def test_usage_errors_are_exit_2(args: list[str], tmp_path: Path) -> None:
    result = await run_halctl(args, env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error" in result.stderr


async def test_invalid_config_file_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "halctl.json"
    config.write_text('{"url": "http://127.0.0.1:1", "tokn": "typo"}')
    result = await run_halctl(["--config", str(config), "nodes", "list"], env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {config}: (top level): unknown key(s): tokn"

    missing = await run_halctl(["--config", str(tmp_path / "nope.json"), "nodes", "list"], env={}, cwd=tmp_path)
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr


async def test_bad_url_is_exit_2(tmp_path: Path) -> None:
    result = await run_halctl(
        ["nodes", "list"], env={"HOME": str(tmp_path), "HALCTL_URL": "127.0.0.1:8421"}, cwd=tmp_path
    )
    assert result.exit_code == 2
    assert "invalid supervisor URL '127.0.0.1:8421' (from HALCTL_URL)" in result.stderr
