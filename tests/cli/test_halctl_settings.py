"""URL and token resolution: flags > environment > ./.halswarm/halctl.json > XDG file."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.cli.settings import DEFAULT_URL, SettingsError, resolve_settings
from halswarm.testing import TEST_TOKEN, write_json
from halswarm.testing.halctl import run_halctl

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.testing.halctl import Halctl


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory with a local halctl.json and an XDG config dir with another."""
    cwd, xdg = tmp_path / "cwd", tmp_path / "xdg"
    write_json(cwd / ".halswarm" / "halctl.json", {"url": "http://local:1", "token": "local-token"})
    write_json(xdg / "halswarm" / "halctl.json", {"url": "http://xdg:2", "token": "xdg-token"})
    return cwd, xdg


def test_flags_beat_everything(dirs: tuple[Path, Path]) -> None:
    cwd, xdg = dirs
    env = {"XDG_CONFIG_HOME": str(xdg), "HALCTL_URL": "http://env:3", "HALCTL_TOKEN": "env-token"}
    s = resolve_settings(url="http://flag:4", token="flag-token", env=env, cwd=cwd)
    assert (s.url, s.token, s.url_source, s.token_source) == ("http://flag:4", "flag-token", "--url", "--token")


def test_env_beats_files(dirs: tuple[Path, Path]) -> None:
    cwd, xdg = dirs
    env = {"XDG_CONFIG_HOME": str(xdg), "HALCTL_URL": "http://env:3/", "HALCTL_TOKEN": "env-token"}
    s = resolve_settings(env=env, cwd=cwd)
    assert (s.url, s.token, s.url_source, s.token_source) == ("http://env:3", "env-token", "HALCTL_URL", "HALCTL_TOKEN")


def test_halswarm_auth_token_is_accepted_after_halctl_token(dirs: tuple[Path, Path]) -> None:
    cwd, xdg = dirs
    env = {"XDG_CONFIG_HOME": str(xdg), "HALSWARM_AUTH_TOKEN": "auth-token"}
    assert resolve_settings(env=env, cwd=cwd).token == "auth-token"
    both = {**env, "HALCTL_TOKEN": "halctl-token"}
    assert resolve_settings(env=both, cwd=cwd).token == "halctl-token"


def test_local_file_beats_xdg_file(dirs: tuple[Path, Path]) -> None:
    cwd, xdg = dirs
    s = resolve_settings(env={"XDG_CONFIG_HOME": str(xdg)}, cwd=cwd)
    assert (s.url, s.token) == ("http://local:1", "local-token")
    assert s.token_source == str(cwd / ".halswarm" / "halctl.json")


def test_each_value_resolves_on_its_own(dirs: tuple[Path, Path]) -> None:
    cwd, xdg = dirs
    write_json(cwd / ".halswarm" / "halctl.json", {"url": "http://local:1"})
    s = resolve_settings(env={"XDG_CONFIG_HOME": str(xdg)}, cwd=cwd)
    assert (s.url, s.token) == ("http://local:1", "xdg-token")


def test_xdg_defaults_to_home_config(tmp_path: Path) -> None:
    write_json(tmp_path / ".config" / "halswarm" / "halctl.json", {"token": "home-token"})
    s = resolve_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert (s.url, s.token, s.url_source) == (DEFAULT_URL, "home-token", "default")


def test_config_flag_replaces_the_file_lookup(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    cwd, xdg = dirs
    only = write_json(tmp_path / "only.json", {"url": "http://only:5"})
    s = resolve_settings(config=only, env={"XDG_CONFIG_HOME": str(xdg)}, cwd=cwd)
    assert (s.url, s.token) == ("http://only:5", None)
    with pytest.raises(SettingsError, match="does not exist"):
        resolve_settings(config=tmp_path / "missing.json", env={}, cwd=cwd)


def test_nothing_configured(tmp_path: Path) -> None:
    s = resolve_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert (s.url, s.token, s.token_source) == (DEFAULT_URL, None, None)


def test_token_is_not_in_repr(dirs: tuple[Path, Path]) -> None:
    cwd, xdg = dirs
    s = resolve_settings(env={"XDG_CONFIG_HOME": str(xdg)}, cwd=cwd)
    assert "local-token" not in repr(s)


def test_broken_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".halswarm").mkdir()
    (tmp_path / ".halswarm" / "halctl.json").write_text("{not json")
    with pytest.raises(SettingsError, match=r"halctl\.json: config is not valid JSON"):
        resolve_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)


# ---- end to end: the precedence as halctl applies it ------------------------------------


async def test_cli_uses_local_file_then_env_then_flags(halctl: Halctl, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg-cli"
    write_json(halctl.cwd / ".halswarm" / "halctl.json", {"url": halctl.url, "token": TEST_TOKEN})
    write_json(xdg / "halswarm" / "halctl.json", {"url": "http://127.0.0.1:1", "token": "xdg-wrong"})
    base = {"HOME": str(halctl.home), "XDG_CONFIG_HOME": str(xdg)}

    local = await run_halctl(["nodes", "list"], env=base, cwd=halctl.cwd)
    assert local.exit_code == 0, local.stderr  # the local file beats the XDG one

    env_wrong = await run_halctl(["nodes", "list"], env={**base, "HALCTL_TOKEN": "env-wrong"}, cwd=halctl.cwd)
    assert env_wrong.exit_code == 4  # the environment beats the local file
    assert "(from HALCTL_TOKEN)" in env_wrong.stderr

    flag = await run_halctl(
        ["--token", TEST_TOKEN, "nodes", "list"], env={**base, "HALCTL_TOKEN": "env-wrong"}, cwd=halctl.cwd
    )
    assert flag.exit_code == 0, flag.stderr  # the flag beats the environment

    xdg_only = await run_halctl(["nodes", "list"], env=base, cwd=halctl.home)
    assert xdg_only.exit_code == 3  # no local file there: the XDG file's URL is used
    assert "url from " + str(xdg / "halswarm" / "halctl.json") in xdg_only.stderr


async def test_demo_directory_needs_no_flags(halctl: Halctl, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real environment and current directory, as `.venv/bin/halctl nodes list` sees them.
    write_json(halctl.cwd / ".halswarm" / "halctl.json", {"url": halctl.url, "token": TEST_TOKEN})
    for name in ("HALCTL_URL", "HALCTL_TOKEN", "HALSWARM_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(halctl.home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(halctl.cwd)
    result = await run_halctl(["nodes", "list"])
    assert result.exit_code == 0, result.stderr
    assert "node-1" in result.stdout


async def test_console_script_runs_on_trio(halctl: Halctl) -> None:
    """The real entry point (``main()``, standalone mode) in a subprocess, from the demo directory."""
    write_json(halctl.cwd / ".halswarm" / "halctl.json", {"url": halctl.url, "token": TEST_TOKEN})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HALCTL_", "HALSWARM_", "XDG_CONFIG"))}
    env["HOME"] = str(halctl.home)
    command = [sys.executable, "-c", "from halswarm.cli.main import main; main()"]
    with trio.fail_after(30):
        ok = await trio.run_process(
            [*command, "-o", "json", "nodes", "list"], cwd=halctl.cwd, env=env, capture_stdout=True, capture_stderr=True
        )
        missing = await trio.run_process(
            [*command, "sessions", "get", "ses_nope"],
            cwd=halctl.cwd,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert b'"id": "node-1"' in ok.stdout
    assert missing.returncode == 5
    assert missing.stderr.decode().strip() == "error: not found: no session 'ses_nope'"


async def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_halctl(["--help"], env={})
    assert result.exit_code == 0
    text = capsys.readouterr().out  # click prints help itself
    for line in ("3  supervisor unreachable", "4  authentication failed", "5  not found", "HALCTL_TOKEN"):
        assert line in text
