"""Checks on real git repositories with real subprocesses (python3, git, fake runtimes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.envcheck.checks import CheckTimeouts, ProjectReport, check_project, normalise_remote

if TYPE_CHECKING:
    from tests.envcheck.conftest import Workspace

from tests.envcheck.conftest import REMOTE, spec_from

_spec = spec_from


async def _check(ws: Workspace, raw: object, **kwargs: float) -> ProjectReport:
    with trio.fail_after(20):
        return await check_project(
            "app", _spec(raw), ws.directory, env=ws.env, timeouts=CheckTimeouts(**kwargs) if kwargs else CheckTimeouts()
        )


def _status(report: ProjectReport, check_id: str) -> tuple[str, str, str | None]:
    item = report.item(check_id)
    assert item is not None, [c.id for c in report.checks]
    return item.status, item.actual, item.fix


@pytest.mark.parametrize(
    ("constraint", "status"),
    [(">=2.5", "ok"), (">2.5", "fail"), ("<2.5.1", "ok"), ("<2.5", "fail"), ("~=2.4", "ok"), ("~=2.4.0", "fail")],
)
async def test_runtime_constraint_edges(workspace: Workspace, constraint: str, status: str) -> None:
    workspace.runtime("fakert", 'echo "fakert version 2.5.0 (build 7)"')
    report = await _check(workspace, {"runtimes": {"fakert": constraint}})
    assert _status(report, "runtime:fakert") == (status, "2.5.0", None if status == "ok" else "manual")


async def test_real_runtimes_and_java_style_stderr(workspace: Workspace) -> None:
    workspace.runtime("java", "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2")
    report = await _check(workspace, {"runtimes": {"python3": ">=3.8", "git": ">=2", "java": ">=17 <18"}})
    assert [c.status for c in report.checks if c.category == "runtime"] == ["ok", "ok", "ok"]
    assert _status(report, "runtime:java")[1] == "17.0.15"


async def test_absent_runtime_makes_the_project_missing_and_names_the_install(workspace: Workspace) -> None:
    install = {"jdk": {"command": ["true"], "fixes": "runtime:nojava"}}
    report = await _check(workspace, {"runtimes": {"nojava": ">=17"}, "install": install})
    assert _status(report, "runtime:nojava") == ("fail", "absent", "risky")
    assert report.state == "missing"


async def test_a_hanging_runtime_is_a_failed_check(workspace: Workspace) -> None:
    workspace.runtime("slowrt", "exec sleep 30")
    workspace.runtime("mute", "exit 0")
    report = await _check(workspace, {"runtimes": {"slowrt": ">=1", "mute": ">=1"}}, version_sec=0.3)
    status, actual, fix = _status(report, "runtime:slowrt")
    assert (status, fix) == ("fail", "manual")
    assert "timed out after 0.3s" in actual
    assert _status(report, "runtime:mute")[1] == "no version in output (empty)"
    assert report.state == "degraded"


async def test_tools_and_env_vars(workspace: Workspace) -> None:
    env_spec = {
        "HOME": {"path": True},
        "MISSING_REQUIRED": {},
        "MISSING_OPTIONAL": {"required": False},
        "DECLARED": {"value": "s3cret-value"},
        "BAD_PATH": {"path": True},
    }
    workspace.env["BAD_PATH"] = "does/not/exist"
    report = await _check(workspace, {"tools": ["git", "no-such-tool-xyz"], "env": env_spec})
    assert _status(report, "tool:git")[0] == "ok"
    assert _status(report, "tool:no-such-tool-xyz") == ("fail", "absent", "manual")
    assert _status(report, "env:HOME")[0] == "ok"
    assert _status(report, "env:MISSING_REQUIRED") == ("fail", "not set", "manual")
    assert _status(report, "env:MISSING_OPTIONAL")[0] == "skip"
    # The environment given already holds the manifest's values (OpencodeEnvironment):
    # a declared variable missing or different there was overridden, which no file fixes.
    assert _status(report, "env:DECLARED") == ("fail", "not set", "manual")
    assert _status(report, "env:BAD_PATH") == ("fail", "does/not/exist (absent)", "manual")
    workspace.env["DECLARED"] = "other"
    report = await _check(workspace, {"env": env_spec})
    assert _status(report, "env:DECLARED") == ("fail", "a different value", "manual")
    assert all("s3cret" not in c.expected + c.actual for c in report.checks)  # values may be secrets


async def test_git_remote_branch_and_hooks(workspace: Workspace) -> None:
    hooks = {"pre-commit": "#!/bin/sh\nexit 0\n", "pre-push": "#!/bin/sh\nexit 0\n", "commit-msg": "#!/bin/sh\n"}
    hooks_dir = workspace.directory / ".git" / "hooks"
    (hooks_dir / "pre-commit").write_text(hooks["pre-commit"])
    (hooks_dir / "pre-commit").chmod(0o755)
    (hooks_dir / "pre-push").write_text("#!/bin/sh\nexit 1\n")
    (hooks_dir / "pre-push").chmod(0o755)
    git = {"remote": "https://GitHub.com/example/app", "branch": "develop", "hooks": hooks}
    report = await _check(workspace, {"git": git})
    assert _status(report, "git:remote.origin") == ("ok", REMOTE, None)
    assert _status(report, "git:branch") == ("fail", "main", "manual")
    assert _status(report, "git:hook.pre-commit")[0] == "ok"
    assert _status(report, "git:hook.pre-push")[0::2] == ("fail", "safe")
    assert _status(report, "git:hook.commit-msg") == ("fail", "absent", "safe")
    drift = {d.check: d.kind for d in report.drift if d.check.startswith("git:")}
    assert drift == {"git:branch": "modified", "git:hook.pre-push": "modified", "git:hook.commit-msg": "missing"}
    (hooks_dir / "pre-commit").chmod(0o644)
    workspace.git("checkout", "-q", "-b", "develop")
    workspace.git("remote", "set-url", "origin", "git@github.com:someone-else/app.git")
    report = await _check(workspace, {"git": git})
    assert _status(report, "git:branch")[0] == "ok"
    assert _status(report, "git:remote.origin")[0] == "fail"
    assert _status(report, "git:hook.pre-commit") == ("fail", "not executable", "safe")


async def test_git_runs_in_the_project_not_the_cwd(workspace: Workspace, tmp_path: object) -> None:
    # halctl's cwd is not a repo; the project is (original implementation, mistake 12).
    sub = workspace.directory / "sub"
    sub.mkdir()
    report = await check_project("app", _spec({"git": {"branch": "main"}}), sub, env=workspace.env)
    assert _status(report, "git:branch")[0] == "ok"


async def test_not_a_repository_or_no_directory_is_missing(workspace: Workspace) -> None:
    plain = workspace.directory.parent / "plain"
    plain.mkdir()
    report = await check_project("app", _spec({"git": {"hooks": {"pre-commit": "x"}}}), plain, env=workspace.env)
    assert report.state == "missing"
    assert _status(report, "git:repository") == ("fail", "absent", "manual")
    assert _status(report, "git:hook.pre-commit")[0] == "skip"
    gone = await check_project("app", _spec({}), plain / "nope", env=workspace.env)
    assert (gone.state, [c.id for c in gone.checks]) == ("missing", ["project:directory"])


async def test_agent_file_context_and_docs(workspace: Workspace) -> None:
    raw = {
        "agent": {
            "template": "# {{ project }}: {{ scope }}\n",
            "variables": {"scope": "backend"},
            "docs": [{"name": "docs/API.md", "content": "v1\n"}],
        }
    }
    report = await _check(workspace, raw)
    assert _status(report, "agent_config:AGENT.md")[0::2] == ("fail", "safe")
    assert {c.name: c.status for c in report.checks if c.category == "context"} == {
        ".context/PROGRESS.md": "fail",
        ".context/CURRENT_TASK.md": "fail",
        ".context/DECISIONS.md": "fail",
    }
    (workspace.directory / "AGENT.md").write_text("# app: backend\n")
    (workspace.directory / ".context").mkdir()
    for name in ("PROGRESS.md", "CURRENT_TASK.md", "DECISIONS.md"):
        (workspace.directory / ".context" / name).write_text("notes")
    (workspace.directory / "docs").mkdir()
    (workspace.directory / "docs" / "API.md").write_text("v2\n")
    report = await _check(workspace, raw)
    assert _status(report, "agent_config:AGENT.md")[0] == "ok"
    assert all(c.status == "ok" for c in report.checks if c.category == "context")
    assert [(d.check, d.kind) for d in report.drift] == [("docs:docs/API.md", "modified")]
    assert report.state == "degraded"


async def test_no_template_is_skipped(workspace: Workspace) -> None:
    report = await _check(workspace, {})
    assert _status(report, "agent_config:AGENT.md")[0] == "skip"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("git@github.com:Org/Repo.git", "https://github.com/Org/Repo"),
        ("ssh://git@GitHub.com:22/Org/Repo.git/", "https://github.com/Org/Repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo"),
    ],
)
def test_remote_spellings_compare_equal(a: str, b: str) -> None:
    assert normalise_remote(a) == normalise_remote(b)


def test_different_remotes_differ() -> None:
    assert normalise_remote("git@github.com:org/a.git") != normalise_remote("git@github.com:org/b.git")
    assert normalise_remote("git@github.com:org/a.git") != normalise_remote("git@gitlab.com:org/a.git")
