"""The simulated session backend, driven directly with a real outbox and event sink.

Every command type (start, prompt, resume, restart, abort, kill, reply_permission,
answer_question) and its failures with clear messages; sessions and their token/cost
totals surviving a backend restart on the same outbox (also a graceful stop between
periodic saves); ``max_events`` stopping production at exactly that seq; a turn's end
emitted whole even at one event per tick.
"""

from __future__ import annotations

import itertools
import logging
import random
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs
import orjson
import pytest
import trio

from halswarm.agent.backend import CommandFailedError, EventSink
from halswarm.agent.outbox import Outbox, open_outbox
from halswarm.agent.simulate import SimulatedBackend
from halswarm.convert import converter
from halswarm.jsontypes import is_json_object
from halswarm.models import Pending, PermissionRequest, Project, Question, QuestionRequest, Session
from halswarm.proto.messages import CommandMsg
from halswarm.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from halswarm.jsontypes import JSONObject
    from halswarm.models import CommandType

NODE: Final = "node-s"
PROJECTS: Final = (Project("proj-a", "/srv/a"), Project("proj-b", "/srv/b"))
NOW: Final = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STATE_KEY: Final = "simulated_sessions"  # where the simulator keeps its sessions in the outbox kv
_numbers = itertools.count(1)


def fixed_now() -> datetime:
    return NOW


def command(command_type: CommandType, target: str, args: JSONObject | None = None) -> CommandMsg:
    n = next(_numbers)
    return CommandMsg(
        command_id=f"cmd-{n}", idempotency_key=f"key-{n}", command_type=command_type, target=target, args=args or {}
    )


@attrs.define
class Sim:
    """A running simulator with its outbox and sink."""

    outbox: Outbox
    sink: EventSink
    backend: SimulatedBackend

    def state(self, session_id: str) -> Session:
        """The session's current state in the simulator."""
        states = {s.id: s for s in self.backend.sessions()}
        return states[session_id]

    def sessions(self) -> list[Session]:
        return sorted(self.backend.sessions(), key=lambda s: (s.project, s.started_at or "", s.id))

    async def events(self, after: int = 0) -> list[JSONObject]:
        """Events committed to the outbox after seq *after*, decoded."""
        rows = await self.outbox.read_after(after, limit=10_000, max_bytes=1 << 30)
        out: list[JSONObject] = []
        for seq, body in rows:
            value = orjson.loads(body)
            assert is_json_object(value)
            value["seq"] = seq
            out.append(value)
        return out

    async def types_after(self, seq: int) -> list[str]:
        return [str(e["type"]) for e in await self.events(seq)]

    async def do(self, command_type: CommandType, target: str, args: JSONObject | None = None) -> JSONObject:
        return await self.backend.execute(command(command_type, target, args))


@asynccontextmanager
async def open_sim(
    data_dir: Path,
    *,
    sessions: int = 2,
    rate: float = 0.001,
    max_events: int | None = None,
    saved: list[Session] | None = None,
) -> AsyncGenerator[Sim, None]:
    """A simulator on *data_dir*. The default rate (one event per 1000 s) means nothing
    happens unless a command says so; *saved* seeds its stored sessions."""
    async with open_outbox(data_dir) as outbox, trio.open_nursery() as nursery:
        if saved is not None:
            await outbox.put_kv(STATE_KEY, orjson.dumps(converter.unstructure(saved)))
        sink = EventSink(outbox, now=fixed_now)
        backend = SimulatedBackend(
            node_id=NODE,
            projects=list(PROJECTS),
            sessions=sessions,
            rate=rate,
            outbox=outbox,
            now=fixed_now,
            rng=random.Random(7),
            max_events=max_events,
        )
        await nursery.start(backend.run, sink)
        try:
            yield Sim(outbox, sink, backend)
        finally:
            nursery.cancel_scope.cancel()


def waiting_session(*, permissions: list[str], questions: list[str], session_id: str = "ses-w") -> Session:
    """A stored session that waits for a human (constructed state, as a previous run saved it)."""
    return Session(
        id=session_id,
        node_id=NODE,
        project="proj-a",
        directory="/srv/a",
        status="waiting",
        title="Waiting",
        pending=Pending(
            [PermissionRequest(p, "bash", ["npm test"], title="npm test") for p in permissions],
            [QuestionRequest(q, [Question("Which approach?", "Approach", ["minimal", "thorough"])]) for q in questions],
        ),
    )


async def test_a_new_backend_creates_its_sessions_idle(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path, sessions=3) as sim:
            events = await sim.events()
    assert [e["type"] for e in events] == ["session.created"] * 3
    assert [e["seq"] for e in events] == [1, 2, 3]
    sessions = sim.sessions()
    assert [(s.project, s.directory, s.status, s.node_id) for s in sessions] == [
        ("proj-a", "/srv/a", "idle", NODE),
        ("proj-a", "/srv/a", "idle", NODE),
        ("proj-b", "/srv/b", "idle", NODE),
    ]


async def test_start_session_creates_a_busy_session_in_the_project(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path) as sim:
            before = {s.id for s in sim.sessions()}
            result = await sim.do("start_session", "proj-b", {"prompt": "Fix the parser"})
            new_id = result["session_id"]
            assert isinstance(new_id, str)
            assert new_id not in before
            state = sim.state(new_id)
            assert (state.project, state.directory, state.status) == ("proj-b", "/srv/b", "busy")
            events = await sim.events(2)
            assert [e["type"] for e in events] == ["session.created", "message.updated", "session.status"]
            assert {e["session_id"] for e in events} == {new_id}
            assert events[1]["data"] == {"role": "user", "text": "Fix the parser"}
            with pytest.raises(CommandFailedError, match=r"project 'proj-z' is not on node node-s"):
                await sim.do("start_session", "proj-z")
            assert len(sim.sessions()) == 3  # the failed start created nothing


async def test_prompt_and_resume_make_a_session_busy(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path) as sim:
            first, second = (s.id for s in sim.sessions())
            assert await sim.do("prompt_session", first, {"prompt": "Add tests"}) == {"session_id": first}
            assert sim.state(first).status == "busy"
            mark = sim.outbox.last_seq
            assert await sim.do("resume_session", second) == {"session_id": second}
            assert sim.state(second).status == "busy"
            resumed = await sim.events(mark)
    assert [e["type"] for e in resumed] == ["message.updated", "session.status"]
    assert resumed[0]["data"] == {"role": "user", "text": "Continue with the next step of your current task."}


async def test_abort_makes_a_session_idle_and_clears_pending_requests(tmp_path: Path) -> None:
    saved = [waiting_session(permissions=["per-1"], questions=["que-1"])]
    with trio.fail_after(10):
        async with open_sim(tmp_path, saved=saved) as sim:
            result = await sim.do("abort_session", "ses-w")
            state = sim.state("ses-w")
            types = await sim.types_after(1)
    assert result == {"session_id": "ses-w", "aborted": True, "previous_status": "waiting"}
    assert state.status == "idle"
    assert state.pending == Pending()
    assert types == ["session.aborted"]


async def test_kill_completes_a_session_and_later_commands_fail_clearly(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path) as sim:
            target = sim.sessions()[0].id
            assert await sim.do("kill_session", target) == {"session_id": target, "killed": True}
            assert sim.state(target).status == "completed"
            for command_type, args in (
                ("prompt_session", {"prompt": "hello?"}),
                ("resume_session", {}),
                ("abort_session", {}),
                ("kill_session", {}),
                ("restart_session", {}),
            ):
                with pytest.raises(CommandFailedError, match=rf"^session {target} has ended \(completed\)$"):
                    await sim.do(command_type, target, args)  # type: ignore[arg-type]
            assert sim.state(target).status == "completed"
            assert await sim.types_after(2) == ["session.killed"]


@pytest.mark.parametrize("handover", [True, False])
async def test_restart_completes_the_old_session_and_starts_a_successor(tmp_path: Path, handover: bool) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path) as sim:
            old = sim.sessions()[1]
            result = await sim.do("restart_session", old.id, {"handover": handover})
            new_id = result["session_id"]
            assert isinstance(new_id, str)
            assert result == {"session_id": new_id, "predecessor_id": old.id, "handover": handover}
            new = sim.state(new_id)
            types = await sim.types_after(2)
    assert sim.state(old.id).status == "completed"
    assert (new.predecessor_id, new.project, new.directory, new.status) == (old.id, old.project, old.directory, "busy")
    assert new.title == f"{old.title} (continued)"
    tail = ["session.ended", "session.created", "message.updated", "session.status"]
    assert types == (["session.handover", *tail] if handover else tail)


async def test_reply_permission_needs_a_pending_request(tmp_path: Path) -> None:
    saved = [waiting_session(permissions=["per-1", "per-2"], questions=[])]
    with trio.fail_after(10):
        async with open_sim(tmp_path, saved=saved) as sim:
            with pytest.raises(CommandFailedError, match=r"no pending permission request 'per-9' on session ses-w"):
                await sim.do("reply_permission", "ses-w", {"request_id": "per-9", "reply": "once"})
            one = await sim.do("reply_permission", "ses-w", {"request_id": "per-1", "reply": "always"})
            assert one == {"session_id": "ses-w", "request_id": "per-1", "reply": "always"}
            # per-2 still waits: the session stays waiting.
            assert sim.state("ses-w").status == "waiting"
            assert [p.id for p in sim.state("ses-w").pending.permissions] == ["per-2"]
            await sim.do("reply_permission", "ses-w", {"request_id": "per-2", "reply": "once"})
            assert sim.state("ses-w").status == "busy"
            assert sim.state("ses-w").pending.is_empty()
            # A request cannot be answered twice.
            with pytest.raises(CommandFailedError, match=r"no pending permission request 'per-1'"):
                await sim.do("reply_permission", "ses-w", {"request_id": "per-1", "reply": "once"})
            events = await sim.events(1)
    assert [(e["type"], e["data"]) for e in events] == [
        ("permission.replied", {"requestID": "per-1", "reply": "always"}),
        ("permission.replied", {"requestID": "per-2", "reply": "once"}),
    ]


async def test_a_bare_reject_ends_the_turn(tmp_path: Path) -> None:
    saved = [
        waiting_session(permissions=["per-1"], questions=[], session_id="ses-bare"),
        waiting_session(permissions=["per-2"], questions=[], session_id="ses-msg"),
    ]
    with trio.fail_after(10):
        async with open_sim(tmp_path, saved=saved) as sim:
            await sim.do("reply_permission", "ses-bare", {"request_id": "per-1", "reply": "reject"})
            await sim.do("reply_permission", "ses-msg", {"request_id": "per-2", "reply": "reject", "message": "no"})
            assert sim.state("ses-bare").status == "idle"
            assert sim.state("ses-msg").status == "busy"  # a reject with feedback continues the turn


async def test_answer_question_needs_a_pending_question(tmp_path: Path) -> None:
    saved = [waiting_session(permissions=["per-1"], questions=["que-1"])]
    with trio.fail_after(10):
        async with open_sim(tmp_path, saved=saved) as sim:
            with pytest.raises(CommandFailedError, match=r"no pending question 'que-2' on session ses-w"):
                await sim.do("answer_question", "ses-w", {"request_id": "que-2", "answers": [["minimal"]]})
            answered = await sim.do("answer_question", "ses-w", {"request_id": "que-1", "answers": [["thorough"]]})
            assert answered == {"session_id": "ses-w", "request_id": "que-1"}
            # The permission still waits.
            assert sim.state("ses-w").status == "waiting"
            assert sim.state("ses-w").pending.questions == []
            # A question id is not a permission id, and vice versa.
            with pytest.raises(CommandFailedError, match=r"no pending permission request 'que-1'"):
                await sim.do("reply_permission", "ses-w", {"request_id": "que-1", "reply": "once"})
            events = await sim.events(1)
    assert [(e["type"], e["data"]) for e in events] == [
        ("question.replied", {"requestID": "que-1", "answers": [["thorough"]]})
    ]


async def test_a_permission_the_simulation_asked_for_can_be_answered(tmp_path: Path) -> None:
    # Step the simulator until it first asks for a permission, then replay the same seed
    # up to exactly that event: the request is pending and the command answers it.
    with trio.fail_after(10):
        async with open_sim(tmp_path / "long", sessions=3, rate=0, max_events=1000) as sim:
            await wait_until(lambda: sim.outbox.last_seq == 1000, what="1000 events")
            asked = next((e for e in await sim.events() if e["type"] == "permission.asked"), None)
        assert asked is not None, "the simulation asked for no permission in 1000 events"
        seq, session_id, data = asked["seq"], asked["session_id"], asked["data"]
        assert isinstance(seq, int)
        assert isinstance(session_id, str)
        assert is_json_object(data)
        request = data["id"]
        assert isinstance(request, str)
        async with open_sim(tmp_path / "replay", sessions=3, rate=0, max_events=seq) as sim:
            await wait_until(lambda: sim.outbox.last_seq == seq, what=f"{seq} events")
            waiting = sim.state(session_id)
            assert waiting.status == "waiting"
            assert [p.id for p in waiting.pending.permissions] == [request]
            result = await sim.do("reply_permission", session_id, {"request_id": request, "reply": "once"})
            answered = sim.state(session_id)
    assert result == {"session_id": session_id, "request_id": request, "reply": "once"}
    assert answered.pending.permissions == []
    assert answered.status == ("busy" if answered.pending.is_empty() else "waiting")


@pytest.mark.parametrize(
    ("command_type", "args", "message"),
    [
        ("prompt_session", {"prompt": "hi"}, "no session 'ses-nope' on node node-s"),
        ("resume_session", {}, "no session 'ses-nope' on node node-s"),
        ("restart_session", {}, "no session 'ses-nope' on node node-s"),
        ("abort_session", {}, "no session 'ses-nope' on node node-s"),
        ("kill_session", {}, "no session 'ses-nope' on node node-s"),
        ("reply_permission", {"request_id": "per-1", "reply": "once"}, "no session 'ses-nope' on node node-s"),
        ("answer_question", {"request_id": "que-1", "answers": []}, "no session 'ses-nope' on node node-s"),
        ("prompt_session", {}, "args.prompt"),
        ("prompt_session", {"prompt": "  "}, "args.prompt: must not be empty"),
        ("reply_permission", {"request_id": "per-1", "reply": "maybe"}, "args.reply"),
        ("env_check", {}, "env_check is not supported by the simulated backend"),
    ],
)
async def test_bad_commands_fail_with_a_clear_message(
    tmp_path: Path, command_type: CommandType, args: JSONObject, message: str
) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path) as sim:
            with pytest.raises(CommandFailedError) as caught:
                await sim.do(command_type, "ses-nope", args)
            assert sim.outbox.last_seq == 2  # nothing was emitted
    assert message in str(caught.value)


async def test_sessions_and_totals_survive_a_backend_restart(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sim(tmp_path, sessions=3, rate=0, max_events=400) as sim:
            await wait_until(lambda: sim.outbox.last_seq == 400, what="400 events")
            started = await sim.do("start_session", "proj-a", {"prompt": "go"})
            await sim.do("kill_session", sim.sessions()[0].id)
            before = {s.id: s for s in sim.sessions()}
        assert started["session_id"] in before
        assert sum(s.tokens.total() for s in before.values()) > 0
        assert sum(s.cost_usd for s in before.values()) > 0
        async with open_sim(tmp_path, sessions=3) as again:
            after = {s.id: s for s in again.sessions()}
            restored = await again.events(again.outbox.last_seq - len(before))
    assert after == before
    # The restart re-announces every session (so the supervisor's copy is current) and creates none.
    assert [e["type"] for e in restored] == ["session.updated"] * len(before)


@pytest.mark.parametrize("rate", [0.0, 1000.0])
async def test_max_events_stops_production_at_exactly_that_seq(
    tmp_path: Path, rate: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="halswarm.agent.simulate")
    with trio.fail_after(10):
        async with open_sim(tmp_path, sessions=2, rate=rate, max_events=137) as sim:
            await wait_until(
                lambda: any("reached max_events" in r.getMessage() for r in caplog.records),
                what="the simulator to stop producing",
            )
            assert sim.outbox.last_seq == 137
            assert await sim.outbox.count() == 137
            # Commands still work afterwards (they emit beyond max_events).
            await sim.do("prompt_session", sim.sessions()[0].id, {"prompt": "more"})
            assert sim.outbox.last_seq == 139


async def test_totals_do_not_go_backwards_after_a_graceful_restart(tmp_path: Path) -> None:
    """Guards: a graceful stop did not save the simulator's state, so a restart re-announced older totals."""
    with trio.fail_after(10):
        # Fast enough to spend tokens well within one periodic save interval.
        async with open_sim(tmp_path, sessions=2, rate=2000) as sim:
            await wait_until(
                lambda: sim.outbox.last_seq >= 200 and sum(s.cost_usd for s in sim.sessions()) > 0,
                what="tokens spent",
            )
        # As the supervisor last learned them, up to the stop.
        before = {s.id: s for s in sim.sessions()}
        async with open_sim(tmp_path, sessions=2) as again:
            after = {s.id: s for s in again.sessions()}
    assert after.keys() == before.keys()
    went_back = {
        sid: (before[sid].tokens.total(), before[sid].cost_usd, after[sid].tokens.total(), after[sid].cost_usd)
        for sid in before
        if after[sid].tokens.total() < before[sid].tokens.total() or after[sid].cost_usd < before[sid].cost_usd
    }
    assert went_back == {}


async def test_session_idle_is_emitted_at_a_low_rate(tmp_path: Path) -> None:
    """Guards: at low rates the simulator cut a step's tail events, so session.idle was almost never emitted."""
    with trio.fail_after(10):
        # 20 events/s is one event per tick: a turn's end (three events) used to be cut to one.
        async with open_sim(tmp_path, sessions=1, rate=20) as sim:

            async def turn_ended() -> bool:
                return "session.idle" in await sim.types_after(0)

            await wait_until(turn_ended, within=5, what="a session.idle event")
            events = await sim.events()
    ends = [i for i, e in enumerate(events) if e["type"] == "session.idle"]
    assert ends
    # Each comes with the session's own change to idle, right before it.
    assert [(events[i - 1]["type"], events[i - 1]["session_id"], events[i - 1]["data"]) for i in ends] == [
        ("session.status", events[i]["session_id"], {"status": {"type": "idle"}}) for i in ends
    ]
