"""Auto-intervention policies (issue #6): pure decisions over immutable snapshots.

- :mod:`halswarm.policy.model` - what policies see (:class:`Snapshot`) and decide
  (:class:`PolicyAction`, :class:`Suppressed`, :class:`Decision`).
- :mod:`halswarm.policy.decisions` - one ``decide_<policy>`` function per policy.
- :mod:`halswarm.policy.fleet` - :func:`decide_all`, one tick of every enabled policy.
- :mod:`halswarm.policy.state` - the persisted per-policy state.
- :mod:`halswarm.policy.retry` - retry caps with reset windows.

Around them, the supervisor side (import these modules directly; this package does not
re-export them, so the pure layer never imports the store or trio):

- :mod:`halswarm.policy.engine` - :class:`~halswarm.policy.engine.PolicyEngine`, the loop
  that builds snapshots, persists states and carries decisions out.
- :mod:`halswarm.policy.observe` - ``status_since`` stamps that survive restarts.
- :mod:`halswarm.policy.summary` - the effective config and each policy's API summary.
- :mod:`halswarm.policy.records` - the audit rows and event data the engine writes.
- :mod:`halswarm.policy.views` - the API's shapes, shared with halctl.
- :mod:`halswarm.policy.storage` - the narrow store and command-path protocols.

The config lives in :mod:`halswarm.config.policies`; semantics in docs/POLICIES.md.
"""

from __future__ import annotations

from halswarm.policy.decisions import (
    RESTARTABLE,
    cost_brake_holds,
    decide_error_loop,
    decide_kill_on_cost,
    decide_node_offline,
    decide_restart_on_compaction,
    decide_resume_on_idle,
    decide_stuck_busy,
)
from halswarm.policy.fleet import FleetDecision, decide_all
from halswarm.policy.model import (
    POLICY_NAMES,
    Action,
    ActionKind,
    Decision,
    NodeView,
    PolicyAction,
    PolicyName,
    SessionView,
    Snapshot,
    SpendView,
    Suppressed,
)
from halswarm.policy.retry import RetryWindow, current_window
from halswarm.policy.state import (
    CostBrake,
    ErrorEpisode,
    ErrorLoopState,
    IdleEpisode,
    KillOnCostState,
    NodeOfflineState,
    Outcome,
    PolicyStates,
    RestartOnCompactionState,
    ResumeOnIdleState,
    StuckBusyState,
    restore_states,
)

__all__ = [
    "POLICY_NAMES",
    "RESTARTABLE",
    "Action",
    "ActionKind",
    "CostBrake",
    "Decision",
    "ErrorEpisode",
    "ErrorLoopState",
    "FleetDecision",
    "IdleEpisode",
    "KillOnCostState",
    "NodeOfflineState",
    "NodeView",
    "Outcome",
    "PolicyAction",
    "PolicyName",
    "PolicyStates",
    "RestartOnCompactionState",
    "ResumeOnIdleState",
    "RetryWindow",
    "SessionView",
    "Snapshot",
    "SpendView",
    "StuckBusyState",
    "Suppressed",
    "cost_brake_holds",
    "current_window",
    "decide_all",
    "decide_error_loop",
    "decide_kill_on_cost",
    "decide_node_offline",
    "decide_restart_on_compaction",
    "decide_resume_on_idle",
    "decide_stuck_busy",
    "restore_states",
]
