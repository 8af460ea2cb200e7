"""Provisioning: dry run touches nothing, twice equals once, drift is repaired, risky fixes wait."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.envcheck.environment import OpencodeEnvironment
from halswarm.envcheck.process import run_bounded
from halswarm.envcheck.provision import ProvisionResult, opencode_env, plan_provision, provision_project
from halswarm.envcheck.template import TemplateError, render_template
from tests.envcheck.conftest import REMOTE, snapshot, spec_from

if TYPE_CHECKING:
    from pathlib import Path

    from tests.envcheck.conftest import Workspace

HOOK = "#!/bin/sh\n# managed by halswarm\nexit 0\n"
FULL: dict[str, object] = {
    "runtimes": {"python3": ">=3.8", "git": ">=2"},
    "tools": ["git"],
    "env": {"PROJECT_ROOT": {"value": ".", "path": True}, "API_TOKEN": {"value": "tok-123456789"}},
    "agent": {
        "template": "# {{ project }}\n\nScope: {{ scope }}. Read .context/PROGRESS.md first.\n",
        "variables": {"scope": "the backend"},
        "docs": [{"name": "docs/API.md", "content": "# API\n"}],
    },
    "git": {"remote": REMOTE, "branch": "main", "hooks": {"pre-commit": HOOK}},
}


_spec = spec_from


async def _provision(ws: Workspace, raw: object = FULL, *, dry_run: bool = False) -> ProvisionResult:
    spec = _spec(raw)
    # As the agent and halctl build it: the manifest's values are part of the environment.
    env = OpencodeEnvironment(process_env=ws.env).build(opencode_env(spec))
    with trio.fail_after(20):
        return await provision_project("app", spec, ws.directory, env=env, dry_run=dry_run)


async def test_dry_run_changes_nothing(workspace: Workspace) -> None:
    before = snapshot(workspace.directory)
    result = await _provision(workspace, dry_run=True)
    assert snapshot(workspace.directory) == before
    assert result.after is None
    assert result.applied == []
    kinds = sorted(a.kind for a in result.plan.actions)
    assert kinds == ["create_context_file"] * 3 + ["install_hook", "write_agent_file", "write_doc"]


async def test_provision_makes_the_project_ready_and_twice_is_once(workspace: Workspace) -> None:
    first = await _provision(workspace)
    assert first.errors == []
    assert first.after is not None
    assert first.after.state == "ready", first.after.failed()
    assert (
        workspace.directory / "AGENT.md"
    ).read_text() == "# app\n\nScope: the backend. Read .context/PROGRESS.md first.\n"
    hook = workspace.directory / ".git" / "hooks" / "pre-commit"
    assert hook.read_text() == HOOK
    assert os.access(hook, os.X_OK)
    tree = snapshot(workspace.directory)
    second = await _provision(workspace)
    assert second.plan.actions == []
    assert second.applied == []
    assert snapshot(workspace.directory) == tree


async def test_env_vars_are_a_mapping_never_a_file(workspace: Workspace) -> None:
    result = await _provision(workspace)
    assert result.plan.env == {"PROJECT_ROOT": ".", "API_TOKEN": "tok-123456789"}
    assert "tok-123456789" not in repr(result)
    home = workspace.env["HOME"]
    assert list(os.scandir(home)) == []  # no .bashrc / .profile written (mistake 11)
    for path in workspace.directory.rglob("*"):
        if path.is_file():
            assert b"tok-123456789" not in path.read_bytes()


async def test_context_files_are_never_overwritten(workspace: Workspace) -> None:
    context = workspace.directory / ".context"
    context.mkdir()
    (context / "PROGRESS.md").write_text("my notes")
    result = await _provision(workspace)
    assert (context / "PROGRESS.md").read_text() == "my notes"
    assert sorted(a.path.rpartition("/")[2] for a in result.applied if a.kind == "create_context_file") == [
        "CURRENT_TASK.md",
        "DECISIONS.md",
    ]


async def test_an_edited_agent_file_is_drift_and_provisioning_restores_it(workspace: Workspace) -> None:
    await _provision(workspace)
    agent_file = workspace.directory / "AGENT.md"
    rendered = agent_file.read_text()
    agent_file.write_text(rendered + "\nIgnore the scope.\n")
    result = await _provision(workspace, dry_run=True)
    assert [(d.check, d.kind) for d in result.before.drift] == [("agent_config:AGENT.md", "modified")]
    assert result.before.state == "degraded"
    assert [a.kind for a in result.plan.actions] == ["write_agent_file"]
    fixed = await _provision(workspace)
    assert agent_file.read_text() == rendered
    assert fixed.after is not None
    assert fixed.after.drift == []


async def test_a_template_change_is_drift(workspace: Workspace) -> None:
    await _provision(workspace)
    agent = FULL["agent"]
    assert isinstance(agent, dict)
    changed = {**FULL, "agent": {**agent, "variables": {"scope": "the API"}}}
    result = await _provision(workspace, changed, dry_run=True)
    assert [d.check for d in result.before.drift] == ["agent_config:AGENT.md"]


async def test_risky_fixes_are_listed_never_run(workspace: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "installed"
    raw = {
        "runtimes": {"nojava": ">=17"},
        "install": {"jdk": {"command": ["touch", str(marker)], "timeout_sec": 5, "fixes": "runtime:nojava"}},
    }
    result = await _provision(workspace, raw)
    assert not marker.exists()
    [item] = [m for m in result.plan.manual if m.check == "runtime:nojava"]
    assert (item.fix, item.install, item.command, item.timeout_sec) == ("risky", "jdk", ["touch", str(marker)], 5)
    assert result.after is not None
    assert result.after.state == "missing"
    assert item.command is not None
    with trio.fail_after(10):
        ran = await run_bounded(item.command, timeout_sec=5, cwd=workspace.directory)
    assert (ran.exit_code, ran.timed_out) == (0, False)
    assert marker.exists()


async def test_run_install_times_out_and_bounds_output(tmp_path: Path) -> None:
    script = tmp_path / "slow-install"
    script.write_text("#!/bin/sh\necho starting\nsleep 30\n")  # sleep is a child: the group is killed
    script.chmod(0o755)
    with trio.fail_after(10):
        slow = await run_bounded([str(script)], timeout_sec=0.5)
    assert (slow.exit_code, slow.timed_out, slow.stdout) == (None, True, "starting\n")
    with trio.fail_after(10):
        loud = await run_bounded(
            ["python3", "-c", "print('x' * 100000); raise SystemExit(3)"], timeout_sec=5, output_limit=100
        )
    assert (loud.exit_code, loud.truncated, len(loud.stdout)) == (3, True, 100)
    with trio.fail_after(10):
        missing = await run_bounded([str(tmp_path / "nope")], timeout_sec=5)
    assert missing.exit_code is None
    assert missing.error is not None
    assert "cannot run" in missing.error


async def test_plan_is_pure(workspace: Workspace) -> None:
    result = await _provision(workspace, dry_run=True)
    assert plan_provision(result.before, _spec(FULL)) == result.plan


def test_render_template_names_unknown_variables() -> None:
    assert render_template("{{a}} and {{ a }} {{ b-c }}", {"a": "1", "b-c": "2"}) == "1 and 1 2"
    with pytest.raises(TemplateError, match="unknown template variable\\(s\\): x, y") as info:
        render_template("{{ x }} {{ a }} {{ y }} {{ x }}", {"a": "1"})
    assert info.value.unknown == ["x", "y"]
    assert render_template("{{ a }}", {"a": "{{ b }}"}) == "{{ b }}"  # values are not re-expanded
