"""The event sink: one outbox transaction per emit, bounded payloads (data over 64 KiB
becomes a truncated preview), and the latest state per session for the hello frame."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import orjson
import trio

from halswarm.agent.backend import MAX_DATA_BYTES, EventSink, OutEvent
from halswarm.agent.outbox import open_outbox
from halswarm.convert import converter
from halswarm.models import Session
from halswarm.proto.messages import SessionSnapshot

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject

NOW: Final = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def fixed_now() -> datetime:
    return NOW


def state(status: str, session_id: str = "ses-1") -> Session:
    return Session(id=session_id, node_id="node-a", project="proj-a", status=status)  # type: ignore[arg-type]


async def test_emit_commits_events_with_time_and_state(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox:
            sink = EventSink(outbox, now=fixed_now)
            await sink.emit([])
            assert outbox.last_seq == 0
            busy = state("busy")
            await sink.emit([OutEvent("session.status", "ses-1", "proj-a", {"status": "busy"}, busy), OutEvent("x")])
            rows = await outbox.read_after(0, limit=10, max_bytes=1 << 20)
    assert [seq for seq, _ in rows] == [1, 2]
    assert orjson.loads(rows[0][1]) == {
        "ts": "2026-01-01T12:00:00.123456Z",
        "type": "session.status",
        "session_id": "ses-1",
        "project": "proj-a",
        "data": {"status": "busy"},
        "state": converter.unstructure(busy),
    }
    assert orjson.loads(rows[1][1]) == {
        "ts": "2026-01-01T12:00:00.123456Z",
        "type": "x",
        "session_id": None,
        "project": None,
        "data": {},
        "state": None,
    }


async def test_oversized_data_becomes_a_truncated_preview(tmp_path: Path) -> None:
    # {"t":"..."} is 8 bytes of JSON around the text.
    at_limit: JSONObject = {"t": "a" * (MAX_DATA_BYTES - 8)}
    over: JSONObject = {"t": "b" * (MAX_DATA_BYTES - 7)}
    huge: JSONObject = {"t": "c" * (5 * MAX_DATA_BYTES)}
    assert len(orjson.dumps(at_limit)) == MAX_DATA_BYTES
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox:
            sink = EventSink(outbox, now=fixed_now)
            await sink.emit([OutEvent("tool.output", "ses-1", data=d) for d in (at_limit, over, huge)])
            rows = await outbox.read_after(0, limit=10, max_bytes=1 << 30)
    data = [orjson.loads(body)["data"] for _, body in rows]
    assert data[0] == at_limit
    assert data[1] == {"truncated": True, "bytes": MAX_DATA_BYTES + 1, "preview": '{"t":"' + "b" * 2042}
    assert data[2]["truncated"] is True
    assert data[2]["bytes"] == 5 * MAX_DATA_BYTES + 8
    assert len(data[2]["preview"]) == 2048
    assert all(len(body) < MAX_DATA_BYTES + 1024 for _, body in rows)
    assert sink.truncated == 2


async def test_snapshots_keep_the_latest_state_per_session_and_follow_a_renumbering(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox:
            sink = EventSink(outbox, now=fixed_now)
            await sink.emit(
                [OutEvent("a", "ses-1", state=state("busy")), OutEvent("b", "ses-2", state=state("idle", "ses-2"))]
            )
            await sink.emit([OutEvent("c", "ses-1"), OutEvent("d", "ses-1", state=state("waiting"))])
            assert sorted(sink.snapshots(), key=lambda s: s.seq) == [
                SessionSnapshot(2, state("idle", "ses-2")),
                SessionSnapshot(4, state("waiting")),
            ]
            sink.shift(0)
            sink.shift(10)
    assert sorted(sink.snapshots(), key=lambda s: s.seq) == [
        SessionSnapshot(12, state("idle", "ses-2")),
        SessionSnapshot(14, state("waiting")),
    ]


async def test_finished_sessions_leave_the_hello_snapshot(tmp_path: Path) -> None:
    """Guards: every session that ever ran stayed in the hello snapshot, which grew without bound."""
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox:
            sink = EventSink(outbox, now=fixed_now)
            await sink.emit(
                [OutEvent("a", "ses-1", state=state("busy")), OutEvent("b", "ses-2", state=state("idle", "ses-2"))]
            )
            await sink.emit([OutEvent("session.completed", "ses-1", state=state("completed"))])
            # Its final state still travels in the outbox; only the snapshot forgets it.
            rows = await outbox.read_after(0, limit=10, max_bytes=1 << 20)
    assert sink.snapshots() == [SessionSnapshot(2, state("idle", "ses-2"))]
    assert orjson.loads(rows[-1][1])["state"] == converter.unstructure(state("completed"))
