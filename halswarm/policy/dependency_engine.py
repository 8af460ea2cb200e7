"""Dependency-aware starts (issue #6, point 3): completions in, ``start_session`` out.

::

    DependencyEngine.run                 in the supervisor's core nursery
    ├─ loop                              woken by stored project.completed events, else every
    │                                    policies.tick_seconds (trio's clock)
    │  1. read      new project.completed events from agents (event id cursor)
    │  2. record    DependencyState.complete + who/how: persisted with the audit row,
    │               before anything is sent
    │  3. start     each dependant now ready: start_session to an online node hosting it,
    │               actor ``policy:dependencies``; no such node: it waits (persisted) and
    │               is retried on the next pass
    └─ startup grace                     then one WARNING naming graph projects no node hosts

Completions come from two sources: :meth:`DependencyEngine.complete` (``POST
/api/v1/projects/{name}/complete``, ``halctl projects complete``) and agents, whose
``project.completed`` events (the project's ``.context/COMPLETE`` marker appeared) the
pipeline stores and announces (:meth:`DependencyEngine.events_stored`). Either way a
project completes once: a second completion, or a resent event, changes nothing.

**At most one start per dependant, ever.** The start is recorded (DependencyState
``started``) in the same transaction as the completion that triggers it, before the
command is sent; its idempotency key comes from the project and that completion, so a
start replayed after a crash (recorded, sent, but its command id not yet stored) gets the
first command back from the dispatcher instead of a second session. A start refused
because its node went offline is retried with the next key once a hosting node is
online; any other outcome (the agent failed to start the session, it timed out) is in the
command record and the audit log, and is not retried, as for the policies.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from halswarm.commands import CommandRequest
from halswarm.obs.logging import ctx
from halswarm.policy.completions import (
    COMPLETED_EVENT,
    PROGRESS_ROW,
    STATE_ROW,
    CompletionNote,
    DependencyProgress,
    StartNote,
    clean_detail,
    project_info,
    reported_completion,
    restore_progress,
    start_key,
)
from halswarm.policy.dependencies import DependencyGraph, DependencyState, restore_dependency_state, unknown_projects
from halswarm.projects import CompleteAnswer, ProjectInfo
from halswarm.store import AuditRecord, EventQuery, StoreError
from halswarm.supervisor.dispatcher import CommandError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from halswarm.config.dependencies import DependencyStartConfig
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import Event
    from halswarm.policy.dependencies import Completion
    from halswarm.policy.storage import CommandPath, Emit
    from halswarm.supervisor.registry import NodeRegistry
    from halswarm.supervisor.tracker import SessionTracker
    from halswarm.timeutil import Clock

__all__ = ["ACTOR", "DependencyEngine", "DependencyStore", "UnknownProjectError"]

log = logging.getLogger(__name__)

#: Actor of every start (and of the audit rows about starts): the command path's convention.
ACTOR: Final = "policy:dependencies"
_SOURCE: Final = "policy"
_SCAN_BATCH: Final = 200
# Retries of a start refused for an offline node; the cap stops a flapping node from
# costing a failed command every pass forever.
_MAX_ATTEMPTS: Final = 20


class UnknownProjectError(LookupError):
    """No node hosts the project and the dependency graph does not name it."""


class DependencyStore(Protocol):
    """What the engine needs from :class:`~halswarm.store.Store` (``StoreError`` on failure)."""

    async def load_policy_rows(self) -> dict[str, str]:
        """Every ``policy_state`` row."""
        ...

    async def save_policy_rows(self, rows: Mapping[str, str], now: str, audits: Sequence[AuditRecord] = ()) -> None:
        """State rows and audit rows in one transaction."""
        ...

    async def insert_audit(self, audit: AuditRecord) -> None:
        """One audit row."""
        ...

    async def query_events(self, query: EventQuery) -> list[Event]:
        """Stored events."""
        ...


def _compact(data: JSONObject) -> JSONObject:
    """*data* without its None values (audit details and events say only what applies)."""
    return {k: v for k, v in data.items() if v is not None}


class DependencyEngine:
    """Records completions and starts dependants. Start with ``nursery.start(engine.run)``."""

    def __init__(
        self,
        dependencies: Mapping[str, Sequence[str]],
        start: DependencyStartConfig,
        *,
        store: DependencyStore,
        registry: NodeRegistry,
        tracker: SessionTracker,
        commands: CommandPath,
        emit: Emit,
        now: Clock,
        retry_interval: float,
        unknown_grace: float = 0.0,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """Build the engine.

        Raises:
            DependencyGraphError: *dependencies* is not a DAG (the config check rejects that first).
        """
        self.graph = DependencyGraph.from_config(dependencies)
        self.start = start
        self.store = store
        self.registry = registry
        self.tracker = tracker
        self.commands = commands
        self.emit = emit
        self.now = now
        #: Seconds between passes that retry starts waiting for a node.
        self.retry_interval = retry_interval
        #: Seconds after start before graph projects no node hosts are warned about.
        self.unknown_grace = unknown_grace
        self.new_id = new_id
        #: Passes completed (for tests and health).
        self.passes = 0
        self._state = DependencyState()
        self._progress = DependencyProgress()
        self._lock = trio.Lock()  # one completion or pass at a time: read, persist, act
        self._wake = trio.Event()
        self._rescan = True  # read new events on the first pass
        self._unsaved = False

    # ---- lifecycle ------------------------------------------------------------------------

    async def load(self) -> None:
        """Restore the state and progress (an unreadable row starts empty, with a WARNING).

        Raises:
            StoreError: the database cannot be read.
        """
        rows = await self.store.load_policy_rows()
        state, problems = restore_dependency_state(rows.get(STATE_ROW))
        progress, more = restore_progress(rows.get(PROGRESS_ROW))
        for problem in problems + more:
            log.warning("%s", problem)
        self._state, self._progress = state, progress

    def events_stored(self) -> None:
        """``project.completed`` events were stored: read them now. Never blocks (a pipeline hook)."""
        self._rescan = True
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, then read completions and carry out starts until cancelled.

        Raises:
            StoreError: the persisted state cannot be read at start.

        Cancellation: safe at any await; a start cancelled after it was recorded and
        before its command was stored is sent on the next run (same idempotency key).
        Error handling: a failing pass (the database, a bug) is logged; the next one runs.
        """
        await self.load()
        task_status.started()
        log.info(
            "dependencies ready",
            extra=ctx(
                projects=len(self.graph.projects),
                complete=len(self._state.completed),
                waiting=self._progress.waiting(),
                start_enabled=self.start.enabled,
            ),
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._warn_unknown_later)
            while True:
                try:
                    await self.run_pass()
                except StoreError as exc:
                    log.error("dependencies: pass skipped, the database failed (retried): %s", exc)
                except Exception:
                    log.exception("dependencies: pass failed; the next one runs as usual")
                with trio.move_on_after(self.retry_interval):
                    await self._wake.wait()
                self._wake = trio.Event()

    async def _warn_unknown_later(self) -> None:
        # Nodes connect after the supervisor starts: warn only about projects still
        # unhosted once they had time to (the registry also knows nodes seen before).
        await trio.sleep(self.unknown_grace)
        if missing := unknown_projects(self.graph, self._hosts()):
            log.warning(
                "dependencies name projects no node hosts; their starts wait until a node hosting them connects",
                extra=ctx(unknown_projects=missing),
            )

    async def run_pass(self) -> None:
        """Read new completion events (when told there are some), then retry waiting starts.

        Raises:
            StoreError: events or progress could not be read or written (retried next pass).
        """
        async with self._lock:
            if self._rescan:
                self._rescan = False
                try:
                    await self._scan()
                except BaseException:
                    self._rescan = True
                    raise
            for project in self._progress.waiting():
                await self._deliver(project)
            if self._unsaved:
                await self._save_progress(self._progress)
        self.passes += 1

    # ---- completions ----------------------------------------------------------------------

    async def complete(
        self,
        project: str,
        *,
        actor: str,
        source: str,
        detail: str | None = None,
        correlation_id: str | None = None,
    ) -> CompleteAnswer:
        """Mark *project* complete on an operator's behalf; start the dependants now ready.

        Audited (action ``project.completed``, outcome ``recorded``, or
        ``already_complete`` for a project complete before, which changes nothing).

        Raises:
            UnknownProjectError: no node hosts it and the graph does not name it.
            StoreError: the completion cannot be stored (nothing changed, nothing sent).
        """
        if not self.is_known(project):
            raise UnknownProjectError(
                f"no project {project!r}: no node hosts it and config dependencies does not name it"
            )
        correlation = correlation_id or self.new_id()[:16]
        note = CompletionNote("api", actor, clean_detail(detail))
        async with self._lock:
            completion = await self._record(project, note, audit_source=source, correlation=correlation)
            if completion.already_complete:
                stamp = format_ts(self.now())
                detail_row = _compact({"source": "api", "detail": note.detail})
                await self.store.insert_audit(
                    AuditRecord(
                        stamp, actor, source, COMPLETED_EVENT, project, "already_complete", correlation, detail_row
                    )
                )
            else:
                data = _compact(
                    {
                        "project": project,
                        "source": "api",
                        "actor": actor,
                        "detail": note.detail,
                        "correlation_id": correlation,
                    }
                )
                self.emit(COMPLETED_EVENT, data, project=project)
                for start in completion.start:
                    await self._deliver(start.project)
        started = [self.project(start.project) for start in completion.start]
        return CompleteAnswer(self.project(project), completion.already_complete, started)

    async def _scan(self) -> None:
        """Record every agent-reported completion stored since the cursor."""
        while True:
            query = EventQuery(type=COMPLETED_EVENT, after=self._progress.event_cursor, limit=_SCAN_BATCH)
            events = await self.store.query_events(query)
            for event in events:
                report = reported_completion(event)
                if report is None:
                    self._advance(event.id)
                    continue
                note = CompletionNote("agent", f"node:{report.node_id}", report.detail, report.node_id)
                correlation = self.new_id()[:16]
                completion = await self._record(
                    report.project, note, audit_source="agent", correlation=correlation, cursor=event.id
                )
                if completion.already_complete:
                    log.debug("project already complete; report ignored", extra=ctx(project=report.project))
                for start in completion.start:
                    await self._deliver(start.project)
            if len(events) < _SCAN_BATCH:
                return

    def _advance(self, event_id: int) -> None:
        if event_id > self._progress.event_cursor:
            self._progress = attrs.evolve(self._progress, event_cursor=event_id)
            self._unsaved = True

    async def _record(
        self, project: str, note: CompletionNote, *, audit_source: str, correlation: str, cursor: int | None = None
    ) -> Completion:
        """Mark *project* complete and persist it with its starts and audit row (not yet sent).

        Raises:
            StoreError: nothing was stored (and nothing changed in memory).
        """
        wall = self.now()
        stamp = format_ts(wall)
        completion = self._state.complete(self.graph, project, wall.timestamp(), start=self.start.enabled)
        if completion.already_complete:
            if cursor is not None:
                self._advance(cursor)
            return completion
        starts = {
            s.project: StartNote(after=project, dependencies=s.dependencies, correlation_id=correlation)
            for s in completion.start
        }
        progress = attrs.evolve(
            self._progress,
            completions={**self._progress.completions, project: note},
            starts={**self._progress.starts, **starts},
            event_cursor=max(self._progress.event_cursor, cursor or 0),
        )
        held_back: list[JSONValue] = [] if self.start.enabled else [*self._ready_if_enabled(project)]
        audit_detail = _compact(
            {
                "source": note.source,
                "detail": note.detail,
                "node_id": note.node_id,
                "start": [*sorted(starts)],
                "not_started": held_back or None,
            }
        )
        audit = AuditRecord(
            stamp, note.actor, audit_source, COMPLETED_EVENT, project, "recorded", correlation, audit_detail
        )
        rows = {STATE_ROW: completion.state.dump(), PROGRESS_ROW: progress.dump()}
        await self.store.save_policy_rows(rows, stamp, [audit])
        self._state, self._progress, self._unsaved = completion.state, progress, False
        fields = ctx(
            project=project, source=note.source, actor=note.actor, start=sorted(starts), correlation_id=correlation
        )
        log.info("project complete", extra=fields)
        if held_back:
            log.info(
                "dependency_start.enabled is false: dependants not started", extra=ctx(project=project, ready=held_back)
            )
        return completion

    def _ready_if_enabled(self, project: str) -> list[str]:
        return self.graph.dependants_ready(self._state.completed.keys(), project, started=self._state.started.keys())

    # ---- starts ---------------------------------------------------------------------------

    async def _deliver(self, project: str) -> None:
        """Send a waiting start to an online node hosting *project*, or leave it waiting."""
        note = self._progress.starts.get(project)
        if note is None or note.status != "waiting":
            return
        if not any(entry.online for entry in self.registry.nodes_hosting(project)):
            if note.error is None:  # said once per start, not every pass
                error = f"no online node hosts {project}; started once one is online"
                log.warning("dependant start waits for a node", extra=ctx(project=project, after=note.after))
                await self._update(project, attrs.evolve(note, error=error), self._waiting_audit(project, note, error))
                self.emit(
                    "dependency.waiting",
                    {"project": project, "dependencies": list(note.dependencies), "after": note.after, "reason": error},
                    project=project,
                )
            return
        prompt = self.start.render(project, note.dependencies)
        key = start_key(project, self._state.started.get(project, 0.0), note.attempt)
        request = CommandRequest("start_session", project, {"prompt": prompt}, key)
        try:
            command = await self.commands.submit(
                request, actor=ACTOR, source=_SOURCE, correlation_id=note.correlation_id
            )
        except CommandError as exc:
            await self._refused(project, note, exc)
            return
        await self._update(project, attrs.evolve(note, status="sent", command_id=command.id, error=None))
        fields = ctx(
            project=project, command_id=command.id, node_id=command.node_id, correlation_id=note.correlation_id
        )
        log.info("dependant started", extra=fields)
        data: JSONObject = {
            "project": project,
            "dependencies": list(note.dependencies),
            "after": note.after,
            "command_id": command.id,
            "node_id": command.node_id,
            "correlation_id": note.correlation_id,
        }
        self.emit("dependency.started", data, project=project)

    async def _refused(self, project: str, note: StartNote, exc: CommandError) -> None:
        error = f"{exc.message} ({exc.code})"
        fields = ctx(project=project, error=error, correlation_id=note.correlation_id)
        if exc.code == "target_offline" and note.attempt + 1 < _MAX_ATTEMPTS:
            # The failed command holds this key: the retry takes the next one.
            log.warning("dependant start refused, its node went offline; retried", extra=fields)
            await self._update(project, attrs.evolve(note, attempt=note.attempt + 1, error=error))
        elif exc.code in ("unknown_target", "storage_unavailable"):
            log.warning("dependant start refused; retried", extra=fields)  # nothing stored under the key
            await self._update(project, attrs.evolve(note, error=error))
        else:
            log.error("dependant start refused", extra=fields)
            command_id = exc.command.id if exc.command is not None else None
            audits = []
            if command_id is None:  # nothing stored, so no audit row from the dispatcher
                stamp = format_ts(self.now())
                detail: JSONObject = {"error": exc.message, "code": exc.code, "after": note.after}
                audits.append(
                    AuditRecord(
                        stamp, ACTOR, _SOURCE, "command.start_session", project, "refused", note.correlation_id, detail
                    )
                )
            refused = attrs.evolve(note, status="refused", command_id=command_id, error=error)
            await self._update(project, refused, *audits)

    def _waiting_audit(self, project: str, note: StartNote, reason: str) -> AuditRecord:
        detail: JSONObject = {"reason": reason, "after": note.after, "dependencies": list(note.dependencies)}
        stamp = format_ts(self.now())
        return AuditRecord(stamp, ACTOR, _SOURCE, "dependency.start", project, "waiting", note.correlation_id, detail)

    async def _update(self, project: str, note: StartNote, *audits: AuditRecord) -> None:
        progress = attrs.evolve(self._progress, starts={**self._progress.starts, project: note})
        await self._save_progress(progress, audits)

    async def _save_progress(self, progress: DependencyProgress, audits: Sequence[AuditRecord] = ()) -> None:
        # Memory first: once a command is sent, forgetting it would send another. A write
        # that fails is retried by the next pass; a restart before it retries the start
        # under the same key, and the dispatcher answers with the first command.
        self._progress = progress
        try:
            await self.store.save_policy_rows({PROGRESS_ROW: progress.dump()}, format_ts(self.now()), audits)
        except StoreError as exc:
            self._unsaved = True
            log.error("dependencies: cannot store the starts' progress (retried): %s", exc)
        else:
            self._unsaved = False

    # ---- API ------------------------------------------------------------------------------

    def _hosts(self) -> dict[str, list[tuple[str, bool]]]:
        hosts: dict[str, list[tuple[str, bool]]] = {}
        for entry in self.registry:
            for project in entry.record.projects:
                hosts.setdefault(project.name, []).append((entry.record.id, entry.online))
        return hosts

    def is_known(self, project: str) -> bool:
        """A node hosts *project*, the graph names it, or it was completed or started before."""
        return (
            project in self.graph.projects
            or project in self._state.completed
            or project in self._state.started
            or bool(self.registry.nodes_hosting(project))
        )

    def projects(self) -> list[ProjectInfo]:
        """Every known project (hosted, in the graph, or completed), sorted by name."""
        hosts = self._hosts()
        sessions = self.tracker.counts_by_project()
        names = set(hosts) | self.graph.projects | set(self._state.completed) | set(self._state.started)
        return [self._info(name, hosts, sessions) for name in sorted(names)]

    def project(self, name: str) -> ProjectInfo:
        """One project (see :class:`~halswarm.projects.ProjectInfo`).

        Raises:
            UnknownProjectError: the project is not known.
        """
        if not self.is_known(name):
            raise UnknownProjectError(f"no project {name!r}")
        return self._info(name, self._hosts(), self.tracker.counts_by_project())

    def _info(
        self, name: str, hosts: Mapping[str, Sequence[tuple[str, bool]]], sessions: Mapping[str, tuple[int, int]]
    ) -> ProjectInfo:
        return project_info(
            name, graph=self.graph, state=self._state, progress=self._progress, hosts=hosts, sessions=sessions
        )
