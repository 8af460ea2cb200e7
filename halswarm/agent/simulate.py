"""A simulated session backend: opencode-like sessions for the demo, tests and load.

Sessions run turns (``busy``), go ``idle``, hit retries, errors and compactions, ask for
permissions and questions (``waiting``), and spend tokens and dollars at Claude-like
prices. Every command works. State is saved in the agent's data dir, so a restarted
agent continues the same sessions (as opencode's own database would let it).

Event volume: ``rate`` events/s in total (0 = as fast as the link drains them, with
the outbox backlog bounded), optionally stopping once ``max_events`` seqs exist.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Final, cast

import attrs
import orjson
import trio

from halswarm.agent.backend import AlwaysHealthy, CommandFailedError, EventSink, OutEvent
from halswarm.agent.milestones import completion_event
from halswarm.commands import (
    AnswerQuestionArgs,
    PromptArgs,
    ReplyPermissionArgs,
    RestartArgs,
    ResumeArgs,
    StartArgs,
    parse_args,
)
from halswarm.convert import ConversionError, converter
from halswarm.models import (
    ACTIVE_STATUSES,
    Pending,
    PermissionRequest,
    Project,
    Question,
    QuestionRequest,
    Session,
    Tokens,
)
from halswarm.timeutil import Clock, format_ts, system_now

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.agent.outbox import Outbox
    from halswarm.jsontypes import JSONObject
    from halswarm.proto.messages import CommandMsg

__all__ = ["SimulatedBackend", "default_projects", "sample_events", "simulated_factory"]

log = logging.getLogger(__name__)

_STATE_KEY: Final = "simulated_sessions"
_TICK: Final = 0.05  # seconds between paced emissions
_CHUNK: Final = 500  # events per emission when unpaced
_BACKLOG: Final = 20_000  # unpaced: stop producing while this many events await an ack
_SAVE_EVERY: Final = 2.0  # seconds between state saves
_FINAL_SAVE_TIMEOUT: Final = 2.0
_PRICE_IN: Final = 3.0 / 1e6  # USD per token, Claude-Sonnet-like
_PRICE_OUT: Final = 15.0 / 1e6
_CONTINUE_PROMPT: Final = "Continue with the next step of your current task."
_MODEL: Final = "anthropic/claude-sonnet-4"
_TOOLS: Final = ("bash", "edit", "read", "grep", "write", "glob")
_FILES: Final = ("src/main.py", "src/parser.py", "tests/test_parser.py", "README.md", "pyproject.toml")


def default_projects(node_id: str, sessions: int) -> list[Project]:
    """Made-up projects for a simulator whose config lists none (one to three)."""
    return [
        Project(f"sim-project-{i + 1}", f"/srv/sim/{node_id}/project-{i + 1}") for i in range(min(3, max(1, sessions)))
    ]


@attrs.define
class _Sim:
    """One simulated session and its turn bookkeeping."""

    state: Session
    steps_left: int = 0  # steps left in the current turn
    rest: int = 0  # steps to stay idle
    waiting: int = 0  # steps before a simulated human answers a pending request


class SimulatedBackend(AlwaysHealthy):
    """Implements :class:`~halswarm.agent.backend.SessionBackend` with fake sessions."""

    def __init__(
        self,
        *,
        node_id: str,
        projects: list[Project],
        sessions: int,
        rate: float,
        outbox: Outbox,
        now: Clock,
        rng: random.Random,
        max_events: int | None = None,
        human_in_loop: bool = True,
    ) -> None:
        self.node_id = node_id
        self.projects = projects or default_projects(node_id, sessions)
        self.initial_sessions = sessions
        self.rate = rate
        self.outbox = outbox
        self.now = now
        self.rng = rng
        self.max_events = max_events
        self.human_in_loop = human_in_loop
        self._sims: dict[str, _Sim] = {}
        self._sink: EventSink | None = None
        self._last_save = 0.0

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore or create sessions, then produce events forever.

        Cancellation: safe at any await; events are emitted whole batches at a time.
        """
        self._sink = sink
        saved = await self.outbox.get_kv(_STATE_KEY)
        if saved is not None:
            for state in converter.structure(orjson.loads(saved), list[Session]):
                self._sims[state.id] = _Sim(state, rest=self.rng.randint(0, 5))
            # Re-announce restored sessions so the supervisor's snapshot is current.
            await sink.emit(
                [OutEvent("session.updated", s.state.id, s.state.project, {}, s.state) for s in self._sims.values()]
            )
        else:
            await sink.emit([self._create(self.projects[i % len(self.projects)]) for i in range(self.initial_sessions)])
        await self._save(force=True)
        log.info("simulating sessions", extra={"ctx": {"sessions": len(self._sims), "rate": self.rate}})
        task_status.started()
        try:
            if self.rate > 0:
                await self._paced()
            else:
                await self._unpaced()
        finally:
            # A graceful stop must not lose up to _SAVE_EVERY of state: the restarted
            # agent re-announces what it loads, and older totals would overwrite newer ones.
            with trio.move_on_after(_FINAL_SAVE_TIMEOUT, shield=True):
                await self._save(force=True)

    async def _paced(self) -> None:
        start = trio.current_time()
        budget = 0.0
        k = 0
        while True:
            k += 1
            await trio.sleep_until(start + k * _TICK)
            budget += self.rate * _TICK
            n = int(budget)
            budget -= n
            if n and not await self._produce(n):
                return

    async def _unpaced(self) -> None:
        while True:
            await self.outbox.wait_pending_below(_BACKLOG)
            if not await self._produce(_CHUNK):
                return

    async def _produce(self, n: int) -> bool:
        """Emit about *n* events; False once ``max_events`` is reached (then idle forever)."""
        if self.max_events is not None:
            n = min(n, self.max_events - self.outbox.last_seq)
            if n <= 0:
                log.info("simulation reached max_events; now only serving commands")
                await self._save(force=True)
                await trio.sleep_forever()
        events = self._generate(n)
        if self.max_events is not None:
            events = events[: self.max_events - self.outbox.last_seq]  # stop at exactly max_events
        assert self._sink is not None
        await self._sink.emit(events)
        await self._save()
        return True

    async def _save(self, *, force: bool = False) -> None:
        now = trio.current_time()
        if force or now - self._last_save >= _SAVE_EVERY:
            self._last_save = now
            states = [s.state for s in self._sims.values()]
            await self.outbox.put_kv(_STATE_KEY, orjson.dumps(converter.unstructure(states)))

    def sessions(self) -> list[Session]:
        """The current state of every simulated session, finished ones included."""
        return [sim.state for sim in self._sims.values()]

    async def complete_project(self, project: str, detail: str | None = None) -> None:
        """Report *project* complete (``project.completed``), as opencode's agent does when
        the project's ``.context/COMPLETE`` marker appears. For tests and demos.

        Raises:
            ValueError: this node does not host *project*.
        """
        if all(p.name != project for p in self.projects):
            raise ValueError(f"project {project!r} is not on node {self.node_id}")
        assert self._sink is not None, "the backend is not running"
        await self._sink.emit([completion_event(project, detail)])

    # ---- generation --------------------------------------------------------------------

    def _ts(self) -> str:
        return format_ts(self.now())

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.rng.getrandbits(96):024x}"

    def _create(self, project: Project, *, predecessor: str | None = None, title: str = "") -> OutEvent:
        now = self._ts()
        state = Session(
            id=self._new_id("ses"),
            node_id=self.node_id,
            project=project.name,
            directory=project.directory,
            status="idle",
            title=title or f"Work on {project.name}",
            model=_MODEL,
            predecessor_id=predecessor,
            current_task=f"Improve {self.rng.choice(_FILES)}",
            started_at=now,
            last_activity=now,
        )
        self._sims[state.id] = _Sim(state, rest=self.rng.randint(0, 3))
        return OutEvent("session.created", state.id, project.name, {"title": state.title}, state)

    def _generate(self, n: int) -> list[OutEvent]:
        """About *n* events: the last step may add a couple more (a turn's end is three
        events), which are kept, since their state changes are already applied."""
        out: list[OutEvent] = []
        live = [s for s in self._sims.values() if s.state.status in ACTIVE_STATUSES]
        if not live:
            return out
        guard = n * 50  # idle sessions may produce nothing on a step; bound the loop anyway
        while len(out) < n and guard > 0:
            guard -= 1
            self._step(self.rng.choice(live), out)
        return out

    def _set(self, sim: _Sim, **changes: object) -> Session:
        sim.state = attrs.evolve(sim.state, last_activity=self._ts(), **changes)  # type: ignore[arg-type]
        return sim.state

    def _status_event(self, sim: _Sim, status: str, **changes: object) -> OutEvent:
        state = self._set(sim, status=status, **changes)
        return OutEvent("session.status", state.id, state.project, {"status": {"type": status}}, state)

    def _step(self, sim: _Sim, out: list[OutEvent]) -> None:
        s = sim.state
        if s.status == "waiting":
            sim.waiting -= 1
            if sim.waiting <= 0:
                self._human_answers(sim, out)
            return
        if s.status in ("idle", "error", "starting"):
            if sim.rest > 0:
                sim.rest -= 1
                return
            self._begin_turn(sim, out)
            return
        if s.status == "retry":
            out.append(self._status_event(sim, "busy"))
            return
        self._busy_step(sim, out)

    def _begin_turn(self, sim: _Sim, out: list[OutEvent]) -> None:
        sim.steps_left = self.rng.randint(4, 16)
        out.append(self._status_event(sim, "busy"))

    def _busy_step(self, sim: _Sim, out: list[OutEvent]) -> None:
        s = sim.state
        roll = self.rng.random()
        sid, project = s.id, s.project
        if roll < 0.50:
            text = self.rng.choice(("Reading the parser", "Running the tests", "Refactoring", "Fixing a bug"))
            out.append(OutEvent("message.part.updated", sid, project, {"part": {"type": "text", "text": text}}))
        elif roll < 0.62:
            tool = self.rng.choice(_TOOLS)
            out.append(
                OutEvent(
                    "message.part.updated",
                    sid,
                    project,
                    {"part": {"type": "tool", "tool": tool, "state": {"status": "completed", "title": f"{tool} ok"}}},
                )
            )
        elif roll < 0.70:
            out.append(OutEvent("file.edited", sid, project, {"file": f"{s.directory}/{self.rng.choice(_FILES)}"}))
        elif roll < 0.74:
            out.append(
                OutEvent(
                    "todo.updated", sid, project, {"todos": [{"content": s.current_task, "status": "in_progress"}]}
                )
            )
        elif roll < 0.86:
            out.append(self._message_completed(sim))
        elif roll < 0.89:
            out.append(self._status_event(sim, "retry"))
        elif roll < 0.905:
            self._error(sim, out)
            return
        elif roll < 0.92:
            state = self._set(sim, compaction_count=s.compaction_count + 1)
            out.append(OutEvent("session.compacted", sid, project, {"auto": True}, state))
        elif roll < 0.935 and self.human_in_loop:
            self._ask_permission(sim, out)
            return
        elif roll < 0.94 and self.human_in_loop:
            self._ask_question(sim, out)
            return
        sim.steps_left -= 1
        if sim.steps_left <= 0:
            self._end_turn(sim, out)

    def _message_completed(self, sim: _Sim) -> OutEvent:
        s = sim.state
        tin, tout = self.rng.randint(800, 6000), self.rng.randint(50, 900)
        cache = self.rng.randint(0, 4000)
        cost = round(tin * _PRICE_IN + tout * _PRICE_OUT, 6)
        t = s.tokens
        state = self._set(
            sim,
            tokens=Tokens(t.input + tin, t.output + tout, t.reasoning, t.cache_read + cache, t.cache_write),
            cost_usd=round(s.cost_usd + cost, 6),
        )
        data: JSONObject = {
            "role": "assistant",
            "model": _MODEL,
            "tokens": {"input": tin, "output": tout, "cache_read": cache},
            "cost": cost,
            "finish": "stop",
        }
        return OutEvent("message.completed", s.id, s.project, data, state)

    def _end_turn(self, sim: _Sim, out: list[OutEvent]) -> None:
        out.append(self._message_completed(sim))
        out.append(self._status_event(sim, "idle", consecutive_errors=0))
        s = sim.state
        out.append(OutEvent("session.idle", s.id, s.project, {}))
        sim.rest = self.rng.randint(2, 12)

    def _error(self, sim: _Sim, out: list[OutEvent]) -> None:
        s = sim.state
        data: JSONObject = {
            "error": {"name": "APIError", "data": {"message": "overloaded", "statusCode": 529, "isRetryable": True}}
        }
        state = self._set(sim, status="error", consecutive_errors=s.consecutive_errors + 1)
        out.append(OutEvent("session.error", s.id, s.project, data, state))
        sim.steps_left = 0
        sim.rest = self.rng.randint(3, 10)

    def _ask_permission(self, sim: _Sim, out: list[OutEvent]) -> None:
        s = sim.state
        command = self.rng.choice(("npm test", "pytest -q", "git push", "rm -rf build"))
        request = PermissionRequest(self._new_id("per"), "bash", [command], title=command, asked_at=self._ts())
        pending = Pending([*s.pending.permissions, request], s.pending.questions)
        state = self._set(sim, status="waiting", pending=pending)
        out.append(
            OutEvent(
                "permission.asked",
                s.id,
                s.project,
                {"id": request.id, "permission": "bash", "patterns": [command]},
                state,
            )
        )
        sim.waiting = self.rng.randint(40, 200)

    def _ask_question(self, sim: _Sim, out: list[OutEvent]) -> None:
        s = sim.state
        question = Question("Which approach should I take?", "Approach", ["minimal", "thorough"])
        request = QuestionRequest(self._new_id("que"), [question], asked_at=self._ts())
        pending = Pending(s.pending.permissions, [*s.pending.questions, request])
        state = self._set(sim, status="waiting", pending=pending)
        out.append(OutEvent("question.asked", s.id, s.project, {"id": request.id, "questions": 1}, state))
        sim.waiting = self.rng.randint(40, 200)

    def _human_answers(self, sim: _Sim, out: list[OutEvent]) -> None:
        """Someone answered in the TUI meanwhile: the fleet must not stall forever."""
        s = sim.state
        out.extend(self._permission_replied(sim, p.id, "once", None) for p in s.pending.permissions)
        for q in s.pending.questions:
            answers = [[q.questions[0].options[0]]] if q.questions and q.questions[0].options else []
            out.append(self._question_replied(sim, q.id, answers))

    def _permission_replied(self, sim: _Sim, request_id: str, reply: str, message: str | None) -> OutEvent:
        s = sim.state
        pending = Pending([p for p in s.pending.permissions if p.id != request_id], s.pending.questions)
        ends_turn = reply == "reject" and not message  # opencode: a bare reject ends the turn
        status = "idle" if ends_turn else ("waiting" if not pending.is_empty() else "busy")
        state = self._set(sim, pending=pending, status=status)
        if ends_turn:
            sim.steps_left, sim.rest = 0, self.rng.randint(2, 8)
        data: JSONObject = {"requestID": request_id, "reply": reply}
        if message:
            data["message"] = message
        return OutEvent("permission.replied", s.id, s.project, data, state)

    def _question_replied(self, sim: _Sim, request_id: str, answers: list[list[str]]) -> OutEvent:
        s = sim.state
        pending = Pending(s.pending.permissions, [q for q in s.pending.questions if q.id != request_id])
        state = self._set(sim, pending=pending, status="waiting" if not pending.is_empty() else "busy")
        data: JSONObject = {"requestID": request_id, "answers": [list(a) for a in answers]}
        return OutEvent("question.replied", s.id, s.project, data, state)

    # ---- commands ----------------------------------------------------------------------

    async def execute(self, command: CommandMsg) -> JSONObject:
        """Carry out a command on the simulated sessions.

        Raises:
            CommandFailedError: unknown project or session, ended session, no such request.
        """
        try:
            args = parse_args(command.command_type, command.args)
        except ConversionError as exc:
            raise CommandFailedError("; ".join(exc.problems)) from None
        out: list[OutEvent] = []
        result = self._apply(command, args, out)
        assert self._sink is not None
        await self._sink.emit(out)
        await self._save(force=True)
        return result

    def _live(self, session_id: str) -> _Sim:
        sim = self._sims.get(session_id)
        if sim is None:
            raise CommandFailedError(f"no session {session_id!r} on node {self.node_id}")
        if sim.state.status not in ACTIVE_STATUSES:
            raise CommandFailedError(f"session {session_id} has ended ({sim.state.status})")
        return sim

    def _prompt(self, sim: _Sim, text: str, out: list[OutEvent]) -> None:
        s = sim.state
        out.append(OutEvent("message.updated", s.id, s.project, {"role": "user", "text": text[:500]}))
        sim.rest = 0
        self._begin_turn(sim, out)

    def _apply(self, command: CommandMsg, args: object, out: list[OutEvent]) -> JSONObject:
        match args:
            case StartArgs(prompt=prompt):
                project = next((p for p in self.projects if p.name == command.target), None)
                if project is None:
                    raise CommandFailedError(f"project {command.target!r} is not on node {self.node_id}")
                created = self._create(project)
                out.append(created)
                assert created.session_id is not None
                sim = self._sims[created.session_id]
                self._prompt(sim, prompt or "Read .context/PROGRESS.md and continue.", out)
                return {"session_id": sim.state.id}
            case PromptArgs(prompt=prompt):
                sim = self._live(command.target)
                self._prompt(sim, prompt, out)
                return {"session_id": sim.state.id}
            case ResumeArgs(prompt=prompt):
                sim = self._live(command.target)
                self._prompt(sim, prompt or _CONTINUE_PROMPT, out)
                return {"session_id": sim.state.id}
            case RestartArgs(handover=handover):
                return self._restart(self._live(command.target), handover, out)
            case ReplyPermissionArgs(request_id=request_id, reply=reply, message=message):
                sim = self._live(command.target)
                if not any(p.id == request_id for p in sim.state.pending.permissions):
                    raise CommandFailedError(f"no pending permission request {request_id!r} on session {sim.state.id}")
                out.append(self._permission_replied(sim, request_id, reply, message))
                return {"session_id": sim.state.id, "request_id": request_id, "reply": reply}
            case AnswerQuestionArgs(request_id=request_id, answers=answers):
                sim = self._live(command.target)
                if not any(q.id == request_id for q in sim.state.pending.questions):
                    raise CommandFailedError(f"no pending question {request_id!r} on session {sim.state.id}")
                out.append(self._question_replied(sim, request_id, answers))
                return {"session_id": sim.state.id, "request_id": request_id}
        if command.command_type == "abort_session":
            sim = self._live(command.target)
            previous = sim.state.status
            state = self._set(sim, status="idle", pending=Pending())
            sim.steps_left, sim.rest = 0, self.rng.randint(5, 20)
            out.append(OutEvent("session.aborted", state.id, state.project, {"previous_status": previous}, state))
            return {"session_id": state.id, "aborted": True, "previous_status": previous}
        if command.command_type == "kill_session":
            sim = self._live(command.target)
            state = self._set(sim, status="completed", pending=Pending())
            out.append(OutEvent("session.killed", state.id, state.project, {}, state))
            return {"session_id": state.id, "killed": True}
        raise CommandFailedError(f"{command.command_type} is not supported by the simulated backend")

    def _restart(self, old: _Sim, handover: bool, out: list[OutEvent]) -> JSONObject:
        s = old.state
        if handover:
            out.append(
                OutEvent(
                    "session.handover", s.id, s.project, {"files": [".context/PROGRESS.md", ".context/CURRENT_TASK.md"]}
                )
            )
        state = self._set(old, status="completed", pending=Pending())
        out.append(OutEvent("session.ended", state.id, state.project, {"reason": "restarted"}, state))
        project = next((p for p in self.projects if p.name == s.project), Project(s.project, s.directory))
        created = self._create(project, predecessor=s.id, title=f"{s.title} (continued)")
        out.append(created)
        assert created.session_id is not None
        new = self._sims[created.session_id]
        self._prompt(new, "Read .context/PROGRESS.md and .context/CURRENT_TASK.md, then continue from there.", out)
        return {"session_id": new.state.id, "predecessor_id": s.id, "handover": handover}


def simulated_factory(
    *,
    node_id: str,
    projects: list[Project],
    sessions: int,
    rate: float,
    max_events: int | None = None,
    seed: int | None = None,
    human_in_loop: bool = True,
) -> Callable[[Outbox], SimulatedBackend]:
    """A backend factory for ``run_agent``: simulated sessions on *projects*.

    *seed* makes the simulation repeatable (tests); None draws a random one.
    """

    def factory(outbox: Outbox) -> SimulatedBackend:
        return SimulatedBackend(
            node_id=node_id,
            projects=projects,
            sessions=sessions,
            rate=rate,
            outbox=outbox,
            now=system_now,
            rng=random.Random(seed),
            max_events=max_events,
            human_in_loop=human_in_loop,
        )

    return factory


def sample_events(n: int, *, node_id: str = "sample", sessions: int = 20, seed: int = 0) -> list[OutEvent]:
    """*n* events shaped as the unpaced simulator makes them, without an outbox.

    For benchmarks that measure the machine's limits on the same event shapes the
    agents send (``bench/ingest.py``). The first *sessions* events create the sessions.
    """
    # Generation never touches the outbox (only run() and its saves do).
    backend = SimulatedBackend(
        node_id=node_id,
        projects=[],
        sessions=sessions,
        rate=0,
        outbox=cast("Outbox", None),
        now=system_now,
        rng=random.Random(seed),
    )
    events = [backend._create(backend.projects[i % len(backend.projects)]) for i in range(sessions)]
    while len(events) < n:
        events += backend._generate(min(_CHUNK, n - len(events)))
    return events[:n]
