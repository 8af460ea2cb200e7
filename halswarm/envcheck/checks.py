"""Check one project directory against its manifest spec (issue #9).

Categories and what each check compares (``expected`` / ``actual`` in the item):

- ``project``: the directory exists.
- ``runtime``: ``<runtime> --version`` (``java -version``, ``go version``) parsed and
  compared with the constraint; a runtime not on PATH fails with actual ``absent``.
- ``tool``: the program is on the PATH the agent gives opencode.
- ``env``: the variable is set in that environment (and equals the manifest's value when
  it declares one; values are never shown, they may be secrets); ``path`` variables
  name an existing file or directory. The environment already holds the manifest's
  values (:mod:`halswarm.envcheck.environment`), so a declared value that differs was
  overridden (by ``opencode.env`` or another project's value): a manual fix. When the
  agent runs opencode (spawn mode), each variable is also compared with what the
  **running** server was started with: opencode reads its environment at start, so a
  value changed since is a failed check and drift until provisioning restarts it
  (``safe``). In attach mode the server's own environment is unknown: a skipped check
  says so.
- ``agent_config``: AGENT.md exists and its SHA-256 equals the rendered template's.
- ``context``: the context directory holds PROGRESS.md, CURRENT_TASK.md, DECISIONS.md.
- ``git``: the directory is in a git work tree; the remote URL (normalised: scheme,
  user, ``.git`` and case of the host do not matter), the current branch, and each hook
  (present, executable, identical to the manifest's text). git always runs as
  ``git -C <project directory>`` (original implementation, mistake 12).
- ``docs``: each required document exists with the manifest's content.

A project is ``missing`` when its directory is absent, it is not a git work tree, or a
required runtime is not installed; ``degraded`` when any other check fails; ``ready``
when none fails. Each failed check says how it can be fixed: ``safe`` (provisioning does
it), ``risky`` (a declared install command, after approval) or ``manual``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import TYPE_CHECKING, Final, Literal

import attrs
import trio

from halswarm.envcheck.manifest import CONTEXT_FILES, EnvVarSpec, ProjectSpec, agent_variables
from halswarm.envcheck.process import run_bounded
from halswarm.envcheck.safefiles import UnsafeFileError, read_confined
from halswarm.envcheck.template import TemplateError, render_template, sha256_text
from halswarm.envcheck.versions import VERSION_ARGS, extract_version

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from halswarm.envcheck.environment import ServerEnvironment

__all__ = [
    "ABSENT",
    "DEFAULT_TIMEOUTS",
    "SERVER_CHECK",
    "CheckItem",
    "CheckStatus",
    "CheckTimeouts",
    "DriftItem",
    "FixKind",
    "ProjectReport",
    "ProjectState",
    "check_project",
    "normalise_remote",
    "rendered_agent_file",
]

CheckStatus = Literal["ok", "fail", "skip"]
FixKind = Literal["safe", "risky", "manual"]
ProjectState = Literal["ready", "degraded", "missing"]
DriftKind = Literal["missing", "modified"]

#: ``actual`` of a check whose file, program or setting does not exist.
ABSENT: Final = "absent"
#: Failed checks in these categories are drift: the directory differs from the manifest.
_DRIFT_CATEGORIES: Final = frozenset({"agent_config", "context", "docs", "git"})
#: The ``env`` check saying the running server's environment is not known (attach mode);
#: not a variable name (those are validated), so it never clashes with one.
SERVER_CHECK: Final = "opencode serve"
_SCP_LIKE: Final = re.compile(r"^(?:[^@/]+@)?([^:/]+):(.+)$")


@attrs.frozen
class CheckTimeouts:
    """How long each kind of subprocess may run (a hung ``java -version`` must not stall checks)."""

    version_sec: float = 15.0
    git_sec: float = 10.0


DEFAULT_TIMEOUTS: Final = CheckTimeouts()


@attrs.frozen
class CheckItem:
    """One check's outcome. ``fix`` is set on failed checks only."""

    category: str
    name: str
    status: CheckStatus
    expected: str = ""
    actual: str = ""
    fix: FixKind | None = None

    @property
    def id(self) -> str:
        """``category:name``, as an install command's ``fixes`` names it."""
        return f"{self.category}:{self.name}"


@attrs.frozen
class DriftItem:
    """Something in the project that differs from the manifest (a file or git setting)."""

    check: str
    kind: DriftKind
    expected: str
    actual: str


@attrs.frozen
class ProjectReport:
    """The result of checking one project."""

    project: str
    directory: str
    state: ProjectState
    checks: list[CheckItem]
    drift: list[DriftItem]
    manifest_hash: str = ""
    #: The repository's hooks directory (``git rev-parse --git-path hooks``), if a repo.
    hooks_dir: str | None = None

    def failed(self) -> list[CheckItem]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == "fail"]

    def item(self, check_id: str) -> CheckItem | None:
        """The check with this ``category:name``, if it ran."""
        return next((c for c in self.checks if c.id == check_id), None)


def normalise_remote(url: str) -> str:
    """A remote URL reduced to ``host/path`` so equivalent spellings compare equal.

    ``git@github.com:Org/Repo.git``, ``https://github.com/Org/Repo`` and
    ``ssh://git@github.com:22/Org/Repo.git/`` all become ``github.com/Org/Repo``; local
    paths are only stripped of a trailing ``/`` and ``.git``.
    """
    text = url.strip().rstrip("/").removesuffix(".git").rstrip("/")
    if "://" in text:
        _scheme, _, rest = text.partition("://")
        authority, _, path = rest.partition("/")
        host = authority.rpartition("@")[2].partition(":")[0].lower()
        return f"{host}/{path}" if host else f"/{path}"
    scp = _SCP_LIKE.match(text)
    if scp and not text.startswith(("/", ".")):
        return f"{scp.group(1).lower()}/{scp.group(2).lstrip('/')}"
    return text


def rendered_agent_file(project: str, spec: ProjectSpec) -> str | None:
    """The AGENT.md text the manifest asks for, or None when it declares no template.

    Raises:
        TemplateError: the template names variables the project does not define.
    """
    if spec.agent.template is None:
        return None
    return render_template(spec.agent.template, agent_variables(project, spec))


def _fix_for(spec: ProjectSpec, check_id: str) -> FixKind:
    return "risky" if spec.install_for(check_id) is not None else "manual"


async def _runtime_check(
    runtime: str, spec: ProjectSpec, env: Mapping[str, str], directory: Path, timeouts: CheckTimeouts
) -> CheckItem:
    constraint = spec.constraint(runtime)
    fail_fix = _fix_for(spec, f"runtime:{runtime}")
    binary = await trio.to_thread.run_sync(shutil.which, runtime, os.F_OK | os.X_OK, env.get("PATH", ""))
    if binary is None:
        return CheckItem("runtime", runtime, "fail", str(constraint), ABSENT, fail_fix)
    argv = [binary, *VERSION_ARGS.get(runtime, ("--version",))]
    result = await run_bounded(argv, timeout_sec=timeouts.version_sec, cwd=directory, env=env)
    if result.timed_out:
        actual = f"`{' '.join(argv[1:])}` timed out after {timeouts.version_sec:g}s"
        return CheckItem("runtime", runtime, "fail", str(constraint), actual, fail_fix)
    version = extract_version(runtime, result.output)
    if version is None:
        first = next(iter(result.output.strip().splitlines()), "")[:80]
        actual = f"no version in output ({result.error or first or 'empty'})"
        return CheckItem("runtime", runtime, "fail", str(constraint), actual, fail_fix)
    ok = constraint.allows(version)
    return CheckItem(
        "runtime", runtime, "ok" if ok else "fail", str(constraint), str(version), None if ok else fail_fix
    )


async def _git(directory: Path, env: Mapping[str, str], timeouts: CheckTimeouts, *args: str) -> str | None:
    """``git -C <directory> ARGS`` standard output stripped, or None on any failure."""
    result = await run_bounded(["git", "-C", str(directory), *args], timeout_sec=timeouts.git_sec, env=env)
    return result.stdout.strip() if result.exit_code == 0 else None


async def _git_checks(
    spec: ProjectSpec, directory: Path, env: Mapping[str, str], timeouts: CheckTimeouts
) -> tuple[list[CheckItem], Path | None]:
    inside = await _git(directory, env, timeouts, "rev-parse", "--is-inside-work-tree")
    if inside != "true":
        return [CheckItem("git", "repository", "fail", "a git work tree", ABSENT, "manual")], None
    checks = [CheckItem("git", "repository", "ok", "a git work tree", "yes")]
    git = spec.git
    if git.remote is not None:
        url = await _git(directory, env, timeouts, "remote", "get-url", git.remote_name)
        same = url is not None and normalise_remote(url) == normalise_remote(git.remote)
        name = f"remote.{git.remote_name}"
        checks.append(
            CheckItem("git", name, "ok" if same else "fail", git.remote, url or ABSENT, None if same else "manual")
        )
    if git.branch is not None:
        # symbolic-ref also names the branch of a repository with no commits yet.
        branch = await _git(directory, env, timeouts, "symbolic-ref", "--quiet", "--short", "HEAD")
        same = branch == git.branch
        actual = branch or "detached HEAD"
        checks.append(
            CheckItem("git", "branch", "ok" if same else "fail", git.branch, actual, None if same else "manual")
        )
    hooks = await _git(directory, env, timeouts, "rev-parse", "--git-path", "hooks")
    hooks_dir = None if hooks is None else (directory / hooks)
    return checks, hooks_dir


def _file_sha(root: Path, relative: str) -> str | None:
    try:
        data = read_confined(root, relative)
    except UnsafeFileError:
        return "not a file"  # a link, a FIFO, a device, too big: never read
    except OSError:
        return None
    return None if data is None else hashlib.sha256(data).hexdigest()


def _short(sha: str | None) -> str:
    return ABSENT if sha is None else sha if sha == "not a file" else f"sha256:{sha[:12]}"


def _file_check(category: str, name: str, root: Path, relative: str, text: str) -> CheckItem:
    want = sha256_text(text)
    have = _file_sha(root, relative)
    ok = have == want
    return CheckItem(category, name, "ok" if ok else "fail", _short(want), _short(have), None if ok else "safe")


def _stale(name: str, expected: str, started_with: str | None) -> CheckItem:
    """The running server got another value of *name* than it would get now."""
    # Values may be secrets: the message says how it differs, never what it is.
    got = f"an older value of {name}" if started_with is not None else f"no {name}"
    actual = f"opencode was started with {got}; it reads its environment at start"
    return CheckItem("env", name, "fail", expected, actual, "safe")


def _env_checks(
    spec: ProjectSpec, directory: Path, env: Mapping[str, str], server: ServerEnvironment | None
) -> list[CheckItem]:
    checks = [_env_check(name, var, directory, env) for name, var in sorted(spec.env.items())]
    if server is None or not spec.env:
        return checks
    running = server.env
    if running is None:
        # An attached server: what it got is unknown, and the report must not pretend.
        checks.append(CheckItem("env", SERVER_CHECK, "skip", "the manifest's values", server.unknown_reason))
        return checks
    # The checks above tested what opencode gets at its next start; the server running
    # now got its environment at its last one (a provisioning restart applies the change).
    return [
        _stale(item.name, _expected(spec.env[item.name]), running.get(item.name))
        if item.status != "fail" and env.get(item.name) != running.get(item.name)
        else item
        for item in checks
    ]


def _expected(var: EnvVarSpec) -> str:
    # Values may be secrets: only path values (which are not) are ever shown.
    return var.value if var.path and var.value else "set" if var.value is None else "the manifest's value"


def _env_check(name: str, var: EnvVarSpec, directory: Path, env: Mapping[str, str]) -> CheckItem:
    value = env.get(name)
    expected = _expected(var)
    if value is None or value == "":
        if var.required:
            return CheckItem("env", name, "fail", expected, "not set", "manual")
        return CheckItem("env", name, "skip", expected, "not set (optional)")
    if var.value is not None and value != var.value:
        return CheckItem("env", name, "fail", expected, "a different value", "manual")
    if var.path:
        exists = (directory / value).exists()  # an absolute value replaces the directory
        actual = value if exists else f"{value} ({ABSENT})"
        return CheckItem(
            "env", name, "ok" if exists else "fail", "an existing path", actual, None if exists else "manual"
        )
    return CheckItem("env", name, "ok", expected, "set")


def _filesystem_checks(
    project: str,
    spec: ProjectSpec,
    directory: Path,
    env: Mapping[str, str],
    hooks_dir: Path | None,
    server: ServerEnvironment | None,
) -> list[CheckItem]:
    """Every check that only reads files (runs in a worker thread)."""
    path_var = env.get("PATH", "")
    checks = [
        CheckItem("tool", tool, "ok", "on PATH", found)
        if (found := shutil.which(tool, path=path_var))
        else CheckItem("tool", tool, "fail", "on PATH", ABSENT, _fix_for(spec, f"tool:{tool}"))
        for tool in spec.tools
    ]
    checks += _env_checks(spec, directory, env, server)
    agent = spec.agent
    try:
        rendered = rendered_agent_file(project, spec)
    except TemplateError as exc:
        checks.append(CheckItem("agent_config", agent.file, "fail", "a renderable template", str(exc), "manual"))
    else:
        if rendered is None:
            checks.append(CheckItem("agent_config", agent.file, "skip", "", "no template in the manifest"))
        else:
            checks.append(_file_check("agent_config", agent.file, directory, agent.file, rendered))
    for name in CONTEXT_FILES:
        rel = f"{agent.context_dir}/{name}"
        present = (directory / rel).is_file() and not (directory / rel).is_symlink()
        checks.append(
            CheckItem(
                "context",
                rel,
                "ok" if present else "fail",
                "present",
                "present" if present else ABSENT,
                None if present else "safe",
            )
        )
    checks += [_file_check("docs", doc.name, directory, doc.name, doc.content or "") for doc in agent.docs]
    for hook, script in sorted(spec.git.hooks.items()):
        name = f"hook.{hook}"
        if hooks_dir is None:
            checks.append(CheckItem("git", name, "skip", "installed", "no git repository"))
            continue
        item = _file_check("git", name, hooks_dir, hook, script)
        if item.status == "ok" and not os.access(hooks_dir / hook, os.X_OK):
            item = attrs.evolve(item, status="fail", actual="not executable", fix="safe")
        checks.append(item)
    return checks


def _drift(checks: list[CheckItem]) -> list[DriftItem]:
    return [
        DriftItem(c.id, "missing" if c.actual == ABSENT else "modified", c.expected, c.actual)
        for c in checks
        if c.status == "fail" and (c.category in _DRIFT_CATEGORIES or _is_stale_env(c))
    ]


def _is_stale_env(item: CheckItem) -> bool:
    """The running opencode's value differs from the manifest's (the only ``safe`` env fix):
    drift of the server rather than of the directory, gone once provisioning restarts it."""
    return item.category == "env" and item.fix == "safe"


async def check_project(
    project: str,
    spec: ProjectSpec,
    directory: Path,
    *,
    env: Mapping[str, str],
    manifest_hash: str = "",
    timeouts: CheckTimeouts = DEFAULT_TIMEOUTS,
    server: ServerEnvironment | None = None,
) -> ProjectReport:
    """Run every check for one project.

    Args:
        project: the project's name (the ``project`` template variable).
        spec: its manifest spec (:meth:`Manifest.spec_for`).
        directory: the project's directory on this node (``~`` already expanded).
        env: the environment the agent gives opencode, the manifest's values included
            (:meth:`~halswarm.envcheck.environment.OpencodeEnvironment.build`): tools
            and runtimes are looked up on its PATH and subprocesses get it.
        manifest_hash: recorded in the report, to tell which manifest it answers.
        timeouts: per-subprocess limits.
        server: what is known of the running opencode's environment (the agent's);
            None: no server to compare with (a local check), only *env* is checked.

    Returns:
        The report; failures (missing binaries, timeouts, unreadable files) are check
        results, never exceptions.

    Cancellation: safe at any await; running subprocesses are killed and reaped.
    """
    exists = await trio.to_thread.run_sync(directory.is_dir)
    if not exists:
        item = CheckItem("project", "directory", "fail", "a directory", ABSENT, "manual")
        return ProjectReport(project, str(directory), "missing", [item], [], manifest_hash)
    checks = [CheckItem("project", "directory", "ok", "a directory", str(directory))]
    runtimes = sorted(spec.runtimes)
    results: dict[str, CheckItem] = {}

    async def one(runtime: str) -> None:
        results[runtime] = await _runtime_check(runtime, spec, env, directory, timeouts)

    # Concurrently: each is bounded anyway, and a slow JVM start should not add up.
    async with trio.open_nursery() as nursery:
        for runtime in runtimes:
            nursery.start_soon(one, runtime)
    checks += [results[r] for r in runtimes]
    git_checks, hooks_dir = await _git_checks(spec, directory, env, timeouts)
    checks += git_checks
    checks += await trio.to_thread.run_sync(_filesystem_checks, project, spec, directory, env, hooks_dir, server)
    missing = hooks_dir is None and git_checks[0].status == "fail"
    missing = missing or any(c.category == "runtime" and c.actual == ABSENT for c in checks)
    state: ProjectState = "missing" if missing else "degraded" if any(c.status == "fail" for c in checks) else "ready"
    return ProjectReport(
        project, str(directory), state, checks, _drift(checks), manifest_hash, str(hooks_dir) if hooks_dir else None
    )
