"""The opencode session backend: sessions, events and commands of a real ``opencode serve``.

::

    OpencodeBackend.run
    └─ nursery
       ├─ runner           spawn/attach opencode serve, readiness, restart with backoff
       ├─ event pump       /global/event -> mapper -> sink; resync over REST after each (re)connect
       ├─ task watcher     .context/CURRENT_TASK.md of each project -> sessions' current_task;
       │                   .context/COMPLETE appearing -> project.completed (halswarm.agent.milestones)
       └─ saver            mapper state -> outbox kv (a restarted agent re-announces only changes)

Commands call opencode's REST API, then wait (briefly, bounded) until the event stream
shows their effect, so the result the operator gets matches the state they then read.

It is also the agent's :class:`~halswarm.agent.envapply.OpencodeServer`: the environment
checker reads the running server's environment from it and has it restart the spawned
server (to apply changed manifest values) only while no session is busy and no command
is starting a turn; commands that start a turn wait for such a restart to finish.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
from collections import Counter
from typing import TYPE_CHECKING, Final

import orjson
import trio

from halswarm.agent.backend import CommandFailedError, EventSink, OutEvent
from halswarm.agent.backoff import Backoff, Retries
from halswarm.agent.envapply import BUSY_STATUSES, RestartOutcome, busy_text
from halswarm.agent.milestones import MARKERS_KEY, CompletionMarkers
from halswarm.agent.opencode.client import OpencodeError, OpencodeNotFoundError
from halswarm.agent.opencode.current_task import read_context
from halswarm.agent.opencode.mapper import SessionMapper
from halswarm.agent.opencode.runner import OpencodeRunner
from halswarm.agent.opencode.shapes import PREDECESSOR_KEY
from halswarm.agent.opencode.snapshot import directories, read_snapshot
from halswarm.commands import (
    ENV_COMMANDS,
    AnswerQuestionArgs,
    NoArgs,
    PromptArgs,
    ReplyPermissionArgs,
    RestartArgs,
    ResumeArgs,
    StartArgs,
    parse_args,
)
from halswarm.config.agent import resolved_projects
from halswarm.convert import ConversionError, converter
from halswarm.models import ACTIVE_STATUSES, Project, Session
from halswarm.obs.logging import ctx
from halswarm.sync import Signal
from halswarm.timeutil import Clock, system_now

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from halswarm.agent.outbox import Outbox
    from halswarm.config.agent import AgentConfig
    from halswarm.envcheck.environment import ServerEnvironment
    from halswarm.jsontypes import JSONObject
    from halswarm.proto.messages import CommandMsg

__all__ = ["HANDOVER_PROMPT", "OpencodeBackend", "continuation_prompt", "opencode_factory"]

log = logging.getLogger(__name__)

_STATE_KEY: Final = "opencode_sessions"
_SAVE_EVERY: Final = 2.0
_TASK_POLL: Final = 10.0
_CONNECTED_WAIT: Final = 10.0
_EFFECT_WAIT: Final = 5.0  # how long a command waits to see its effect in the stream
_EMIT_LIMIT: Final = 30.0
_RESTART_STEPS: Final = 20.0  # seconds a restart needs after the handover wait
_STREAM_BACKOFF: Final = Backoff(0.5, 15.0)
_STREAM_STABLE: Final = 30.0  # a stream up this long (past its resync) resets the backoff
# Commands that make a session run a turn: a restart of the server would cut it off.
_TURN_COMMANDS: Final = frozenset(
    {"start_session", "prompt_session", "resume_session", "restart_session", "reply_permission", "answer_question"}
)

HANDOVER_PROMPT: Final = (
    "This session is about to be replaced by a fresh one. Hand your context over first: "
    "update .context/PROGRESS.md (what is done, what is next), .context/CURRENT_TASK.md "
    "(the task in progress and its next step) and .context/DECISIONS.md (decisions and why), "
    "creating the .context/ directory if needed, then commit them with git. "
    "Answer with one line when done."
)


def continuation_prompt(predecessor: str) -> str:
    """The first prompt of a session that replaces *predecessor*."""
    return (
        f"You continue the work of a previous session ({predecessor}). First read "
        ".context/PROGRESS.md, .context/CURRENT_TASK.md and .context/DECISIONS.md, "
        "then carry on from where it stopped."
    )


class OpencodeBackend:
    """Implements :class:`~halswarm.agent.backend.SessionBackend` over ``opencode serve``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        outbox: Outbox,
        runner: OpencodeRunner,
        now: Clock = system_now,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.runner = runner
        self.client = runner.client
        # As opencode records them (links resolved, ~ expanded): sessions are matched by directory.
        self.projects = resolved_projects(config.projects)
        self.mapper = SessionMapper(config.resolved_node_id(), self.projects, now=now)
        self.rng = rng or random.Random()
        self.events_status = "starting"
        self.health_changed = Signal()
        self.applied = Signal()  # fired after every batch of events reached the outbox
        self._sink: EventSink | None = None
        self._turn_ended = Signal()  # agents update CURRENT_TASK.md as a turn ends
        self._dirty = False
        self._lock = trio.Lock()  # one writer of mapper-derived events at a time
        self._markers = CompletionMarkers()
        # Turn-starting commands in flight ("prompt_session ses_1"): opencode may already
        # run their turn before the event stream (or its status list) shows it busy.
        self._starting: Counter[str] = Counter()
        # Set while restart_server restarts the server; turn-starting commands wait for it.
        self._restart_done: trio.Event | None = None

    # ---- SessionBackend --------------------------------------------------------------

    def health(self) -> dict[str, str]:
        """opencode's availability and the event stream's, for heartbeats."""
        return {"opencode": self.runner.health(), "events": self.events_status if self.runner.ready else "waiting"}

    def facts(self) -> dict[str, str]:
        """What the node runs: the opencode version and how it is reached."""
        facts = {"opencode_mode": self.runner.mode, "opencode_url": self.runner.url}
        if self.runner.version:
            facts["opencode_version"] = self.runner.version
        return facts

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run opencode and pump its events into *sink* until cancelled.

        ``started()`` comes at once: the agent connects to the supervisor (and reports
        opencode's health) even while opencode is still starting or unreachable.
        """
        self._sink = sink
        saved = await self.outbox.get_kv(_STATE_KEY)
        if saved is not None:
            try:
                self.mapper.restore(converter.structure(orjson.loads(saved), list[Session]))
            except Exception as exc:  # any shape change across versions: start afresh
                log.warning("saved opencode session state unreadable; starting afresh", extra=ctx(error=repr(exc)))
        self._markers = CompletionMarkers.restore(await self.outbox.get_kv(MARKERS_KEY))
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.runner.run)
                nursery.start_soon(self._watch_health)
                nursery.start_soon(self._event_pump)
                nursery.start_soon(self._task_watcher)
                nursery.start_soon(self._saver)
                task_status.started()
        finally:
            with trio.move_on_after(2.0, shield=True):
                await self._save()

    # ---- OpencodeServer (the environment checker's view) ------------------------------

    def use_manifest_environment(self, source: Callable[[], Mapping[str, str]]) -> None:
        """Give a spawned server the manifest's values from *source* (read at every start)."""
        self.runner.extra_env = source

    def server_environment(self) -> ServerEnvironment | None:
        """What is known of the running server's environment (:meth:`OpencodeRunner.server_environment`)."""
        return self.runner.server_environment()

    def _busy_now(self) -> dict[str, str]:
        return {s.id: s.status for s in self.mapper.sessions() if s.status in BUSY_STATUSES}

    async def busy_sessions(self) -> dict[str, str]:
        """Sessions a restart would interrupt: busy, retrying or waiting for an answer.

        As tracked from the event stream, and as opencode itself says right now (a
        prompt just sent may not have shown in the stream yet).

        Raises:
            CommandFailedError: opencode is not available or cannot list its sessions.
        """
        busy = self._busy_now()
        if not self.runner.ready:
            raise CommandFailedError(f"opencode is not available: {self.runner.health()}")
        try:
            for directory in directories(self.projects, self.mapper):
                for session_id, status in (await self.client.session_status(directory)).items():
                    kind = status.get("type")
                    busy.setdefault(session_id, kind if isinstance(kind, str) and kind != "idle" else "busy")
        except OpencodeError as exc:
            raise CommandFailedError(f"opencode: {exc}") from None
        return busy

    async def restart_server(self, reason: str) -> tuple[RestartOutcome, str]:
        """Restart the spawned server unless it is not ours to restart, not running, a
        session became busy since :meth:`busy_sessions`, or a command is starting a turn
        (all checked with no await between the checks and stopping the server).

        Sessions survive (opencode keeps them on disk); the event stream reconnects and
        resyncs as after any restart. Meanwhile (the node's health says ``restarting:
        <reason>``) commands that start a turn wait for the restarted server, within their
        deadline; the others are refused.
        """
        if self.runner.mode != "spawn":
            return "pending", "opencode serve not restarted: it runs in attach mode (restart it yourself)"
        if not self.runner.ready:
            return "pending", f"opencode serve not restarted: it is not running now ({self.runner.health()})"
        if busy := self._busy_now():
            return "pending", (
                f"opencode serve not restarted: session(s) {busy_text(busy)} became busy; "
                "provision again when no session is busy"
            )
        if self._starting:
            starting = ", ".join(sorted(self._starting))
            return "pending", (
                f"opencode serve not restarted: a command is starting a turn ({starting}); "
                "provision again when no session is busy"
            )
        done = self._restart_done = trio.Event()
        try:
            problem = await self.runner.restart(reason)
        finally:
            self._restart_done = None
            done.set()
        if problem is not None:
            return "failed", f"opencode serve restarted {reason}, but {problem}"
        return "restarted", f"opencode serve restarted {reason}"

    # ---- plumbing ----------------------------------------------------------------------

    async def _emit(self, events: list[OutEvent]) -> None:
        if not events:
            return
        assert self._sink is not None
        # The mapper already holds the change: a cancelled write (command deadline,
        # shutdown) would lose it for good, so the write finishes, within bounds.
        with trio.move_on_after(_EMIT_LIMIT, shield=True) as scope:
            await self._sink.emit(events)
        if scope.cancelled_caught:
            log.error("events could not be written to the outbox in time", extra=ctx(events=len(events)))
            return
        self._dirty = True
        self.applied.fire()
        if any(ev.type == "session.idle" for ev in events):
            self._turn_ended.fire()

    async def _save(self) -> None:
        states = converter.unstructure(self.mapper.export())
        await self.outbox.put_kv(_STATE_KEY, orjson.dumps(states))
        self._dirty = False

    async def _saver(self) -> None:
        while True:
            await trio.sleep(_SAVE_EVERY)
            if self._dirty:
                await self._save()

    async def _watch_health(self) -> None:
        while True:
            await self.runner.changed.waiter().wait()
            self.health_changed.fire()

    def _set_events_status(self, status: str) -> None:
        if status != self.events_status:
            self.events_status = status
            self.health_changed.fire()

    async def _event_pump(self) -> None:
        """One ``/global/event`` subscription, reopened with backoff, resync after each open. The
        backoff starts over only once a stream stayed up: no full resync every half second."""
        retries = Retries(_STREAM_BACKOFF, _STREAM_STABLE)
        while True:
            await self.runner.wait_ready()
            up_since: float | None = None
            try:
                async with self.client.global_events() as stream:
                    with trio.fail_after(_CONNECTED_WAIT):
                        first = await anext(stream, None)
                    if first is None:
                        raise OpencodeError("event stream ended before server.connected")
                    # Subscribed first, then read the REST view: nothing falls in between.
                    await self._resync()
                    self._set_events_status("ok")
                    up_since = trio.current_time()
                    async for envelope in stream:
                        await self._apply(functools.partial(self.mapper.feed, envelope))
                raise OpencodeError("event stream closed by opencode")
            except (OpencodeError, trio.TooSlowError) as exc:
                reason = str(exc) or "no server.connected in time"
                # Let the runner probe the server: it restarts (spawn) or re-attaches.
                self.runner.report_lost(reason)
            retries.ended(trio.current_time() - up_since if up_since is not None else 0.0)
            delay = retries.next_delay(self.rng)
            self._set_events_status(f"reconnecting in {delay:.1f} s: {reason}")
            log.warning("opencode event stream lost", extra=ctx(reason=reason, retry_in=round(delay, 1)))
            await trio.sleep(delay)

    async def _resync(self) -> None:
        # Commands apply their effects under the same lock: one that lands while the
        # REST view is read is applied after it, never overwritten by a stale view.
        async with self._lock:
            events, pending = await self._resync_locked()
        log.info(
            "resynced with opencode",
            extra=ctx(sessions=len(self.mapper.sessions()), changed=len(events), pending=pending),
        )

    async def _resync_locked(self) -> tuple[list[OutEvent], int]:
        snapshot = await read_snapshot(self.client, self.mapper, self.projects)
        events = self._mapped(functools.partial(self.mapper.resync, snapshot))
        await self._emit(events)
        return events, len(snapshot.permissions) + len(snapshot.questions)

    async def _task_watcher(self) -> None:
        """Poll each project's CURRENT_TASK.md and COMPLETE marker, and re-read them whenever a turn ends."""
        while True:
            turn_ended = self._turn_ended.waiter()
            for project in self.projects:
                task, marker = await trio.to_thread.run_sync(read_context, project.directory)
                await self._apply(functools.partial(self.mapper.set_current_task, project.name, task))
                await self._report_marker(project.name, marker)
            with trio.move_on_after(_TASK_POLL):
                await turn_ended.wait()

    async def _report_marker(self, project: str, marker: str | None) -> None:
        """Emit ``project.completed`` once when the project's ``.context/COMPLETE`` appears."""
        before = set(self._markers.reported)
        event = self._markers.observe(project, marker)
        if event is not None:
            log.info("project complete: its .context/COMPLETE marker appeared", extra=ctx(project=project))
            await self._apply(lambda: [event])
        if self._markers.reported != before:
            await self.outbox.put_kv(MARKERS_KEY, self._markers.dump())

    async def _apply(self, change: Callable[[], list[OutEvent]]) -> None:
        """Change the mapper and emit the result under the lock (a resync may be running)."""
        async with self._lock:
            await self._emit(self._mapped(change))

    def _mapped(self, change: Callable[[], list[OutEvent]]) -> list[OutEvent]:
        """Run a mapper change; odd input from opencode is logged and skipped, never fatal."""
        try:
            return change()
        except Exception:
            log.exception("could not map opencode data; skipped", extra=ctx(change=repr(change)[:200]))
            return []

    async def _await_state(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Wait until the stream shows what a command did; False after *seconds*."""
        with trio.move_on_after(seconds):
            while not ready():
                await self.applied.waiter().wait()
            return True
        return False

    # ---- commands ----------------------------------------------------------------------

    async def execute(self, command: CommandMsg) -> JSONObject:
        """Carry out a command against opencode.

        Raises:
            CommandFailedError: bad arguments, unknown project/session/request, opencode
                unavailable or refusing.
        """
        try:
            args = parse_args(command.command_type, command.args)
        except ConversionError as exc:
            raise CommandFailedError("; ".join(exc.problems)) from None
        if command.command_type in ENV_COMMANDS:  # the executor gives these to the env checker
            raise CommandFailedError(f"{command.command_type} is not a session command")
        turn = command.command_type in _TURN_COMMANDS
        while turn and self._restart_done is not None:
            # Provisioning restarts the server: start the turn on the new one (the restart
            # is bounded; so is this command, by its deadline).
            await self._restart_done.wait()
        if not self.runner.ready:
            raise CommandFailedError(f"opencode is not available on this node: {self.runner.health()}")
        # No await since the checks: a restart cannot slip in before this is counted.
        key = f"{command.command_type} {command.target}"
        if turn:
            self._starting[key] += 1
        try:
            return await self._dispatch(command, args)
        except OpencodeNotFoundError as exc:
            raise CommandFailedError(f"not found in opencode: {exc}") from None
        except OpencodeError as exc:
            raise CommandFailedError(f"opencode: {exc}") from None
        finally:
            if turn:
                self._starting[key] -= 1
                if self._starting[key] <= 0:
                    del self._starting[key]

    async def _dispatch(self, command: CommandMsg, args: object) -> JSONObject:
        match args:
            case StartArgs(prompt=prompt, model=model, agent=agent):
                return await self._start(command.target, prompt, model, agent)
            case PromptArgs(prompt=prompt):
                return await self._prompt(self._live(command.target), prompt)
            case ResumeArgs(prompt=prompt):
                return await self._prompt(self._live(command.target), prompt or self.config.opencode.continue_prompt)
            case RestartArgs(handover=handover):
                return await self._restart(self._live(command.target), handover, command.deadline)
            case ReplyPermissionArgs(request_id=request_id, reply=reply, message=message):
                return await self._reply_permission(self._live(command.target), request_id, reply, message)
            case AnswerQuestionArgs(request_id=request_id, answers=answers):
                return await self._answer(self._live(command.target), request_id, answers)
            case NoArgs() if command.command_type == "abort_session":
                return await self._abort(self._live(command.target))
            case NoArgs() if command.command_type == "kill_session":
                return await self._kill(self._live(command.target))
        raise CommandFailedError(f"{command.command_type} is not supported by the opencode backend")

    def _project(self, name: str) -> Project:
        for project in self.projects:
            if project.name == name:
                return project
        raise CommandFailedError(f"project {name!r} is not on node {self.mapper.node_id}")

    def _live(self, session_id: str) -> Session:
        state = self.mapper.get(session_id)
        if state is None:
            raise CommandFailedError(f"no session {session_id!r} on node {self.mapper.node_id}")
        if state.status not in ACTIVE_STATUSES:
            raise CommandFailedError(f"session {session_id} has ended ({state.status})")
        return state

    async def _start(self, project_name: str, prompt: str | None, model: str | None, agent: str | None) -> JSONObject:
        project = self._project(project_name)
        try:
            info = await self.client.create_session(project.directory, agent=agent, model=model)
        except ValueError as exc:  # a model without provider
            raise CommandFailedError(f"args.model: {exc}") from None
        await self._apply(lambda: self.mapper.adopt(info))
        session_id = str(info.get("id", ""))
        if not prompt:
            return {"session_id": session_id, "project": project.name}
        failure: OpencodeError | None = None
        before = self.mapper.turns(session_id)
        try:
            await self.client.prompt_async(session_id, project.directory, prompt, model=model, agent=agent)
        except OpencodeError as exc:
            failure = exc
        if failure is not None:
            # Do not leave an unprompted session behind a "failed" start (a retry would
            # add another one).
            with trio.move_on_after(_EFFECT_WAIT, shield=True), contextlib.suppress(OpencodeError):
                await self.client.delete(session_id, project.directory)
            data: JSONObject = {"reason": "first prompt failed"}
            await self._apply(lambda: self.mapper.mark_ended(session_id, "session.ended", data))
            raise failure
        await self._apply(lambda: self.mapper.mark_prompted(session_id, prompt, before))
        return {"session_id": session_id, "project": project.name}

    async def _prompt(self, session: Session, prompt: str) -> JSONObject:
        before = self.mapper.turns(session.id)
        await self.client.prompt_async(session.id, session.directory, prompt)
        await self._apply(lambda: self.mapper.mark_prompted(session.id, prompt, before))
        return {"session_id": session.id, "queued": session.status in ("busy", "retry", "waiting")}

    async def _abort(self, session: Session) -> JSONObject:
        await self.client.abort(session.id, session.directory)
        # Aborting during a retry wait ends the turn without any error event: record it.
        data: JSONObject = {"previous_status": session.status}
        await self._apply(lambda: [OutEvent("session.aborted", session.id, session.project, data)])
        await self._await_state(lambda: not self.mapper.is_busy(session.id), _EFFECT_WAIT)
        return {"session_id": session.id, "aborted": True, "previous_status": session.status}

    async def _kill(self, session: Session) -> JSONObject:
        await self._abort_and_delete(session)
        await self._apply(
            lambda: self.mapper.mark_ended(session.id, "session.killed", {"previous_status": session.status})
        )
        return {"session_id": session.id, "killed": True}

    async def _abort_and_delete(self, session: Session) -> None:
        await self.client.abort(session.id, session.directory)
        with contextlib.suppress(OpencodeNotFoundError):  # already gone: the goal is reached
            await self.client.delete(session.id, session.directory)

    async def _reply_permission(self, session: Session, request_id: str, reply: str, message: str | None) -> JSONObject:
        pending = [p.id for p in session.pending.permissions]
        if request_id not in pending:
            listed = ", ".join(pending) or "none"
            raise CommandFailedError(
                f"no pending permission request {request_id!r} on session {session.id} (pending: {listed})"
            )
        await self.client.reply_permission(request_id, session.directory, reply, message)

        def answered() -> bool:
            state = self.mapper.get(session.id)
            return state is None or all(p.id != request_id for p in state.pending.permissions)

        await self._await_state(answered, _EFFECT_WAIT)
        return {"session_id": session.id, "request_id": request_id, "reply": reply}

    async def _answer(self, session: Session, request_id: str, answers: list[list[str]]) -> JSONObject:
        request = next((q for q in session.pending.questions if q.id == request_id), None)
        if request is None:
            listed = ", ".join(q.id for q in session.pending.questions) or "none"
            raise CommandFailedError(f"no pending question {request_id!r} on session {session.id} (pending: {listed})")
        if len(answers) != len(request.questions):
            raise CommandFailedError(
                f"args.answers: {len(request.questions)} question(s) need one list of labels each, got {len(answers)}"
            )
        await self.client.reply_question(request_id, session.directory, answers)

        def answered() -> bool:
            state = self.mapper.get(session.id)
            return state is None or all(q.id != request_id for q in state.pending.questions)

        await self._await_state(answered, _EFFECT_WAIT)
        return {"session_id": session.id, "request_id": request_id}

    async def _hand_over(self, old: Session, wait: float) -> bool:
        """Ask *old* to write its notes; True once the turn answering it ended (False after *wait* s).

        A turn ending is only the cue to look: the evidence is opencode's, tied to this
        prompt (the session at rest, its newest message a reply to a newer prompt than it
        had before), so no other turn's end (one running before, one a resync settles, a
        replayed one) lets the old session go before it wrote its notes.

        Raises:
            OpencodeError: opencode refused the prompt or a read (nothing was replaced yet).
        """
        before = await self.client.last_message(old.id, old.directory) or {}
        earlier = {value for key in ("id", "parentID") if isinstance(value := before.get(key), str)}

        def at_rest(turns: int) -> bool:
            return self.mapper.turns(old.id) >= turns and not self.mapper.is_busy(old.id)

        before_turns = self.mapper.turns(old.id)  # one more idle, even behind a running turn
        await self.client.prompt_async(old.id, old.directory, HANDOVER_PROMPT)
        await self._apply(lambda: self.mapper.mark_prompted(old.id, HANDOVER_PROMPT, before_turns))
        target = before_turns + 1
        with trio.move_on_after(wait):
            while True:
                await self._await_state(functools.partial(at_rest, target), math.inf)
                if await self._answered(old, earlier):
                    return True
                target = self.mapper.turns(old.id) + 1  # another turn ended: wait for the next
        return False

    async def _answered(self, session: Session, earlier: set[str]) -> bool:
        """True when opencode has *session* at rest and its newest message replies to a
        prompt other than *earlier* (the newest message and its prompt before ours)."""
        if (await self.client.session_status(session.directory)).get(session.id, {}).get("type", "idle") != "idle":
            return False
        last = await self.client.last_message(session.id, session.directory) or {}
        prompt = last.get("parentID")
        return last.get("role") == "assistant" and isinstance(prompt, str) and bool(prompt) and prompt not in earlier

    async def _restart(self, old: Session, handover: bool, deadline: float | None) -> JSONObject:
        """Context handover (DESIGN.md): notes first, bounded; then a fresh session.

        The new session exists before the old one is deleted, so a failure part-way
        never leaves the project without a session.
        """
        outcome = "skipped"
        if handover:
            wait = self.config.opencode.handover_timeout_sec
            if deadline is not None:  # leave time for the steps after the wait
                wait = max(1.0, min(wait, deadline - _RESTART_STEPS))
            done = await self._hand_over(old, wait)
            outcome = "done" if done else "timed_out"
            if not done:
                log.warning(
                    "handover did not finish in time; restarting anyway", extra=ctx(session_id=old.id, waited=wait)
                )
        info = await self.client.create_session(
            old.directory,
            title=f"{old.title} (continued)" if old.title else None,
            model=old.model or None,
            metadata={PREDECESSOR_KEY: old.id},
        )
        new_id = str(info.get("id", ""))
        await self._apply(lambda: self.mapper.adopt(info, predecessor=old.id))
        await self._abort_and_delete(old)
        ended: JSONObject = {"reason": "restarted", "handover": outcome, "successor_id": new_id}
        await self._apply(lambda: self.mapper.mark_ended(old.id, "session.ended", ended))
        prompt = continuation_prompt(old.id)
        before = self.mapper.turns(new_id)
        try:
            await self.client.prompt_async(new_id, old.directory, prompt)
        except OpencodeError as exc:
            raise CommandFailedError(
                f"session {new_id} replaced {old.id}, but its first prompt failed: {exc}"
            ) from None
        await self._apply(lambda: self.mapper.mark_prompted(new_id, prompt, before))
        return {"session_id": new_id, "predecessor_id": old.id, "handover": outcome}


def opencode_factory(
    config: AgentConfig,
    data_dir: Path,
    *,
    rng: random.Random | None = None,
    extra_env: Callable[[], Mapping[str, str]] | None = None,
) -> Callable[[Outbox], OpencodeBackend]:
    """A backend factory for ``run_agent``: drive the opencode server *config* describes.

    *extra_env* gives the manifest's environment for a spawned server (issue #9).
    """

    def factory(outbox: Outbox) -> OpencodeBackend:
        runner = OpencodeRunner(config, data_dir, rng=rng, extra_env=extra_env)
        return OpencodeBackend(config, outbox=outbox, runner=runner, rng=rng)

    return factory
