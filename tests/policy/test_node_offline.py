"""node_offline: one alert per offline period, robust to a re-stamped status_since."""

from __future__ import annotations

from halswarm.config.policies import NodeOfflinePolicy
from halswarm.policy import Decision, NodeOfflineState, NodeView, PolicyAction, Snapshot, decide_node_offline
from tests.policy.support import drive, node, session, snap

EMPTY = NodeOfflineState()
CONFIG = NodeOfflinePolicy()


def decide(snapshot: Snapshot, state: NodeOfflineState, now: float) -> Decision[NodeOfflineState]:
    return decide_node_offline(CONFIG, snapshot, state, now)


def test_the_alert_counts_the_active_sessions_left_unreachable() -> None:
    sessions = [session("a", node="n1", reachable=False), session("b", node="n1", status="completed")]
    sessions += [session("c", node="n2")]
    (action,) = decide(
        snap(*sessions, nodes=[node("n1", status="offline", since=10.0), node("n2")]), EMPTY, 100.0
    ).actions
    assert isinstance(action, PolicyAction)
    assert (action.kind, action.target, action.node_id, action.command_type) == ("alert", "n1", "n1", None)
    assert action.actor == "policy:node_offline"
    assert action.reason == "node n1 offline for 90 s; 1 active session(s) unreachable"
    assert action.idempotency_key == "node_offline:n1:10.0"


def test_online_and_degraded_nodes_raise_nothing() -> None:
    nodes = [node("n1"), node("n2", status="degraded")]
    assert decide(snap(nodes=nodes), EMPTY, 100.0) == Decision((), EMPTY)


def test_once_per_offline_period() -> None:
    ticks = [(float(t), snap(nodes=[node(status="offline", since=0.0)])) for t in range(0, 1000, 10)]
    ticks += [(1000.0, snap(nodes=[node(status="online", since=1000.0)]))]
    ticks += [(float(t), snap(nodes=[node(status="offline", since=1100.0)])) for t in range(1100, 1500, 10)]
    actions, state = drive(decide, EMPTY, ticks)
    assert [t for t, _ in actions] == [0.0, 1100.0]
    assert state == NodeOfflineState({"n1": 1100.0})


def test_a_supervisor_restart_restamping_the_outage_does_not_alert_again() -> None:
    # After a restart the registry shows the node offline "since" the restart.
    state = NodeOfflineState({"n1": 0.0})
    decision = decide(snap(nodes=[node(status="offline", since=5000.0)]), state, 5001.0)
    assert decision.actions == ()
    assert decision.state == state


def test_vanished_nodes_are_pruned() -> None:
    assert decide(snap(), NodeOfflineState({"n1": 0.0}), 10.0).state == EMPTY


def test_restoring_the_state_every_tick_changes_nothing() -> None:
    ticks = [
        (float(t), snap(nodes=[node(status="offline" if (t // 300) % 2 else "online", since=float(t - t % 300))]))
        for t in range(0, 3000, 20)
    ]
    plain, _ = drive(decide, EMPTY, ticks)
    persisted, _ = drive(decide, EMPTY, ticks, persist=True)
    assert plain == persisted
    assert [t for t, _ in plain] == [300.0, 900.0, 1500.0, 2100.0, 2700.0]


def test_nodes_in_the_startup_grace_raise_nothing_and_keep_what_was_reported() -> None:
    waiting = [NodeView("n1", "offline", 0.0, grace=True), NodeView("n2", "offline", 0.0, grace=True)]
    decision = decide(snap(nodes=waiting), NodeOfflineState({"n2": -50.0}), 100.0)
    assert decision.actions == ()
    assert decision.state == NodeOfflineState({"n2": -50.0})
    # After the grace, n1 is still offline: now it is news; n2 was reported before the restart.
    offline = [node("n1", status="offline"), node("n2", status="offline")]
    after, _ = drive(decide, decision.state, [(200.0, snap(nodes=offline))])
    assert [a.target for _, a in after] == ["n1"]
