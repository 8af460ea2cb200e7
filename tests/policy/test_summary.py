"""The API summary of a policy: its retry budget is the fullest open window, as halctl shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.config.policies import PoliciesConfig, ResumeOnIdlePolicy
from halswarm.policy import PolicyStates, ResumeOnIdleState, RetryWindow
from halswarm.policy.summary import epoch_ts, summarize

if TYPE_CHECKING:
    from halswarm.policy.views import RetryUse

CONFIG = PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True, max_retries=3, reset_window_seconds=100.0))


def resume_summary(windows: dict[str, RetryWindow], now: float = 50.0) -> tuple[int, str | None, list[RetryUse]]:
    states = PolicyStates(resume_on_idle=ResumeOnIdleState(windows=windows))
    info = summarize(
        "resume_on_idle",
        effective=CONFIG,
        configured=CONFIG,
        override=None,
        states=states,
        last_action=None,
        now=now,
    )
    return info.retries_used, info.next_reset, info.windows


def test_retries_used_is_the_fullest_window_never_a_sum_over_sessions() -> None:
    windows = {"s1": RetryWindow(10.0, 1), "s2": RetryWindow(20.0, 3), "s3": RetryWindow(30.0, 2)}
    used, next_reset, uses = resume_summary(windows)
    assert (used, next_reset) == (3, epoch_ts(120.0))  # s2's window: 3 of 3, back at 20 + 100
    assert [u.scope for u in uses] == ["s1", "s2", "s3"]


def test_equally_full_windows_report_the_one_that_resets_first() -> None:
    used, next_reset, _ = resume_summary({"s1": RetryWindow(30.0, 2), "s2": RetryWindow(10.0, 2)})
    assert (used, next_reset) == (2, epoch_ts(110.0))


def test_expired_windows_count_for_nothing() -> None:
    assert resume_summary({"s1": RetryWindow(10.0, 3)}, now=110.0) == (0, None, [])
