"""One tick of every enabled policy, in priority order: the engine's single call (issue #6).

Order (:data:`~halswarm.policy.model.POLICY_NAMES`): kill_on_cost, restart_on_compaction,
error_loop, stuck_busy, resume_on_idle, node_offline. A session that receives a command
(dry run included) from one policy is ``claimed`` for the rest of the tick, so one tick
never sends it two commands (a restart and a resume, an abort and a resume). The later
policy sees it again next tick, by which time the command is in ``snapshot.in_flight``
or done. Alerts claim nothing.

While kill_on_cost's brake is on for a scope (today's spend at or over its limit; not
in dry run), its sessions are held from every policy that would send them a command
(:func:`~halswarm.policy.decisions.cost_brake_holds`): otherwise resume_on_idle would
resume an aborted session once idle long enough, and a restart's successor would spend
on. Alerts (error_loop and stuck_busy with ``action: alert``, node_offline) still go out.

A disabled policy is not run and its state is passed through untouched, so re-enabling
it (at runtime, audited: ``PolicyEngine.set_enabled``) keeps its retry counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import attrs

from halswarm.policy.decisions import (
    cost_brake_holds,
    decide_error_loop,
    decide_kill_on_cost,
    decide_node_offline,
    decide_restart_on_compaction,
    decide_resume_on_idle,
    decide_stuck_busy,
)
from halswarm.policy.model import Action, Decision, PolicyAction
from halswarm.policy.state import PolicyStates

if TYPE_CHECKING:
    from halswarm.config.policies import PoliciesConfig
    from halswarm.policy.model import Snapshot

__all__ = ["FleetDecision", "decide_all"]

S = TypeVar("S")


@attrs.frozen
class FleetDecision:
    """What one tick decided: actions in priority order, every policy's new state, notes."""

    actions: tuple[Action, ...]
    states: PolicyStates
    notes: tuple[str, ...] = ()


class _Tick:
    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.notes: list[str] = []
        self.claimed: set[str] = set()
        #: Sessions kill_on_cost's brake holds from commands (not from alerts).
        self.braked: frozenset[str] = frozenset()

    def take(self, decision: Decision[S]) -> S:
        self.actions += decision.actions
        self.notes += decision.notes
        self.claimed |= {a.target for a in decision.actions if isinstance(a, PolicyAction) and a.kind == "command"}
        return decision.state

    def hold(self, *, sends_commands: bool) -> frozenset[str]:
        """What the next policy must leave alone: this tick's commands, and the braked sessions if it sends commands."""
        return frozenset(self.claimed | self.braked) if sends_commands else frozenset(self.claimed)


def decide_all(config: PoliciesConfig, snapshot: Snapshot, states: PolicyStates, now: float) -> FleetDecision:
    """Run every enabled policy once.

    Args:
        config: the ``policies`` config (with any runtime enable/disable applied).
        snapshot: the fleet this tick.
        states: every policy's state from the last tick (or restored from the store).
        now: the current time on the snapshot's timeline.

    Returns:
        The actions to carry out, the states to persist (``states.changed(before)``
        names the rows to write) and log notes.
    """
    tick = _Tick()
    new = states
    if config.kill_on_cost.enabled:
        new = attrs.evolve(
            new, kill_on_cost=tick.take(decide_kill_on_cost(config.kill_on_cost, snapshot, states.kill_on_cost, now))
        )
        tick.braked = cost_brake_holds(config.kill_on_cost, snapshot)
    if config.restart_on_compaction.enabled:
        decision = decide_restart_on_compaction(
            config.restart_on_compaction,
            snapshot,
            states.restart_on_compaction,
            now,
            claimed=tick.hold(sends_commands=True),
        )
        new = attrs.evolve(new, restart_on_compaction=tick.take(decision))
    if config.error_loop.enabled:
        restarts = config.error_loop.action == "restart"
        error_decision = decide_error_loop(
            config.error_loop, snapshot, states.error_loop, now, claimed=tick.hold(sends_commands=restarts)
        )
        new = attrs.evolve(new, error_loop=tick.take(error_decision))
    if config.stuck_busy.enabled:
        aborts = config.stuck_busy.action == "abort"
        stuck_decision = decide_stuck_busy(
            config.stuck_busy, snapshot, states.stuck_busy, now, claimed=tick.hold(sends_commands=aborts)
        )
        new = attrs.evolve(new, stuck_busy=tick.take(stuck_decision))
    if config.resume_on_idle.enabled:
        resume_decision = decide_resume_on_idle(
            config.resume_on_idle, snapshot, states.resume_on_idle, now, claimed=tick.hold(sends_commands=True)
        )
        new = attrs.evolve(new, resume_on_idle=tick.take(resume_decision))
    if config.node_offline.enabled:
        node_decision = decide_node_offline(config.node_offline, snapshot, states.node_offline, now)
        new = attrs.evolve(new, node_offline=tick.take(node_decision))
    return FleetDecision(tuple(tick.actions), new, tuple(tick.notes))
