"""A project's current task, as its agents keep it in ``.context/CURRENT_TASK.md``.

The backend's task watcher reads it (with the ``.context/COMPLETE`` marker of
:mod:`halswarm.agent.milestones`) off the event loop, in one thread hop per project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from halswarm.agent.milestones import read_complete_marker

__all__ = ["read_context", "read_current_task"]

_TASK_FILE: Final = Path(".context") / "CURRENT_TASK.md"
_TASK_MAX: Final = 200


def read_current_task(directory: str) -> str | None:
    """The task line of ``<directory>/.context/CURRENT_TASK.md`` (blocking read).

    The first line of text that is not a heading ("# Current task" says nothing), else
    the first heading; list markers are dropped.
    """
    try:
        text = (Path(directory) / _TASK_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    heading: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = heading or stripped.lstrip("#").strip() or None
        elif stripped:
            return stripped.lstrip("-*> ").strip()[:_TASK_MAX] or heading
    return heading[:_TASK_MAX] if heading else None


def read_context(directory: str) -> tuple[str | None, str | None]:
    """The project's current task and its COMPLETE marker (one blocking hop for both)."""
    return read_current_task(directory), read_complete_marker(directory)
