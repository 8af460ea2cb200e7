"""``current_task`` comes from the project's ``.context/CURRENT_TASK.md``; a ``.context/COMPLETE``
marker is reported as ``project.completed``, once."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import orjson
import pytest
import trio

from halswarm.agent.backend import EventSink
from halswarm.agent.milestones import MARKERS_KEY
from halswarm.agent.opencode.backend import OpencodeBackend
from halswarm.agent.opencode.current_task import read_current_task
from halswarm.agent.outbox import open_outbox
from halswarm.jsontypes import is_json_object
from halswarm.models import Project
from halswarm.testing import agent_config, wait_until
from halswarm.timeutil import system_now

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.agent.opencode.runner import OpencodeRunner
    from halswarm.jsontypes import JSONValue


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("# Current task\n\nFix the flaky parser test\nmore detail\n", "Fix the flaky parser test"),
        ("- Port the CLI to asyncclick\n", "Port the CLI to asyncclick"),
        ("## Migrate the database\n", "Migrate the database"),
        ("\n\n", None),
        ("x" * 500, "x" * 200),
    ],
)
def test_task_line(tmp_path: Path, text: str, task: str | None) -> None:
    (tmp_path / ".context").mkdir()
    (tmp_path / ".context" / "CURRENT_TASK.md").write_text(text)
    assert read_current_task(str(tmp_path)) == task


def test_no_file_means_no_task(tmp_path: Path) -> None:
    assert read_current_task(str(tmp_path)) is None


class _NoRunner:
    """The backend's runner, never started: the task watcher reads files only."""

    client = None


async def test_the_complete_marker_is_reported_once_and_remembered(tmp_path: Path) -> None:
    project = tmp_path / "alpha"
    (project / ".context").mkdir(parents=True)
    (project / ".context" / "COMPLETE").write_text("Shipped v1\n")
    config = agent_config(1, tmp_path / "agent", node_id="n1", projects=[Project("alpha", str(project))])
    with trio.fail_after(10):
        async with open_outbox(tmp_path / "agent") as outbox:
            backend = OpencodeBackend(config, outbox=outbox, runner=cast("OpencodeRunner", _NoRunner()))
            backend._sink = EventSink(outbox, now=system_now)

            async def events() -> list[JSONValue]:
                rows = await outbox.read_after(0, limit=100, max_bytes=1 << 20)
                return [body for _seq, raw in rows if (body := orjson.loads(raw))["type"] == "project.completed"]

            async def reported() -> bool:
                return bool(await events())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend._task_watcher)
                await wait_until(reported, what="the marker reported")
                nursery.cancel_scope.cancel()
            (event,) = await events()
            assert is_json_object(event)
            assert (event["project"], event["session_id"]) == ("alpha", None)
            assert event["data"] == {"project": "alpha", "source": "agent", "detail": "Shipped v1"}
            assert await outbox.get_kv(MARKERS_KEY) == b'["alpha"]'  # not reported again after a restart
