"""The hand-written session validator on the ingest hot path agrees with the strict
converter: an equal value for every state it accepts, and it accepts nothing the strict
converter rejects (it returns None, and the strict path then explains the problem)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from hypothesis import given
from hypothesis import strategies as st

from halswarm.convert import ConversionError, converter, structure_strict
from halswarm.models import Session
from halswarm.proto.codec import _fast_session
from tests.proto.strategies import json_values, sessions

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

BASE: JSONObject = {"id": "s", "node_id": "n", "project": "p"}


def strict_or_none(raw: object) -> Session | None:
    try:
        return structure_strict(raw, Session)
    except ConversionError:
        return None


@given(sessions)
def test_valid_states_give_equal_values(session: Session) -> None:
    raw = orjson.loads(orjson.dumps(converter.unstructure(session)))
    fast = _fast_session(raw)
    if session.pending.is_empty():
        assert fast == session
    else:
        assert fast is None  # requests take the strict path


@given(
    sessions,
    st.sampled_from([*BASE, "status", "tokens", "cost_usd", "compaction_count", "pending", "last_activity", "x"]),
    json_values,
)
def test_a_changed_key_is_never_accepted_unless_strict_accepts_it(session: Session, key: str, value: JSONValue) -> None:
    raw = orjson.loads(orjson.dumps(converter.unstructure(session)))
    raw[key] = value
    fast = _fast_session(raw)
    if fast is not None:
        assert fast == strict_or_none(raw)


@given(st.sampled_from(["input", "output", "cache_read", "y"]), json_values)
def test_tokens_are_checked(key: str, value: JSONValue) -> None:
    raw: JSONObject = {**BASE, "tokens": {key: value}}
    fast = _fast_session(raw)
    if fast is not None:
        assert fast == strict_or_none(raw)


def test_defaults_and_int_cost() -> None:
    raw: JSONObject = {**BASE, "cost_usd": 2, "pending": {"permissions": [], "questions": []}}
    fast = _fast_session(raw)
    assert fast == structure_strict(raw, Session)
    assert fast is not None
    assert type(fast.cost_usd) is float


def test_booleans_are_not_numbers() -> None:
    assert _fast_session({**BASE, "compaction_count": True}) is None
    assert _fast_session({**BASE, "cost_usd": False}) is None
    assert _fast_session({**BASE, "tokens": {"input": True}}) is None
