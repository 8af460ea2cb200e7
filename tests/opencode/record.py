"""Record real opencode event streams as fixtures: ``python -m tests.opencode.record [OUTDIR]``.

Starts the stub LLM and a real ``opencode serve`` on a fresh git project, subscribes to
``GET /global/event`` and runs each scenario on a fresh session, writing every envelope it saw
for that scenario (one JSON object per line) to ``OUTDIR/<scenario>.jsonl``. To keep the fixtures
small, ``plugin.added`` envelopes are dropped and only the first 3 ``message.part.delta`` and the
first 3 ``sync`` envelopes of each scenario are kept. Envelopes naming a session that does not
belong to the scenario (its root session or a descendant) are dropped too.

Also written: ``rest_pending.json`` (REST views while the ``bash_once`` permission is pending),
``rest_create.json`` (does session ``metadata`` round-trip?), ``rest_write.json`` (session and
diff after the ``write`` scenario) and ``stub_log.json`` (the stub's request log per scenario).
OUTDIR defaults to ``tests/opencode/recordings``.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs
import httpx
import orjson
import trio

from tests.opencode.realserver import make_project, opencode_env, run_opencode
from tests.opencode.stub_llm import StubLLM, open_stub_llm

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

Envelope = dict[str, object]

DEFAULT_OUTDIR: Final = Path(__file__).resolve().parent / "recordings"
KEEP_FIRST: Final = {"message.part.delta": 3, "sync": 3}
DROP: Final = frozenset({"plugin.added"})
TURN_TIMEOUT: Final = 90.0
SETTLE: Final = 1.5
REST_TIMEOUT: Final = 30.0
SSE_TIMEOUT: Final = httpx.Timeout(10.0, read=25.0)
TINY: Final = {"providerID": "stub", "modelID": "stub-tiny"}


class ScenarioTimeout(Exception):
    """An awaited event did not arrive in time."""


def _obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def payload(envelope: Envelope) -> dict[str, object]:
    """The envelope's ``payload`` (``{}`` when missing)."""
    return _obj(envelope.get("payload"))


def event_type(envelope: Envelope) -> str:
    """``payload.type``."""
    return str(payload(envelope).get("type", ""))


def props(envelope: Envelope) -> dict[str, object]:
    """``payload.properties``."""
    return _obj(payload(envelope).get("properties"))


def session_of(envelope: Envelope) -> str | None:
    """The session an envelope is about, if it names one (bus events and ``sync`` records)."""
    return _find_session(payload(envelope), depth=0)


def _find_session(value: dict[str, object], depth: int) -> str | None:
    for key in ("sessionID", "sessionId"):
        sid = value.get(key)
        if isinstance(sid, str):
            return sid
    if depth < 3:
        for key in ("properties", "syncEvent", "data", "info", "part"):
            nested = value.get(key)
            if isinstance(nested, dict):
                sid = _find_session(nested, depth + 1)
                if sid is not None:
                    return sid
    return None


@contextmanager
def within(seconds: float, what: str) -> Generator[None, None, None]:
    """``trio.fail_after`` that names what was awaited.

    Raises:
        ScenarioTimeout: the block did not finish in time.
    """
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise ScenarioTimeout(f"no {what} within {seconds} s") from None


@attrs.define
class Recorder:
    """Every envelope of ``/global/event`` in arrival order, with waiting helpers."""

    events: list[Envelope] = attrs.Factory(list)
    _arrived: trio.Event = attrs.Factory(trio.Event)

    def add(self, envelope: Envelope) -> None:
        """Append an envelope and wake the waiters."""
        self.events.append(envelope)
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait_for(self, start: int, match: Callable[[Envelope], bool]) -> int:
        """Index of the first envelope at or after *start* matching *match* (no deadline: callers set one)."""
        index = start
        while True:
            while index < len(self.events):
                if match(self.events[index]):
                    return index
                index += 1
            await self._arrived.wait()

    async def wait_event(self, start: int, kind: str, sid: str) -> int:
        """Index of the next *kind* event of session *sid*, within TURN_TIMEOUT."""
        with within(TURN_TIMEOUT, f"{kind} for {sid}"):
            return await self.wait_for(start, lambda e: event_type(e) == kind and props(e).get("sessionID") == sid)

    async def wait_idle(self, start: int, sid: str) -> int:
        """Wait for ``session.idle`` of *sid*, then until it stays quiet (no new busy) for SETTLE s."""
        index = await self.wait_event(start, "session.idle", sid)
        while True:
            busy: int | None = None
            with trio.move_on_after(SETTLE):
                busy = await self.wait_for(index + 1, lambda e: _is_busy(e, sid))
            if busy is None:
                return index
            index = await self.wait_event(busy, "session.idle", sid)


def _is_busy(envelope: Envelope, sid: str) -> bool:
    status = _obj(props(envelope).get("status"))
    return (
        event_type(envelope) == "session.status"
        and props(envelope).get("sessionID") == sid
        and (status.get("type") in {"busy", "retry"})
    )


async def pump_global_events(client: httpx.AsyncClient, recorder: Recorder, connected: trio.Event) -> None:
    """Read ``GET /global/event`` (SSE, ``data:`` lines only) into *recorder* until cancelled."""
    async with client.stream("GET", "/global/event", timeout=SSE_TIMEOUT) as response:
        response.raise_for_status()
        data: list[str] = []
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line and data:
                envelope = orjson.loads("\n".join(data))
                data.clear()
                if isinstance(envelope, dict):
                    recorder.add(envelope)
                    if event_type(envelope) == "server.connected":
                        connected.set()


def trim(events: list[Envelope], roots: set[str]) -> list[Envelope]:
    """The scenario's envelopes: own sessions only, noise dropped, deltas/sync capped."""
    sessions = set(roots)
    kept: list[Envelope] = []
    counts: dict[str, int] = {}
    for envelope in events:
        kind = event_type(envelope)
        info = _obj(props(envelope).get("info"))
        if kind == "session.created" and info.get("parentID") in sessions:
            sessions.add(str(info.get("id")))
        sid = session_of(envelope)
        if kind in DROP or (sid is not None and sid not in sessions):
            continue
        if kind in KEEP_FIRST:
            counts[kind] = counts.get(kind, 0) + 1
            if counts[kind] > KEEP_FIRST[kind]:
                continue
        kept.append(envelope)
    return kept


@attrs.define
class Session:
    """REST helpers bound to one project directory."""

    client: httpx.AsyncClient
    directory: str

    @property
    def params(self) -> dict[str, str]:
        """``?directory=``, sent on every call (reference §0 rule 2)."""
        return {"directory": self.directory}

    async def call(self, method: str, path: str, body: object = None, *, slow: bool = False) -> object:
        """One JSON call (``slow``: a call that blocks for a whole turn); raises on non-2xx."""
        timeout = TURN_TIMEOUT if slow else REST_TIMEOUT
        response = await self.client.request(method, path, params=self.params, json=body, timeout=timeout)
        response.raise_for_status()
        return None if response.status_code == 204 else response.json()

    async def create(self, body: object = None) -> str:
        """``POST /session`` → the new id."""
        return str(_obj(await self.call("POST", "/session", body or {})).get("id"))

    async def prompt(self, sid: str, text: str, model: dict[str, str] | None = None) -> None:
        """``POST /session/{id}/prompt_async`` (204)."""
        body: dict[str, object] = {"parts": [{"type": "text", "text": text}]}
        if model is not None:
            body["model"] = model
        await self.call("POST", f"/session/{sid}/prompt_async", body)


Scenario: TypeAlias = "Callable[[Session, Recorder, int, Path], Awaitable[set[str]]]"


async def _turn(api: Session, rec: Recorder, start: int, text: str, model: dict[str, str] | None = None) -> str:
    sid = await api.create()
    await api.prompt(sid, text, model)
    await rec.wait_idle(start, sid)
    return sid


async def plain(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """Prompt "hello"."""
    return {await _turn(api, rec, start, "hello")}


async def cache(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """CACHE usage: prompt 1000 incl. 600 cached, completion 50 incl. 20 reasoning."""
    return {await _turn(api, rec, start, "CACHE please")}


async def err401(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """Provider answers 401."""
    sid = await api.create()
    await api.prompt(sid, "ERR401 please")
    await rec.wait_event(start, "session.error", sid)
    await rec.wait_idle(start, sid)
    return {sid}


async def write(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """The write tool creates ``stub-note.txt`` (path from the system prompt); REST views after."""
    sid = await _turn(api, rec, start, "WRITE a note")
    views = {
        "GET /session/{id}": await api.call("GET", f"/session/{sid}"),
        "GET /session/{id}/diff": await api.call("GET", f"/session/{sid}/diff"),
    }
    await _write_json(out / "rest_write.json", views)
    return {sid}


async def _bash(api: Session, rec: Recorder, start: int, reply: dict[str, str], out: Path | None) -> str:
    sid = await api.create()
    await api.prompt(sid, "BASH please")
    asked = rec.events[await rec.wait_event(start, "permission.asked", sid)]
    if out is not None:
        views = {
            name: await api.call("GET", path)
            for name, path in [
                ("GET /experimental/session", "/experimental/session"),
                ("GET /session/status", "/session/status"),
                ("GET /permission", "/permission"),
                ("GET /question", "/question"),
            ]
        }
        await _write_json(out / "rest_pending.json", views)
    await api.call("POST", f"/permission/{props(asked)['id']}/reply", reply)
    await rec.wait_idle(start, sid)
    return sid


async def bash_once(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """BASH, REST views while pending, then reply ``once``."""
    return {await _bash(api, rec, start, {"reply": "once"}, out)}


async def bash_reject_message(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """BASH, then reject with a message (the LLM continues)."""
    return {await _bash(api, rec, start, {"reply": "reject", "message": "no thanks"}, None)}


async def bash_reject(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """BASH, then reject without a message (the turn ends)."""
    return {await _bash(api, rec, start, {"reply": "reject"}, None)}


async def question(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """QUESTION, then answer ``[["blue"]]``."""
    sid = await api.create()
    await api.prompt(sid, "QUESTION please")
    asked = rec.events[await rec.wait_event(start, "question.asked", sid)]
    await api.call("POST", f"/question/{props(asked)['id']}/reply", {"answers": [["blue"]]})
    await rec.wait_idle(start, sid)
    return {sid}


async def task(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """TASK: a ``general`` subagent child session."""
    return {await _turn(api, rec, start, "TASK please")}


async def compaction_manual(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """A turn, then ``POST /session/{id}/summarize`` (returns after compaction)."""
    sid = await _turn(api, rec, start, "hello")
    mark = len(rec.events)
    await api.call("POST", f"/session/{sid}/summarize", {"providerID": "stub", "modelID": "stub-model"}, slow=True)
    await rec.wait_event(mark, "session.compacted", sid)
    await rec.wait_idle(mark, sid)
    return {sid}


async def compaction_auto(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """BIG on stub-tiny: auto-compaction and a continuation turn."""
    sid = await api.create()
    await api.prompt(sid, "BIG please", TINY)
    await rec.wait_event(start, "session.compacted", sid)
    await rec.wait_idle(start, sid)
    return {sid}


async def abort_slow(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """SLOW, then ``POST /session/{id}/abort`` after ~2 s of ticks."""
    sid = await api.create()
    await api.prompt(sid, "SLOW please")
    await rec.wait_event(start, "message.part.delta", sid)
    await trio.sleep(2.0)
    await api.call("POST", f"/session/{sid}/abort")
    await rec.wait_idle(start, sid)
    return {sid}


async def create_metadata(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """``POST /session`` with metadata, then ``GET /session/{id}``: does metadata round-trip?"""
    body = {"title": "t", "metadata": {"halswarm_predecessor": "ses_x"}}
    created = _obj(await api.call("POST", "/session", body))
    sid = str(created.get("id"))
    await rec.wait_event(start, "session.created", sid)
    fetched = _obj(await api.call("GET", f"/session/{sid}"))
    await _write_json(
        out / "rest_create.json",
        {
            "request": {"POST /session": body},
            "POST /session": created,
            "GET /session/{id}": fetched,
            "metadata_round_trips": fetched.get("metadata") == body["metadata"],
        },
    )
    await trio.sleep(SETTLE)
    return {sid}


async def delete(api: Session, rec: Recorder, start: int, out: Path) -> set[str]:
    """Create, prompt, wait idle, then ``DELETE /session/{id}``."""
    sid = await _turn(api, rec, start, "hello")
    mark = len(rec.events)
    await api.call("DELETE", f"/session/{sid}")
    await rec.wait_event(mark, "session.deleted", sid)
    await trio.sleep(SETTLE)
    return {sid}


SCENARIOS: Final[list[Scenario]] = [
    create_metadata,
    plain,
    bash_once,
    bash_reject_message,
    bash_reject,
    question,
    task,
    err401,
    compaction_manual,
    compaction_auto,
    abort_slow,
    cache,
    write,
    delete,
]


async def _write_json(path: Path, value: object) -> None:
    await trio.Path(path).write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")


def _stub_log(stub: StubLLM, first: int) -> list[dict[str, object]]:
    return [
        {
            "t": round(r.time - stub.requests[first].time, 2),
            "kind": r.kind,
            "model": r.model,
            "reply": r.reply,
            "last_role": r.last_role,
            "last_user_text": r.last_user_text[:80],
            "stream": r.stream,
            "status": r.status,
            "disconnected": r.disconnected,
        }
        for r in stub.requests[first:]
    ]


async def record(out: Path, base: Path) -> None:
    """Run every scenario in a project under *base* and write the recordings into *out*."""
    await trio.Path(out).mkdir(parents=True, exist_ok=True)
    recorder = Recorder()
    stub_logs: dict[str, object] = {}
    async with open_stub_llm() as stub:
        project = make_project(base, "app", stub.base_url)
        async with run_opencode(project, opencode_env(base / "opencode")) as server, server.client() as client:
            print(f"opencode {server.version} at {server.url}, project {project}", file=sys.stderr)
            api = Session(client, str(project))
            async with trio.open_nursery() as nursery:
                connected = trio.Event()
                nursery.start_soon(pump_global_events, client, recorder, connected)
                with within(REST_TIMEOUT, "server.connected"):
                    await connected.wait()
                for scenario in SCENARIOS:
                    name = scenario.__name__
                    start, first = len(recorder.events), len(stub.requests)
                    began = trio.current_time()
                    roots = await scenario(api, recorder, start, out)
                    events = trim(recorder.events[start:], roots)
                    await trio.Path(out / f"{name}.jsonl").write_bytes(
                        b"".join(orjson.dumps(e) + b"\n" for e in events)
                    )
                    stub_logs[name] = _stub_log(stub, first) if len(stub.requests) > first else []
                    took = trio.current_time() - began
                    print(f"{name}: {len(events)} envelopes in {took:.1f} s", file=sys.stderr)
                nursery.cancel_scope.cancel()
    await _write_json(out / "stub_log.json", stub_logs)


def main() -> None:
    """Entry point: ``python -m tests.opencode.record [OUTDIR]``."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTDIR
    with tempfile.TemporaryDirectory(prefix="hs-", ignore_cleanup_errors=True) as base:
        trio.run(record, out.resolve(), Path(base))


if __name__ == "__main__":
    main()
