"""``halctl env check|provision`` in-process, with no supervisor running."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from halswarm.testing.halctl import run_halctl
from tests.envcheck.conftest import REMOTE

if TYPE_CHECKING:
    from pathlib import Path

    from tests.envcheck.conftest import Workspace

MANIFEST = {
    "defaults": {"tools": ["git"], "runtimes": {"python3": ">=3.8"}},
    "projects": {
        "app": {
            "agent": {"template": "# {{ project }}\n"},
            "git": {"remote": REMOTE, "branch": "main", "hooks": {"pre-commit": "#!/bin/sh\nexit 0\n"}},
        },
    },
}


def _files(workspace: Workspace, tmp_path: Path) -> tuple[Path, Path]:
    manifest = tmp_path / "env-manifest.json"
    manifest.write_bytes(orjson.dumps(MANIFEST))
    config = tmp_path / "agent.json"
    projects = [{"name": "app", "directory": str(workspace.directory)}, {"name": "gone", "directory": "/nonexistent"}]
    config.write_bytes(
        orjson.dumps({"supervisor_url": "ws://127.0.0.1:9", "auth_token": "t" * 16, "projects": projects})
    )
    return manifest, config


async def test_check_and_provision_a_project_locally(workspace: Workspace, tmp_path: Path) -> None:
    manifest, config = _files(workspace, tmp_path)
    args = ["--manifest", str(manifest), "--agent-config", str(config), "--project", "app"]
    check = await run_halctl(["env", "check", *args], env=workspace.env, cwd=tmp_path)
    assert check.exit_code == 6, check.stderr  # degraded
    assert "app  degraded" in check.stdout
    assert "drift: agent_config:AGENT.md missing" in check.stdout
    dry = await run_halctl(["env", "provision", "--dry-run", *args], env=workspace.env, cwd=tmp_path)
    assert dry.exit_code == 0, dry.stderr
    assert "would write agent file" in dry.stdout
    assert not (workspace.directory / "AGENT.md").exists()
    done = await run_halctl(["env", "provision", *args], env=workspace.env, cwd=tmp_path)
    assert done.exit_code == 0, done.stdout + done.stderr
    again = await run_halctl(["-o", "json", "env", "check", *args], env=workspace.env, cwd=tmp_path)
    assert again.exit_code == 0
    reports = again.json()["projects"]
    assert isinstance(reports, list)
    [report] = reports
    assert isinstance(report, dict)
    assert (report["project"], report["state"], report["drift"]) == ("app", "ready", [])


async def test_every_configured_project_and_the_worst_exit_code(workspace: Workspace, tmp_path: Path) -> None:
    manifest, config = _files(workspace, tmp_path)
    result = await run_halctl(
        ["-o", "json", "env", "check", "--manifest", str(manifest), "--agent-config", str(config)],
        env=workspace.env,
        cwd=tmp_path,
    )
    assert result.exit_code == 7  # "gone" is missing
    reports = result.json()["projects"]
    assert isinstance(reports, list)
    states = {p["project"]: p["state"] for p in reports if isinstance(p, dict)}
    assert states == {"app": "degraded", "gone": "missing"}


async def test_dir_and_errors(workspace: Workspace, tmp_path: Path) -> None:
    manifest, config = _files(workspace, tmp_path)
    by_dir = await run_halctl(
        ["env", "check", "--manifest", str(manifest), "--dir", str(workspace.directory)], env=workspace.env
    )
    assert by_dir.exit_code == 6, by_dir.stderr
    unknown = await run_halctl(
        ["env", "check", "--manifest", str(manifest), "--agent-config", str(config), "--project", "nope"],
        env=workspace.env,
    )
    assert unknown.exit_code == 5
    assert "project 'nope' is not in the agent config" in unknown.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"projects": {"app": {"runtimes": {"java": ">=x"}}}}')
    invalid = await run_halctl(["env", "check", "--manifest", str(bad), "--dir", "."], env=workspace.env, cwd=tmp_path)
    assert invalid.exit_code == 2
    assert 'projects.app.runtimes.java: ">=x" is not a version constraint' in invalid.stderr
