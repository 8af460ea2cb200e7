"""Parsing interactions from documented payloads, clear errors for bad ones, and the response shapes."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.interactions import (
    ApplicationCommand,
    Autocomplete,
    ComponentClick,
    OptionType,
    Ping,
    parse_interaction,
    parse_interaction_body,
)
from halswarm.channels.discord.messages import Embed, Message
from halswarm.channels.discord.responses import (
    CallbackType,
    Choice,
    autocomplete_result,
    channel_message,
    defer_message,
    defer_update,
    pong,
    update_message,
)
from tests.channels.discord import support as s

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

FEW = settings(max_examples=150, deadline=None, database=None)


def test_ping() -> None:
    parsed = parse_interaction(s.ping())
    assert parsed == Ping(id="786008729715212339", application_id=s.APP_ID, token=s.TOKEN)
    assert s.TOKEN not in repr(parsed)


def test_the_reference_sub_command_sample() -> None:
    parsed = parse_interaction(s.reference_slash_sample())
    assert isinstance(parsed, ApplicationCommand)
    assert parsed.command.path() == ("session", "inject")
    assert parsed.command.values() == {"session_id": "ses_df2c01", "message": "run the tests"}
    assert parsed.actor.user.id == s.ANA
    assert parsed.actor.user.username == "ana"
    assert parsed.actor.roles == frozenset({s.OPS_ROLE})
    assert parsed.actor.permissions == 2147483647
    assert parsed.actor.audit_name == f"discord:{s.ANA}"
    assert parsed.guild_id == s.GUILD_ID
    assert parsed.channel_id == s.CHANNEL_ID


def test_a_command_with_typed_options() -> None:
    raw = s.slash("logs", [s.option("target", "app-backend"), s.option("count", 5, OptionType.INTEGER)])
    parsed = parse_interaction(raw)
    assert isinstance(parsed, ApplicationCommand)
    assert parsed.command.name == "logs"
    assert parsed.command.id == "1000000000000000001"
    assert parsed.command.path() == ("logs",)
    assert parsed.command.values() == {"target": "app-backend", "count": 5}
    assert parsed.command.focused() is None


def test_option_values_of_every_kind() -> None:
    options: list[JSONValue] = [
        s.option("b", True, OptionType.BOOLEAN),
        s.option("n", 1.5, OptionType.NUMBER),
        s.option("m", 2, OptionType.NUMBER),
        s.option("u", "123", OptionType.USER),
    ]
    parsed = parse_interaction(s.slash("x", options))
    assert isinstance(parsed, ApplicationCommand)
    assert parsed.command.values() == {"b": True, "n": 1.5, "m": 2, "u": "123"}


def test_a_sub_command_group() -> None:
    raw = s.slash(
        "env",
        [{"name": "node", "type": 2, "options": [{"name": "check", "type": 1, "options": [s.option("node", "b1")]}]}],
    )
    parsed = parse_interaction(raw)
    assert isinstance(parsed, ApplicationCommand)
    assert parsed.command.path() == ("env", "node", "check")
    assert parsed.command.values() == {"node": "b1"}


def test_a_direct_message_has_a_user_and_no_roles() -> None:
    raw = s.slash("status")
    del raw["member"], raw["guild_id"]
    raw["user"] = {"id": s.ANA, "username": "ana"}
    parsed = parse_interaction(raw)
    assert isinstance(parsed, ApplicationCommand)
    assert parsed.guild_id is None
    assert parsed.actor.roles == frozenset()
    assert parsed.actor.permissions is None


def test_autocomplete_has_a_focused_option_with_partial_text() -> None:
    raw = s.autocomplete("logs", [s.option("target", "app", focused=True), s.option("count", "1", 4, focused=False)])
    with pytest.raises(PayloadError, match=r"options\[1\]\.value: expected an integer for an option of type INTEGER"):
        parse_interaction(raw)
    raw = s.autocomplete("logs", [s.option("count", "1", OptionType.INTEGER, focused=True)])
    parsed = parse_interaction(raw)
    assert isinstance(parsed, Autocomplete)
    focused = parsed.command.focused()
    assert focused is not None
    assert (focused.name, focused.value) == ("count", "1")


def test_autocomplete_without_a_focused_option_is_an_error() -> None:
    with pytest.raises(PayloadError, match="no focused option"):
        parse_interaction(s.autocomplete("logs", [s.option("target", "app")]))


def test_a_button_click() -> None:
    parsed = parse_interaction(s.click("hs1:approve:per_20d3aa"))
    assert isinstance(parsed, ComponentClick)
    assert parsed.custom_id == "hs1:approve:per_20d3aa"
    assert parsed.component_type == 2
    assert parsed.message_id == "999"
    assert parsed.actor.user.id == s.ANA


def test_parse_from_bytes() -> None:
    parsed = parse_interaction_body(orjson.dumps(s.ping()))
    assert isinstance(parsed, Ping)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'"x"', "must be a JSON object"),
    ],
)
def test_bodies_that_are_not_objects(body: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_interaction_body(body)


def _without(raw: JSONObject, *path: str) -> JSONObject:
    out = copy.deepcopy(raw)
    target = out
    for key in path[:-1]:
        nxt = target[key]
        assert isinstance(nxt, dict)
        target = nxt
    del target[path[-1]]
    return out


def _with(raw: JSONObject, value: JSONValue, *path: str | int) -> JSONObject:
    out = copy.deepcopy(raw)
    target: JSONValue = out
    for key in path[:-1]:
        if isinstance(key, int):
            assert isinstance(target, list)
            target = target[key]
        else:
            assert isinstance(target, dict)
            target = target[key]
    last = path[-1]
    if isinstance(last, int):
        assert isinstance(target, list)
        target[last] = value
    else:
        assert isinstance(target, dict)
        target[last] = value
    return out


LOGS = s.slash("logs", [s.option("target", "app-backend"), s.option("count", 5, OptionType.INTEGER)])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (_without(s.ping(), "type"), "type: required key is missing"),
        (_with(s.ping(), "1", "type"), "type: expected an integer, got a string"),
        (_with(s.ping(), True, "type"), "type: expected an integer, got a boolean"),
        (_with(s.ping(), 42, "type"), "type: unknown interaction type 42"),
        (_with(s.ping(), 5, "type"), r"MODAL_SUBMIT \(5\) is not handled"),
        (_without(s.ping(), "id"), "id: required key is missing"),
        (_with(s.ping(), "abc", "id"), "id: expected a Discord id"),
        (_with(s.ping(), 786008729715212339, "id"), "id: expected a string, got a number"),
        (_without(s.ping(), "token"), "token: required key is missing"),
        (_with(s.ping(), "a/b", "token"), "token: unexpected characters"),
        (_without(s.ping(), "application_id"), "application_id: required key is missing"),
        (_without(LOGS, "member"), r"member: required key is missing \(neither member nor user given\)"),
        (_without(LOGS, "member", "user"), "member.user: required key is missing"),
        (_with(LOGS, "x", "member", "roles"), "member.roles: expected a list, got a string"),
        (_with(LOGS, ["ops"], "member", "roles"), r"member.roles\[0\]: expected a Discord id"),
        (_with(LOGS, "admin", "member", "permissions"), "member.permissions: expected a permission bit set"),
        (_without(LOGS, "data"), "data: required key is missing"),
        (_with(LOGS, [], "data"), "data: expected an object, got a list"),
        (_without(LOGS, "data", "name"), "data.name: required key is missing"),
        (_with(LOGS, 2, "data", "type"), "data.type: only chat-input"),
        (
            _with(LOGS, 5, "data", "options", 0, "value"),
            r"data.options\[0\].value: expected a string for an option of type STRING",
        ),
        (_with(LOGS, 5.5, "data", "options", 1, "value"), r"data.options\[1\].value: expected an integer"),
        (_with(LOGS, True, "data", "options", 1, "value"), r"data.options\[1\].value: expected an integer"),
        (_with(LOGS, 99, "data", "options", 1, "type"), r"data.options\[1\].type: unknown option type 99"),
        (_with(LOGS, "yes", "data", "options", 1, "focused"), r"data.options\[1\].focused: expected true or false"),
        (_with(LOGS, None, "data", "options", 1, "value"), r"data.options\[1\].value: required key is missing"),
        (_with(LOGS, "x", "data", "options", 1), r"data.options\[1\]: expected an object, got a string"),
        (_with(LOGS, {"a": 1}, "data", "options"), "data.options: expected a list, got an object"),
        (_without(s.click("hs1:kill:x"), "message"), "message: required key is missing"),
        (_without(s.click("hs1:kill:x"), "data", "custom_id"), "data.custom_id: required key is missing"),
        (_with(s.click("hs1:kill:x"), "", "data", "custom_id"), "data.custom_id: must be 1-100 characters"),
        (_with(s.click("hs1:kill:x"), "x" * 101, "data", "custom_id"), "data.custom_id: must be 1-100 characters"),
        (_with(s.click("hs1:kill:x"), [1], "data", "values"), r"data.values\[0\]: expected a string"),
    ],
)
def test_bad_payloads_name_the_problem(raw: JSONObject, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem) as info:
        parse_interaction(raw)
    assert s.TOKEN not in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    raw = _with(_without(LOGS, "id"), "x", "member", "roles")
    with pytest.raises(PayloadError) as info:
        parse_interaction(raw)
    assert len(info.value.problems) == 2


def test_options_nested_too_deep_are_refused() -> None:
    leaf: JSONObject = s.option("x", "y")
    for _ in range(5):
        leaf = {"name": "g", "type": 1, "options": [leaf]}
    with pytest.raises(PayloadError, match="nested deeper than 3 levels"):
        parse_interaction(s.slash("deep", [leaf]))


def test_unknown_keys_are_ignored_everywhere() -> None:
    raw = _with(LOGS, "new", "data", "options", 0, "brand_new_field")
    raw["another_new_field"] = {"x": 1}
    assert isinstance(parse_interaction(raw), ApplicationCommand)


# ---- robustness ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)


@FEW
@given(
    value=st.dictionaries(
        st.sampled_from(["type", "id", "application_id", "token", "data", "member", "user", "message"]), json_values
    )
)
def test_random_objects_raise_only_payload_errors(value: JSONObject) -> None:
    problems = ["parsed"]
    try:
        parse_interaction(value)
    except PayloadError as exc:
        problems = exc.problems
    assert problems  # anything else than a PayloadError would have failed the test


@FEW
@given(data=st.data())
def test_mutated_documented_payloads_raise_only_payload_errors(data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from([s.ping(), LOGS, s.click("hs1:kill:ses_1"), s.reference_slash_sample()]))
    raw = copy.deepcopy(raw)
    target: JSONValue = raw
    # walk to a random nested container and replace one of its values
    for _ in range(data.draw(st.integers(0, 4))):
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target)))
            if not isinstance(target[key], dict | list) or not target[key]:
                break
            target = target[key]
        elif isinstance(target, list) and target:
            target = target[data.draw(st.integers(0, len(target) - 1))]
    if isinstance(target, dict) and target:
        target[data.draw(st.sampled_from(sorted(target)))] = data.draw(json_values)
    elif isinstance(target, list) and target:
        target[0] = data.draw(json_values)
    problems = ["parsed"]
    try:
        parse_interaction(raw)
    except PayloadError as exc:
        problems = exc.problems
    assert problems  # anything else than a PayloadError would have failed the test


@FEW
@given(body=st.binary(max_size=200))
def test_random_bytes_raise_only_payload_errors(body: bytes) -> None:
    problems = ["parsed"]
    try:
        parse_interaction_body(body)
    except PayloadError as exc:
        problems = exc.problems
    assert problems  # anything else than a PayloadError would have failed the test


# ---- responses -------------------------------------------------------------------------------


def test_pong() -> None:
    assert pong().to_json() == {"type": 1}


def test_a_message_now_and_an_ephemeral_one() -> None:
    public = channel_message(Message(content="hi")).to_json()
    assert public == {"type": 4, "data": {"allowed_mentions": {"parse": []}, "content": "hi"}}
    private = channel_message(Message(content="hi", ephemeral=True)).to_json()
    data = private["data"]
    assert isinstance(data, dict)
    assert data["flags"] == 64


def test_deferrals() -> None:
    assert defer_message().to_json() == {"type": 5}
    assert defer_message(ephemeral=True).to_json() == {"type": 5, "data": {"flags": 64}}
    assert defer_update().to_json() == {"type": 6}


def test_update_message_drops_the_ephemeral_flag() -> None:
    body = update_message(Message(content="Approved by <@1>", components=(), ephemeral=True)).to_json()
    assert body == {
        "type": 7,
        "data": {"allowed_mentions": {"parse": []}, "content": "Approved by <@1>", "components": []},
    }


def test_autocomplete_result_is_capped_at_25_and_100_characters() -> None:
    choices = [Choice(f"{'n' * 150}{i}", f"{'v' * 150}{i}") for i in range(40)]
    body = autocomplete_result(choices).to_json()
    assert body["type"] == CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    data = body["data"]
    assert isinstance(data, dict)
    items = data["choices"]
    assert isinstance(items, list)
    assert len(items) == 25
    for item in items:
        assert isinstance(item, dict)
        name, value = item["name"], item["value"]
        assert isinstance(name, str)
        assert isinstance(value, str)
        assert len(name) <= 100
        assert len(value) <= 100


def test_the_reference_autocomplete_result() -> None:
    body = autocomplete_result([Choice("app-backend", "app-backend")]).to_json()
    assert body == {"type": 8, "data": {"choices": [{"name": "app-backend", "value": "app-backend"}]}}


def test_message_json_round_trips_through_orjson() -> None:
    message = Message(embeds=(Embed(title="t", description="d", color=1),))
    assert orjson.loads(orjson.dumps(channel_message(message).to_json()))["data"]["embeds"][0]["title"] == "t"
