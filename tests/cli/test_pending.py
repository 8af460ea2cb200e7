"""The pure side of halctl's human-in-the-loop commands: flattening, matching, answers, table."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Final

import pytest

from halswarm.cli.pending import (
    AnswerError,
    PendingRequest,
    match_requests,
    parse_answers,
    pending_requests,
    pending_table,
    pending_totals,
)
from halswarm.models import Pending, PermissionRequest, Question, QuestionRequest, Session
from halswarm.testing.halctl import plain_console

NOW: Final = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
APPROACH: Final = Question("Which approach?", "Approach", ["minimal", "thorough"])
FILES: Final = Question("Which files?", "", ["a.py", "tests, docs", "tests"])
FREE: Final = Question("Anything else?")


def _sessions() -> list[Session]:
    return [
        Session(
            id="ses_b",
            node_id="node-2",
            project="proj-b",
            status="waiting",
            pending=Pending(
                [PermissionRequest("per_late", "bash", ["git push"], "git push", "2026-01-01T11:59:00Z")],
                [QuestionRequest("que_unknown_time", [APPROACH])],
            ),
        ),
        Session(
            id="ses_a",
            node_id="node-1",
            project="proj-a",
            status="waiting",
            pending=Pending(
                [PermissionRequest("per_early", "edit", ["a.py", "b.py"], asked_at="2026-01-01T11:00:00Z")]
            ),
        ),
        Session(id="ses_idle", node_id="node-1", project="proj-a", status="idle"),
    ]


def test_pending_requests_flattens_oldest_first_unknown_times_last() -> None:
    found = pending_requests(_sessions())
    assert [(r.id, r.kind, r.session_id, r.project, r.node_id) for r in found] == [
        ("per_early", "permission", "ses_a", "proj-a", "node-1"),
        ("per_late", "permission", "ses_b", "proj-b", "node-2"),
        ("que_unknown_time", "question", "ses_b", "proj-b", "node-2"),
    ]
    assert found[0].patterns == ["a.py", "b.py"]
    assert found[2].questions == [APPROACH]
    assert pending_requests([]) == []


def test_what_is_asked() -> None:
    found = {r.id: r for r in pending_requests(_sessions())}
    assert found["per_early"].asked() == "edit: a.py, b.py"
    assert found["que_unknown_time"].asked() == "Approach: Which approach? (minimal | thorough)"
    two = PendingRequest("que_2", "question", "ses", "p", "n", questions=[APPROACH, FREE])
    assert two.asked() == "Approach: Which approach? (minimal | thorough)\nAnything else?"
    assert PendingRequest("que_3", "question", "ses", "p", "n").asked() == "-"
    assert PendingRequest("per_3", "permission", "ses", "p", "n", permission="webfetch").asked() == "webfetch"


def test_match_prefers_an_exact_id_over_prefixes() -> None:
    requests = [PendingRequest(i, "permission", "ses", "p", "n") for i in ("per_1", "per_12", "per_13")]
    assert [r.id for r in match_requests(requests, "per_1")] == ["per_1"]
    assert [r.id for r in match_requests(requests, "per_12")] == ["per_12"]
    assert [r.id for r in match_requests(requests, "per_")] == ["per_1", "per_12", "per_13"]
    assert match_requests(requests, "per_9") == []
    assert match_requests(requests, "") == []


@pytest.mark.parametrize(
    ("values", "questions", "expected"),
    [
        (["thorough"], [APPROACH], [["thorough"]]),
        ([" minimal , thorough "], [APPROACH], [["minimal", "thorough"]]),
        (["minimal", "a.py,tests, docs"], [APPROACH, FILES], [["minimal"], ["a.py", "tests, docs"]]),
        (["tests,a.py"], [FILES], [["tests", "a.py"]]),
        (["whatever I like, really"], [FREE], [["whatever I like", "really"]]),
        (["x", "y"], [], [["x"], ["y"]]),  # questions unknown: nothing to check against
    ],
)
def test_parse_answers(values: list[str], questions: list[Question], expected: list[list[str]]) -> None:
    assert parse_answers(values, questions) == expected


@pytest.mark.parametrize(
    ("values", "questions", "message"),
    [
        (
            ["fast"],
            [APPROACH],
            "'fast' is not an option of question #1 (Which approach?); allowed: 'minimal', 'thorough'",
        ),
        (["minimal,Thorough"], [APPROACH], "'Thorough' is not an option of question #1"),
        (["minimal"], [APPROACH, FILES], "the request asks 2 questions (#1 Which approach?; #2 Which files?) but 1"),
        (["minimal", "a.py"], [APPROACH], "asks 1 question (#1 Which approach?) but 2 --answer were given"),
        ([","], [APPROACH], "--answer #1 is empty"),
    ],
)
def test_parse_answers_refuses(values: list[str], questions: list[Question], message: str) -> None:
    with pytest.raises(AnswerError) as caught:
        parse_answers(values, questions)
    assert message in str(caught.value)


def _render(width: int) -> str:
    buffer = io.StringIO()
    requests = pending_requests(_sessions())
    console = plain_console(buffer, width=width)
    console.print(pending_table(requests, NOW, width=width))
    console.print(pending_totals(requests))
    return buffer.getvalue()


def test_table_fits_narrow_terminals_by_dropping_the_node() -> None:
    wide = _render(120)
    assert wide.splitlines()[0].split() == ["REQUEST", "KIND", "SESSION", "PROJECT", "NODE", "WHAT", "ASKED"]
    assert "node-2" in wide
    assert "1h ago" in wide
    narrow = _render(80)
    assert narrow.splitlines()[0].split() == ["REQUEST", "KIND", "SESSION", "PROJECT", "WHAT", "ASKED"]
    assert "node-2" not in narrow
    assert all(len(line) <= 80 for line in narrow.splitlines())
    for text in (wide, narrow):
        assert "per_early" in text
        assert "3 waiting: 2 permissions, 1 question" in text
