"""Round trips: every message class survives ``decode(encode(msg))`` unchanged.

Also covers the outbox fast path (``encode_event_body`` + ``encode_events_raw``), which
splices seqs into pre-encoded bodies and must decode to the same events.
"""

from __future__ import annotations

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.proto import (
    PROTOCOL_VERSION,
    Events,
    WireEvent,
    decode,
    encode,
    encode_event_body,
    encode_events_raw,
)
from halswarm.proto.messages import TAGS
from tests.proto.strategies import MESSAGE_STRATEGIES, wire_events

FEW = settings(max_examples=40, deadline=None, database=None)


def test_every_message_class_has_a_strategy() -> None:
    assert set(MESSAGE_STRATEGIES) == set(TAGS.values())


@pytest.mark.parametrize("tag", sorted(MESSAGE_STRATEGIES))
@FEW
@given(data=st.data())
def test_decode_encode_round_trip(tag: str, data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[tag])
    frame = encode(msg)
    assert decode(frame) == msg
    assert decode(frame.encode()) == msg  # bytes frames too


@pytest.mark.parametrize("tag", sorted(MESSAGE_STRATEGIES))
@settings(max_examples=10, deadline=None, database=None)
@given(data=st.data())
def test_encoded_frame_has_envelope(tag: str, data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[tag])
    obj = orjson.loads(encode(msg))
    assert obj["v"] == PROTOCOL_VERSION
    assert obj["type"] == tag == TAGS[type(msg)]


@FEW
@given(events=st.lists(wire_events, min_size=1, max_size=5), first=st.integers(min_value=1, max_value=2**40))
def test_raw_events_frame_decodes_to_spliced_seqs(events: list[WireEvent], first: int) -> None:
    seqs = range(first, first + len(events))
    rows = [(seq, encode_event_body(event)) for seq, event in zip(seqs, events, strict=True)]
    decoded = decode(encode_events_raw(rows))
    expected = Events([attrs.evolve(event, seq=seq) for seq, event in zip(seqs, events, strict=True)])
    assert decoded == expected


@settings(max_examples=20, deadline=None, database=None)
@given(event=wire_events)
def test_event_body_leaves_seq_to_the_outbox(event: WireEvent) -> None:
    body = orjson.loads(encode_event_body(event))
    assert "seq" not in body
    assert body["ts"] == event.ts
    assert body["type"] == event.type


def test_raw_frame_matches_encode_output() -> None:
    event = WireEvent(7, "2026-01-01T00:00:00.000000Z", "session.idle", "s1", "p", {"k": [1, 2.5, None]})
    raw = encode_events_raw([(7, encode_event_body(event))])
    assert orjson.loads(raw) == orjson.loads(encode(Events([event])))


def test_defaults_may_be_omitted_on_the_wire() -> None:
    frame = b'{"v":1,"type":"events","events":[{"seq":1,"ts":"2026-01-01T00:00:00.000000Z","type":"x"}]}'
    assert decode(frame) == Events([WireEvent(1, "2026-01-01T00:00:00.000000Z", "x")])
