"""Codec rejections: every malformed frame becomes a ProtocolError with the right close
code and a reason naming the problem, never any other exception (fuzzed with hypothesis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.proto import Ack, CloseCode, ProtocolError, decode
from halswarm.proto.messages import TAGS, Events
from tests.proto.strategies import json_objects, json_values, texts

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

TS = "2026-01-01T00:00:00.000000Z"
EVENT: JSONObject = {"seq": 1, "ts": TS, "type": "session.idle"}
HELLO: JSONObject = {"node_id": "n1", "instance_key": "k", "hostname": "h", "version": "0.1"}
BAD_PROJECTS: JSONValue = [{"name": "p", "directory": 3}]
BAD_TOKENS_STATE: JSONValue = {"id": "s", "node_id": "n", "project": "p", "tokens": {"input": "many"}}


def frame(obj: JSONValue) -> bytes:
    return orjson.dumps(obj)


def events_frame(*events: JSONValue) -> bytes:
    return frame({"v": 1, "type": "events", "events": list(events)})


def reject(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'"hello"', "must be a JSON object", id="string"),
        pytest.param(b"null", "must be a JSON object", id="null"),
    ],
)
def test_non_objects_are_malformed(data: bytes, needle: str) -> None:
    err = reject(data)
    assert err.code is CloseCode.MALFORMED
    assert needle in err.reason


@pytest.mark.parametrize(
    "version",
    [pytest.param(None, id="missing"), 2, 0, "1", True, 1.0],
    ids=str,
)
def test_other_versions_are_unsupported(version: JSONValue) -> None:
    obj: JSONObject = {"type": "ack", "seq": 1}
    if version is not None:
        obj["v"] = version
    err = reject(frame(obj))
    assert err.code is CloseCode.UNSUPPORTED_VERSION
    assert "unsupported protocol version" in err.reason
    assert repr(version) in str(err)


@pytest.mark.parametrize("tag", [None, "bogus", 7, "Ack"], ids=str)
def test_unknown_type_is_malformed(tag: JSONValue) -> None:
    obj: JSONObject = {"v": 1, "seq": 1}
    if tag is not None:
        obj["type"] = tag
    err = reject(frame(obj))
    assert err.code is CloseCode.MALFORMED
    assert f"unknown frame type {tag!r}" in str(err)
    assert "hello" in str(err)  # lists the types it would accept


@pytest.mark.parametrize(
    ("obj", "needles"),
    [
        pytest.param({"type": "ack", "seq": 1, "extra": 1}, ["unknown key(s): extra"], id="ack-extra-key"),
        pytest.param({"type": "hello", **HELLO, "nodeid": "x"}, ["unknown key(s): nodeid"], id="hello-typo"),
        pytest.param({"type": "ack", "seq": "1"}, ["ack.seq", "expected an integer"], id="ack-seq-string"),
        pytest.param({"type": "ack", "seq": True}, ["ack.seq", "expected an integer"], id="ack-seq-bool"),
        pytest.param({"type": "ack"}, ["ack.seq", "required key is missing"], id="ack-seq-missing"),
        pytest.param({"type": "hello", **HELLO, "last_seq": 1.5}, ["hello.last_seq"], id="hello-float-seq"),
        pytest.param(
            {"type": "hello", **HELLO, "projects": BAD_PROJECTS},
            ["hello.projects[0].directory", "expected a string"],
            id="nested-path",
        ),
        pytest.param(
            {"type": "hello", **HELLO, "capabilities": "resume"},
            ["hello.capabilities", "expected a list"],
            id="string-for-list",
        ),
        pytest.param(
            {"type": "heartbeat", "ts": TS, "resources": 5},
            ["heartbeat.resources", "expected a JSON object"],
            id="number-for-object",
        ),
        pytest.param(
            {"type": "command", "command_id": "c", "idempotency_key": "k", "command_type": "rm", "target": "s"},
            ["command.command_type", "must be one of", "kill_session"],
            id="bad-literal",
        ),
        pytest.param(
            {"type": "command_result", "command_id": "c", "ok": True, "result": [1]},
            ["command_result.result", "expected a JSON object"],
            id="result-not-object",
        ),
        pytest.param({"type": "command_result", "command_id": "c", "ok": 1}, ["command_result.ok"], id="ok-not-bool"),
    ],
)
def test_invalid_control_frames_name_the_key(obj: JSONObject, needles: list[str]) -> None:
    err = reject(frame({"v": 1, **obj}))
    assert err.code is CloseCode.MALFORMED
    for needle in needles:
        assert needle in str(err)


def test_control_frame_reports_every_problem() -> None:
    err = reject(frame({"v": 1, "type": "hello", "node_id": 1, "hostname": "h", "version": "v", "zzz": 0}))
    text = str(err)
    assert "hello.node_id: expected a string" in text
    assert "hello.instance_key: required key is missing" in text
    assert "unknown key(s): zzz" in text


@pytest.mark.parametrize(
    ("events", "needle"),
    [
        pytest.param(None, "exactly one key, events (a list)", id="events-missing"),
        pytest.param({"seq": 1}, "exactly one key, events (a list)", id="events-object"),
        pytest.param("abc", "exactly one key, events (a list)", id="events-string"),
    ],
)
def test_events_frame_needs_a_list(events: JSONValue, needle: str) -> None:
    obj: JSONObject = {"v": 1, "type": "events"}
    if events is not None:
        obj["events"] = events
    err = reject(frame(obj))
    assert err.code is CloseCode.MALFORMED
    assert needle in err.reason


def test_events_frame_rejects_extra_top_level_keys() -> None:
    err = reject(frame({"v": 1, "type": "events", "events": [EVENT], "more": True}))
    assert err.code is CloseCode.MALFORMED
    assert "exactly one key" in err.reason


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        pytest.param(5, "event must be an object", id="number"),
        pytest.param([EVENT], "event must be an object", id="list"),
        pytest.param({**EVENT, "colour": "red", "x": 1}, "unknown key(s): colour, x", id="unknown-keys"),
        pytest.param({**EVENT, "seq": 0}, "seq must be a positive integer", id="seq-zero"),
        pytest.param({**EVENT, "seq": -4}, "seq must be a positive integer", id="seq-negative"),
        pytest.param({**EVENT, "seq": 1.0}, "seq must be a positive integer", id="seq-float"),
        pytest.param({**EVENT, "seq": "1"}, "seq must be a positive integer", id="seq-string"),
        pytest.param({**EVENT, "seq": True}, "seq must be a positive integer", id="seq-bool"),
        pytest.param({"ts": TS, "type": "x"}, "seq must be a positive integer", id="seq-missing"),
        pytest.param({**EVENT, "ts": "2026-01-01T00:00:00Z"}, "ts must be an RFC 3339", id="ts-no-micros"),
        pytest.param({**EVENT, "ts": "2026-01-01 00:00:00.000000Z"}, "ts must be an RFC 3339", id="ts-space"),
        pytest.param({**EVENT, "ts": "2026-01-01T00:00:00.000000+0"}, "ts must be an RFC 3339", id="ts-offset"),
        pytest.param({**EVENT, "ts": "abcdefghijTabcdefghijklmnoZ"}, "ts must be an RFC 3339", id="ts-garbage"),
        pytest.param({**EVENT, "ts": 1767225600}, "ts must be an RFC 3339", id="ts-number"),
        pytest.param({"seq": 1, "type": "x"}, "ts must be an RFC 3339", id="ts-missing"),
        pytest.param({**EVENT, "type": ""}, "type must be a non-empty string", id="type-empty"),
        pytest.param({**EVENT, "type": 3}, "type must be a non-empty string", id="type-number"),
        pytest.param({**EVENT, "session_id": 3}, "session_id must be a string or null", id="session-number"),
        pytest.param({**EVENT, "project": ["p"]}, "project must be a string or null", id="project-list"),
        pytest.param({**EVENT, "data": [1]}, "data must be an object", id="data-list"),
        pytest.param({**EVENT, "data": None}, "data must be an object", id="data-null"),
        pytest.param({**EVENT, "state": {"id": "s"}}, "events[0].state.node_id: required key", id="state-missing"),
        pytest.param(
            {**EVENT, "state": {"id": "s", "node_id": "n", "project": "p", "status": "dancing"}},
            "events[0].state.status: must be one of",
            id="state-bad-status",
        ),
        pytest.param(
            {**EVENT, "state": BAD_TOKENS_STATE},
            "events[0].state.tokens.input: expected an integer",
            id="state-nested-type",
        ),
        pytest.param({**EVENT, "state": [1]}, "events[0].state: expected a JSON object", id="state-list"),
    ],
)
def test_invalid_events_name_the_problem(event: JSONValue, needle: str) -> None:
    err = reject(events_frame(event))
    assert err.code is CloseCode.MALFORMED
    assert needle in str(err)


def test_invalid_event_reports_its_index() -> None:
    err = reject(events_frame(EVENT, {**EVENT, "seq": 2}, {**EVENT, "seq": 3, "type": ""}))
    assert "@ events[2]" in err.reason


def test_reason_fits_a_websocket_close_frame() -> None:
    err = reject(frame({"v": 1, "type": "ack", "seq": 1, **{f"key{i}": i for i in range(100)}}))
    assert len(err.reason.encode()) <= 123
    assert err.reason.startswith("invalid ack frame")
    assert "close code 4400" in str(err)


# ---- fuzzing: nothing but ProtocolError escapes -------------------------------------


def decode_or_protocol_error(data: str | bytes) -> None:
    """Decode *data*; a failure must be a ProtocolError with a protocol close code."""
    try:
        decode(data)
    except ProtocolError as err:
        code: CloseCode | None = err.code
    else:
        code = None
    assert code in {None, CloseCode.MALFORMED, CloseCode.UNSUPPORTED_VERSION}


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.binary(max_size=64) | st.text(max_size=64))
def test_arbitrary_input_only_raises_protocol_error(data: str | bytes) -> None:
    decode_or_protocol_error(data)


@settings(max_examples=150, deadline=None, database=None)
@given(tag=st.sampled_from(sorted(TAGS.values())), body=json_objects, events=st.lists(json_values, max_size=3))
def test_json_shaped_junk_only_raises_protocol_error(tag: str, body: JSONObject, events: list[JSONValue]) -> None:
    decode_or_protocol_error(frame({**body, "v": 1, "type": tag}))
    decode_or_protocol_error(frame({"v": 1, "type": tag, "events": events}))


@settings(max_examples=100, deadline=None, database=None)
@given(event=st.dictionaries(st.sampled_from(["seq", "ts", "type", "data", "state", "session_id"]), json_values))
def test_junk_events_only_raise_protocol_error(event: JSONObject) -> None:
    decode_or_protocol_error(events_frame({"seq": 1, "ts": TS, "type": "x", **event}))


@settings(max_examples=50, deadline=None, database=None)
@given(key=texts.filter(lambda k: k not in {"v", "type", "seq"}))
def test_any_extra_control_key_is_rejected(key: str) -> None:
    assert decode(frame({"v": 1, "type": "ack", "seq": 3})) == Ack(3)
    err = reject(frame({"v": 1, "type": "ack", "seq": 3, key: None}))
    assert "unknown key(s)" in str(err)


def nested_events_frame(depth: int) -> str:
    """An events frame whose one event has *depth* levels of objects in ``data``."""
    data = '{"a":' * depth + "1" + "}" * depth
    return '{"v":1,"type":"events","events":[{"seq":1,"ts":"' + TS + '","type":"x","data":' + data + "}]}"


def test_event_data_nested_deeper_than_the_store_can_write_is_refused() -> None:
    """Guards: data nested past orjson's serialise limit was accepted and crashed the supervisor's writer."""
    err = reject(nested_events_frame(300))  # orjson parses it, but cannot serialise it again
    assert err.code is CloseCode.MALFORMED
    assert err.reason == "invalid events frame: data is nested too deeply @ events[0]"
    # Nesting the store can write still passes, unchanged.
    decoded = decode(nested_events_frame(200))
    assert isinstance(decoded, Events)
    assert orjson.dumps(decoded.events[0].data) == ('{"a":' * 199 + '{"a":1' + "}" * 200).encode()
