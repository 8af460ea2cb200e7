"""A scripted OpenAI-compatible LLM that lets tests drive the real opencode offline.

Implements ``docs: opencode-api.md`` §13.1: ``GET /v1/models`` and ``POST /v1/chat/completions``
(streamed and not), served by hypercorn's trio worker on ``127.0.0.1:0``. Each request is classified
by its system prompt and answered from a keyword in the last user message:

============  ===================================================================================
keyword       reply (main agent only; titles and summaries ignore keywords)
============  ===================================================================================
(none)        "Hello from the stub." in two deltas, usage 100/7
``SLOW``      one ``"tick N. "`` delta per second for up to 60 s (the disconnect is recorded)
``HOLD``      the plain reply, held after its first delta until :meth:`StubLLM.release` (then
              every later ``HOLD`` passes straight through); lets a test see the turn busy
``ERR500``    HTTP 500 with ``{"error": {"message", "type": "stub_error", "code": 500}}``
``ERR429``    HTTP 429, same body shape
``ERR401``    HTTP 401, same body shape
``BASH``      tool ``bash {"command": "echo hello-from-bash", "description": "Print greeting"}``
``WRITE``     tool ``write`` of ``stub-note.txt`` in the working directory named by the system
              prompt; ``WRITE:/abs/path`` names the file explicitly
``QUESTION``  tool ``question`` (one question "Pick a color?", options red/blue)
``TASK``      tool ``task`` (subagent ``general``, prompt "do the sub work")
``CACHE``     usage: prompt 1000 incl. 600 cached, completion 50 incl. 20 reasoning
``BIG``       usage: prompt 9000; once per conversation (later ``BIG`` turns answer normally)
============  ===================================================================================

When the last message has role ``tool`` the main agent answers "Tool finished: …" with
``finish_reason: "stop"`` instead, otherwise a keyword would re-fire its tool forever.
Usage is always on the final chunk, because opencode computes cost from it.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

import attrs
import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

__all__ = ["StubLLM", "StubRequest", "open_stub_llm"]

Kind = Literal["title", "summary", "main"]

MODEL_IDS: Final = ("stub-model", "stub-tiny")
TITLE: Final = "Stub title"
HELLO: Final = ("Hello from ", "the stub.")
SUMMARY: Final = "Summary: the user talked to the stub and the stub answered."
WRITE_FILE: Final = "stub-note.txt"
WRITE_CONTENT: Final = "hello from the stub\n"
SLOW_TICKS: Final = 60
SLOW_INTERVAL: Final = 1.0
_SHUTDOWN_GRACE: Final = 2.0
_CREATED: Final = 1795517716

_KEYWORD = re.compile(r"\b(SLOW|HOLD|ERR500|ERR429|ERR401|BASH|WRITE(?::(\S+))?|QUESTION|TASK|CACHE|BIG)\b")
_WORKDIR = re.compile(r"Working directory:\s*(\S+)")
_ERRORS: Final = {
    "ERR500": (500, "stub internal error"),
    "ERR429": (429, "rate limited"),
    "ERR401": (401, "invalid api key"),
}
_QUESTION_ARGS: Final = {
    "questions": [
        {
            "question": "Pick a color?",
            "header": "Color",
            "options": [{"label": "red", "description": "Red"}, {"label": "blue", "description": "Blue"}],
        }
    ]
}
_TASK_ARGS: Final = {"description": "Sub work", "prompt": "do the sub work", "subagent_type": "general"}
_BASH_ARGS: Final = {"command": "echo hello-from-bash", "description": "Print greeting"}


@attrs.define
class StubRequest:
    """One request as the stub saw and answered it (mutable: ``disconnected`` is set late)."""

    time: float
    """``trio.current_time()`` on arrival."""
    kind: Kind
    model: str
    last_role: str
    last_user_text: str
    tools: list[str]
    """Names of the function tools offered."""
    stream: bool
    status: int
    """HTTP status answered."""
    system: str
    """The system prompt (all system messages joined)."""
    reply: str = ""
    """Keyword that chose the reply (``"hello"``, ``"tool"``, ``"BASH"``, …; ``""`` for titles/summaries)."""
    disconnected: bool = False
    """The client went away before the streamed reply finished."""


@attrs.define
class _Changes:
    """Wakes waiters whenever the request log changes (a request arrived or disconnected)."""

    event: trio.Event = attrs.Factory(trio.Event)

    def notify(self) -> None:
        self.event.set()
        self.event = trio.Event()


@attrs.define
class StubLLM:
    """Handle on a running stub: point opencode's provider ``baseURL`` at :attr:`base_url`."""

    base_url: str
    """``http://127.0.0.1:<port>/v1``."""
    requests: list[StubRequest]
    """Every request so far, in arrival order."""
    _changes: _Changes = attrs.Factory(_Changes)
    _gate: trio.Event = attrs.Factory(trio.Event)

    def release(self) -> None:
        """Let every ``HOLD`` reply, waiting or still to come, finish."""
        self._gate.set()

    def of_kind(self, kind: Kind) -> list[StubRequest]:
        """The logged requests classified as *kind*."""
        return [r for r in self.requests if r.kind == kind]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once *predicate* (re-checked on every logged change) holds.

        No deadline of its own: wrap it in ``trio.fail_after``.
        """
        while not predicate():
            await self._changes.event.wait()


@attrs.frozen
class _Reply:
    """What to answer: text deltas and/or one tool call, usage, or an HTTP error."""

    deltas: tuple[str, ...] = ()
    tool: tuple[str, dict[str, object]] | None = None
    usage: dict[str, object] = attrs.field(factory=lambda: _usage(100, 7))
    interval: float = 0.0
    held: bool = False
    """Wait for :meth:`StubLLM.release` after the first delta."""
    status: int = 200
    error: str = ""


def _usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, object]:
    usage: dict[str, object] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _text(content: object) -> str:
    """Text of an OpenAI message ``content``: a string or a list of ``{type: "text", text}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _messages(body: dict[str, object]) -> list[dict[str, object]]:
    raw = body.get("messages")
    return [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []


def _tool_names(body: dict[str, object]) -> list[str]:
    raw = body.get("tools")
    names: list[str] = []
    for tool in raw if isinstance(raw, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(str(function["name"]))
    return names


@attrs.define
class _Script:
    """Classifies requests, picks replies and logs them. State: the request log and BIG keys."""

    requests: list[StubRequest] = attrs.Factory(list)
    big_done: set[str] = attrs.Factory(set)
    calls: int = 0
    changes: _Changes = attrs.Factory(_Changes)
    gate: trio.Event = attrs.Factory(trio.Event)

    def handle(self, body: dict[str, object]) -> tuple[StubRequest, _Reply]:
        messages = _messages(body)
        system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
        users = [m for m in messages if m.get("role") == "user"]
        last_user = _text(users[-1].get("content")) if users else ""
        last_role = str(messages[-1].get("role", "")) if messages else ""
        kind: Kind = "main"
        if "title generator" in system:
            kind = "title"
        elif "context summarization agent" in system:
            kind = "summary"
        keyword, reply = self._reply(kind, system, last_role, last_user, messages)
        record = StubRequest(
            time=trio.current_time(),
            kind=kind,
            model=str(body.get("model", "")),
            last_role=last_role,
            last_user_text=last_user,
            tools=_tool_names(body),
            stream=body.get("stream") is True,
            status=reply.status,
            system=system,
            reply=keyword,
        )
        self.requests.append(record)
        self.changes.notify()
        return record, reply

    def _reply(
        self, kind: Kind, system: str, last_role: str, last_user: str, messages: list[dict[str, object]]
    ) -> tuple[str, _Reply]:
        if kind == "title":
            return "", _Reply(deltas=(TITLE,))
        if kind == "summary":
            return "", _Reply(deltas=(SUMMARY,))
        if last_role == "tool":
            result = " ".join(_text(messages[-1].get("content")).split())[:120]
            return "tool", _Reply(deltas=("Tool finished: ", result or "(no output)"))
        match = _KEYWORD.search(last_user)
        keyword = match.group(1).split(":", 1)[0] if match else "hello"
        if keyword in _ERRORS:
            status, message = _ERRORS[keyword]
            return keyword, _Reply(status=status, error=message)
        if keyword == "SLOW":
            return keyword, _Reply(
                deltas=tuple(f"tick {n}. " for n in range(1, SLOW_TICKS + 1)),
                usage=_usage(100, SLOW_TICKS),
                interval=SLOW_INTERVAL,
            )
        if keyword == "HOLD":
            return keyword, _Reply(deltas=HELLO, held=True)
        if keyword == "CACHE":
            return keyword, _Reply(deltas=HELLO, usage=_usage(1000, 50, cached=600, reasoning=20))
        if keyword == "BIG":
            # One-shot per conversation, keyed by its first user message: the continuation
            # turn after auto-compaction must not look big again (deterministic totals).
            first_user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
            if first_user in self.big_done:
                return "hello", _Reply(deltas=HELLO)
            self.big_done.add(first_user)
            return keyword, _Reply(deltas=HELLO, usage=_usage(9000, 7))
        tool = self._tool(keyword, match, system)
        if tool is None:
            return "hello", _Reply(deltas=HELLO)
        return keyword, _Reply(tool=tool)

    @staticmethod
    def _tool(keyword: str, match: re.Match[str] | None, system: str) -> tuple[str, dict[str, object]] | None:
        if keyword == "BASH":
            return "bash", dict(_BASH_ARGS)
        if keyword == "QUESTION":
            return "question", dict(_QUESTION_ARGS)
        if keyword == "TASK":
            return "task", dict(_TASK_ARGS)
        if keyword == "WRITE":
            explicit = match.group(2) if match else None
            workdir = _WORKDIR.search(system)
            if explicit:
                path = explicit
            elif workdir:
                path = f"{workdir.group(1).rstrip('/')}/{WRITE_FILE}"
            else:
                return None
            return "write", {"filePath": path, "content": WRITE_CONTENT}
        return None

    def call_id(self) -> str:
        self.calls += 1
        return f"call_stub{self.calls:04d}"


class _ChunkStream:
    """The SSE body of a streamed reply; marks the request disconnected if closed early.

    An async iterator class rather than an async generator (flake8-async ASYNC900). Quart
    calls :meth:`aclose` when the body ends, including when the client disconnects and the
    request task is cancelled.
    """

    def __init__(
        self, chunks: list[bytes], interval: float, record: StubRequest, changes: _Changes, gate: trio.Event | None
    ) -> None:
        self._chunks = chunks
        self._interval = interval
        self._gate = gate
        self._record = record
        self._changes = changes
        self._next = 0

    def __aiter__(self) -> _ChunkStream:
        return self

    async def __anext__(self) -> bytes:
        if self._next >= len(self._chunks):
            raise StopAsyncIteration
        # Delta chunks after the first are paced by the interval (SLOW); the rest go at once.
        if self._interval and 0 < self._next < len(self._chunks) - 2:
            await trio.sleep(self._interval)
        if self._gate is not None and self._next == 1:
            await self._gate.wait()
        chunk = self._chunks[self._next]
        self._next += 1
        return chunk

    async def aclose(self) -> None:
        if self._next < len(self._chunks):
            self._record.disconnected = True
            self._changes.notify()


def _sse(value: object) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


def _stream_chunks(reply: _Reply, model: str, call_id: str) -> list[bytes]:
    def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                "choices": [choice],
                **extra,
            }
        )

    chunks = [chunk({"role": "assistant", "content": text}) for text in reply.deltas]
    if reply.tool is not None:
        name, args = reply.tool
        header = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"role": "assistant", "content": None, "tool_calls": [header]}))
        arguments = {"index": 0, "function": {"arguments": orjson.dumps(args).decode()}}
        chunks.append(chunk({"tool_calls": [arguments]}))
    finish = "tool_calls" if reply.tool is not None else "stop"
    chunks.append(chunk({}, finish, usage=reply.usage))
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def _completion(reply: _Reply, model: str, call_id: str) -> dict[str, object]:
    message: dict[str, object] = {"role": "assistant", "content": "".join(reply.deltas) or None}
    if reply.tool is not None:
        name, args = reply.tool
        function = {"name": name, "arguments": orjson.dumps(args).decode()}
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool else "stop"}],
        "usage": reply.usage,
    }


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json")


def _create_app(script: _Script) -> QuartTrio:
    app = QuartTrio("halswarm-stub-llm")
    app.config["RESPONSE_TIMEOUT"] = None  # SLOW streams for 60 s, quart's default limit
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    @app.get("/v1/models")
    async def models() -> Response:
        return _json({"object": "list", "data": [{"id": m, "object": "model"} for m in MODEL_IDS]})

    @app.post("/v1/chat/completions")
    async def completions() -> Response:
        body = orjson.loads(await request.get_data())
        if not isinstance(body, dict):
            return _json({"error": {"message": "body must be an object", "type": "stub_error", "code": 400}}, 400)
        record, reply = script.handle(body)
        if reply.status != 200:
            error = {"message": reply.error, "type": "stub_error", "code": reply.status}
            return _json({"error": error}, reply.status)
        call_id = script.call_id() if reply.tool is not None else ""
        if not record.stream:
            return _json(_completion(reply, record.model, call_id))
        gate = script.gate if reply.held else None
        chunks = _stream_chunks(reply, record.model, call_id)
        stream = _ChunkStream(chunks, reply.interval, record, script.changes, gate)
        response = Response(stream, content_type="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.timeout = None
        return response

    return app


@asynccontextmanager
async def open_stub_llm() -> AsyncGenerator[StubLLM, None]:
    """Serve the stub on ``127.0.0.1:0`` for the duration of the ``async with`` block.

    Returns:
        A :class:`StubLLM` carrying ``base_url`` and the live request log.

    Resource handling: hypercorn runs in a nursery owned by this context manager; leaving the
    block triggers its graceful shutdown (bounded by a short grace, then the nursery is cancelled).
    """
    script = _Script()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = _SHUTDOWN_GRACE
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, _create_app(script), config, shutdown_trigger=shutdown.wait)
        )
        port = urlsplit(binds[0]).port
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            yield StubLLM(base_url=base_url, requests=script.requests, changes=script.changes, gate=script.gate)
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _SHUTDOWN_GRACE + 1.0
