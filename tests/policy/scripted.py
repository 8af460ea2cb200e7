"""A simulated session backend the test drives, and a real agent and supervisor around it.

The agent (``run_agent``: outbox, link, executor) and the supervisor (``run_supervisor``)
are the real ones, on loopback sockets; only the sessions are simulated. Unlike
:class:`halswarm.agent.simulate.SimulatedBackend`, nothing here happens at random:
sessions change when the test says so (:meth:`ScriptedBackend.update`) or when a
command arrives (a resume starts a turn; with ``quick_turns`` the turn also ends at
once, so the supervisor sees the session idle both before and after it; a start creates
a busy session). :meth:`ScriptedBackend.complete_project` reports a project complete, as
an agent does when the project's ``.context/COMPLETE`` marker appears.
"""

from __future__ import annotations

import datetime as dt
import random
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.agent.app import AgentHandle, run_agent
from halswarm.agent.backend import AlwaysHealthy, CommandFailedError, EventSink, OutEvent
from halswarm.agent.milestones import completion_event
from halswarm.models import ACTIVE_STATUSES, Project, Session
from halswarm.testing import agent_config, open_supervisor, wait_until
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence
    from pathlib import Path

    from halswarm.agent.outbox import Outbox
    from halswarm.config import SupervisorConfig
    from halswarm.jsontypes import JSONObject
    from halswarm.models import SessionStatus
    from halswarm.proto.messages import CommandMsg
    from halswarm.supervisor.app import SupervisorHandle

__all__ = ["PROJECTS", "ManualClock", "ScriptedBackend", "fleet_ready", "open_agent_with", "open_fleet", "policy_ticks"]

#: The simulated fleet's projects (one node hosts both).
PROJECTS: Final = (Project("alpha", "/srv/alpha"), Project("beta", "/srv/beta"))
_MODEL: Final = "anthropic/claude-sonnet-4"
_STOP_TIMEOUT: Final = 15.0


@attrs.define
class ManualClock:
    """The wall clock of the supervisor and the agent: it moves only when the test moves it."""

    current: dt.datetime = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)


class ScriptedBackend(AlwaysHealthy):
    """Sessions that change only when told to (or commanded)."""

    def __init__(
        self, now: ManualClock, sessions: list[tuple[str, str, SessionStatus]], *, quick_turns: bool = False
    ) -> None:
        self.now = now
        self.quick_turns = quick_turns
        self.states = {
            sid: Session(sid, "node-1", project, directory=f"/srv/{project}", status=status, model=_MODEL)
            for sid, project, status in sessions
        }
        #: (command type, target) of every command carried out, in order.
        self.executed: list[tuple[str, str]] = []
        self._sink: EventSink | None = None

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce the sessions, then wait for commands."""
        self._sink = sink
        if not sink.snapshots():  # a restarted agent would re-announce from its snapshot
            await sink.emit([self._event("session.created", sid) for sid in self.states])
        task_status.started()
        await trio.sleep_forever()

    def _set(self, sid: str, **changes: object) -> None:
        state = attrs.evolve(self.states[sid], last_activity=format_ts(self.now()), **changes)  # type: ignore[arg-type]
        self.states[sid] = state

    def _event(self, event_type: str, sid: str, data: JSONObject | None = None) -> OutEvent:
        state = self.states[sid]
        return OutEvent(event_type, sid, state.project, data or {}, state)

    async def update(self, sid: str, **changes: object) -> None:
        """The session changes (status, compaction_count, cost_usd...): one event with its new state."""
        assert self._sink is not None, "the agent is not running"
        self._set(sid, **changes)
        await self._sink.emit([self._event("session.updated", sid)])

    async def complete_project(self, project: str, detail: str | None = None) -> None:
        """Report *project* complete (``project.completed``), as the marker file would."""
        assert self._sink is not None, "the agent is not running"
        await self._sink.emit([completion_event(project, detail)])

    async def _start(self, command: CommandMsg) -> JSONObject:
        project = command.target
        sid = f"{project}-{sum(1 for s in self.states.values() if s.project == project) + 1}"
        self.executed.append((command.command_type, project))
        self.states[sid] = Session(sid, "node-1", project, directory=f"/srv/{project}", status="busy", model=_MODEL)
        self._set(sid)
        assert self._sink is not None
        await self._sink.emit([self._event("session.created", sid)])
        return {"session_id": sid}

    async def execute(self, command: CommandMsg) -> JSONObject:
        """Carry out a command on the scripted sessions."""
        if command.command_type == "start_session":
            return await self._start(command)
        sid = command.target
        if sid not in self.states or self.states[sid].status not in ACTIVE_STATUSES:
            raise CommandFailedError(f"no live session {sid!r}")
        self.executed.append((command.command_type, sid))
        out: list[OutEvent] = []
        result: JSONObject = {"session_id": sid}
        match command.command_type:
            case "resume_session" | "prompt_session":
                self._set(sid, status="busy")
                out.append(self._event("session.status", sid, {"status": {"type": "busy"}}))
                if self.quick_turns:
                    self._set(sid, status="idle")
                    out.append(self._event("session.status", sid, {"status": {"type": "idle"}}))
            case "abort_session":
                self._set(sid, status="idle")
                out.append(self._event("session.aborted", sid))
            case "kill_session":
                self._set(sid, status="completed")
                out.append(self._event("session.killed", sid))
            case "restart_session":
                old = self.states[sid]
                new = f"{sid}-next"
                self._set(sid, status="completed")
                out.append(self._event("session.ended", sid, {"reason": "restarted"}))
                self.states[new] = attrs.evolve(old, id=new, status="busy", compaction_count=0, predecessor_id=sid)
                self._set(new)
                out.append(self._event("session.created", new))
                result = {"session_id": new, "predecessor_id": sid, "handover": bool(command.args.get("handover"))}
            case other:
                raise CommandFailedError(f"{other} is not scripted")
        assert self._sink is not None
        await self._sink.emit(out)
        return result


@asynccontextmanager
async def open_agent_with(
    ws_port: int,
    data_dir: Path,
    backend: ScriptedBackend,
    clock: ManualClock,
    *,
    projects: Sequence[Project] = PROJECTS,
) -> AsyncGenerator[AgentHandle]:
    """A real agent (node-1, hosting *projects*) serving *backend* on the same wall clock; stopped on exit.

    It connects (and reconnects, with backoff) to a supervisor on 127.0.0.1:*ws_port*.
    """
    config = agent_config(ws_port, data_dir, node_id="node-1", projects=list(projects))

    def factory(_outbox: Outbox) -> ScriptedBackend:
        return backend

    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        run = partial(
            run_agent, config, factory, shutdown=shutdown, projects=list(projects), now=clock, rng=random.Random(0)
        )
        agent: AgentHandle = await nursery.start(run)
        try:
            yield agent
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _STOP_TIMEOUT


async def fleet_ready(sup: SupervisorHandle, backend: ScriptedBackend) -> None:
    """Wait until the agent is online and every scripted session is tracked."""
    await wait_until(lambda: sup.registry.online_count() == 1, what="the agent online")
    await wait_until(lambda: all(sup.tracker.get(s) is not None for s in backend.states), what="sessions tracked")


@asynccontextmanager
async def open_fleet(
    config: SupervisorConfig, tmp_path: Path, backend: ScriptedBackend, clock: ManualClock
) -> AsyncGenerator[SupervisorHandle]:
    """A supervisor and one agent serving *backend*, every session tracked."""
    async with (
        open_supervisor(config, now=clock) as sup,
        open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock),
    ):
        await fleet_ready(sup, backend)
        yield sup


async def policy_ticks(handle: SupervisorHandle, n: int = 2) -> None:
    """Wait until *n* more policy ticks have completed.

    Two, after the wall clock moved: the tick running at that moment may have read the
    clock before it moved.
    """
    target = handle.policies.ticks + n
    await wait_until(lambda: handle.policies.ticks >= target, what=f"{n} policy ticks")
