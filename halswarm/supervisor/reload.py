"""Config reload (SIGHUP; ``systemctl reload hal-supervisor``): re-read the file, apply what can change live.

::

    ConfigReloader.run                 core nursery, started once the supervisor is ready
    └─ one request at a time           from the signal watcher (a bounded channel: a
                                       SIGHUP while one is queued is coalesced)

What a reload does, in order; any failure before step 5 leaves everything as it was:

1. tell systemd ``RELOADING=1``; read and validate the same config file as at start
   (every problem, with its key path, is logged: an invalid file changes nothing);
2. compare it with the running config (key paths, never values: many are secrets);
3. build the config to run: the running one with the :data:`~halswarm.config.changes.RELOADABLE`
   parts of the new file (``routes``, ``channels.webhooks``, ``channels.slack``,
   ``policies``), and validate it whole: new routes naming a Discord channel, or a
   kill_on_cost relying on new budgets, depend on keys that change only on restart,
   and refuse the reload;
4. compile the new routes and work out the policies' runtime overrides;
5. write the audit row (``config.reload``; with clearing the overrides the new file
   made redundant, in one transaction): no audit row, no change;
6. swap in routes, targets and policies without an await (atomic for trio), log every
   other changed key as "takes effect after a restart", ``READY=1``.

**Runtime policy overrides** (``halctl policies enable|disable``) persist across a
reload, as across a restart; see :meth:`~halswarm.policy.engine.PolicyEngine.plan_reload`.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Final, Literal

import attrs
import trio

from halswarm.channels.router import RouteError
from halswarm.config import ConfigError, load_supervisor_config
from halswarm.config.changes import changed_keys, is_reloadable, with_reloadable
from halswarm.config.supervisor import check_supervisor_config
from halswarm.obs.logging import add_secrets, correlation_scope, ctx
from halswarm.store import AuditRecord, StoreError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from halswarm.channels.router_service import RouterService
    from halswarm.config.supervisor import SupervisorConfig
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.policy.dependency_engine import DependencyEngine
    from halswarm.policy.engine import PolicyEngine
    from halswarm.sdnotify import Notifier
    from halswarm.store import Store
    from halswarm.timeutil import Clock

__all__ = ["RELOAD_ACTION", "ConfigReloader", "ReloadOutcome", "ReloadRequest", "ReloadResult"]

log = logging.getLogger(__name__)

#: The audit action of a reload.
RELOAD_ACTION: Final = "config.reload"

ReloadOutcome = Literal["applied", "restart_required", "unchanged", "rejected", "failed"]
"""``applied``: live keys changed and are in effect (others may wait for a restart);
``restart_required``: only keys that need a restart changed; ``unchanged``: the file
says what runs; ``rejected``: invalid, nothing changed; ``failed``: the audit row
could not be written (or a bug), nothing changed."""


@attrs.frozen
class ReloadRequest:
    """Who asked for a reload: ``actor`` (``signal:SIGHUP``) and ``source`` (``signal``) of its audit row."""

    actor: str = "signal:SIGHUP"
    source: str = "signal"


@attrs.frozen
class ReloadResult:
    """What one reload did."""

    outcome: ReloadOutcome
    #: Changed key paths now in effect.
    applied: tuple[str, ...] = ()
    #: Changed key paths that take effect after a restart.
    restart_required: tuple[str, ...] = ()
    #: Why the file was not applied (each line names its key).
    problems: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for systemd's STATUS and logs."""
        match self.outcome:
            case "applied":
                text = f"applied {len(self.applied)} changed keys"
            case "restart_required":
                text = "nothing applied at runtime"
            case "unchanged":
                text = "no change"
            case "rejected":
                return f"rejected ({len(self.problems)} problems, see the log); running config kept"
            case "failed":
                return "failed (see the log); running config kept"
        if self.restart_required:
            text += f"; {len(self.restart_required)} changed keys need a restart"
        return text


def _json_list(items: Iterable[str]) -> list[JSONValue]:
    return [*items]


class ConfigReloader:
    """Reloads the supervisor's config file on request (see the module doc).

    Args:
        running: the config the supervisor runs with.
        path: the config file (None: started without one; reloads are refused).
        policies: the policy engine (``policies``).
        router: the event router (``routes``, ``channels.webhooks``, ``channels.slack``).
        dependencies: its retry interval follows ``policies.tick_seconds``.
        store: for the audit row.
        notifier: systemd (``RELOADING=1`` … ``READY=1``).
        status: the supervisor's status line, sent with ``READY=1``.
        now: the wall clock (audit time).
    """

    def __init__(
        self,
        running: SupervisorConfig,
        *,
        path: Path | None,
        policies: PolicyEngine,
        router: RouterService,
        dependencies: DependencyEngine,
        store: Store,
        notifier: Notifier,
        status: Callable[[], str],
        now: Clock,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.running = running
        self.path = path
        self.policies = policies
        self.router = router
        self.dependencies = dependencies
        self.store = store
        self.notifier = notifier
        self.status = status
        self.now = now
        self.new_id = new_id
        #: Reloads finished, whatever their outcome (tests wait on it).
        self.reloads = 0
        #: The last reload's result (None: none yet).
        self.last: ReloadResult | None = None

    async def run(
        self,
        requests: trio.MemoryReceiveChannel[ReloadRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve reload requests one at a time until the channel closes or this is cancelled.

        Cancellation: safe at any await; a reload cancelled before its audit row is
        written changed nothing, and after it the swap has no await left.
        Error handling: :meth:`reload` never raises (but cancellation).
        """
        task_status.started()
        async for request in requests:
            await self.reload(request)

    async def reload(self, request: ReloadRequest = ReloadRequest()) -> ReloadResult:
        """Reload the config file now (see the module doc). Never raises (but cancellation)."""
        correlation = self.new_id()[:16]
        with correlation_scope(correlation):
            log.info("config reload requested", extra=ctx(actor=request.actor, path=str(self.path)))
            self.notifier.reloading("reloading the configuration")
            try:
                result = await self._reload(request, correlation)
            except Exception:  # a bug: the supervisor keeps running on its current config
                log.exception("config reload failed; the running config is kept")
                result = ReloadResult("failed", problems=("internal error (see the log)",))
            self.last = result
            self.reloads += 1
            self.notifier.ready(self.status())
        return result

    async def _reload(self, request: ReloadRequest, correlation: str) -> ReloadResult:
        if self.path is None:
            log.error("config reload refused: this supervisor was not started from a config file")
            return ReloadResult("rejected", problems=("no config file to reload",))
        try:
            new = await trio.to_thread.run_sync(load_supervisor_config, self.path)
        except ConfigError as exc:
            log.error(
                "config reload refused: %s is invalid (%d problems); the running config is kept",
                exc.source,
                len(exc.problems),
            )
            for problem in exc.problems:
                log.error("config reload: %s", problem)
            return await self._audited(request, correlation, ReloadResult("rejected", problems=tuple(exc.problems)))
        add_secrets(new.secrets())  # before anything below might mention them
        changed = changed_keys(self.running, new)
        live = tuple(k for k in changed if is_reloadable(k))
        later = tuple(k for k in changed if not is_reloadable(k))
        if not live:
            self._log_later(later)
            outcome: ReloadOutcome = "restart_required" if later else "unchanged"
            if not later:
                log.info("config reloaded: the file says what runs already")
            return await self._audited(request, correlation, ReloadResult(outcome, restart_required=later))
        return await self._apply(request, correlation, new, live, later)

    async def _apply(
        self,
        request: ReloadRequest,
        correlation: str,
        new: SupervisorConfig,
        live: tuple[str, ...],
        later: tuple[str, ...],
    ) -> ReloadResult:
        candidate = with_reloadable(self.running, new)
        problems = await trio.to_thread.run_sync(check_supervisor_config, candidate)
        policy_plan = self.policies.plan_reload(candidate.policies)
        problems += policy_plan.problems
        try:
            router_plan = self.router.plan(
                candidate.routes,
                webhooks=candidate.channels.webhooks,
                slack=candidate.channels.slack,
                tick_seconds=candidate.policies.tick_seconds,
            )
        except RouteError as exc:  # check_supervisor_config reports these first
            problems.append(str(exc))
        if problems:
            log.error(
                "config reload refused: the changes that apply at runtime (%s) do not fit the settings in effect "
                "until a restart (%s); the running config is kept",
                ", ".join(live),
                ", ".join(later) or "none changed",
            )
            for problem in problems:
                log.error("config reload: %s", problem)
            result = ReloadResult("rejected", restart_required=later, problems=tuple(problems))
            return await self._audited(request, correlation, result)
        result = ReloadResult("applied", applied=live, restart_required=later)
        extra: JSONObject = {
            "overrides_kept": _json_list(sorted(policy_plan.kept)),
            "overrides_cleared": _json_list(sorted(policy_plan.cleared)),
        }
        audit = self._audit_row(request, correlation, result, extra)
        try:
            await self.store.record_config_reload(sorted(policy_plan.cleared), audit)
        except StoreError as exc:
            log.error("config reload not applied: its audit row cannot be written; the running config is kept: %s", exc)
            return ReloadResult("failed", restart_required=later, problems=(f"audit row not written: {exc}",))
        # From here to the end: no await, so nothing runs between the old config and the new.
        self.router.apply(router_plan)
        self.policies.apply_reload(policy_plan)
        self.dependencies.retry_interval = candidate.policies.tick_seconds
        self.running = candidate
        log.info("config reloaded: applied %s", ", ".join(live), extra=ctx(applied=list(live), routes=len(new.routes)))
        for name, override in sorted(policy_plan.kept.items()):
            state = "enabled" if override.enabled else "disabled"
            log.warning(
                "policy %s stays %s at runtime (by %s at %s), whatever the file says; "
                "halctl policies enable|disable changes that",
                name,
                state,
                override.actor,
                override.updated_at,
            )
        for name in sorted(policy_plan.cleared):
            log.info("policy %s: runtime override cleared, the file now says the same", name)
        self._log_later(later)
        return result

    def _log_later(self, later: tuple[str, ...]) -> None:
        if later:
            log.warning("config reload: changed; takes effect after a restart: %s", ", ".join(later))

    def _audit_row(
        self, request: ReloadRequest, correlation: str, result: ReloadResult, extra: JSONObject | None = None
    ) -> AuditRecord:
        detail: JSONObject = {
            "applied": _json_list(result.applied),
            "restart_required": _json_list(result.restart_required),
            "problems": _json_list(result.problems),
            **(extra or {}),
        }
        target = str(self.path) if self.path is not None else "config"
        stamp = format_ts(self.now())
        return AuditRecord(
            stamp, request.actor, request.source, RELOAD_ACTION, target, result.outcome, correlation, detail
        )

    async def _audited(self, request: ReloadRequest, correlation: str, result: ReloadResult) -> ReloadResult:
        """Write the audit row of a reload that changed nothing (a failure to do so is logged)."""
        try:
            await self.store.insert_audit(self._audit_row(request, correlation, result))
        except StoreError as exc:
            log.error("cannot write the audit row of a config reload: %s", exc)
        return result
