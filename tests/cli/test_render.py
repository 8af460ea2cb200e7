"""Pure renderings: relative times, outcome lines, event lines, totals."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from halswarm.cli.render import (
    ago,
    event_line,
    outcome_line,
    pending_line,
    relative,
    session_detail,
    sessions_totals,
    short_id,
)
from halswarm.models import (
    Command,
    Event,
    Pending,
    PermissionRequest,
    Question,
    QuestionRequest,
    Session,
    Tokens,
)
from halswarm.testing.halctl import plain_console

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (None, "-"),
        ("2026-01-01T12:00:00.000000Z", "just now"),
        ("2026-01-01T11:59:48.000000Z", "12s ago"),
        ("2026-01-01T11:57:00.000000Z", "3m ago"),
        ("2026-01-01T09:00:00.000000Z", "3h ago"),
        ("2025-12-30T12:00:00.000000Z", "2d ago"),
        ("2026-01-01T12:00:05.000000Z", "just now"),  # clock skew
        ("yesterday", "yesterday"),
    ],
)
def test_ago(ts: str | None, expected: str) -> None:
    assert ago(ts, NOW) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (None, "-"),
        ("2026-01-01T12:00:00.500000Z", "now"),
        ("2026-01-01T12:00:12.000000Z", "in 12s"),
        ("2026-01-01T12:03:00.000000Z", "in 3m"),
        ("2026-01-03T12:00:00.000000Z", "in 2d"),
        ("2026-01-01T11:59:00.000000Z", "now"),  # already past
        ("soon", "soon"),
    ],
)
def test_relative_in_the_future(ts: str | None, expected: str) -> None:
    assert relative(ts, NOW, future=True) == expected


def test_short_id() -> None:
    assert short_id("ses_0123456789abcdef01234567") == "ses_01234567"
    assert short_id("node-1") == "node-1"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            Command(
                "c1",
                "restart_session",
                "proj",
                status="succeeded",
                result={"session_id": "ses_b", "predecessor_id": "ses_a", "handover": True},
            ),
            "restart_session on proj: succeeded — new session ses_b (predecessor ses_a, with handover)",
        ),
        (
            Command("c2", "start_session", "proj", status="succeeded", result={"session_id": "ses_n"}),
            "start_session on proj: succeeded — new session ses_n",
        ),
        (
            Command("c3", "kill_session", "ses_a", status="failed", error="session ses_a has ended (completed)"),
            "kill_session on ses_a: failed — session ses_a has ended (completed)",
        ),
        (
            Command("c4", "abort_session", "ses_a", status="timed_out", error="no answer from node-1 within 30s"),
            "abort_session on ses_a: timed out — no answer from node-1 within 30s",
        ),
        (
            Command("c5", "env_check", "proj", status="succeeded", result={"ok": True}),
            'env_check on proj: succeeded — {"ok":true}',
        ),
        (Command("c6", "kill_session", "ses_a", status="sent"), "kill_session on ses_a: sent (command c6)"),
    ],
)
def test_outcome_line(command: Command, expected: str) -> None:
    assert outcome_line(command) == expected


def test_pending_line_says_how_long_halctl_waited_and_how_to_follow_up() -> None:
    command = Command("c7", "env_provision", "n1", status="sent")
    assert pending_line(command, 2.5) == (
        "env_provision on n1: no outcome within 2.5s — command c7 is sent; check with: halctl commands get c7 --wait 60"
    )


def test_event_line_is_one_line() -> None:
    event = Event(
        7, "node-1", 3, "2026-01-01T12:00:00.123456Z", "message.updated", "ses_a", "p", {"role": "user", "text": "a\nb"}
    )
    assert event_line(event).plain == "2026-01-01 12:00:00.123  message.updated        user: a b"
    generic = Event(
        8, "node-1", 4, "2026-01-01T12:00:00.123456Z", "file.edited", "ses_a", "p", {"file": "x.py", "n": 2}
    )
    assert event_line(generic).plain.endswith("file.edited            file=x.py n=2")


def test_sessions_totals() -> None:
    sessions = [
        Session("ses_a", "node-1", "p", status="busy", tokens=Tokens(input=1000, output=234), cost_usd=0.5),
        Session("ses_b", "node-1", "p", status="idle", tokens=Tokens(cache_read=10), cost_usd=0.01234),
        Session("ses_c", "node-2", "q", status="busy"),
    ]
    assert sessions_totals(sessions).plain == "3 sessions (2 busy, 1 idle) · 1,244 tokens · $0.5123"


def test_session_detail_shows_pending_requests() -> None:
    session = Session(
        "ses_a",
        "node-1",
        "p",
        status="waiting",
        predecessor_id="ses_0",
        pending=Pending(
            permissions=[PermissionRequest("per_1", "bash", ["rm -rf build"], "Run rm")],
            questions=[QuestionRequest("que_1", [Question("Which DB?", "Storage", ["sqlite", "postgres"])])],
        ),
    )
    buffer = io.StringIO()
    plain_console(buffer).print(session_detail(session, NOW))
    text = buffer.getvalue()
    for expected in (
        "pending permissions",
        "per_1",
        "rm -rf build",
        "pending questions",
        "que_1",
        "Storage: Which DB?",
        "sqlite | postgres",
        "ses_0",
    ):
        assert expected in text
