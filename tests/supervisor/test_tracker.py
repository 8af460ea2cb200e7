"""SessionTracker listing: filters, order (kept between lists) and cached JSON."""

from __future__ import annotations

import attrs
import orjson

from halswarm.models import Session
from halswarm.supervisor.tracker import SessionTracker


def _session(sid: str, node: str = "n1", *, started: str, status: str = "idle", project: str = "p") -> Session:
    return Session(id=sid, node_id=node, project=project, status=status, started_at=started)  # type: ignore[arg-type]


def _ids(body: bytes) -> list[str]:
    return [s["id"] for s in orjson.loads(body)["sessions"]]


def test_list_is_ordered_by_start_then_id_and_follows_new_and_moved_sessions() -> None:
    tracker = SessionTracker()
    tracker.apply(1, _session("b", started="2026-01-01T00:00:02Z"))
    tracker.apply(2, _session("a", started="2026-01-01T00:00:02Z"))
    tracker.apply(3, _session("c", started="2026-01-01T00:00:01Z"))
    assert _ids(tracker.sessions_json()) == ["c", "a", "b"]
    tracker.apply(4, _session("d", started="2026-01-01T00:00:00Z"))  # a new session
    assert _ids(tracker.sessions_json()) == ["d", "c", "a", "b"]
    tracker.apply(5, _session("d", started="2026-01-01T00:00:03Z"))  # its start time changed
    assert _ids(tracker.sessions_json()) == ["c", "a", "b", "d"]
    assert [s.id for s in tracker.sessions()] == ["c", "a", "b", "d"]


def test_filters_use_the_shown_status_and_the_cache_follows_changes() -> None:
    tracker = SessionTracker()
    tracker.apply(1, _session("a", "n1", started="2026-01-01T00:00:00Z", status="busy"))
    tracker.apply(2, _session("b", "n2", started="2026-01-01T00:00:01Z", status="busy", project="q"))
    tracker.set_node_reachable("n1", True)
    # n2 is not online: its live session shows as unreachable.
    assert _ids(tracker.sessions_json(status="busy")) == ["a"]
    assert _ids(tracker.sessions_json(status="unreachable")) == ["b"]
    assert _ids(tracker.sessions_json(project="q")) == ["b"]
    assert _ids(tracker.sessions_json(node_id="n1")) == ["a"]
    before = orjson.loads(tracker.sessions_json())["sessions"]
    assert before[1]["status"] == "unreachable"
    tracker.set_node_reachable("n2", True)
    tracker.touch("a", "2026-01-01T00:05:00Z")
    after = orjson.loads(tracker.sessions_json())["sessions"]
    assert after[1]["status"] == "busy"
    assert after[0]["last_activity"] == "2026-01-01T00:05:00Z"
    view = tracker.get("a")
    assert view is not None
    assert [attrs.asdict(s) for s in tracker.sessions(node_id="n1")] == [attrs.asdict(view)]


def test_counts_by_project_count_every_session_and_the_live_ones() -> None:
    tracker = SessionTracker()
    tracker.apply(1, _session("a", started="2026-01-01T00:00:00Z", status="busy"))
    tracker.apply(2, _session("b", "n2", started="2026-01-01T00:00:01Z", status="completed"))
    tracker.apply(3, _session("c", started="2026-01-01T00:00:02Z", project="q"))
    # Live means not completed, whether its node is reachable or not.
    assert tracker.counts_by_project() == {"p": (2, 1), "q": (1, 1)}


def test_forget_drops_deleted_completed_sessions_unless_a_newer_state_arrived() -> None:
    tracker = SessionTracker()
    tracker.apply(1, _session("old", started="2026-01-01T00:00:00Z", status="completed"))
    tracker.apply(2, _session("back", started="2026-01-01T00:00:01Z", status="completed"))
    tracker.apply(3, _session("live", "n2", started="2026-01-01T00:00:02Z", status="completed"))
    assert _ids(tracker.sessions_json()) == ["old", "back", "live"]
    # "back" got a newer state (seq 4) after the store deleted its seq-2 row; "live" is
    # running again under the same id: both stay.
    tracker.apply(4, _session("back", started="2026-01-01T00:00:01Z", status="completed"))
    tracker.apply(5, _session("live", "n2", started="2026-01-01T00:00:02Z", status="busy"))
    assert tracker.forget({"old": 1, "back": 2, "live": 5, "unknown": 9}) == 1
    assert _ids(tracker.sessions_json()) == ["back", "live"]
    assert tracker.get("old") is None
    assert [s.id for s in tracker.sessions(node_id="n1")] == ["back"]
    assert tracker.counts_by_project() == {"p": (2, 1)}
