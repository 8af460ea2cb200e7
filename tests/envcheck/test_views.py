"""The agent's answer to ``env_provision`` (:meth:`ProvisionOutcome.from_result`): its wire
shape, env values left out, and the node's opencode restart as each project sees it."""

from __future__ import annotations

from typing import Final

import orjson

from halswarm.convert import unstructure
from halswarm.envcheck.checks import ProjectReport
from halswarm.envcheck.provision import Action, ManualItem, ProvisionPlan, ProvisionResult
from halswarm.envcheck.views import OpencodeRestart, ProvisionOutcome

JDK: Final = ManualItem("runtime:java", "risky", ">=17", "absent", "jdk", ["apt-get", "install", "-y", "jdk"], 600.0)


def result(project: str, restart_checks: list[str], *, dry_run: bool = False) -> ProvisionResult:
    """*project* planned to write AGENT.md, install a JDK (approval) and restart opencode for *restart_checks*."""
    agent_file = Action("write_agent_file", "agent_config:AGENT.md", f"/p/{project}/AGENT.md", f"# {project}\n")
    plan = ProvisionPlan(
        project, f"/p/{project}", [agent_file], [JDK], {"TOKEN": "s3cret-value", "STAGE": "blue"}, restart_checks
    )
    before = ProjectReport(project, plan.directory, "missing", [], [])
    if dry_run:
        return ProvisionResult(plan, True, before)
    after = ProjectReport(project, plan.directory, "missing", [], [])
    return ProvisionResult(plan, False, before, [agent_file], [f"/p/{project}/docs/X.md: Permission denied"], after)


def test_the_wire_shape_names_env_variables_never_their_values() -> None:
    body = unstructure(ProvisionOutcome.from_result(result("app", [])))
    assert body == {
        "project": "app",
        "directory": "/p/app",
        "dry_run": False,
        "actions": [{"kind": "write_agent_file", "check": "agent_config:AGENT.md", "path": "/p/app/AGENT.md"}],
        "applied": ["/p/app/AGENT.md"],
        "errors": ["/p/app/docs/X.md: Permission denied"],
        "manual": [
            {
                "check": "runtime:java",
                "fix": "risky",
                "expected": ">=17",
                "actual": "absent",
                "install": "jdk",
                "command": ["apt-get", "install", "-y", "jdk"],
                "timeout_sec": 600.0,
            }
        ],
        "env": ["STAGE", "TOKEN"],
        "state_before": "missing",
        "state_after": "missing",
        "opencode_restart": None,
    }
    assert b"s3cret" not in orjson.dumps(body)
    dry = ProvisionOutcome.from_result(result("app", [], dry_run=True))
    assert (dry.dry_run, dry.applied, dry.state_after) == (True, [], None)


def test_each_project_sees_the_node_restart_for_its_own_checks_only() -> None:
    restarted = OpencodeRestart("restarted", ["env:A", "env:B"], "opencode serve restarted to apply ...")
    app = ProvisionOutcome.from_result(result("app", ["env:A"]), restarted)
    assert app.opencode_restart == OpencodeRestart("restarted", ["env:A"], restarted.detail)
    assert app.applied == ["/p/app/AGENT.md", "opencode serve restarted to apply env:A"]
    # A project whose checks did not ask for it: no restart in its answer.
    other = ProvisionOutcome.from_result(result("web", []), restarted)
    assert (other.opencode_restart, other.applied) == (None, ["/p/web/AGENT.md"])
    # A restart whose new server does not answer is an error of each project it served.
    failed = OpencodeRestart("failed", ["env:A"], "opencode serve restarted ..., but it does not answer")
    broken = ProvisionOutcome.from_result(result("app", ["env:A"]), failed)
    assert broken.errors == ["/p/app/docs/X.md: Permission denied", failed.detail]
    assert broken.applied == ["/p/app/AGENT.md"]
