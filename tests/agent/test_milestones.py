"""A project's ``.context/COMPLETE`` marker becomes one ``project.completed`` event per appearance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.agent.backend import OutEvent
from halswarm.agent.milestones import CompletionMarkers, completion_event, read_complete_marker

if TYPE_CHECKING:
    from pathlib import Path


def marker(directory: Path, text: str) -> None:
    (directory / ".context").mkdir(exist_ok=True)
    (directory / ".context" / "COMPLETE").write_text(text)


def test_no_marker_means_not_complete(tmp_path: Path) -> None:
    assert read_complete_marker(str(tmp_path)) is None
    (tmp_path / ".context" / "COMPLETE").mkdir(parents=True)  # a directory is no marker
    assert read_complete_marker(str(tmp_path)) is None


@pytest.mark.parametrize(
    ("text", "detail"),
    [("", ""), ("\n\n", ""), ("\n  All milestones done  \nmore\n", "All milestones done"), ("x" * 900, "x" * 500)],
)
def test_the_marker_detail_is_its_first_line(tmp_path: Path, text: str, detail: str) -> None:
    marker(tmp_path, text)
    assert read_complete_marker(str(tmp_path)) == detail


def test_the_event() -> None:
    assert completion_event("api", "done") == OutEvent(
        "project.completed", project="api", data={"project": "api", "source": "agent", "detail": "done"}
    )
    assert completion_event("api", "").data["detail"] is None


def test_each_appearance_is_reported_once() -> None:
    markers = CompletionMarkers()
    assert markers.observe("api", None) is None
    first = markers.observe("api", "done")
    assert first is not None
    assert first.project == "api"
    assert markers.observe("api", "done") is None  # still there: already reported
    assert markers.observe("web", "") is not None
    assert markers.observe("api", None) is None  # removed...
    assert markers.observe("api", "again") is not None  # ... and created again: reported again


def test_reported_markers_survive_a_restart() -> None:
    markers = CompletionMarkers()
    markers.observe("api", "done")
    restored = CompletionMarkers.restore(markers.dump())
    assert restored.reported == {"api"}
    assert restored.observe("api", "done") is None


@pytest.mark.parametrize(
    ("saved", "reported"), [(None, set()), (b"{", set()), (b'{"api": 1}', set()), (b'["api", 3]', {"api"})]
)
def test_unreadable_saved_markers_start_empty(saved: bytes | None, reported: set[str]) -> None:
    # At worst a marker is reported once more, which the supervisor ignores.
    assert CompletionMarkers.restore(saved).reported == reported
