"""The opencode backend's side of a resync: what it reads, how often it reconnects, and
what a restart's handover waits for.

opencode's client and runner are stand-ins here (a real server cannot be made to drop
its stream right after connecting, or to end a turn exactly while a resync reads the
REST view); the mapper's side of these races is tested on recorded streams in
``test_mapper.py``, the real server end to end in ``test_sessions_e2e.py``.
"""

from __future__ import annotations

import contextlib
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, cast

import pytest
import trio
import trio.testing

from halswarm.agent.backend import EventSink
from halswarm.agent.opencode.backend import _STREAM_BACKOFF, _STREAM_STABLE, OpencodeBackend
from halswarm.agent.opencode.client import OpencodeError, OpencodeUnavailableError
from halswarm.agent.outbox import open_outbox
from halswarm.models import Project
from halswarm.proto.messages import CommandMsg
from halswarm.testing import agent_config
from halswarm.timeutil import system_now

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable
    from pathlib import Path

    from halswarm.agent.opencode.runner import OpencodeRunner
    from halswarm.agent.outbox import Outbox
    from halswarm.jsontypes import JSONObject

SEED: Final = 7
CONNECTED: Final[JSONObject] = {"payload": {"id": "evt_1", "type": "server.connected", "properties": {}}}


class _Stream:
    """``/global/event``: ``server.connected``, then silence for *hold* seconds, then a drop."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.sent = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> JSONObject:
        if not self.sent:
            self.sent = True
            return CONNECTED
        await trio.sleep(self.hold)
        raise OpencodeUnavailableError("event stream from opencode failed: connection reset")


class _Client:
    """opencode's REST API as the backend uses it, answering from fields a test sets."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.opened: list[float] = []
        self.log: list[str] = []
        self.statuses: dict[str, JSONObject] = {}
        self.newest: dict[str, JSONObject | OpencodeError] = {}
        self.sessions: list[JSONObject] = []
        self._logged = trio.Event()

    def _note(self, line: str) -> None:
        self.log.append(line)
        self._logged.set()
        self._logged = trio.Event()

    async def until(self, condition: Callable[[list[str]], bool]) -> None:
        """Wait until the calls logged so far meet *condition*."""
        while not condition(self.log):
            await self._logged.wait()

    @asynccontextmanager
    async def global_events(self) -> AsyncGenerator[_Stream, None]:
        self.opened.append(trio.current_time())
        self._note("open")
        yield _Stream(self.hold)

    async def all_sessions(self) -> list[JSONObject]:
        return list(self.sessions)

    async def session_status(self, directory: str) -> dict[str, JSONObject]:
        self._note("status")
        return dict(self.statuses)

    async def permissions(self, directory: str) -> list[JSONObject]:
        return []

    async def questions(self, directory: str) -> list[JSONObject]:
        return []

    async def last_message(self, session_id: str, directory: str) -> JSONObject | None:
        self._note(f"newest {session_id}")
        newest = self.newest.get(session_id)
        if isinstance(newest, OpencodeError):
            raise newest
        return newest

    async def prompt_async(self, session_id: str, directory: str, text: str, **_: object) -> None:
        self._note(f"prompt {session_id}")

    async def create_session(self, directory: str, **_: object) -> JSONObject:
        self._note("create")
        return {"id": "ses_new", "directory": directory}

    async def abort(self, session_id: str, directory: str) -> None:
        self._note(f"abort {session_id}")

    async def delete(self, session_id: str, directory: str) -> None:
        self._note(f"delete {session_id}")


class _Runner:
    """A server that is always up; what the event pump reports lost is recorded."""

    mode = "spawn"
    ready = True

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.lost: list[str] = []

    def health(self) -> str:
        return "ok"

    async def wait_ready(self) -> None:
        return None

    def report_lost(self, reason: str) -> None:
        self.lost.append(reason)


def _backend(tmp_path: Path, client: _Client, outbox: Outbox | None = None) -> OpencodeBackend:
    project = tmp_path / "alpha"
    project.mkdir(exist_ok=True)
    config = agent_config(1, tmp_path / "agent", node_id="n1", projects=[Project("alpha", str(project))])
    runner = cast("OpencodeRunner", _Runner(client))
    # The event pump never touches the outbox: these tests on virtual time run without one.
    return OpencodeBackend(config, outbox=cast("Outbox", outbox), runner=runner, rng=random.Random(SEED))


async def _opened(backend: OpencodeBackend, client: _Client, times: int) -> list[float]:
    """Run the event pump until it opened the stream *times* times; the gaps between."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(backend._event_pump)
        await client.until(lambda log: log.count("open") >= times)
        nursery.cancel_scope.cancel()
    return [b - a for a, b in zip(client.opened, client.opened[1:], strict=False)]


def _delays(attempts: list[int]) -> list[float]:
    rng = random.Random(SEED)
    return [_STREAM_BACKOFF.delay(attempt, rng) for attempt in attempts]


# ---- reconnect backoff ---------------------------------------------------------------


async def test_a_stream_that_drops_right_after_connecting_backs_off(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    client = _Client(hold=0.0)
    backend = _backend(tmp_path, client)
    gaps = await _opened(backend, client, 7)
    # Each drop waits longer (up to the cap), though every connect resynced fine.
    assert gaps == pytest.approx(_delays([0, 1, 2, 3, 4, 5]))
    assert gaps[-1] >= 7.5  # the cap's lower half: no reconnect-and-resync every half second
    assert set(cast("_Runner", backend.runner).lost) == {"event stream from opencode failed: connection reset"}


@pytest.mark.parametrize(
    ("hold", "attempts"),
    [
        pytest.param(_STREAM_STABLE, [0, 0, 0, 0], id="stayed-up"),
        pytest.param(_STREAM_STABLE - 0.5, [0, 1, 2, 3], id="just-under"),
    ],
)
async def test_only_a_stream_that_stayed_up_resets_the_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, hold: float, attempts: list[int]
) -> None:
    client = _Client(hold=hold)
    gaps = await _opened(_backend(tmp_path, client), client, 5)
    assert gaps == pytest.approx([hold + delay for delay in _delays(attempts)])


# ---- what the resync reads -----------------------------------------------------------


def _status(session_id: str, level: str) -> JSONObject:
    return {"payload": {"type": "session.status", "properties": {"sessionID": session_id, "status": {"type": level}}}}


FAILED_REPLY: Final[JSONObject] = {
    "id": "msg_2",
    "role": "assistant",
    "parentID": "msg_1",
    "time": {"created": 2, "completed": 3},
    "error": {"name": "APIError", "data": {"message": "overloaded", "statusCode": 529, "responseBody": "secret"}},
}


async def _resynced(tmp_path: Path, client: _Client) -> OpencodeBackend:
    """Sessions ses_busy (running, as far as the stream showed) and ses_idle; the stream
    dropped; opencode now has both at rest. Returns the backend after its resync."""
    async with contextlib.AsyncExitStack() as stack:
        outbox = await stack.enter_async_context(open_outbox(tmp_path / "agent"))
        backend = _backend(tmp_path, client, outbox)
        backend._sink = EventSink(outbox, now=system_now)
        directory = str(tmp_path / "alpha")
        client.sessions = [{"id": sid, "directory": directory} for sid in ("ses_busy", "ses_idle")]
        for info in client.sessions:
            backend.mapper.adopt(info)
        # One turn failed in plain sight; the next one was running when the stream dropped.
        backend.mapper.mark_prompted("ses_busy", "work")
        error: JSONObject = {"name": "APIError", "data": {"message": "overloaded"}}
        failure: JSONObject = {"sessionID": "ses_busy", "error": error}
        backend.mapper.feed({"payload": {"type": "session.error", "properties": failure}})
        backend.mapper.feed(_status("ses_busy", "idle"))
        backend.mapper.mark_prompted("ses_busy", "again")
        await backend._resync()
        return backend


async def test_the_resync_reads_how_a_turn_it_ends_went_and_nothing_more(tmp_path: Path) -> None:
    with trio.fail_after(10):
        client = _Client()
        client.newest["ses_busy"] = FAILED_REPLY
        backend = await _resynced(tmp_path, client)
        assert [line for line in client.log if line.startswith("newest")] == ["newest ses_busy"]
        failed = backend.mapper.get("ses_busy")
        assert failed is not None
        assert (failed.status, failed.consecutive_errors) == ("error", 2)


@pytest.mark.parametrize(
    "problem",
    [
        pytest.param(OpencodeError("GET /session/ses_busy/message: UnknownError: Unexpected server error"), id="500"),
        pytest.param(None, id="no-messages"),
    ],
)
async def test_a_turn_whose_end_cannot_be_read_keeps_its_error_count(
    tmp_path: Path, problem: OpencodeError | None
) -> None:
    with trio.fail_after(10):
        client = _Client()
        if problem is not None:
            client.newest["ses_busy"] = problem
        backend = await _resynced(tmp_path, client)
        ended = backend.mapper.get("ses_busy")
        assert ended is not None
        assert (ended.status, ended.consecutive_errors) == ("idle", 1)
        assert not backend.mapper.is_busy("ses_busy")


async def test_an_unreachable_opencode_fails_the_resync(tmp_path: Path) -> None:
    # As every other read of the REST view does: the stream reconnects and tries again.
    with trio.fail_after(10):
        client = _Client()
        client.newest["ses_busy"] = OpencodeUnavailableError("GET /session/ses_busy/message: no answer")
        with pytest.raises(OpencodeUnavailableError):
            await _resynced(tmp_path, client)


# ---- the handover waits for its own reply --------------------------------------------


async def _until(backend: OpencodeBackend, condition: Callable[[], bool]) -> None:
    while True:
        applied = backend.applied.waiter()
        if condition():
            return
        await applied.wait()


async def test_the_handover_waits_for_the_reply_to_its_own_prompt(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with contextlib.AsyncExitStack() as stack:
            outbox = await stack.enter_async_context(open_outbox(tmp_path / "agent"))
            client = _Client()
            backend = _backend(tmp_path, client, outbox)
            backend._sink = EventSink(outbox, now=system_now)
            directory = str(tmp_path / "alpha")
            backend.mapper.adopt({"id": "ses_old", "directory": directory})
            earlier: JSONObject = {"id": "msg_2", "role": "assistant", "parentID": "msg_1", "time": {"completed": 3}}
            client.newest["ses_old"] = earlier
            results: list[JSONObject] = []

            async def restart() -> None:
                command = CommandMsg("cmd-1", "key-1", "restart_session", "ses_old", {}, deadline=60.0)
                results.append(await backend.execute(command))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(restart)
                await _until(backend, lambda: backend.mapper.is_busy("ses_old"))
                assert client.log[-1] == "prompt ses_old"
                # A turn ends that is not the handover's (one that ran before it, or one
                # replayed after a resync): opencode's newest message is still the old reply.
                await backend._apply(lambda: backend.mapper.feed(_status("ses_old", "idle")))
                await client.until(lambda log: "create" in log or log.count("newest ses_old") == 2)
                assert "create" not in client.log
                assert client.log[-2:] == ["status", "newest ses_old"]
                assert results == []
                # The handover's own turn: a reply to a newer prompt, and the session at rest.
                client.newest["ses_old"] = {"id": "msg_4", "role": "assistant", "parentID": "msg_3"}
                await backend._apply(lambda: backend.mapper.feed(_status("ses_old", "busy")))
                await backend._apply(lambda: backend.mapper.feed(_status("ses_old", "idle")))
            assert results == [{"session_id": "ses_new", "predecessor_id": "ses_old", "handover": "done"}]
            assert client.log.index("create") > client.log.index("prompt ses_old")
            assert client.log[-3:] == ["abort ses_old", "delete ses_old", "prompt ses_new"]
