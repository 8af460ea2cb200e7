"""Approving a declared install command (issue #9): the one path every front end takes.

``POST /api/v1/env/approve/{node}`` (and so ``halctl env approve``) and Discord's
"Approve install" button and ``/approve`` all call :meth:`InstallApprovals.approve`,
which

1. checks that the manifest declares the install for the project, that the manifest is
   still the one the approver saw (when the caller knows which: a button or an
   autocomplete choice carries its hash), that the node is online with an agent that
   has environment checks, and that no run of the same install is under way there;
2. writes the ``env.install.approve`` audit row naming the approver (a failed write
   refuses the approval: nothing may run unaudited);
3. submits ``env_install`` with the manifest hash, which the agent checks against its
   own before running anything.

A refusal at step 1 writes nothing and runs nothing. :meth:`InstallApprovals.decline`
records ``env.install.decline`` and runs nothing. :meth:`InstallApprovals.pending` lists
the installs that would fix a failed check in the latest reports (what an operator may
be asked to approve).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Final

import trio

from halswarm.commands import CommandRequest
from halswarm.envcheck.views import PendingInstall
from halswarm.obs.logging import ctx
from halswarm.proto.messages import ENV_CAPABILITY
from halswarm.store import AuditRecord, StoreError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from halswarm.envcheck.manifest import InstallSpec
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Command
    from halswarm.store import Store
    from halswarm.supervisor.dispatcher import Dispatcher
    from halswarm.supervisor.env import EnvService
    from halswarm.supervisor.registry import NodeRegistry
    from halswarm.timeutil import Clock

__all__ = ["APPROVE_ACTION", "DECLINE_ACTION", "InstallApprovals", "InstallRefusedError", "PendingInstall"]

log = logging.getLogger(__name__)

APPROVE_ACTION: Final = "env.install.approve"
DECLINE_ACTION: Final = "env.install.decline"


class InstallRefusedError(Exception):
    """An approval (or decline) that cannot go ahead; nothing was recorded or run.

    ``status`` and ``code`` are the HTTP answer's; ``message`` is fit to show a person.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class InstallApprovals:
    """Approvals of declared installs, shared by the HTTP API and Discord (see the module docstring)."""

    def __init__(
        self, env: EnvService, *, store: Store, dispatcher: Dispatcher, registry: NodeRegistry, now: Clock
    ) -> None:
        self.env = env
        self.store = store
        self.dispatcher = dispatcher
        self.registry = registry
        self.now = now
        # A second approval while the same install runs on the node is refused (two
        # operators clicking the same button must not run it twice): the dispatcher knows
        # what runs. Held from that check until the dispatcher has the command: the audit
        # write and the submit await, and a second approval arriving meanwhile must see the
        # first one's command, not an empty slot.
        self._approving = trio.Lock()

    # ---- what can be approved -------------------------------------------------------------

    def declared(self, node_id: str, project: str, install: str, *, manifest_hash: str | None = None) -> PendingInstall:
        """The install as the current manifest declares it for *project* on *node_id*.

        Args:
            manifest_hash: the manifest the approver saw; refused if it is not the current one.

        Raises:
            InstallRefusedError: 404 unknown node, no manifest or no such install;
                409 ``manifest_changed``.
        """
        manifest, current = self.env.manifest, self.env.hash
        if self.registry.get(node_id) is None:
            raise InstallRefusedError(404, "not_found", f"no node {node_id!r}")
        spec = manifest.spec_for(project).install.get(install) if manifest is not None else None
        if spec is None or current is None:
            raise InstallRefusedError(404, "not_found", f"project {project!r} declares no install command {install!r}")
        if manifest_hash is not None and manifest_hash != current:
            raise InstallRefusedError(
                409,
                "manifest_changed",
                f"the environment manifest changed since this install was offered "
                f"({manifest_hash[:12] or 'none'} then, {current[:12]} now): nothing was run; "
                "provision again to see what the new manifest asks for",
            )
        return _pending(node_id, project, install, spec, current)

    def candidates(self) -> list[PendingInstall]:
        """Every install the manifest declares for every project of every known node."""
        manifest, current = self.env.manifest, self.env.hash
        if manifest is None or current is None:
            return []
        found: list[PendingInstall] = []
        for entry in sorted(self.registry, key=lambda e: e.record.id):
            for project in sorted({p.name for p in entry.record.projects}):
                for name, spec in sorted(manifest.spec_for(project).install.items()):
                    found.append(_pending(entry.record.id, project, name, spec, current))
        return found

    def pending(self) -> list[PendingInstall]:
        """Installs that would fix a failed check of the latest reports (made against the current manifest)."""
        manifest, current = self.env.manifest, self.env.hash
        if manifest is None or current is None:
            return []
        found: list[PendingInstall] = []
        for report in self.env.status():
            if report.manifest_hash != current:
                continue  # the node has not checked against this manifest yet
            spec = manifest.spec_for(report.project)
            for check in report.checks:
                if check.status != "fail" or check.fix != "risky":
                    continue
                declared = spec.install_for(check.id)
                if declared is not None:
                    name, install = declared
                    found.append(_pending(report.node_id, report.project, name, install, current))
        return found

    # ---- approve and decline ------------------------------------------------------------

    async def approve(
        self,
        node_id: str,
        project: str,
        install: str,
        *,
        actor: str,
        source: str,
        correlation_id: str | None = None,
        manifest_hash: str | None = None,
        idempotency_key: str | None = None,
    ) -> Command:
        """Audit the approval, then submit ``env_install`` (see the module docstring).

        Args:
            actor: who approves (``token:ops``, ``discord:<user id>``).
            source: ``http`` or ``discord``.
            correlation_id: links the audit row to the command's rows (one is made when None).
            manifest_hash: the manifest the approver saw (None: the current one).
            idempotency_key: the command's key (a repeated request returns the same command).

        Returns:
            The accepted command (``pending``), or the earlier one with the same key.

        Raises:
            InstallRefusedError: as :meth:`declared`; 409 ``target_offline``,
                ``not_supported`` (an agent without environment checks) or
                ``install_running``; 503 ``storage_unavailable`` (nothing recorded or run).
            CommandError: the dispatcher refused the command (after the audit row).
        """
        item = self.declared(node_id, project, install, manifest_hash=manifest_hash)
        entry = self.registry.get(node_id)
        if entry is None or not entry.online:
            raise InstallRefusedError(409, "target_offline", f"node {node_id!r} is offline: nothing was run")
        if ENV_CAPABILITY not in entry.capabilities:
            raise InstallRefusedError(
                409, "not_supported", f"node {node_id!r} runs an agent without environment checks; upgrade it"
            )
        async with self._approving:
            running = self.dispatcher.in_flight("env_install", node_id, {"project": project, "install": install})
            if running is not None:
                if idempotency_key and running.idempotency_key == idempotency_key:
                    return running
                raise InstallRefusedError(
                    409,
                    "install_running",
                    f"install {install!r} is already running on {node_id} (approved by {running.actor}, "
                    f"command {running.id})",
                )
            correlation = correlation_id or uuid.uuid4().hex[:16]
            detail: JSONObject = {
                "install": install,
                "command": list(item.command),
                "timeout_sec": item.timeout_sec,
                "manifest_hash": item.manifest_hash,
            }
            await self._audit(APPROVE_ACTION, actor, source, f"{node_id}/{project}", "approved", correlation, detail)
            args: JSONObject = {"project": project, "install": install, "manifest_hash": item.manifest_hash}
            command = await self.dispatcher.submit(
                CommandRequest("env_install", node_id, args, idempotency_key),
                actor=actor,
                source=source,
                correlation_id=correlation,
            )
        log.info("install approved", extra=ctx(node_id=node_id, project=project, install=install, actor=actor))
        return command

    async def decline(
        self,
        node_id: str,
        project: str,
        install: str,
        *,
        actor: str,
        source: str,
        reason: str | None = None,
        manifest_hash: str | None = None,
    ) -> PendingInstall:
        """Record that *actor* declined the install (``env.install.decline``); nothing runs.

        Returns:
            The declined install.

        Raises:
            InstallRefusedError: as :meth:`declared`; 503 when the audit row cannot be written.
        """
        item = self.declared(node_id, project, install, manifest_hash=manifest_hash)
        detail: JSONObject = {"install": install, "command": list(item.command), "manifest_hash": item.manifest_hash}
        if reason:
            detail["reason"] = reason
        await self._audit(
            DECLINE_ACTION, actor, source, f"{node_id}/{project}", "declined", uuid.uuid4().hex[:16], detail
        )
        return item

    async def _audit(
        self, action: str, actor: str, source: str, target: str, outcome: str, correlation: str, detail: JSONObject
    ) -> None:
        record = AuditRecord(format_ts(self.now()), actor, source, action, target, outcome, correlation, detail)
        try:
            await self.store.insert_audit(record)
        except StoreError as exc:
            log.error("install %s refused: cannot audit it: %s", outcome, exc)
            raise InstallRefusedError(
                503, "storage_unavailable", "the supervisor cannot write its audit log right now; nothing was run"
            ) from None


def _pending(node_id: str, project: str, name: str, spec: InstallSpec, manifest_hash: str) -> PendingInstall:
    return PendingInstall(node_id, project, name, spec.fixes, list(spec.command), spec.timeout_sec, manifest_hash)
