"""The agent's environment checker (issue #9): manifest in, checks, reports and events out.

::

    EnvChecker.run
    └─ loop: wait for a new manifest, an env_check, or the interval -> check every project

The supervisor sends the manifest after the welcome and whenever it changes
(:class:`~halswarm.proto.EnvManifest`); the last one is kept with its hash in the
outbox's key-value store (``<data_dir>/outbox.db``, a directory for the agent's user
only), so after a restart the agent checks (and gives opencode the manifest's
environment) before it has reconnected; a stored manifest that no longer hashes to its
stored hash is ignored with a warning. "No manifest" from the supervisor is stored too.
Checks, provisioning and installs run with the environment a spawned opencode gets
(:mod:`halswarm.envcheck.environment`). Each check run emits, per project, through the
normal event sink (durable, routed like any event):

- ``env.check.report`` {EnvReport} every run (the supervisor keeps the latest);
- ``env.check.fail`` {project, state, failed} when a project is not ready and its
  state or failed checks differ from the last ``env.check.fail`` reported;
- ``env.drift.detected`` {project, drift} when the drift set changed and is not empty.

Which failures and drift were reported is kept in the key-value store too, so a restart
does not repeat them. Commands (run by the executor, never in the link's reader):
``env_check``, ``env_provision`` (emits ``env.provision.complete``,
``env.provision.manual_required``, ``agent-md.updated``) and ``env_install`` (an approved
declared install command, run with its timeout; output in the command result).
Checks run off the trio thread with bounded subprocesses (:mod:`halswarm.envcheck.checks`).

With a backend that runs opencode (:class:`~halswarm.agent.envapply.OpencodeServer`,
set as :attr:`EnvChecker.server`), checks also compare the manifest's variables with
what the running server was started with, and ``env_provision`` restarts a spawned
server that lacks them while no session is busy (:mod:`halswarm.agent.envapply`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import orjson
import trio

from halswarm.agent.backend import CommandFailedError, OutEvent
from halswarm.agent.envapply import decide_restart, restart_reason
from halswarm.commands import EnvArgs, EnvInstallArgs, parse_args
from halswarm.convert import ConversionError, converter, unstructure
from halswarm.envcheck.checks import check_project
from halswarm.envcheck.environment import OpencodeEnvironment, manifest_environment
from halswarm.envcheck.manifest import Manifest, ManifestError, manifest_hash, parse_manifest
from halswarm.envcheck.process import run_bounded
from halswarm.envcheck.provision import provision_project
from halswarm.envcheck.report import REPORT_EVENT, EnvReport, agent_file_info, env_report
from halswarm.envcheck.views import InstallOutcome, ProvisionOutcome
from halswarm.jsontypes import is_json_object
from halswarm.obs.logging import ctx
from halswarm.schedule import Ticks
from halswarm.sync import Signal
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from halswarm.agent.backend import EventSink
    from halswarm.agent.envapply import OpencodeServer
    from halswarm.agent.outbox import Outbox
    from halswarm.envcheck.checks import ProjectReport
    from halswarm.envcheck.environment import ServerEnvironment
    from halswarm.envcheck.provision import ProvisionResult
    from halswarm.envcheck.views import OpencodeRestart
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import Project
    from halswarm.proto.messages import CommandMsg, EnvManifest

__all__ = ["MANIFEST_KEY", "REPORTED_KEY", "EnvChecker"]

log = logging.getLogger(__name__)

#: Outbox key-value entries: the last manifest received, and what was reported.
MANIFEST_KEY: Final = "env_manifest"
REPORTED_KEY: Final = "env_reported"


class EnvChecker:
    """Start with ``await nursery.start(checker.run, sink)`` (after the outbox is open)."""

    def __init__(
        self,
        node_id: str,
        projects: list[Project],
        *,
        outbox: Outbox,
        now: Clock,
        interval_sec: float = 600.0,
        environment: OpencodeEnvironment | None = None,
    ) -> None:
        self.node_id = node_id
        self.projects = list(projects)
        self.outbox = outbox
        self.now = now
        self.interval_sec = interval_sec
        #: How opencode's environment is built (:mod:`halswarm.envcheck.environment`):
        #: checks, provisioning and installs run with exactly what a spawned server gets.
        self.environment = environment if environment is not None else OpencodeEnvironment()
        #: The opencode server the node's backend runs (None: the simulator, tests):
        #: checks compare with its environment, provisioning restarts it.
        self.server: OpencodeServer | None = None
        self.manifest: Manifest | None = None
        self.manifest_hash = ""
        #: The latest report per project (also what tests look at).
        self.reports: dict[str, EnvReport] = {}
        #: Fired after every check run.
        self.checked = Signal()
        self._wake = Signal()
        self._sink: EventSink | None = None
        self._lock = trio.Lock()  # one check or provisioning run at a time
        # project -> {"fail": [...], "drift": [...]} as last reported.
        self._reported: dict[str, dict[str, list[str]]] = {}
        self._pending_save: JSONObject | None = None

    # ---- what others read -------------------------------------------------------------

    def opencode_env(self) -> dict[str, str]:
        """The manifest's declared variables for the hosted projects: the manifest's layer
        of opencode's environment (:func:`~halswarm.envcheck.environment.manifest_environment`;
        on a conflict the project first by name wins). Never written to disk."""
        return manifest_environment(self.manifest, (p.name for p in self.projects))

    def opencode_environment(self) -> dict[str, str]:
        """The whole environment a spawned opencode gets now, but for the server's
        credentials: what every check, provisioning and approved install runs with."""
        return self.environment.build(self.opencode_env())

    # ---- manifest ----------------------------------------------------------------------

    def set_manifest(self, message: EnvManifest) -> None:
        """Take a manifest from the supervisor (called by the link reader: never blocks)."""
        if message.manifest is None:
            if self.manifest is not None:
                log.info("supervisor holds no environment manifest any more")
                # Forgotten on disk too: a restart must not check against it again.
                self._pending_save = {"manifest_hash": "", "manifest": None}
                self._wake.fire()
            self.manifest, self.manifest_hash = None, ""
            return
        if message.manifest_hash == self.manifest_hash and self.manifest is not None:
            return  # a resend after a reconnect: nothing changed
        try:
            manifest = parse_manifest(message.manifest)
        except ManifestError as exc:
            log.error("supervisor sent an invalid manifest (kept the previous one): %s", exc)
            return
        self.manifest, self.manifest_hash = manifest, manifest_hash(manifest)
        log.info("environment manifest received", extra=ctx(manifest_hash=self.manifest_hash))
        # Persisted by the next check run (this is the link's reader: no awaits here),
        # with its hash, so a restart can tell it is the manifest it was.
        self._pending_save = {"manifest_hash": self.manifest_hash, "manifest": message.manifest}
        self._wake.fire()

    async def _restore(self) -> None:
        saved = await self.outbox.get_kv(MANIFEST_KEY)
        if saved is not None:
            try:
                self.manifest, self.manifest_hash = _stored_manifest(saved)
            except ManifestError as exc:
                # Checks wait for the supervisor's manifest rather than run on a doubtful one.
                log.warning("stored environment manifest ignored: %s", exc)
            else:
                if self.manifest is not None:
                    log.info("stored environment manifest restored", extra=ctx(manifest_hash=self.manifest_hash))
        reported = await self.outbox.get_kv(REPORTED_KEY)
        if reported is not None:
            try:
                value = orjson.loads(reported)
            except orjson.JSONDecodeError:
                value = {}
            if isinstance(value, dict):
                self._reported = {
                    k: {kind: [str(x) for x in items] for kind, items in v.items() if isinstance(items, list)}
                    for k, v in value.items()
                    if isinstance(v, dict)
                }

    # ---- the loop ---------------------------------------------------------------------

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check on every new manifest and every ``interval_sec`` (0: only on change).

        Cancellation: safe at any await; a running check's subprocesses are killed.
        Error handling: a failing check run is logged and retried at the next wake-up.
        """
        await self._restore()
        self._sink = sink
        task_status.started()
        ticks = Ticks(self.interval_sec) if self.interval_sec > 0 else None
        while True:
            wake = self._wake.waiter()
            try:
                if self.manifest is not None:
                    await self.check_all()
                else:
                    async with self._lock:
                        await self._save_manifest()  # the supervisor holds none any more
            except Exception:
                log.exception("environment check failed")
            if ticks is not None:
                # Drift-free schedule; a new manifest checks at once.
                with trio.move_on_at(ticks.next_after_now()):
                    await wake.wait()
            else:
                await wake.wait()

    def _targets(self, project: str | None) -> list[Project]:
        targets = [p for p in self.projects if project is None or p.name == project]
        if project is not None and not targets:
            raise CommandFailedError(f"this node does not host project {project!r}")
        return targets

    def _held_manifest(self) -> Manifest:
        if self.manifest is None:
            raise CommandFailedError("no environment manifest received from the supervisor yet")
        return self.manifest

    async def check_all(self, project: str | None = None) -> list[EnvReport]:
        """Check every hosted project (or one), report and emit events.

        Raises:
            CommandFailedError: no manifest yet, or *project* is not hosted here.
        """
        manifest = self._held_manifest()
        async with self._lock:
            await self._save_manifest()
            reports = await self._report(manifest, await self._check(manifest, self._targets(project)))
        self.checked.fire()
        return reports

    async def _check(self, manifest: Manifest, targets: list[Project]) -> list[ProjectReport]:
        """Check *targets* with opencode's environment, against the server running now."""
        environment = self.opencode_environment()
        server = self._server_environment()
        return [
            await check_project(
                target.name,
                manifest.spec_for(target.name),
                _directory(target),
                env=environment,
                manifest_hash=self.manifest_hash,
                server=server,
            )
            for target in targets
        ]

    async def _report(self, manifest: Manifest, checked: list[ProjectReport]) -> list[EnvReport]:
        """Report *checked* (with each project's AGENT.md) and emit the events it calls for."""
        reports = []
        for report in checked:
            spec = manifest.spec_for(report.project)
            agent_file = await trio.to_thread.run_sync(agent_file_info, report.project, spec, Path(report.directory))
            reports.append(env_report(self.node_id, report, format_ts(self.now()), agent_file))
        await self._emit_reports(reports)
        return reports

    async def _save_manifest(self) -> None:
        pending = self._pending_save
        if pending is None:
            return
        await self.outbox.put_kv(MANIFEST_KEY, orjson.dumps(pending))
        if self._pending_save is pending:  # not replaced by a newer one meanwhile
            self._pending_save = None

    async def _emit_reports(self, reports: list[EnvReport]) -> None:
        assert self._sink is not None
        events: list[OutEvent] = []
        # Work on a copy: what was reported changes only once the events are in the outbox
        # (a failed write must not make the next check think they went out).
        reported = {project: dict(seen) for project, seen in self._reported.items()}
        for report in reports:
            self.reports[report.project] = report
            data = converter.unstructure(report)
            events.append(OutEvent(REPORT_EVENT, project=report.project, data=data))
            seen = reported.setdefault(report.project, {})
            failed = sorted(report.failed())
            fail_key = [report.state, *failed] if report.state != "ready" else []
            if fail_key != seen.get("fail", []):
                seen["fail"] = fail_key
                if fail_key:
                    events.append(
                        OutEvent(
                            "env.check.fail",
                            project=report.project,
                            data={"project": report.project, "state": report.state, "failed": list(failed)},
                        )
                    )
            drift = sorted(f"{d.check}:{d.kind}" for d in report.drift)
            if drift != seen.get("drift", []):
                seen["drift"] = drift
                if drift:
                    items: JSONValue = unstructure(report.drift)
                    events.append(
                        OutEvent(
                            "env.drift.detected",
                            project=report.project,
                            data={"project": report.project, "drift": items},
                        )
                    )
        await self._sink.emit(events)
        self._reported = reported
        await self.outbox.put_kv(REPORTED_KEY, orjson.dumps(self._reported))

    # ---- commands ---------------------------------------------------------------------

    async def execute(self, command: CommandMsg) -> JSONObject:
        """Carry out ``env_check``, ``env_provision`` or ``env_install``.

        Raises:
            CommandFailedError: bad arguments, no manifest, unknown project or install.
        """
        try:
            args = parse_args(command.command_type, command.args)
        except ConversionError as exc:
            raise CommandFailedError("; ".join(exc.problems)) from None
        project = command.target if command.target and command.target != self.node_id else None
        if isinstance(args, EnvInstallArgs):
            return await self._install(args)
        if not isinstance(args, EnvArgs):
            raise CommandFailedError(f"{command.command_type} is not an environment command")
        project = args.project or project
        if command.command_type == "env_check":
            reports = await self.check_all(project)
            return {"reports": unstructure(reports)}
        return await self._provision(project, dry_run=args.dry_run, only=args.only)

    async def _provision(self, project: str | None, *, dry_run: bool, only: list[str] | None) -> JSONObject:
        """Provision every hosted project (or one): each is checked before and, unless a
        dry run, once after, when opencode has been restarted if it needed to be (the
        env checks compare with the server running then)."""
        manifest = self._held_manifest()
        async with self._lock:
            await self._save_manifest()
            targets = self._targets(project)
            environment = self.opencode_environment()
            server = self._server_environment()
            provisioned = [
                await provision_project(
                    target.name,
                    manifest.spec_for(target.name),
                    _directory(target),
                    env=environment,
                    dry_run=dry_run,
                    manifest_hash=self.manifest_hash,
                    only=frozenset(only) if only else None,
                    server=server,
                    check_after=False,
                )
                for target in targets
            ]
            restart = await self._restart_opencode([c for r in provisioned for c in r.plan.restart_opencode], dry_run)
            if not dry_run:
                after = await self._check(manifest, targets)
                provisioned = [attrs.evolve(r, after=a) for r, a in zip(provisioned, after, strict=True)]
                # The new state, reported at once: it clears what was fixed.
                await self._report(manifest, after)
        outcomes = [ProvisionOutcome.from_result(result, restart) for result in provisioned]
        if not dry_run:
            self.checked.fire()
            assert self._sink is not None
            events = [e for r, o in zip(provisioned, outcomes, strict=True) for e in _provision_events(r, o)]
            await self._sink.emit(events)
        return {"dry_run": dry_run, "projects": unstructure(outcomes)}

    def _server_environment(self) -> ServerEnvironment | None:
        return self.server.server_environment() if self.server is not None else None

    async def _restart_opencode(self, checks: list[str], dry_run: bool) -> OpencodeRestart | None:
        """Restart the spawned opencode to apply *checks* if no session is busy (:mod:`halswarm.agent.envapply`).

        Returns:
            None when nothing needs it; otherwise what was (or, on a dry run, would be) done.
        """
        if not checks:
            return None
        server = self.server
        busy: dict[str, str] = {}
        unavailable: str | None = None
        if server is None:  # checks find nothing stale without a server: defensive only
            unavailable = "this node runs no opencode server"
        else:
            try:
                busy = await server.busy_sessions()
            except CommandFailedError as exc:
                unavailable = f"cannot tell whether a session is busy ({exc})"
        decision = decide_restart(checks, busy, unavailable=unavailable)
        if decision is None or decision.status != "planned" or dry_run or server is None:
            return decision
        reason = restart_reason(decision.checks)
        log.info("restarting opencode serve to apply a changed environment", extra=ctx(checks=decision.checks))
        outcome, detail = await server.restart_server(reason)
        if outcome != "restarted":
            log.warning("opencode serve not restarted", extra=ctx(checks=decision.checks, problem=detail))
        return attrs.evolve(decision, status=outcome, detail=detail)

    async def _install(self, args: EnvInstallArgs) -> JSONObject:
        manifest = self._held_manifest()
        (target,) = self._targets(args.project)
        spec = manifest.spec_for(target.name)
        install = spec.install.get(args.install)
        if install is None:
            raise CommandFailedError(f"project {args.project!r} declares no install command {args.install!r}")
        if args.manifest_hash and args.manifest_hash != self.manifest_hash:
            raise CommandFailedError(
                "this node's manifest differs from the one the install was approved against "
                f"({self.manifest_hash[:12] or 'none'} here, {args.manifest_hash[:12]} approved); approve it again"
            )
        directory = _directory(target)
        log.info("running approved install", extra=ctx(project=args.project, install=args.install))
        result = await run_bounded(
            install.command,
            timeout_sec=install.timeout_sec,
            cwd=directory,
            env=self.opencode_environment(),
        )
        reports = await self.check_all(args.project)
        outcome = InstallOutcome(
            args.project,
            args.install,
            list(install.command),
            result.exit_code,
            result.exit_code == 0,
            result.timed_out,
            result.truncated,
            result.error,
            result.stdout,
            result.stderr,
            reports[0].state if reports else None,
        )
        answer = unstructure(outcome)
        assert is_json_object(answer)
        return answer


def _stored_manifest(saved: bytes) -> tuple[Manifest | None, str]:
    """The manifest and hash kept by :meth:`EnvChecker._save_manifest` (None, "": the
    supervisor held none).

    Raises:
        ManifestError: unreadable, or the manifest no longer hashes to the stored hash
            (damaged, or parsed differently by this version of the agent).
    """
    try:
        stored = orjson.loads(saved)
    except orjson.JSONDecodeError as exc:
        raise ManifestError([f"not JSON: {exc}"]) from None
    if not is_json_object(stored) or not isinstance(expected := stored.get("manifest_hash"), str):
        raise ManifestError(["not a stored manifest with its hash"])
    raw = stored.get("manifest")
    if raw is None and expected == "":
        return None, ""
    if not is_json_object(raw):
        raise ManifestError(["not a stored manifest with its hash"])
    manifest = parse_manifest(raw)
    digest = manifest_hash(manifest)
    if digest != expected:
        raise ManifestError([f"its hash {digest[:12]} differs from the stored {expected[:12]}"])
    return manifest, digest


def _directory(project: Project) -> Path:
    # expanduser reads $HOME only (no I/O), which the async lint cannot know.
    return Path(os.path.expanduser(project.directory))


def _provision_events(result: ProvisionResult, outcome: ProvisionOutcome) -> list[OutEvent]:
    plan = result.plan
    events = [
        OutEvent(
            "env.provision.complete",
            project=plan.project,
            data={
                "project": plan.project,
                "applied": unstructure(outcome.applied),
                "errors": unstructure(outcome.errors),
                "state": outcome.state_after or outcome.state_before,
                "opencode_restart": unstructure(outcome.opencode_restart),
            },
        )
    ]
    if plan.manual:
        events.append(
            OutEvent(
                "env.provision.manual_required",
                project=plan.project,
                # The hash lets an approval (a Discord button) be refused once the manifest changed.
                data={
                    "project": plan.project,
                    "manual": unstructure(plan.manual),
                    "manifest_hash": result.before.manifest_hash,
                },
            )
        )
    written = [a.path for a in result.applied if a.kind == "write_agent_file"]
    if written:
        events.append(
            OutEvent("agent-md.updated", project=plan.project, data={"project": plan.project, "path": written[0]})
        )
    return events
