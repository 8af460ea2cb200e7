"""The JSON shapes of ``/api/v1/env/*`` and ``/api/v1/agent-md/*`` (issue #9).

Shared by the server (:mod:`halswarm.http.api_env`, :mod:`halswarm.supervisor.env`) and
halctl (:mod:`halswarm.cli.env_remote`), which structures the answers into the same
classes; kept apart so halctl does not import the web framework. The agent answers
``env_provision`` and ``env_install`` with :class:`ProvisionOutcome` and
:class:`InstallOutcome`; halctl's local provisioning prints through the same
:meth:`ProvisionOutcome.from_result`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import attrs

from halswarm.envcheck.provision import ManualItem  # cattrs resolves the annotations
from halswarm.envcheck.report import EnvReport
from halswarm.jsontypes import JSONObject
from halswarm.models import Command  # cattrs resolves the annotations

if TYPE_CHECKING:
    from halswarm.envcheck.provision import ProvisionResult

__all__ = [
    "AgentMdDiff",
    "AgentMdInfo",
    "AgentMdNode",
    "AgentMdSyncAnswer",
    "AgentMdSyncRefusal",
    "AgentMdSyncRequest",
    "ApproveRequest",
    "DriftEntry",
    "EnvStatus",
    "InstallOutcome",
    "ManifestInfo",
    "OpencodeRestart",
    "PendingInstall",
    "PlannedAction",
    "ProvisionOutcome",
]


@attrs.frozen
class ManifestInfo:
    """``GET``/``PUT /api/v1/env/manifest``: the manifest as submitted, its hash and file."""

    #: The manifest JSON as submitted (or as in the file); null when none is held.
    manifest: JSONObject | None
    #: SHA-256 of the parsed manifest (what agents report against); null without one.
    hash: str | None
    #: ``env.manifest_path``; null: held in memory only.
    path: str | None
    #: Projects the manifest names.
    projects: list[str]


@attrs.frozen
class EnvStatus:
    """``GET /api/v1/env/status``: the latest report per (node, project)."""

    manifest_hash: str | None
    reports: list[EnvReport]


@attrs.frozen
class DriftEntry:
    """One drift item of one project on one node."""

    node_id: str
    project: str
    check: str
    kind: str
    expected: str
    actual: str
    checked_at: str


@attrs.frozen
class AgentMdNode:
    """A node's AGENT.md for the project, as last reported."""

    node_id: str
    path: str | None
    sha256: str | None
    matches: bool
    checked_at: str


@attrs.frozen
class AgentMdInfo:
    """``GET /api/v1/agent-md/{project}``: the rendered template and what each node has."""

    project: str
    file: str
    #: The template rendered for the project; null when the manifest declares none.
    rendered: str | None
    sha256: str | None
    #: Why it could not be rendered (a variable without a value), if so.
    error: str | None
    nodes: list[AgentMdNode]


@attrs.frozen
class AgentMdDiff:
    """One node's AGENT.md against the rendered template (unified diff; empty when equal)."""

    node_id: str
    matches: bool
    diff: str
    #: The node sent only part of its file (the diff covers that part).
    truncated: bool


@attrs.frozen
class AgentMdSyncRequest:
    """Body of ``POST /api/v1/agent-md/sync``: rewrite AGENT.md from the template."""

    project: str
    #: One node; default every node hosting the project.
    node: str | None = None
    dry_run: bool = False


@attrs.frozen
class AgentMdSyncRefusal:
    """A node the sync was not sent to, and why (``not_supported``: its agent predates env checks)."""

    node_id: str
    project: str
    code: str
    message: str


@attrs.frozen
class AgentMdSyncAnswer:
    """``POST /api/v1/agent-md/sync``: every node's command, or why none was sent to it.

    A node that was offline has a ``failed`` command (stored, with the reason); a node
    refused before a command could be stored is in ``refused``.
    """

    #: One per node the command was submitted to, as it stood when the shared ``wait`` ran out.
    commands: list[Command]
    refused: list[AgentMdSyncRefusal] = attrs.field(factory=list)


@attrs.frozen
class ApproveRequest:
    """Body of ``POST /api/v1/env/approve/{node}``: run a declared install command."""

    project: str
    install: str


@attrs.frozen
class PendingInstall:
    """A declared install command for a project on a node: what an approval approves."""

    node_id: str
    project: str
    install: str
    #: The check it fixes (``runtime:java``).
    fixes: str
    command: list[str]
    timeout_sec: float
    #: The manifest that declares it (the agent runs it only against the same one).
    manifest_hash: str


@attrs.frozen
class PlannedAction:
    """One safe fix in a provisioning answer."""

    kind: str
    check: str
    path: str


@attrs.frozen
class OpencodeRestart:
    """A restart of the spawned opencode to apply changed environment values.

    ``status``: ``planned`` (no session is busy: provisioning restarts it; a dry run
    only says so), ``restarted`` (the new server answers), ``pending`` (not restarted:
    a session is busy, or opencode is not running; ``detail`` says which) or ``failed``
    (restarted, but the new server does not answer).
    """

    status: str
    #: The env checks (``env:NAME``) the restart applies.
    checks: list[str]
    detail: str


@attrs.frozen
class ProvisionOutcome:
    """One project in an ``env_provision`` command's result (the agent's answer)."""

    project: str
    directory: str
    dry_run: bool
    actions: list[PlannedAction]
    #: Paths written (empty on a dry run).
    applied: list[str]
    errors: list[str]
    manual: list[ManualItem]
    #: Names of the variables opencode gets (never their values).
    env: list[str]
    state_before: str
    state_after: str | None = None
    #: Set when the running opencode lacks some of the manifest's values (the restart
    #: serves every project of the node; each lists its own checks).
    opencode_restart: OpencodeRestart | None = None

    @classmethod
    def from_result(cls, result: ProvisionResult, restart: OpencodeRestart | None = None) -> Self:
        """The answer for one provisioned project.

        Args:
            result: what provisioning did for it.
            restart: the node's restart of opencode for every project provisioned
                (None: none was needed, or no server runs here); the outcome keeps
                the restart only for this project's own checks. A restart done counts
                among ``applied``; one that failed among ``errors``.
        """
        plan = result.plan
        own = [c for c in restart.checks if c in plan.restart_opencode] if restart is not None else []
        restart = attrs.evolve(restart, checks=own) if restart is not None and own else None
        applied = [a.path for a in result.applied]
        errors = list(result.errors)
        if restart is not None and restart.status == "restarted":
            applied.append(f"opencode serve restarted to apply {', '.join(restart.checks)}")
        if restart is not None and restart.status == "failed":
            errors.append(restart.detail)
        return cls(
            plan.project,
            plan.directory,
            result.dry_run,
            [PlannedAction(a.kind, a.check, a.path) for a in plan.actions],
            applied,
            errors,
            list(plan.manual),
            sorted(plan.env),  # values may be secrets: the names only
            result.before.state,
            result.after.state if result.after is not None else None,
            restart,
        )


@attrs.frozen
class InstallOutcome:
    """An ``env_install`` command's result: the approved install command's run."""

    project: str
    install: str
    command: list[str]
    exit_code: int | None
    ok: bool
    timed_out: bool
    truncated: bool
    error: str | None
    stdout: str
    stderr: str
    state_after: str | None = None
