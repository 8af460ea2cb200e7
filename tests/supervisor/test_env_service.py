"""EnvService's reports on a real SQLite file: arrival order wins over the agent's
``checked_at``, and a stop writes what arrived last (issue #9)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import trio

from halswarm.convert import converter
from halswarm.envcheck.checks import CheckItem
from halswarm.envcheck.report import REPORT_EVENT, EnvReport
from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch, open_store
from halswarm.supervisor.env import EnvService

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.envcheck.checks import ProjectState
    from halswarm.jsontypes import JSONObject
    from halswarm.store import Store


def _service(store: Store) -> EnvService:
    return EnvService(store, path=None, emit=lambda _type, _data: None, now=lambda: datetime(2025, 1, 1, tzinfo=UTC))


def _batch(seq: int, checked_at: str, state: ProjectState) -> IngestBatch:
    check = CheckItem("project", "directory", "ok" if state == "ready" else "fail", "a directory", "/srv/app")
    report = EnvReport("n1", "app", "/srv/app", state, checked_at, "hash", [check], [])
    data: JSONObject = converter.unstructure(report)
    return IngestBatch("n1", [WireEvent(seq, checked_at, REPORT_EVENT, project="app", data=data)])


async def _stored(store: Store) -> list[tuple[str, str]]:
    env = _service(store)
    await env.load()
    return [(r.state, r.checked_at) for r in env.status()]


async def test_the_report_that_arrives_last_wins_whatever_its_checked_at(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_store(tmp_path / "sup.db") as store:
            env = _service(store)
            async with trio.open_nursery() as nursery:
                await nursery.start(env.run)
                env.committed([_batch(1, "2025-01-02T10:00:00.000Z", "degraded")])
                # Next in the node's seq order, but its clock was put back.
                env.committed([_batch(2, "2025-01-01T09:00:00.000Z", "ready")])
                assert [(r.state, r.checked_at) for r in env.status()] == [("ready", "2025-01-01T09:00:00.000Z")]
                nursery.cancel_scope.cancel()
            assert await _stored(store) == [("ready", "2025-01-01T09:00:00.000Z")]


async def test_a_stop_writes_the_reports_not_written_yet(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_store(tmp_path / "sup.db") as store:
            env = _service(store)
            async with trio.open_nursery() as nursery:
                await nursery.start(env.run)
                env.committed([_batch(1, "2025-01-02T10:00:00.000Z", "degraded")])
                nursery.cancel_scope.cancel()  # before the writer ever ran
            assert await _stored(store) == [("degraded", "2025-01-02T10:00:00.000Z")]
