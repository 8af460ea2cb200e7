"""Snapshot views built from tracked models; names agree across config, state and model."""

from __future__ import annotations

from decimal import Decimal
from typing import get_args

import attrs
import orjson

from halswarm.config.policies import PoliciesConfig
from halswarm.convert import dumps
from halswarm.models import Node, Session
from halswarm.policy import (
    POLICY_NAMES,
    Decision,
    NodeView,
    PolicyAction,
    PolicyName,
    PolicyStates,
    SessionView,
    SpendView,
    Suppressed,
)
from tests.policy.support import session


def test_policy_names_agree_everywhere() -> None:
    assert set(POLICY_NAMES) == set(get_args(PolicyName))
    assert len(POLICY_NAMES) == len(set(POLICY_NAMES))
    assert {f.name for f in attrs.fields(PoliciesConfig)} == {*POLICY_NAMES, "tick_seconds"}
    assert {f.name for f in attrs.fields(PolicyStates)} == set(POLICY_NAMES)


def test_session_view_from_a_tracked_session() -> None:
    tracked = Session(
        id="s1",
        node_id="n1",
        project="alpha",
        status="idle",
        compaction_count=2,
        consecutive_errors=1,
        predecessor_id="s0",
        last_activity="2026-03-01T00:00:10.000000Z",
    )
    view = SessionView.from_session(tracked, status_since=1_772_323_200.0, reachable=False)
    assert view == SessionView(
        id="s1",
        node_id="n1",
        project="alpha",
        status="idle",
        status_since=1_772_323_200.0,
        compaction_count=2,
        consecutive_errors=1,
        last_activity=1_772_323_210.0,
        reachable=False,
        predecessor_id="s0",
    )
    assert view.quiet_since == 1_772_323_210.0
    assert SessionView.from_session(attrs.evolve(tracked, last_activity=None), status_since=5.0).last_activity is None


def test_session_view_properties() -> None:
    assert session(status="busy").is_reachable
    assert not session(status="busy", reachable=False).is_reachable
    assert not session(status="unreachable").is_reachable
    assert session(status="unreachable").is_active
    assert session(status="waiting").is_active
    assert not session(status="completed").is_active
    assert session(since=50.0, activity=10.0).quiet_since == 50.0
    assert session(since=50.0).quiet_since == 50.0


def test_node_view_and_spend() -> None:
    assert NodeView.from_node(Node(id="n1", status="degraded"), status_since=3.0) == NodeView("n1", "degraded", 3.0)
    spent = SpendView("2026-03-01", Decimal("7.5"), {"alpha": Decimal(2)})
    assert (spent.of(None), spent.of("alpha"), spent.of("beta")) == (Decimal("7.5"), Decimal(2), Decimal(0))


def test_actions_serialise_for_events() -> None:
    action = PolicyAction(
        policy="resume_on_idle",
        kind="command",
        target="s1",
        reason="idle",
        idempotency_key="k",
        command_type="resume_session",
    )
    data = orjson.loads(dumps(action))
    assert data["policy"] == "resume_on_idle"
    assert data["command_type"] == "resume_session"
    notice = Suppressed(policy="error_loop", target="s1", reason="cap", next_reset=10.0)
    assert notice.actor == "policy:error_loop"
    assert orjson.loads(dumps(notice))["next_reset"] == 10.0


def test_decision_commands_leave_out_alerts_and_notices() -> None:
    command = PolicyAction(policy="stuck_busy", kind="command", target="s1", reason="", idempotency_key="a")
    alert = PolicyAction(policy="stuck_busy", kind="alert", target="s2", reason="", idempotency_key="b")
    notice = Suppressed(policy="error_loop", target="s3", reason="")
    assert Decision((alert, command, notice), None).commands() == [command]
