"""Whether provisioning may restart the spawned opencode to apply a changed environment."""

from __future__ import annotations

from halswarm.agent.envapply import decide_restart
from halswarm.envcheck.views import OpencodeRestart

CHECKS = ["env:STAGE", "env:REGION", "env:STAGE"]  # two projects may list the same variable


def test_nothing_to_apply_needs_no_restart() -> None:
    assert decide_restart([], {"ses_1": "busy"}) is None


def test_no_busy_session_plans_the_restart() -> None:
    assert decide_restart(CHECKS, {}) == OpencodeRestart(
        "planned", ["env:REGION", "env:STAGE"], "no session is busy now"
    )


def test_a_busy_or_waiting_session_keeps_it_pending_and_is_named() -> None:
    decision = decide_restart(CHECKS, {"ses_b": "waiting", "ses_a": "busy"})
    assert decision is not None
    assert (decision.status, decision.checks) == ("pending", ["env:REGION", "env:STAGE"])
    assert decision.detail == (
        "opencode serve not restarted: it would interrupt session(s) ses_a (busy), ses_b (waiting); "
        "provision again when no session is busy"
    )


def test_when_the_sessions_cannot_be_listed_nothing_is_restarted() -> None:
    decision = decide_restart(CHECKS, {}, unavailable="cannot tell whether a session is busy (opencode: timed out)")
    assert decision is not None
    assert decision.status == "pending"
    assert "cannot tell whether a session is busy" in decision.detail
