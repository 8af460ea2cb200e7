"""Policy state persists as JSON per policy and comes back equal after a restart."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.config.policies import PoliciesConfig, ResumeOnIdlePolicy
from halswarm.policy import (
    POLICY_NAMES,
    CostBrake,
    ErrorEpisode,
    ErrorLoopState,
    IdleEpisode,
    KillOnCostState,
    NodeOfflineState,
    PolicyStates,
    RestartOnCompactionState,
    ResumeOnIdleState,
    RetryWindow,
    StuckBusyState,
    decide_all,
    restore_states,
)
from tests.policy.support import session, snap

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
ids = st.text(min_size=1, max_size=8)
outcomes = st.sampled_from(["acted", "suppressed"])
windows = st.dictionaries(ids, st.builds(RetryWindow, st.one_of(st.none(), times), st.integers(0, 10)), max_size=4)

policy_states = st.builds(
    PolicyStates,
    resume_on_idle=st.builds(ResumeOnIdleState, st.dictionaries(ids, st.builds(IdleEpisode, times, outcomes)), windows),
    restart_on_compaction=st.builds(RestartOnCompactionState, st.dictionaries(ids, outcomes), windows),
    kill_on_cost=st.builds(
        KillOnCostState,
        st.dictionaries(
            ids,
            st.builds(
                CostBrake,
                st.dates().map(str),
                st.lists(ids, unique=True).map(lambda xs: tuple(sorted(xs))),
                st.lists(ids, unique=True).map(lambda xs: tuple(sorted(xs))),
            ),
        ),
    ),
    error_loop=st.builds(
        ErrorLoopState, st.dictionaries(ids, st.builds(ErrorEpisode, times, st.integers(0, 99), outcomes)), windows
    ),
    stuck_busy=st.builds(StuckBusyState, st.dictionaries(ids, times)),
    node_offline=st.builds(NodeOfflineState, st.dictionaries(ids, times)),
)


@settings(max_examples=200)
@given(policy_states)
def test_dump_and_restore_round_trip(states: PolicyStates) -> None:
    dumped = states.dump()
    assert list(dumped) == list(POLICY_NAMES)
    restored, problems = restore_states(dumped)
    assert problems == []
    assert restored == states


def test_rows_are_plain_json() -> None:
    states = PolicyStates(
        resume_on_idle=ResumeOnIdleState({"s1": IdleEpisode(5.0, "acted")}, {"s1": RetryWindow(5.0, 1)})
    )
    assert orjson.loads(states.dump()["resume_on_idle"]) == {
        "episodes": {"s1": {"since": 5.0, "outcome": "acted"}},
        "windows": {"s1": {"started": 5.0, "used": 1}},
    }


def test_missing_rows_give_empty_states() -> None:
    assert restore_states({}) == (PolicyStates(), [])


def test_bad_rows_start_empty_and_are_reported() -> None:
    good = PolicyStates(stuck_busy=StuckBusyState({"s1": 1.0})).dump()["stuck_busy"]
    rows: dict[str, str | bytes] = {
        "resume_on_idle": "{not json",
        "restart_on_compaction": '{"sessions": {"s1": "maybe"}}',
        "node_offline": "[1, 2]",
        "stuck_busy": good.encode(),
        "retired_policy": "{}",
    }
    states, problems = restore_states(rows)
    assert states == PolicyStates(stuck_busy=StuckBusyState({"s1": 1.0}))
    assert [p.split(":")[0] for p in problems] == [
        "retired_policy",
        "resume_on_idle",
        "restart_on_compaction",
        "node_offline",
    ]
    assert problems[0] == "retired_policy: unknown policy, state ignored"
    assert all("unreadable state, starting empty" in p for p in problems[1:])


def test_unknown_keys_in_a_row_are_ignored_for_forward_compatibility() -> None:
    states, problems = restore_states({"stuck_busy": '{"episodes": {"s1": 2.0}, "added_later": 1}'})
    assert (states.stuck_busy, problems) == (StuckBusyState({"s1": 2.0}), [])


def test_a_restart_keeps_retry_counters() -> None:
    """Three resumes, a supervisor restart (state through the store), then the cap still holds."""
    config = PoliciesConfig(resume_on_idle=ResumeOnIdlePolicy(enabled=True, max_retries=3))
    states = PolicyStates()
    for k in range(3):
        states = decide_all(config, snap(session(since=k * 400.0)), states, k * 400.0 + 300.0).states
    restored, _ = restore_states(states.dump())
    decision = decide_all(config, snap(session(since=1200.0)), restored, 1500.0)
    assert [type(a).__name__ for a in decision.actions] == ["Suppressed"]
