"""Session control through halctl: each command's outcome line and its effect."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from halswarm.convert import converter
from halswarm.models import Command
from halswarm.testing import wait_until

if TYPE_CHECKING:
    from halswarm.testing.halctl import Halctl


def _new_session_id(line: str) -> str:
    match = re.search(r"new session (ses_[0-9a-f]{24})", line)
    assert match is not None, line
    return match.group(1)


async def test_start_prints_new_session_known_to_tracker(halctl: Halctl) -> None:
    await halctl.live_session()
    result = await halctl("sessions", "start", "proj-2-2", "--prompt", "Write the docs")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("start_session on proj-2-2: succeeded — new session ses_")
    new_id = _new_session_id(result.stdout)
    tracker = halctl.cluster.supervisor.tracker
    await wait_until(lambda: tracker.get(new_id) is not None, what="new session tracked")
    new = tracker.get(new_id)
    assert new is not None
    assert new.project == "proj-2-2"
    assert new.node_id == "node-2"


async def test_inject_by_project_name(halctl: Halctl) -> None:
    session = await halctl.live_session("node-1")
    result = await halctl("sessions", "inject", session.project, "Please add tests")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"prompt_session on {session.project}: succeeded — prompt sent to session ses_")


async def test_inject_by_short_session_id(halctl: Halctl) -> None:
    session = await halctl.live_session("node-2")
    result = await halctl("sessions", "inject", session.id[:12], "hello")
    assert result.exit_code == 0, result.stderr
    assert f"prompt sent to session {session.id}" in result.stdout


async def test_resume(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "resume", session.id, "--prompt", "Go on")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"resume_session on {session.id}: succeeded — session {session.id} resumed"


async def test_restart_prints_new_session_with_predecessor(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "restart", session.id, "--no-handover")
    assert result.exit_code == 0, result.stderr
    assert f"restart_session on {session.id}: succeeded — new session ses_" in result.stdout
    assert f"predecessor {session.id}, without handover" in result.stdout
    new_id = _new_session_id(result.stdout)
    tracker = halctl.cluster.supervisor.tracker
    await wait_until(lambda: tracker.get(new_id) is not None, what="successor tracked")
    successor = tracker.get(new_id)
    assert successor is not None
    assert successor.predecessor_id == session.id
    shown = await halctl("sessions", "get", new_id)
    assert f"predecessor         {session.id}" in shown.stdout


async def test_abort(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "abort", session.id)
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(
        rf"abort_session on {session.id}: succeeded — session {session.id} aborted \(was \w+\)", result.stdout.strip()
    )


async def test_kill_completes_the_session_and_a_second_kill_fails(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "kill", session.id)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"kill_session on {session.id}: succeeded — session {session.id} killed"
    tracker = halctl.cluster.supervisor.tracker
    await wait_until(lambda: tracker.real_status(session.id) == "completed", what="session completed")

    # The agent refuses to kill it twice: exit 1 with its reason on stderr.
    again = await halctl("sessions", "kill", session.id)
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr.startswith(f"kill_session on {session.id}: failed — ")
    assert "has ended" in again.stderr


async def test_command_json_output(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("-o", "json", "sessions", "inject", session.id, "json please")
    assert result.exit_code == 0, result.stderr
    command = converter.structure(result.json()["command"], Command)
    assert command.type == "prompt_session"
    assert command.status == "succeeded"
    assert command.result == {"session_id": session.id}
    assert command.args == {"prompt": "json please"}


async def test_idempotency_key_returns_the_first_command(halctl: Halctl) -> None:
    session = await halctl.live_session()
    args = ("-o", "json", "sessions", "inject", session.id, "once only", "--idempotency-key", "k-123")
    first = converter.structure((await halctl(*args)).json()["command"], Command)
    second = converter.structure((await halctl(*args)).json()["command"], Command)
    assert first.id == second.id
    assert first.idempotency_key == "k-123"

    conflict = await halctl("sessions", "inject", session.id, "something else", "--idempotency-key", "k-123")
    assert conflict.exit_code == 1
    assert "idempotency_conflict" in conflict.stderr


async def test_wait_zero_only_submits_and_commands_get_reads_the_outcome(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "resume", session.id, "--wait", "0")
    assert result.exit_code == 0, result.stderr
    if "accepted" in result.stdout:  # usually; the agent may already have answered
        match = re.search(r"halctl commands get (\w+) --wait 60", result.stdout)
        assert match is not None, result.stdout
        shown = await halctl("commands", "get", match.group(1), "--wait", "10")
        assert shown.exit_code == 0, shown.stderr
        assert "succeeded" in shown.stdout
        assert f"resume_session on {session.id}: succeeded" in shown.stdout
    else:
        assert "succeeded" in result.stdout


async def test_unknown_target_is_exit_5(halctl: Halctl) -> None:
    for args in (("sessions", "kill", "ses_000000000000"), ("sessions", "start", "no-such-project")):
        result = await halctl(*args)
        assert result.exit_code == 5, result
        assert result.stderr.startswith("error: not found: ")


async def test_empty_prompt_is_an_api_error(halctl: Halctl) -> None:
    session = await halctl.live_session()
    result = await halctl("sessions", "inject", session.id, "  ")
    assert result.exit_code == 1
    assert "args.prompt: must not be empty" in result.stderr
    assert "invalid_args, HTTP 400" in result.stderr
