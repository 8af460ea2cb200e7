"""Safe auto-provisioning: plan from a check report, then apply (issue #9).

:func:`plan_provision` is pure: from a :class:`ProjectReport` and the spec it lists
the safe actions (write AGENT.md from the template, create missing ``.context/`` files,
write required docs, install git hooks), the items that need a human (``manual``, or
``risky`` with the declared install command, which provisioning never runs), the
environment variables the agent gives opencode, and the env checks a restart of the
spawned opencode would fix (it still runs with older values: the agent decides whether
it can restart it now, :mod:`halswarm.agent.envapply`). :func:`apply_plan` performs the
actions; :func:`provision_project` does check -> plan -> apply -> check again (the
agent checks again itself, once it has restarted opencode).

Environment variables are never written to disk, and shell rc files are never touched
(original implementation, mistake 11): they are returned as a mapping for the process
environment of opencode. Existing ``.context/`` files are never overwritten (they hold
the agent's own notes); AGENT.md, docs and hooks are the manifest's and are replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import attrs
import trio

from halswarm.envcheck.checks import (
    DEFAULT_TIMEOUTS,
    CheckTimeouts,
    FixKind,
    ProjectReport,
    check_project,
    rendered_agent_file,
)
from halswarm.envcheck.manifest import CONTEXT_FILES
from halswarm.envcheck.safefiles import UnsafeFileError, confined_target
from halswarm.fileutil import write_atomically

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.envcheck.environment import ServerEnvironment
    from halswarm.envcheck.manifest import ProjectSpec

__all__ = [
    "CONTEXT_SCAFFOLD",
    "Action",
    "ActionKind",
    "ManualItem",
    "ProvisionPlan",
    "ProvisionResult",
    "apply_plan",
    "opencode_env",
    "plan_provision",
    "provision_project",
]

ActionKind = Literal["write_agent_file", "create_context_file", "write_doc", "install_hook"]

#: What a new ``.context/`` file starts with: a heading and what belongs in it.
CONTEXT_SCAFFOLD: Final[dict[str, str]] = {
    "PROGRESS.md": "# Progress\n\nWhat is done and what comes next. Read it first; update it when a session ends.\n",
    "CURRENT_TASK.md": "# Current task\n\nThe exact stopping point, so the next session can resume from it.\n",
    "DECISIONS.md": "# Decisions\n\nDecisions and interface changes, newest first, with the reason for each.\n",
}
assert set(CONTEXT_SCAFFOLD) == set(CONTEXT_FILES)


@attrs.frozen
class Action:
    """One safe change to a file. ``path`` is absolute."""

    kind: ActionKind
    check: str
    path: str
    content: str = attrs.field(repr=False)
    executable: bool = False


@attrs.frozen
class ManualItem:
    """A failed check provisioning cannot fix; ``risky`` ones carry the install command."""

    check: str
    fix: FixKind
    expected: str
    actual: str
    install: str | None = None
    command: list[str] | None = None
    timeout_sec: float | None = None


@attrs.frozen
class ProvisionPlan:
    """What provisioning would do for one project."""

    project: str
    directory: str
    actions: list[Action]
    manual: list[ManualItem]
    #: Variables for opencode's process environment. Values may be secrets: never in a repr.
    env: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: Env checks (``env:NAME``) the running opencode fails because it was started with
    #: older values: a restart of the spawned server applies them (the agent's decision).
    restart_opencode: list[str] = attrs.field(factory=list)


@attrs.frozen
class ProvisionResult:
    """What :func:`provision_project` did (nothing when ``dry_run``)."""

    plan: ProvisionPlan
    dry_run: bool
    before: ProjectReport
    applied: list[Action] = attrs.field(factory=list)
    #: ``path: reason`` for each action that failed (the others still ran).
    errors: list[str] = attrs.field(factory=list)
    #: The report after applying (None for a dry run, or until the caller checks again
    #: when it asked :func:`provision_project` not to).
    after: ProjectReport | None = None


def opencode_env(spec: ProjectSpec) -> dict[str, str]:
    """The variables the manifest gives values for: what the agent adds to opencode's environment."""
    return {name: var.value for name, var in sorted(spec.env.items()) if var.value is not None}


def _action_for(report: ProjectReport, spec: ProjectSpec, check_id: str, category: str, name: str) -> Action | None:
    directory = Path(report.directory)
    if category == "agent_config":
        rendered = rendered_agent_file(report.project, spec)
        if rendered is None:
            return None
        return Action("write_agent_file", check_id, str(directory / spec.agent.file), rendered)
    if category == "context":
        file_name = name.rpartition("/")[2]
        return Action("create_context_file", check_id, str(directory / name), CONTEXT_SCAFFOLD[file_name])
    if category == "docs":
        doc = next(d for d in spec.agent.docs if d.name == name)
        return Action("write_doc", check_id, str(directory / doc.name), doc.content or "")
    if category == "git" and name.startswith("hook.") and report.hooks_dir is not None:
        hook = name.removeprefix("hook.")
        return Action("install_hook", check_id, str(Path(report.hooks_dir) / hook), spec.git.hooks[hook], True)
    return None


def plan_provision(report: ProjectReport, spec: ProjectSpec) -> ProvisionPlan:
    """The safe actions and the manual items for *report*'s failed checks (pure: touches nothing).

    The returned ``env`` mapping lists what the manifest adds to opencode's environment
    (the agent does that at every start; nothing is written). A failed ``env`` check is
    never safe, but for one the running opencode was started with an older value of
    (``restart_opencode``): the variable is overridden or missing where no file can fix it.
    """
    actions: list[Action] = []
    manual: list[ManualItem] = []
    restart: list[str] = []
    for item in report.failed():
        if item.fix == "safe" and item.category == "env":
            restart.append(item.id)  # no file to write: the server must read its environment again
            continue
        if item.fix == "safe":
            action = _action_for(report, spec, item.id, item.category, item.name)
            if action is not None:
                actions.append(action)
            continue
        found = spec.install_for(item.id) if item.fix == "risky" else None
        if found is None:
            manual.append(ManualItem(item.id, item.fix or "manual", item.expected, item.actual))
        else:
            name, install = found
            manual.append(
                ManualItem(
                    item.id, "risky", item.expected, item.actual, name, list(install.command), install.timeout_sec
                )
            )
    return ProvisionPlan(report.project, report.directory, actions, manual, opencode_env(spec), restart)


def _apply_one(action: Action, root: Path) -> bool:
    """Perform *action*; False when it turned out to be unnecessary (a context file appeared).

    Raises:
        UnsafeFileError: the target is outside *root* or reached through a symbolic link.
    """
    try:
        relative = Path(action.path).relative_to(root)
    except ValueError:
        raise UnsafeFileError(f"{action.path}: outside the project directory") from None
    path = confined_target(root, relative)
    if action.kind == "create_context_file":
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # "x": never overwrite the agent's notes, even if one appeared since the check.
            with path.open("x") as file:
                file.write(action.content)
        except FileExistsError:
            return False
        return True
    # Atomic: an agent never reads half a file.
    write_atomically(path, action.content.encode(), mode=0o755 if action.executable else 0o644)
    return True


def apply_plan(plan: ProvisionPlan) -> tuple[list[Action], list[str]]:
    """Perform the plan's actions (blocking: call it from a worker thread).

    Returns:
        The actions applied, and ``path: reason`` for each that failed (one failure
        does not stop the others).
    """
    applied: list[Action] = []
    errors: list[str] = []
    root = Path(plan.directory)
    for action in plan.actions:
        try:
            if _apply_one(action, root):
                applied.append(action)
        except UnsafeFileError as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"{action.path}: {exc.strerror or exc}")
    return applied, errors


async def provision_project(
    project: str,
    spec: ProjectSpec,
    directory: Path,
    *,
    env: Mapping[str, str],
    dry_run: bool = False,
    manifest_hash: str = "",
    timeouts: CheckTimeouts = DEFAULT_TIMEOUTS,
    only: frozenset[str] | None = None,
    server: ServerEnvironment | None = None,
    check_after: bool = True,
) -> ProvisionResult:
    """Check the project, plan the safe fixes, apply them (unless *dry_run*) and check again.

    Args:
        project: the project's name.
        spec: its manifest spec.
        directory: its directory.
        env: the environment opencode gets, the manifest's values included
            (:meth:`~halswarm.envcheck.environment.OpencodeEnvironment.build`); both
            checks run with it.
        dry_run: only plan: nothing on disk changes.
        manifest_hash: recorded in the reports.
        timeouts: per-subprocess limits of the checks.
        only: check categories to act on (e.g. ``{"agent_config"}`` for an AGENT.md
            sync); None: all.
        server: what is known of the running opencode's environment (both checks
            compare with it; :func:`~halswarm.envcheck.checks.check_project`).
        check_after: False: do not check again (``after`` stays None): the caller
            does, after what else it changes (the agent restarts opencode first, which
            the env checks compare with), so a project is checked twice, not three times.

    Returns:
        The plan, what was applied, any write errors, and the reports before and after.
        Risky fixes are only listed (``plan.manual``); an approved one runs as
        ``env_install`` through :func:`~halswarm.envcheck.process.run_bounded`. A
        restart of opencode (``plan.restart_opencode``) is left to the caller.

    Cancellation: safe between steps; a cancelled worker thread finishes the file it
    is writing (each write is atomic) and its result is dropped.
    """
    before = await check_project(
        project, spec, directory, env=env, manifest_hash=manifest_hash, timeouts=timeouts, server=server
    )
    plan = plan_provision(before, spec)
    if only is not None:
        plan = attrs.evolve(
            plan,
            actions=[a for a in plan.actions if a.check.partition(":")[0] in only],
            manual=[m for m in plan.manual if m.check.partition(":")[0] in only],
            restart_opencode=[c for c in plan.restart_opencode if c.partition(":")[0] in only],
        )
    if dry_run:
        return ProvisionResult(plan, True, before)
    applied, errors = await trio.to_thread.run_sync(apply_plan, plan)
    if not check_after:
        return ProvisionResult(plan, False, before, applied, errors)
    after = await check_project(
        project, spec, directory, env=env, manifest_hash=manifest_hash, timeouts=timeouts, server=server
    )
    return ProvisionResult(plan, False, before, applied, errors, after)
