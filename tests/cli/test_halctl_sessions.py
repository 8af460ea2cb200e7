"""``halctl sessions list|get|logs`` against a real cluster.

The simulated sessions change status all the time, so assertions hold for any status.
"""

from __future__ import annotations

import io
import signal
from typing import TYPE_CHECKING

import orjson
import trio

from halswarm.convert import converter
from halswarm.models import Event, Session
from halswarm.testing import wait_until

if TYPE_CHECKING:
    from halswarm.testing.halctl import Halctl, Result


def _sessions(result: Result) -> list[Session]:
    assert result.exit_code == 0, result.stderr
    return converter.structure(result.json()["sessions"], list[Session])


def _events(result: Result) -> list[Event]:
    assert result.exit_code == 0, result.stderr
    return converter.structure(result.json()["events"], list[Event])


async def test_sessions_list_table_with_totals(halctl: Halctl) -> None:
    await halctl.live_session()
    result = await halctl("sessions", "list")
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "SESSION" in line)
    for column in ("PROJECT", "NODE", "STATUS", "TITLE", "TOKENS", "COST", "ACTIVE"):
        assert column in header
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith("ses_")]
    assert len(rows) == 6
    for session in halctl.cluster.supervisor.tracker.sessions():
        assert session.id[:12] in result.stdout
    assert "$" in rows[0]  # cost in USD
    totals = result.stdout.strip().splitlines()[-1]
    assert totals.startswith("6 sessions (")
    assert "tokens" in totals
    assert "$" in totals


async def test_sessions_list_filters(halctl: Halctl) -> None:
    await halctl.live_session()
    on_node_2 = _sessions(await halctl("-o", "json", "sessions", "list", "--node", "node-2"))
    assert len(on_node_2) == 3
    assert {s.node_id for s in on_node_2} == {"node-2"}

    in_project = _sessions(await halctl("-o", "json", "sessions", "list", "--project", "proj-1-1"))
    assert in_project
    assert {s.project for s in in_project} == {"proj-1-1"}

    for status in ("busy", "idle"):
        matching = _sessions(await halctl("-o", "json", "sessions", "list", "--status", status))
        assert all(s.status == status for s in matching)

    nothing = await halctl("sessions", "list", "--project", "no-such-project")
    assert nothing.exit_code == 0
    assert "0 sessions" in nothing.stdout


async def test_sessions_list_rejects_unknown_status(halctl: Halctl) -> None:
    result = await halctl("sessions", "list", "--status", "sleeping")
    assert result.exit_code == 2
    assert "sleeping" in result.stderr


async def test_sessions_get_shows_every_field(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "get", session.id)
    assert result.exit_code == 0, result.stderr
    for label in (
        "id",
        "project",
        "node",
        "directory",
        "status",
        "title",
        "model",
        "current task",
        "tokens",
        "cost",
        "compactions",
        "consecutive errors",
        "predecessor",
        "started",
        "last activity",
    ):
        assert any(line.startswith(label) for line in result.stdout.splitlines()), label
    assert session.id in result.stdout
    assert session.project in result.stdout
    assert "pending" in result.stdout


async def test_sessions_get_json_and_short_id(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("-o", "json", "sessions", "get", session.id[:12])  # the id as the table shows it
    assert result.exit_code == 0, result.stderr
    got = converter.structure(result.json()["session"], Session)
    assert got.id == session.id
    assert got.project == session.project
    assert got.node_id == session.node_id


async def test_ambiguous_session_prefix_is_a_usage_error(halctl: Halctl) -> None:
    await halctl.live_session()
    result = await halctl("sessions", "get", "ses_")
    assert result.exit_code == 2
    assert "matches 6 sessions" in result.stderr


async def test_logs_limit_and_type(halctl: Halctl) -> None:
    session = await halctl.live_session()
    tracker = halctl.cluster.supervisor.tracker
    events = _events(await halctl("-o", "json", "sessions", "logs", session.id, "--limit", "2"))
    assert 1 <= len(events) <= 2
    assert [e.id for e in events] == sorted(e.id for e in events)  # oldest first
    assert all(e.session_id == session.id for e in events)

    created = _events(await halctl("-o", "json", "sessions", "logs", session.id, "--type", "session.created"))
    assert [e.type for e in created] == ["session.created"]

    prefixed = _events(await halctl("-o", "json", "sessions", "logs", session.id, "--type", "session.*"))
    assert prefixed
    assert all(e.type.startswith("session.") for e in prefixed)

    text = await halctl("sessions", "logs", session.id, "--type", "session.created", "--limit", "5")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "session.created" in lines[0]
    assert tracker.get(session.id) is not None


async def test_logs_of_unknown_session_is_exit_5(halctl: Halctl) -> None:
    result = await halctl("sessions", "logs", "ses_doesnotexist")
    assert result.exit_code == 5
    assert "no session 'ses_doesnotexist'" in result.stderr


async def test_logs_follow_prints_new_events(halctl: Halctl) -> None:
    session = await halctl.live_session()
    out = io.StringIO()
    results: list[Result] = []

    async def follow() -> None:
        args = ["sessions", "logs", session.id, "--limit", "1", "--follow", "--interval", "0.02"]
        results.append(await halctl(*args, "--max-polls", "200", stdout=out))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await wait_until(lambda: out.getvalue() != "", what="the newest event")
        injected = await halctl("sessions", "inject", session.id, "follow-marker-42")
        assert injected.exit_code == 0, injected.stderr
        await wait_until(lambda: "user: follow-marker-42" in out.getvalue(), what="the injected prompt")
        nursery.cancel_scope.cancel()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    assert len(lines) == len(set(lines))  # nothing printed twice


async def test_logs_follow_stops_after_max_polls(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl(
        "-o", "json", "sessions", "logs", session.id, "--follow", "--interval", "0.01", "--max-polls", "1"
    )
    assert result.exit_code == 0, result.stderr
    events = [converter.structure(orjson.loads(line), Event) for line in result.stdout.splitlines()]
    assert events  # one JSON object per line
    assert [e.id for e in events] == sorted({e.id for e in events})


async def test_logs_follow_ends_cleanly_on_ctrl_c(halctl: Halctl) -> None:
    session = await halctl.live_session()
    out = io.StringIO()
    results: list[Result] = []

    async def follow() -> None:
        args = ["sessions", "logs", session.id, "--follow", "--interval", "0.01", "--max-polls", "3000"]
        results.append(await halctl(*args, stdout=out))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            # Output appears only once the follow loop holds SIGINT (so it cannot reach pytest).
            await wait_until(lambda: out.getvalue() != "", what="the first events")
            assert not results
            signal.raise_signal(signal.SIGINT)
    assert results[0].exit_code == 0
    assert results[0].stderr == ""
