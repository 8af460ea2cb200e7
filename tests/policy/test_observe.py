"""observe(): the status_since stamps the decisions identify episodes by, and their restore."""

from __future__ import annotations

from halswarm.models import Session, SessionStatus
from halswarm.policy.model import NodeView
from halswarm.policy.observe import NodeSeen, Observed, SessionSeen, TrackedNode, TrackedSession, observe

T = 1_773_144_000.0  # 2026-03-10T12:00:00Z
AT_T = "2026-03-10T12:00:00.000000Z"
LATER = "2026-03-10T12:05:00.000000Z"


def tracked(
    sid: str = "s1", status: SessionStatus = "idle", activity: str | None = AT_T, *, reachable: bool = True
) -> TrackedSession:
    return TrackedSession(Session(sid, "n1", "alpha", status=status, last_activity=activity), reachable)


def since(previous: Observed, *sessions: TrackedSession, now: float) -> tuple[dict[str, float], Observed]:
    seen = observe(previous, sessions, (), now)
    return {v.id: v.status_since for v in seen.sessions}, seen.observed


def test_a_status_seen_for_the_first_time_is_stamped_now() -> None:
    stamps, observed = since(Observed(), tracked(), now=T + 10)
    assert stamps == {"s1": T + 10}
    assert observed.sessions == {"s1": SessionSeen("idle", T + 10, T)}


def test_an_unchanged_status_keeps_its_stamp_and_a_new_one_is_restamped() -> None:
    _, observed = since(Observed(), tracked(status="busy"), now=T)
    stamps, observed = since(observed, tracked(status="busy", activity=LATER), now=T + 400)
    assert stamps == {"s1": T}  # busy with new activity: still the same busy status
    stamps, _ = since(observed, tracked(status="idle", activity=LATER), now=T + 500)
    assert stamps == {"s1": T + 500}


def test_new_activity_while_idle_starts_a_new_idle_period() -> None:
    _, observed = since(Observed(), tracked(), now=T)
    stamps, observed = since(observed, tracked(), now=T + 100)
    assert stamps == {"s1": T}
    stamps, observed = since(observed, tracked(activity=LATER), now=T + 400)  # a turn between two ticks
    assert stamps == {"s1": T + 400}
    stamps, _ = since(observed, tracked(activity=LATER), now=T + 500)
    assert stamps == {"s1": T + 400}


def test_unreachable_sessions_keep_their_real_status_and_stamp() -> None:
    _, observed = since(Observed(), tracked(), now=T)
    seen = observe(observed, [tracked(reachable=False)], (), T + 50)
    (view,) = seen.sessions
    assert (view.status, view.status_since, view.reachable) == ("idle", T, False)


def test_finished_sessions_are_left_out_and_forgotten() -> None:
    _, observed = since(Observed(), tracked(), tracked("s2"), now=T)
    stamps, observed = since(observed, tracked(), tracked("s2", status="completed"), now=T + 1)
    assert stamps == {"s1": T}
    assert set(observed.sessions) == {"s1"}


def test_a_malformed_last_activity_counts_as_none() -> None:
    (view,) = observe(Observed(), [tracked(activity="yesterday")], (), T).sessions
    assert view.last_activity is None


def test_nodes_keep_their_stamp_while_their_status_lasts() -> None:
    first = observe(Observed(), (), [TrackedNode("n1", "offline", grace=True)], T)
    assert first.nodes == (NodeView("n1", "offline", T, grace=True),)
    again = observe(first.observed, (), [TrackedNode("n1", "offline")], T + 60)
    assert again.nodes == (NodeView("n1", "offline", T),)
    back = observe(again.observed, (), [TrackedNode("n1", "online")], T + 70)
    assert back.observed.nodes == {"n1": NodeSeen("online", T + 70)}


def test_observed_round_trips_and_bad_text_starts_empty() -> None:
    _, observed = since(Observed(), tracked(), now=T)
    observed = Observed(observed.sessions, {"n1": NodeSeen("offline", T)})
    assert Observed.restore(observed.dump()) == (observed, [])
    assert Observed.restore(None) == (Observed(), [])
    empty, problems = Observed.restore('{"sessions": {"s1": {"status": 5}}}')
    assert empty == Observed()
    assert problems[0].startswith("observed statuses: unreadable state, starting empty")
