"""The JSON edge (halswarm.convert): strict structuring with readable "key.path: problem"
lines, shape checks on lists and objects, the lenient converter, and JSON helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.convert import (
    ConversionError,
    converter,
    describe_errors,
    dumps,
    load_json_row,
    loads_object,
    structure_strict,
    unstructure,
)
from halswarm.models import Command, Event, Node, Project, Resources, Session, Tokens
from halswarm.proto import CommandResult, Heartbeat, Hello
from tests.proto.strategies import json_objects, sessions, texts, timestamps

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

HELLO: JSONObject = {"node_id": "n1", "instance_key": "k", "hostname": "h", "version": "1"}


def problems(value: JSONValue, cls: type[object], path: str = "$") -> list[str]:
    with pytest.raises(ConversionError) as info:
        structure_strict(value, cls, path=path)
    return info.value.problems


# ---- round trips --------------------------------------------------------------------------

commands = st.builds(
    Command,
    id=texts,
    type=st.sampled_from(["start_session", "env_check"]),
    target=texts,
    args=json_objects,
    result=st.none() | json_objects,
    error=st.none() | texts,
    node_id=st.none() | texts,
    created_at=timestamps,
)
events = st.builds(
    Event,
    id=st.integers(1, 2**40),
    node_id=texts,
    seq=st.integers(1, 2**40),
    ts=timestamps,
    type=texts,
    data=json_objects,
)
nodes = st.builds(
    Node,
    id=texts,
    projects=st.lists(st.builds(Project, name=texts, directory=texts), max_size=2),
    health=st.dictionaries(texts, texts, max_size=2),
    sessions=st.integers(0, 1000),
)


@pytest.mark.parametrize("strategy", [sessions, commands, events, nodes], ids=["session", "command", "event", "node"])
@settings(max_examples=30, deadline=None, database=None)
@given(data=st.data())
def test_strict_structure_inverts_unstructure(strategy: st.SearchStrategy[object], data: st.DataObject) -> None:
    value = data.draw(strategy)
    wire = orjson.loads(dumps(value))
    assert structure_strict(wire, type(value)) == value


def test_unstructure_writes_every_field() -> None:
    assert unstructure(Tokens(input=3)) == {"input": 3, "output": 0, "reasoning": 0, "cache_read": 0, "cache_write": 0}
    assert unstructure([Project("a", "/a")]) == [{"name": "a", "directory": "/a"}]


def test_float_fields_accept_integers() -> None:
    assert structure_strict({"cpu_percent": 50}, Resources) == Resources(cpu_percent=50.0)


# ---- strict scalar types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("last_seq", "3", "last_seq: expected an integer, got str"),
        ("last_seq", 3.0, "last_seq: expected an integer, got float"),
        ("last_seq", True, "last_seq: expected an integer, got bool"),
        ("hostname", 7, "hostname: expected a string, got int"),
        ("hostname", None, "hostname: expected a string, got NoneType"),
        ("capabilities", "resume", "capabilities: expected a list, got str"),
        ("capabilities", {"resume": True}, "capabilities: expected a list, got dict"),
        ("capabilities", ["ok", 1], "capabilities[1]: expected a string, got int"),
        ("projects", [7], "projects[0]: expected a JSON object, got int"),
        ("projects", [{"name": "p", "directory": "/p", "extra": 1}], "projects[0]: unknown key(s): extra"),
        ("projects", [{"name": "p"}], "projects[0].directory: required key is missing"),
    ],
)
def test_strict_types_and_shapes(field: str, value: JSONValue, message: str) -> None:
    assert problems({**HELLO, field: value}, Hello) == [message]


@pytest.mark.parametrize(("value", "kind"), [(1, "int"), ("true", "str"), (None, "NoneType")])
def test_bool_fields_want_true_or_false(value: JSONValue, kind: str) -> None:
    assert problems({"command_id": "c", "ok": value}, CommandResult) == [f"ok: expected true or false, got {kind}"]


def test_literal_lists_allowed_values() -> None:
    (line,) = problems({"id": "s", "node_id": "n", "project": "p", "status": "sleeping"}, Session)
    assert line.startswith("status: must be one of: starting, busy, idle")


def test_json_object_fields_pass_values_through_and_reject_non_objects() -> None:
    raw: JSONObject = {"id": 1, "node_id": "n", "seq": 1, "ts": "t", "type": "x", "data": {"a": [1, {"b": None}]}}
    assert structure_strict(raw, Event).data == {"a": [1, {"b": None}]}
    assert problems({**raw, "data": [1]}, Event) == ["data: expected a JSON object"]


def test_mapping_values_are_checked_with_their_key() -> None:
    assert problems({"ts": "t", "health": {"db": 1}}, Heartbeat) == ["health['db']: expected a string, got int"]


# ---- error reporting -------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    raw: JSONObject = {"node_id": 1, "hostname": "h", "version": "v", "projects": "x", "zz": 0, "aa": 0}
    assert sorted(problems(raw, Hello)) == sorted(
        [
            "node_id: expected a string, got int",
            "instance_key: required key is missing",
            "projects: expected a list, got str",
            "(top level): unknown key(s): aa, zz",
        ]
    )


def test_path_prefix_names_the_source() -> None:
    assert problems({**HELLO, "last_seq": "x"}, Hello, path="hello") == ["hello.last_seq: expected an integer, got str"]
    assert problems(5, Hello, path="hello") == ["hello: expected a JSON object, got int"]


def test_top_level_problems_say_so() -> None:
    assert problems([HELLO], Hello) == ["(top level): expected a JSON object, got list"]


def test_nested_paths_are_dotted() -> None:
    raw: JSONObject = {"id": "s", "node_id": "n", "project": "p", "tokens": {"input": -1.5}}
    assert problems(raw, Session) == ["tokens.input: expected an integer, got float"]


def test_conversion_error_is_a_value_error_joining_its_problems() -> None:
    err = ConversionError(["a: bad", "b: worse"])
    assert isinstance(err, ValueError)
    assert str(err) == "a: bad; b: worse"


def test_describe_errors_of_a_plain_exception() -> None:
    assert describe_errors(ValueError("boom")) == ["(top level): boom"]
    assert describe_errors(ValueError("boom"), path="body") == ["body: boom"]


# ---- lenient converter and JSON helpers -----------------------------------------------------------


def test_lenient_converter_ignores_unknown_keys_but_strict_does_not() -> None:
    raw: JSONObject = {"name": "p", "directory": "/p", "added_in_v2": True}
    assert converter.structure(raw, Project) == Project("p", "/p")
    assert problems(raw, Project) == ["(top level): unknown key(s): added_in_v2"]


def test_structure_strict_does_not_mutate_its_input() -> None:
    raw: JSONObject = {**HELLO, "projects": [{"name": "p", "directory": "/p"}]}
    before = orjson.dumps(raw)
    structure_strict(raw, Hello)
    assert orjson.dumps(raw) == before


def test_dumps_serialises_attrs_and_plain_data() -> None:
    assert orjson.loads(dumps(Project("p", "/p"))) == {"name": "p", "directory": "/p"}
    assert dumps({"a": [1, 2]}) == b'{"a":[1,2]}'


def test_loads_object_accepts_objects() -> None:
    assert loads_object(b'{"a": 1}') == {"a": 1}
    assert loads_object('{"a": {"b": []}}') == {"a": {"b": []}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "request body is not valid JSON"),
        (b"", "request body is not valid JSON"),
        (b"[]", "request body must be a JSON object, got list"),
        (b"3", "request body must be a JSON object, got int"),
    ],
)
def test_loads_object_rejections_name_the_input(data: bytes, message: str) -> None:
    with pytest.raises(ConversionError) as info:
        loads_object(data, what="request body")
    (problem,) = info.value.problems
    assert problem.startswith(message)


def test_frozen_models_are_values() -> None:
    session = Session("s", "n", "p")
    assert attrs.evolve(session, status="busy") != session
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        session.status = "busy"  # type: ignore[misc]


@attrs.frozen
class _Row:
    count: int = 0
    names: list[str] = attrs.Factory(list)


def test_load_json_row_reads_our_rows_and_starts_empty_on_anything_else() -> None:
    assert load_json_row(None, _Row, "row") == (_Row(), [])
    assert load_json_row('{"count": 2, "names": ["a"], "later": 1}', _Row, "row") == (_Row(2, ["a"]), [])
    assert load_json_row(b'{"a": {"count": 1}}', dict[str, _Row], "rows") == ({"a": _Row(1)}, [])
    for text in ("{not json", "[1]", '{"count": "two"}', "7"):
        value, problems = load_json_row(text, _Row, "row")
        assert value == _Row()
        (problem,) = problems
        assert problem.startswith("row: unreadable state, starting empty (")
