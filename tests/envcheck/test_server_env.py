"""Env checks against the environment the running opencode was started with (issue #9).

opencode reads its environment at start: a manifest value changed since is a failed check
and drift (fixed by provisioning: a restart), an overridden one stays a manual fix, and an
attached server (whose environment nobody here knows) is said to be unchecked, not ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from halswarm.envcheck.checks import SERVER_CHECK, ProjectReport, check_project
from halswarm.envcheck.environment import ATTACH_MODE_NOTE, OpencodeEnvironment, ServerEnvironment
from halswarm.envcheck.provision import opencode_env, plan_provision, provision_project
from tests.envcheck.conftest import spec_from

if TYPE_CHECKING:
    from halswarm.envcheck.manifest import ProjectSpec
    from tests.envcheck.conftest import Workspace

# The workspace's context files exist, so only env checks decide the state.
SPEC: Final = {
    "env": {
        "STAGE": {"value": "green"},
        "REGION": {"value": "eu"},
        "TOKEN": {"required": True},  # no value: the node provides it
        "OVERRIDDEN": {"value": "fleet"},
    }
}


def _prepare(ws: Workspace) -> tuple[ProjectSpec, dict[str, str]]:
    context = ws.directory / ".context"
    context.mkdir()
    for name in ("PROGRESS.md", "CURRENT_TASK.md", "DECISIONS.md"):
        (context / name).write_text("notes\n")
    spec = spec_from(SPEC)
    layers = OpencodeEnvironment(config_env={"OVERRIDDEN": "node"}, process_env={**ws.env, "TOKEN": "t-1"})
    return spec, layers.build(opencode_env(spec))


async def _check(
    ws: Workspace, spec: ProjectSpec, env: dict[str, str], server: ServerEnvironment | None
) -> ProjectReport:
    with trio.fail_after(20):
        return await check_project("app", spec, ws.directory, env=env, server=server)


def _env(report: ProjectReport) -> dict[str, tuple[str, str, str | None]]:
    return {c.name: (c.status, c.actual, c.fix) for c in report.checks if c.category == "env"}


async def test_a_value_the_running_server_lacks_is_a_safe_fix_and_drift(workspace: Workspace) -> None:
    spec, now = _prepare(workspace)
    # Started before the manifest changed: an older STAGE, no REGION, the same TOKEN.
    started = {**now, "STAGE": "blue", "OPENCODE_SERVER_PASSWORD": "pw"}
    del started["REGION"]
    report = await _check(workspace, spec, now, ServerEnvironment.spawned(started))
    assert _env(report) == {
        "OVERRIDDEN": ("fail", "a different value", "manual"),  # opencode.env wins: a human decides
        "REGION": ("fail", "opencode was started with no REGION; it reads its environment at start", "safe"),
        "STAGE": (
            "fail",
            "opencode was started with an older value of STAGE; it reads its environment at start",
            "safe",
        ),
        "TOKEN": ("ok", "set", None),
    }
    assert report.state == "degraded"
    assert [(d.check, d.kind, d.expected) for d in report.drift] == [
        ("env:REGION", "modified", "the manifest's value"),
        ("env:STAGE", "modified", "the manifest's value"),
    ]
    assert "blue" not in repr(report)  # values may be secrets
    # Provisioning plans the restart that applies them (no file to write).
    plan = plan_provision(report, spec)
    assert (plan.actions, plan.restart_opencode) == ([], ["env:REGION", "env:STAGE"])
    assert [m.check for m in plan.manual] == ["env:OVERRIDDEN"]


async def test_a_server_started_with_the_current_values_passes(workspace: Workspace) -> None:
    spec, now = _prepare(workspace)
    report = await _check(workspace, spec, now, ServerEnvironment.spawned(now))
    assert _env(report) == {
        "OVERRIDDEN": ("fail", "a different value", "manual"),
        "REGION": ("ok", "set", None),
        "STAGE": ("ok", "set", None),
        "TOKEN": ("ok", "set", None),
    }
    assert report.drift == []
    assert plan_provision(report, spec).restart_opencode == []


async def test_an_attached_server_is_said_to_be_unchecked(workspace: Workspace) -> None:
    spec, now = _prepare(workspace)
    del now["OVERRIDDEN"]
    report = await _check(workspace, spec, now, ServerEnvironment.attached())
    # What a spawned server would get is checked as before; the attached one is not claimed.
    assert _env(report)[SERVER_CHECK] == ("skip", ATTACH_MODE_NOTE, None)
    assert report.state == "degraded"  # OVERRIDDEN is not set at all now
    assert _env(report)["OVERRIDDEN"] == ("fail", "not set", "manual")
    # Without a server (halctl's local check, the simulator) nothing is said about one.
    local = await _check(workspace, spec, now, None)
    assert SERVER_CHECK not in _env(local)


async def test_provisioning_only_other_categories_leaves_the_restart_out(workspace: Workspace) -> None:
    spec, now = _prepare(workspace)
    started = {**now, "STAGE": "blue"}
    with trio.fail_after(30):
        result = await provision_project(
            "app",
            spec,
            workspace.directory,
            env=now,
            server=ServerEnvironment.spawned(started),
            dry_run=True,
            only=frozenset({"agent_config"}),
        )
        full = await provision_project(
            "app", spec, workspace.directory, env=now, server=ServerEnvironment.spawned(started), dry_run=True
        )
    assert result.plan.restart_opencode == []
    assert full.plan.restart_opencode == ["env:STAGE"]
