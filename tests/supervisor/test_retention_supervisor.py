"""The retention job inside a running supervisor: old events and a long-completed session
disappear from the API (store and tracker alike), the figures show in /metrics, and the
newest event of each node stays. Real store, real loopback sockets, real clock."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import trio

from halswarm.models import Session
from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch, NodeRecord, open_store
from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from halswarm.supervisor.retention import RetentionTuning
from halswarm.testing import api_client, supervisor_config, wait_until
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from pathlib import Path

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def ago(days: float) -> str:
    return format_ts(NOW - dt.timedelta(days=days))


async def seed(db: Path) -> None:
    done = Session("ses-done", "node-a", "proj", status="completed", last_activity=ago(60))
    live = Session("ses-live", "node-a", "proj", status="idle", last_activity=ago(1))
    events = [WireEvent(seq=s, ts=ago(60), type="x.old", session_id="ses-done", project="proj") for s in range(1, 50)]
    events.append(WireEvent(seq=50, ts=ago(60), type="session.completed", session_id="ses-done", state=done))
    events.append(WireEvent(seq=51, ts=ago(1), type="x.new", session_id="ses-live", project="proj", state=live))
    async with open_store(db) as store:
        await store.upsert_node(NodeRecord("node-b"))
        await store.ingest([IngestBatch("node-b", [WireEvent(seq=1, ts=ago(90), type="x.lonely")])], ago(90))
        await store.upsert_node(NodeRecord("node-a"))
        await store.ingest([IngestBatch("node-a", events)], ago(60))


async def test_a_pass_in_a_running_supervisor_removes_old_rows_from_the_api(tmp_path: Path) -> None:
    db = tmp_path / "supervisor.db"
    with trio.fail_after(30):
        await seed(db)
        async with trio.open_nursery() as nursery:
            shutdown = trio.Event()
            handle: SupervisorHandle = await nursery.start(
                lambda task_status: run_supervisor(
                    supervisor_config(db),
                    shutdown=shutdown,
                    now=lambda: NOW,
                    retention=RetentionTuning(first_pass_after=0.5),
                    task_status=task_status,
                )
            )
            async with api_client(handle) as client:
                before = (await client.get("/api/v1/sessions")).json()["sessions"]
                assert sorted(s["id"] for s in before) == ["ses-done", "ses-live"]
                job = handle.retention
                assert job is not None
                await wait_until(lambda: job.passes >= 1, within=10, what="a retention pass")
                sessions = (await client.get("/api/v1/sessions")).json()["sessions"]
                assert [s["id"] for s in sessions] == ["ses-live"]
                assert (await client.get("/api/v1/sessions/ses-done")).status_code == 404
                listed = (await client.get("/api/v1/events", params={"limit": 1000})).json()["events"]
                assert sorted((e["node_id"], e["seq"]) for e in listed) == [("node-a", 51), ("node-b", 1)]
                metrics = (await client.get("/metrics")).text
            shutdown.set()
    assert 'hal_o_swarm_retention_deleted_rows_total{table="events"} 50.0' in metrics
    assert 'hal_o_swarm_retention_deleted_rows_total{table="sessions"} 1.0' in metrics
    assert 'hal_o_swarm_retention_passes_total{outcome="ok"} 1.0' in metrics
    assert "hal_o_swarm_retention_pages_freed_total" in metrics
