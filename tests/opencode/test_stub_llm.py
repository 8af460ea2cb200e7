"""The scripted stub LLM on its own, over real loopback HTTP (no opencode)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import trio

from tests.opencode.stub_llm import HELLO, StubLLM, open_stub_llm

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

MAIN_SYSTEM = "You are opencode.\n<env>\n  Working directory: /srv/app\n</env>"
TITLE_SYSTEM = "You are a title generator. You output ONLY a thread title."
SUMMARY_SYSTEM = "You are a helpful AI assistant tasked with summarizing. You are a context summarization agent."
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("bash", "write", "question")]


@pytest.fixture
async def stub() -> AsyncGenerator[StubLLM, None]:
    with trio.fail_after(10):
        async with open_stub_llm() as running:
            yield running


def _body(text: str, *, system: str = MAIN_SYSTEM, stream: bool = True, extra: list[object] | None = None) -> object:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": [{"type": "text", "text": text}]}]
    return {"model": "stub-model", "messages": messages + (extra or []), "tools": TOOLS, "stream": stream}


def _chunks(raw: str) -> list[dict[str, object]]:
    """Parse an SSE body: every ``data:`` event but the final ``[DONE]``."""
    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    parsed = [orjson.loads(e) for e in events[:-1]]
    assert all(isinstance(p, dict) for p in parsed)
    return [p for p in parsed if isinstance(p, dict)]


def _choice(chunk: dict[str, object]) -> dict[str, object]:
    choices = chunk["choices"]
    assert isinstance(choices, list)
    choice = choices[0]
    assert isinstance(choice, dict)
    return choice


async def _post(stub: StubLLM, body: object) -> httpx.Response:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stub.base_url, timeout=5, trust_env=False) as client:
            return await client.post("/chat/completions", json=body)


async def _send_raw(stub: StubLLM, text: str) -> trio.SocketStream:
    """A streamed chat request for *text* on a raw socket, its answer left to read.

    A raw socket rather than httpx: leaving an httpx stream early leaves its generator chain to
    the garbage collector, which trio reports as ResourceWarnings (errors under our pytest config).
    """
    port = urlsplit(stub.base_url).port
    assert port is not None
    body = orjson.dumps(_body(text))
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: stub\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(head.encode() + body)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def test_models_lists_both_stub_models(stub: StubLLM) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stub.base_url, timeout=5, trust_env=False) as client:
            response = await client.get("/models")
    assert response.json()["data"] == [{"id": "stub-model", "object": "model"}, {"id": "stub-tiny", "object": "model"}]


async def test_plain_stream_is_two_deltas_then_usage(stub: StubLLM) -> None:
    response = await _post(stub, _body("hello"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = _chunks(response.text)
    assert [_choice(c)["delta"] for c in chunks] == [
        {"role": "assistant", "content": "Hello from "},
        {"role": "assistant", "content": "the stub."},
        {},
    ]
    assert _choice(chunks[-1])["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    [logged] = stub.requests
    assert (logged.kind, logged.last_role, logged.last_user_text, logged.stream) == ("main", "user", "hello", True)
    assert logged.tools == ["bash", "write", "question"]
    assert (logged.status, logged.reply, logged.disconnected) == (200, "hello", False)


async def test_title_request_ignores_keywords_non_stream(stub: StubLLM) -> None:
    response = await _post(stub, _body("BASH ERR401", system=TITLE_SYSTEM, stream=False))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Stub title"}, "finish_reason": "stop"}
    ]
    assert body["usage"]["total_tokens"] == 107
    assert [(r.kind, r.stream, r.status) for r in stub.requests] == [("title", False, 200)]


async def test_summary_request_answers_plain_text(stub: StubLLM) -> None:
    response = await _post(stub, _body("<conversation>BIG BASH</conversation>", system=SUMMARY_SYSTEM))
    deltas = [_choice(c)["delta"] for c in _chunks(response.text)]
    assert deltas[0] == {"role": "assistant", "content": "Summary: the user talked to the stub and the stub answered."}
    assert stub.requests[0].kind == "summary"


async def test_bash_tool_call_chunk_shape(stub: StubLLM) -> None:
    chunks = _chunks((await _post(stub, _body("BASH please"))).text)
    header, arguments, final = (_choice(c) for c in chunks)
    assert header["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"index": 0, "id": "call_stub0001", "type": "function", "function": {"name": "bash", "arguments": ""}}
        ],
    }
    delta = arguments["delta"]
    assert isinstance(delta, dict)
    [call] = delta["tool_calls"]
    assert orjson.loads(call["function"]["arguments"]) == {
        "command": "echo hello-from-bash",
        "description": "Print greeting",
    }
    assert (final["delta"], final["finish_reason"]) == ({}, "tool_calls")
    assert "usage" in chunks[-1]


async def test_write_takes_the_working_directory_from_the_system_prompt(stub: StubLLM) -> None:
    explicit = _chunks((await _post(stub, _body("WRITE:/tmp/x/notes.md"))).text)
    implicit = _chunks((await _post(stub, _body("WRITE something"))).text)
    paths = []
    for chunks in (explicit, implicit):
        delta = _choice(chunks[1])["delta"]
        assert isinstance(delta, dict)
        paths.append(orjson.loads(delta["tool_calls"][0]["function"]["arguments"])["filePath"])
    assert paths == ["/tmp/x/notes.md", "/srv/app/stub-note.txt"]


async def test_tool_result_ends_the_turn_instead_of_refiring(stub: StubLLM) -> None:
    tool_result = [
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "hello-from-bash\n"},
    ]
    chunks = _chunks((await _post(stub, _body("BASH please", extra=tool_result))).text)
    deltas = [_choice(c)["delta"] for c in chunks]
    text = "".join(str(d.get("content") or "") for d in deltas if isinstance(d, dict))
    assert text == "Tool finished: hello-from-bash"
    assert _choice(chunks[-1])["finish_reason"] == "stop"
    assert (stub.requests[0].last_role, stub.requests[0].reply) == ("tool", "tool")


@pytest.mark.parametrize("code", [401, 429, 500])
async def test_error_keywords_answer_the_status(stub: StubLLM, code: int) -> None:
    response = await _post(stub, _body(f"ERR{code} now"))
    assert response.status_code == code
    assert response.json()["error"]["type"] == "stub_error"
    assert response.json()["error"]["code"] == code
    assert stub.requests[0].status == code


async def test_cache_usage(stub: StubLLM) -> None:
    chunks = _chunks((await _post(stub, _body("CACHE"))).text)
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 600},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }


async def test_big_usage_is_one_shot_per_conversation(stub: StubLLM) -> None:
    first = _chunks((await _post(stub, _body("BIG"))).text)
    again = _chunks((await _post(stub, _body("BIG"))).text)
    other = _chunks((await _post(stub, _body("BIG other"))).text)
    prompts = [c[-1]["usage"]["prompt_tokens"] for c in (first, again, other)]  # type: ignore[index]
    assert prompts == [9000, 100, 9000]


async def test_slow_stream_records_the_disconnect(stub: StubLLM) -> None:
    received = b""
    with trio.fail_after(10):
        async with await _send_raw(stub, "SLOW") as stream:
            while b"tick 2." not in received:
                chunk = await stream.receive_some()
                assert chunk, "stub closed the stream early"
                received += chunk
        await stub.wait_until(lambda: stub.requests[0].disconnected)
    assert received.startswith(b"HTTP/1.1 200")
    assert stub.requests[0].reply == "SLOW"


async def test_held_stream_waits_for_release(stub: StubLLM) -> None:
    received = b""
    with trio.fail_after(10):
        async with await _send_raw(stub, "HOLD on") as stream:
            while HELLO[0].encode() not in received:
                received += await stream.receive_some()
            # Held after the first delta: nothing more comes until the test releases it.
            with trio.move_on_after(0.3):
                received += await stream.receive_some()
            assert HELLO[1].encode() not in received
            stub.release()
            while b"[DONE]" not in received:
                chunk = await stream.receive_some()
                assert chunk, "stub closed the stream early"
                received += chunk
    assert b'"prompt_tokens":100' in received
    # Released for good: a later HOLD passes straight through.
    again = _chunks((await _post(stub, _body("HOLD again"))).text)
    assert again[-1]["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
