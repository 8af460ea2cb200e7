"""Route contexts, the node an event is about, and dedup key templates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from halswarm.channels.expr import ExprError, Field
from halswarm.channels.fields import (
    EVENT_KEY,
    MAX_KEY_LENGTH,
    KeyTemplate,
    RouteContext,
    event_node,
    field_value,
    lookup_for,
)
from halswarm.models import SUPERVISOR_NODE_ID, Session
from tests.channels.support import event


def test_context_of_a_session() -> None:
    session = Session("ses_1", "node-b", "api", status="waiting", consecutive_errors=2, compaction_count=1)
    context = RouteContext.of_session(
        session, idle_for=12.0, cost_daily=Decimal(3), cost_project_daily=Decimal(1), day="2026-08-01"
    )
    assert context == RouteContext(
        status="waiting",
        idle_for=12.0,
        consecutive_errors=2,
        compaction_count=1,
        cost_daily=Decimal(3),
        cost_project_daily=Decimal(1),
        day="2026-08-01",
        node_id="node-b",
    )
    assert RouteContext.of_session(None, cost_daily=1.0) == RouteContext(cost_daily=1.0)


def test_event_node() -> None:
    context = RouteContext(node_id="node-c")
    assert event_node(event("session.idle", node="node-a"), context) == "node-a"
    offline = event("node.offline", node=SUPERVISOR_NODE_ID, data={"node_id": "node-b"})
    assert event_node(offline, context) == "node-b"
    assert event_node(event("policy.alert", node=SUPERVISOR_NODE_ID), context) == "node-c"
    assert event_node(event("policy.alert", node=SUPERVISOR_NODE_ID, data={"node_id": 5}), context) == "node-c"
    assert event_node(event("cost.budget_exceeded", node=SUPERVISOR_NODE_ID), RouteContext()) == SUPERVISOR_NODE_ID


def test_field_values() -> None:
    ev = event("session.error", session="s", project="p", node="n", data={"a": {"b": [1, 2]}})
    context = RouteContext(
        status="error", idle_for=1.0, consecutive_errors=3, compaction_count=2, cost_daily=4.0, cost_project_daily=5.0
    )
    values = {
        "type": "session.error",
        "node": "n",
        "project": "p",
        "session": "s",
        "status": "error",
        "idle_for": 1.0,
        "consecutive_errors": 3,
        "compaction_count": 2,
        "cost.daily": 4.0,
        "cost.project_daily": 5.0,
    }
    for name, value in values.items():
        assert field_value(ev, context, Field(name)) == value
    assert field_value(ev, context, Field("data", ("a", "b", "1"))) == 2
    assert field_value(ev, context, Field("data", ("a", "b", "9"))) is None
    assert field_value(ev, context, Field("nope")) is None
    assert lookup_for(ev, context)(Field("status")) == "error"


def test_key_template_parse_and_render() -> None:
    template = KeyTemplate.parse("{type}:{project}/{data.reason}")
    assert template.parts == (Field("type"), ":", Field("project"), "/", Field("data", ("reason",)))
    assert str(template) == "{type}:{project}/{data.reason}"
    ev = event("session.error", project="api", data={"reason": "quota"})
    assert template.render(lookup_for(ev, RouteContext())) == "session.error:api/quota"


@pytest.mark.parametrize(
    ("data", "rendered"),
    [
        ({}, ""),
        ({"v": None}, ""),
        ({"v": True}, "true"),
        ({"v": False}, "false"),
        ({"v": 3}, "3"),
        ({"v": 2.5}, "2.5"),
        ({"v": {"b": 1, "a": [1, "x"]}}, '{"a":[1,"x"],"b":1}'),
    ],
)
def test_key_values_render(data: dict[str, object], rendered: str) -> None:
    ev = event("session.error", data=data)  # type: ignore[arg-type]
    assert KeyTemplate.parse("{data.v}").render(lookup_for(ev, RouteContext())) == rendered


def test_key_template_braces_and_literals() -> None:
    template = KeyTemplate.parse("{{literal}} {session}")
    assert template.parts == ("{literal} ", Field("session"))
    assert str(template) == "{{literal}} {session}"
    assert KeyTemplate.parse(str(template)) == template
    assert KeyTemplate.parse("") == KeyTemplate(())
    assert KeyTemplate.parse("fixed").render(lookup_for(event("a.b"), RouteContext())) == "fixed"


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("{nope}", 1, "unknown field 'nope'"),
        ("x{}", 1, "empty '{}'"),
        ("{project", 0, "unclosed '{'"),
        ("a}b", 1, "single '}'"),
        ("{data}", 1, "'data' needs a key"),
        ("{session.*}", 1, "wildcards"),
    ],
)
def test_key_template_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        KeyTemplate.parse(text)
    assert fragment in info.value.message
    assert info.value.position == position


def test_long_keys_are_digested() -> None:
    ev = event("a.b", data={"v": "é" * 300})
    key = KeyTemplate.parse("{data.v}").render(lookup_for(ev, RouteContext()))
    assert key.startswith("sha256:")
    assert len(key) <= MAX_KEY_LENGTH
    short = KeyTemplate.parse("{data.v}").render(lookup_for(event("a.b", data={"v": "x" * 256}), RouteContext()))
    assert short == "x" * 256


def test_default_event_key() -> None:
    ev = event("session.idle", session=None, project=None, node="node-a")
    assert EVENT_KEY.render(lookup_for(ev, RouteContext())) == "session.idle||node-a|"
