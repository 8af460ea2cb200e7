"""``current_task`` comes from the project's ``.context/CURRENT_TASK.md``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.agent.opencode.backend import read_current_task

if TYPE_CHECKING:
    from pathlib import Path


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
