"""Project milestones an agent reports: ``project.completed`` (issue #6, dependencies).

A project is complete, from its agent's point of view, when its ``.context/COMPLETE``
marker file exists (the coding agent, or a person, creates it when the project's plan is
done). The agent then emits one event::

    project.completed  {project, source: "agent", detail}

``detail`` is the marker's first non-empty line (or null). The supervisor records the
completion once and starts the projects that depend on it; a report it already has
changes nothing, so a resent event is harmless. The agent remembers which markers it
reported (:class:`CompletionMarkers`, kept in the outbox's key-value store) so a
restart does not report them again; a marker removed and created again is reported again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson

from halswarm.agent.backend import OutEvent

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["COMPLETE_MARKER", "MARKERS_KEY", "CompletionMarkers", "completion_event", "read_complete_marker"]

#: The marker, relative to a project's directory.
COMPLETE_MARKER: Final = Path(".context") / "COMPLETE"
#: Where the reported markers are kept in the outbox's key-value store.
MARKERS_KEY: Final = "completion_markers"
_DETAIL_MAX: Final = 500


def read_complete_marker(directory: str) -> str | None:
    """The marker of the project in *directory* (a blocking read).

    Returns:
        None when there is no marker; else its first non-empty line (at most 500
        characters), or ``""`` for an empty or unreadable marker.
    """
    path = Path(directory) / COMPLETE_MARKER
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""  # it exists: the project is complete, whatever its contents
    return next((line.strip()[:_DETAIL_MAX] for line in text.splitlines() if line.strip()), "")


def completion_event(project: str, detail: str | None) -> OutEvent:
    """The ``project.completed`` event for *project*."""
    return OutEvent(
        "project.completed", project=project, data={"project": project, "source": "agent", "detail": detail or None}
    )


class CompletionMarkers:
    """Which projects' markers were reported: one event per marker appearance."""

    def __init__(self, reported: Iterable[str] = ()) -> None:
        self.reported = set(reported)

    def observe(self, project: str, marker: str | None) -> OutEvent | None:
        """What *project*'s marker (:func:`read_complete_marker`) means now.

        Returns:
            The event to emit when the marker appeared since the last report; else None.
            A marker gone is forgotten, so a new one is reported again.
        """
        if marker is None:
            self.reported.discard(project)
            return None
        if project in self.reported:
            return None
        self.reported.add(project)
        return completion_event(project, marker)

    def dump(self) -> bytes:
        """The reported projects, for the outbox's key-value store."""
        return orjson.dumps(sorted(self.reported))

    @classmethod
    def restore(cls, saved: bytes | None) -> CompletionMarkers:
        """From :meth:`dump`'s bytes; anything unreadable starts empty (at worst one report again)."""
        try:
            names = orjson.loads(saved) if saved is not None else []
        except orjson.JSONDecodeError:
            names = []
        return cls(n for n in names if isinstance(n, str)) if isinstance(names, list) else cls()
