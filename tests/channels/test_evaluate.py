"""Evaluating matches: wildcards, each documented example, null and type semantics, decimals."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.evaluate import evaluate, fields_read, has_pattern, matches_type
from halswarm.channels.expr import Compare, Expr, Field, Str, parse
from halswarm.channels.fields import RouteContext, lookup_for
from halswarm.models import SUPERVISOR_NODE_ID
from tests.channels.support import event
from tests.channels.test_expr import expressions

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue


def holds(text: str, type_: str = "session.idle", context: RouteContext | None = None, **kwargs: object) -> bool:
    ev = event(type_, **kwargs)  # type: ignore[arg-type]
    return evaluate(parse(text), ev.type, lookup_for(ev, context or RouteContext()))


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("session.idle", "session.idle", True),
        ("session.idle", "session.idled", False),
        ("session.idle", "xsession.idle", False),
        ("session.*", "session.idle", True),
        ("session.*", "session.", True),
        ("session.*", "sessions.idle", False),
        ("session.*", "session", False),
        ("*.error", "session.error", True),
        ("*.error", "session.error.x", False),
        ("*.error", "error", False),
        ("cost.budget_*", "cost.budget_warning", True),
        ("cost.budget_*", "cost.budget_exceeded", True),
        ("cost.budget_*", "cost.poll_failed", False),
        ("env.*", "env.check.fail", True),  # * crosses dots
        ("*", "anything.at.all", True),
        ("*.*", "a.b", True),
        ("a*b.c", "ab.c", True),
        ("a*b.c", "axxb.c", True),
        ("session.+", "session.+", True),  # no regex metacharacters
        ("session.+", "session.x", False),
    ],
)
def test_type_patterns(pattern: str, event_type: str, expected: bool) -> None:
    assert matches_type(pattern, event_type) is expected


# ---- the documented examples -----------------------------------------------------------------


def test_idle_for_longer_than_five_minutes() -> None:
    match = "session.idle && idle_for > 5m"
    assert holds(match, "session.idle", RouteContext(idle_for=301))
    assert not holds(match, "session.idle", RouteContext(idle_for=300))  # > is strict
    assert not holds(match, "session.idle", RouteContext(idle_for=None))  # null
    assert not holds(match, "session.error", RouteContext(idle_for=301))
    assert holds("session.idle && idle_for >= 5m", "session.idle", RouteContext(idle_for=300))


def test_daily_cost() -> None:
    assert holds("cost.daily > 20", "session.idle", RouteContext(cost_daily=Decimal("20.01")))
    assert not holds("cost.daily > 20", "session.idle", RouteContext(cost_daily=Decimal(20)))
    assert holds("cost.daily > 20", "node.online", RouteContext(cost_daily=21.5))
    assert not holds("cost.daily > 20", "node.online", RouteContext())


def test_project_daily_cost() -> None:
    context = RouteContext(cost_daily=Decimal(100), cost_project_daily=Decimal("4.99"))
    assert not holds("cost.project_daily >= 5", context=context)
    assert holds("cost.project_daily < 5 && cost.daily >= 100", context=context)


def test_error_or_offline() -> None:
    assert holds("session.error || node.offline", "session.error")
    assert holds("session.error || node.offline", "node.offline", session=None)
    assert not holds("session.error || node.offline", "node.online")


def test_policies_except_suppressed() -> None:
    match = "policy.* && !policy.suppressed"
    assert holds(match, "policy.alert")
    assert holds(match, "policy.action")
    assert not holds(match, "policy.suppressed")
    assert not holds(match, "session.error")


def test_updated_and_waiting() -> None:
    match = 'session.updated && status == "waiting"'
    assert holds(match, "session.updated", RouteContext(status="waiting"))
    assert not holds(match, "session.updated", RouteContext(status="busy"))
    assert not holds(match, "session.updated", RouteContext())
    assert not holds(match, "session.idle", RouteContext(status="waiting"))


# ---- fields --------------------------------------------------------------------------------


def test_event_fields() -> None:
    assert holds('type == "session.idle"', "session.idle")
    assert holds('project == "api" && session == "ses_9"', session="ses_9")
    assert holds('node == "node-b"', node="node-b")
    assert not holds('project == "api"', project=None)
    assert not holds('project != "web"', project=None)  # null: != is false too


def test_node_of_supervisor_events() -> None:
    assert holds('node == "node-b"', "node.offline", node=SUPERVISOR_NODE_ID, data={"node_id": "node-b"})
    assert holds('node == "node-c"', "policy.alert", RouteContext(node_id="node-c"), node=SUPERVISOR_NODE_ID)
    assert holds(f'node == "{SUPERVISOR_NODE_ID}"', "cost.budget_exceeded", node=SUPERVISOR_NODE_ID)
    # An agent's event is about its own node, whatever its data says.
    assert holds('node == "node-a"', "session.idle", node="node-a", data={"node_id": "node-z"})


def test_session_derived_fields() -> None:
    context = RouteContext(status="error", consecutive_errors=3, compaction_count=2)
    assert holds("consecutive_errors >= 3 && compaction_count == 2", context=context)
    assert holds('status != "busy"', context=context)
    assert not holds("consecutive_errors > 3", context=context)


@pytest.mark.parametrize(
    ("match", "data", "expected"),
    [
        ('data.reason == "quota"', {"reason": "quota"}, True),
        ("data.status.type == 'idle'", {"status": {"type": "idle"}}, True),
        ("data.files.1 == 'b'", {"files": ["a", "b"]}, True),
        ("data.files.2 == 'b'", {"files": ["a", "b"]}, False),
        ("data.files.x == 'b'", {"files": ["a", "b"]}, False),
        ("data.auto == true", {"auto": True}, True),
        ("data.auto == true", {"auto": 1}, False),  # 1 is not true
        ("data.n == 1", {"n": True}, False),  # true is not 1
        ("data.n == 1", {"n": 1}, True),
        ("data.n == 1", {"n": 1.0}, True),
        ("data.n > 1.5", {"n": 2}, True),
        ("data.n < -1", {"n": -1.5}, True),
        ("data.n == 1", {"n": "1"}, False),
        ("data.n != 1", {"n": "1"}, True),  # another type: unequal
        ("data.n > 0", {"n": "1"}, False),  # ... and never ordered
        ("data.n == 'x'", {"n": None}, False),  # JSON null is null
        ("data.n != 'x'", {"n": None}, False),
        ("data.n != 'x'", {}, False),  # missing is null
        ("data.n.deeper == 1", {"n": 5}, False),
        ("data.n == 'x'", {"n": {"a": 1}}, False),
        ("data.n != 'x'", {"n": ["x"]}, True),
        ("data.d > 5m", {"d": 301}, True),  # durations are seconds
    ],
)
def test_data_values(match: str, data: JSONObject, expected: bool) -> None:
    assert holds(match, data=data) is expected


def test_decimal_money_compares_exactly() -> None:
    context = RouteContext(cost_daily=Decimal("20.1"))
    assert holds("cost.daily == 20.1", context=context)
    assert not holds("cost.daily > 20.1", context=context)
    assert not holds("cost.daily < 20.1", context=context)
    nan = RouteContext(cost_daily=Decimal("NaN"))
    assert not holds("cost.daily > 1", context=nan)
    assert not holds("cost.daily == 1", context=nan)
    assert holds("cost.daily != 1", context=nan)
    float_nan = RouteContext(cost_daily=float("nan"))
    assert not holds("cost.daily > 1", context=float_nan)


def test_hand_built_ordering_on_strings_is_false() -> None:
    expr = Compare(Field("status"), ">", Str("a"))
    ev = event("session.idle")
    assert not evaluate(expr, ev.type, lookup_for(ev, RouteContext(status="b")))


def test_analysis_helpers() -> None:
    assert has_pattern(parse("cost.daily > 1 || !(a.b)"))
    assert not has_pattern(parse("cost.daily > 1 && !(status == 'idle')"))
    assert fields_read(parse("a.b && (idle_for > 1 || data.x.y == 2) && !(status == 'idle')")) == {
        "idle_for",
        "data",
        "status",
    }


_json: st.SearchStrategy[JSONValue] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "0", "n"]), children, max_size=3)
    ),
    max_leaves=8,
)
_floats = st.one_of(st.none(), st.floats(), st.integers().map(float))
_ints = st.one_of(st.none(), st.integers())
_money: st.SearchStrategy[Decimal | float | None] = st.one_of(st.none(), st.floats(), st.decimals())


@settings(max_examples=300, deadline=None, database=None)
@given(
    expressions,
    st.dictionaries(st.sampled_from(["a", "b", "0", "n", "reason"]), _json, max_size=4),
    st.builds(
        RouteContext,
        status=st.one_of(st.none(), st.text(max_size=5)),
        idle_for=_floats,
        consecutive_errors=_ints,
        compaction_count=_ints,
        cost_daily=_money,
        cost_project_daily=_money,
    ),
)
def test_evaluate_never_raises(expr: Expr, data: JSONObject, context: RouteContext) -> None:
    ev = event("session.idle", data=data)
    assert isinstance(evaluate(expr, ev.type, lookup_for(ev, context)), bool)
