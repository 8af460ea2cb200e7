"""Pure policy decisions: ``(config, snapshot, state, now) -> Decision`` (issue #6).

No I/O, no clock, no trio: the engine (:mod:`halswarm.policy.engine`) supplies
everything and carries out the result. Each ``decide_<policy>`` function is total and
deterministic (sessions are visited in id order).

Invariants (each has unit and property tests in tests/policy/):

- **Once per episode.** A policy acts at most once per episode of a target and emits
  at most one :class:`Suppressed` per episode. Episodes: resume_on_idle - one idle
  period (``status_since`` of the idle status); restart_on_compaction - the session
  (compactions never go down); error_loop - one error streak (ends when
  ``consecutive_errors`` falls); stuck_busy - one busy stretch without activity (ends
  with new activity or another status); node_offline - one offline period (ends when
  the node is seen in another status); kill_on_cost - one UTC day per session (every
  tick of a day over the limit stops the sessions of the scope not stopped yet).
- **Retry caps.** resume_on_idle, restart_on_compaction and error_loop take at most
  ``max_retries`` actions per reset window (:mod:`halswarm.policy.retry`). An episode
  that finds the cap used up is suppressed once; if it is still eligible when the
  window resets, it is acted upon then (still once).
- **Hands off.** Sessions with a command in flight (``snapshot.in_flight``), sessions
  another policy commanded this tick or kill_on_cost holds (``claimed``, see
  :func:`cost_brake_holds`) and unreachable sessions are skipped without touching their
  state; kill_on_cost alone ignores in-flight commands.
- **Dry run** changes nothing but the ``dry_run`` flag: the state advances as if the
  action had been sent, so a dry run reports each decision once instead of every tick.
- **Pruning.** State of sessions and nodes missing from the snapshot is dropped, and
  so are expired retry windows; kill_on_cost keeps only today's entries.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.policy.model import Action, Decision, PolicyAction, SessionView, Suppressed
from halswarm.policy.retry import RetryWindow, current_window
from halswarm.policy.state import (
    CostBrake,
    ErrorEpisode,
    ErrorLoopState,
    IdleEpisode,
    KillOnCostState,
    NodeOfflineState,
    Outcome,
    RestartOnCompactionState,
    ResumeOnIdleState,
    StuckBusyState,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from halswarm.config.policies import (
        ErrorLoopPolicy,
        KillOnCostPolicy,
        NodeOfflinePolicy,
        RestartOnCompactionPolicy,
        ResumeOnIdlePolicy,
        StuckBusyPolicy,
    )
    from halswarm.jsontypes import JSONObject
    from halswarm.models import CommandType
    from halswarm.policy.model import PolicyName, Snapshot, SpendView

__all__ = [
    "RESTARTABLE",
    "cost_brake_holds",
    "decide_error_loop",
    "decide_kill_on_cost",
    "decide_node_offline",
    "decide_restart_on_compaction",
    "decide_resume_on_idle",
    "decide_stuck_busy",
]

#: Statuses in which a restart (handover) is sent. Not ``waiting``: a human's answer is
#: pending and a restart would drop it; not ``starting``: nothing to hand over yet.
RESTARTABLE: Final[frozenset[str]] = frozenset({"busy", "idle", "error", "retry"})

_HANDOVER: Final[JSONObject] = {"handover": True}


def _ordered(sessions: Iterable[SessionView]) -> list[SessionView]:
    return sorted(sessions, key=lambda s: s.id)


def _open_windows(
    windows: Mapping[str, RetryWindow], now: float, reset_window_seconds: float
) -> dict[str, RetryWindow]:
    return {key: w for key, w in windows.items() if w.is_open(now, reset_window_seconds)}


def _held(session: SessionView, hold: frozenset[str]) -> bool:
    """Leave this session (and its state) alone this tick."""
    return session.id in hold or not session.is_reachable


def _on_session(
    policy: PolicyName,
    s: SessionView,
    reason: str,
    idempotency_key: str,
    *,
    dry_run: bool,
    command: CommandType | None = None,
    args: JSONObject | None = None,
) -> PolicyAction:
    """An action on session *s*: the *command* to send, or (no command) an alert."""
    return PolicyAction(
        policy=policy,
        kind="alert" if command is None else "command",
        target=s.id,
        reason=reason,
        idempotency_key=idempotency_key,
        command_type=command,
        args=dict(args) if args else {},
        project=s.project,
        node_id=s.node_id,
        dry_run=dry_run,
    )


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


def _cap_reason(what: str, window: RetryWindow, max_retries: int, scope: str) -> str:
    if max_retries == 0:
        return f"{what}, but max_retries is 0"
    return f"{what}, but {window.used} of {max_retries} allowed {scope} in this window are used"


# ---- resume_on_idle ----------------------------------------------------------------------


def decide_resume_on_idle(
    config: ResumeOnIdlePolicy,
    snapshot: Snapshot,
    state: ResumeOnIdleState,
    now: float,
    *,
    claimed: frozenset[str] = frozenset(),
) -> Decision[ResumeOnIdleState]:
    """Resume sessions idle for ``idle_threshold_seconds``, once per idle period.

    Idle time counts from the later of ``status_since`` and ``last_activity``; the
    threshold itself is enough (``>=``). Retry caps are per session.

    Args:
        config: the policy's config (``enabled`` is the caller's business).
        snapshot: sessions this tick.
        state: what the last tick returned (or the restored state).
        now: the current time on the snapshot's timeline.
        claimed: sessions to leave alone: other policies sent them a command this tick,
            or kill_on_cost's brake holds them (:func:`cost_brake_holds`).

    Returns:
        ``resume_session`` commands (with ``args.prompt`` when configured), Suppressed
        entries and the new state.
    """
    hold = snapshot.in_flight | claimed
    window_length = config.reset_window_seconds
    episodes: dict[str, IdleEpisode] = {}
    windows: dict[str, RetryWindow] = {}
    actions: list[Action] = []
    args: JSONObject = {"prompt": config.prompt} if config.prompt is not None else {}
    for s in _ordered(snapshot.sessions):
        window = current_window(state.windows.get(s.id), now, window_length)
        episode = state.episodes.get(s.id)
        if not _held(s, hold):
            if s.status != "idle" or (episode is not None and episode.since != s.status_since):
                episode = None  # that idle period is over
            idle_for = now - s.quiet_since
            due = s.status == "idle" and idle_for >= config.idle_threshold_seconds
            if due and (episode is None or episode.outcome == "suppressed"):
                if window.has_room(config.max_retries):
                    window = window.spend(now)
                    episode = IdleEpisode(s.status_since, "acted")
                    reason = (
                        f"idle for {_seconds(idle_for)} (threshold {_seconds(config.idle_threshold_seconds)}); "
                        f"resume {window.used} of {config.max_retries} in this window"
                    )
                    key = f"resume_on_idle:{s.id}:{s.status_since!r}"
                    command = _on_session(
                        "resume_on_idle", s, reason, key, dry_run=config.dry_run, command="resume_session", args=args
                    )
                    actions.append(command)
                elif episode is None:
                    episode = IdleEpisode(s.status_since, "suppressed")
                    what = f"idle for {_seconds(idle_for)}"
                    actions.append(
                        Suppressed(
                            policy="resume_on_idle",
                            target=s.id,
                            reason=_cap_reason(what, window, config.max_retries, "resumes"),
                            project=s.project,
                            retries_used=window.used,
                            next_reset=window.next_reset(window_length),
                            dry_run=config.dry_run,
                        )
                    )
        if episode is not None:
            episodes[s.id] = episode
        if window.started is not None:
            windows[s.id] = window
    return Decision(tuple(actions), ResumeOnIdleState(episodes, windows))


# ---- restart_on_compaction ---------------------------------------------------------------


def decide_restart_on_compaction(
    config: RestartOnCompactionPolicy,
    snapshot: Snapshot,
    state: RestartOnCompactionState,
    now: float,
    *,
    claimed: frozenset[str] = frozenset(),
) -> Decision[RestartOnCompactionState]:
    """Hand over sessions compacted ``compaction_threshold`` times, once per session.

    The restart replaces the session with a successor (new id, counts from zero), so
    the old id is never restarted twice. Retry caps are per project: session ids change
    with every restart, so a per-session cap would never bind, and a predecessor chain
    breaks whenever a session is started by hand; "restarts of project X per window" is
    the bound that always holds and the one an operator reasons about.

    Returns:
        ``restart_session`` commands (``args.handover`` true), Suppressed entries and
        the new state.
    """
    hold = snapshot.in_flight | claimed
    window_length = config.reset_window_seconds
    windows = _open_windows(state.windows, now, window_length)
    sessions: dict[str, Outcome] = {}
    actions: list[Action] = []
    for s in _ordered(snapshot.sessions):
        previous = state.sessions.get(s.id)
        eligible = (
            previous != "acted"
            and not _held(s, hold)
            and s.compaction_count >= config.compaction_threshold
            and s.status in RESTARTABLE
        )
        if not eligible:
            if previous is not None:
                sessions[s.id] = previous
            continue
        window = current_window(windows.get(s.project), now, window_length)
        what = f"{s.compaction_count} compactions (threshold {config.compaction_threshold})"
        if window.has_room(config.max_retries):
            windows[s.project] = window.spend(now)
            sessions[s.id] = "acted"
            reason = f"{what}; restart {window.used + 1} of {config.max_retries} for {s.project} in this window"
            actions.append(
                _on_session(
                    "restart_on_compaction",
                    s,
                    reason,
                    f"restart_on_compaction:{s.id}",
                    dry_run=config.dry_run,
                    command="restart_session",
                    args=_HANDOVER,
                )
            )
        else:
            sessions[s.id] = "suppressed"
            if previous is None:
                actions.append(
                    Suppressed(
                        policy="restart_on_compaction",
                        target=s.id,
                        reason=_cap_reason(what, window, config.max_retries, f"restarts for {s.project}"),
                        project=s.project,
                        retries_used=window.used,
                        next_reset=window.next_reset(window_length),
                        dry_run=config.dry_run,
                    )
                )
    return Decision(tuple(actions), RestartOnCompactionState(sessions, windows))


# ---- kill_on_cost ------------------------------------------------------------------------


def _usd(value: Decimal) -> str:
    return f"${value:.2f}"


def _cost_scopes(config: KillOnCostPolicy) -> list[tuple[str, str | None, Decimal]]:
    """(key, project or None for the fleet, limit) of every scope with a limit."""
    scopes: list[tuple[str, str | None, Decimal]] = []
    if config.daily_limit_usd is not None:
        scopes.append(("fleet", None, Decimal(repr(config.daily_limit_usd))))
    scopes += [(f"project:{name}", name, Decimal(repr(limit))) for name, limit in sorted(config.projects.items())]
    return scopes


def _over_limit(config: KillOnCostPolicy, spend: SpendView) -> list[tuple[str, str | None, Decimal]]:
    return [(key, project, limit) for key, project, limit in _cost_scopes(config) if spend.of(project) >= limit]


def cost_brake_holds(config: KillOnCostPolicy, snapshot: Snapshot) -> frozenset[str]:
    """Sessions no other policy may send a command to: the brake is on for their scope.

    The brake is on for a scope while its spend today is at or over its limit. Left to
    the others, a stopped session would be resumed once idle long enough, or handed
    over to a successor, and spending would go on. Alerts are not held back. A dry run
    holds nothing (it only reports), nor does a tick without today's spend figure.
    """
    spend = snapshot.spend
    if spend is None or config.dry_run:
        return frozenset()
    over = [project for _, project, _ in _over_limit(config, spend)]
    return frozenset(s.id for s in snapshot.sessions if any(p in (None, s.project) for p in over))


def decide_kill_on_cost(
    config: KillOnCostPolicy, snapshot: Snapshot, state: KillOnCostState, now: float
) -> Decision[KillOnCostState]:
    """Stop every active session of a scope whose spend today reached its limit, once per session and day.

    Scopes: the fleet (``daily_limit_usd``, measured by the fleet's total) and each
    project in ``projects`` (measured by that project's total). While a scope is at or
    over its limit (the UTC day is ``snapshot.spend.day``), every tick commands each of
    its active, reachable sessions that no scope has commanded today: so also sessions
    unreachable until now, and sessions started later that day (by a human, a node
    reconnecting, a restart's successor). A session commanded once is not commanded
    again that day (a human who resumes it overrides the brake for it); the next day
    starts afresh. Finished sessions are not touched; unreachable ones are named in the
    notes until they are stopped. Sessions with a command in flight are stopped anyway:
    this is the emergency brake. A session in two scopes over their limits gets one
    command. Dry run reports each session once a day and marks it reported, not
    commanded: switched off the same day, the brake then commands it for real.

    Returns:
        ``abort_session`` or ``kill_session`` commands and the new state (today's
        entries of configured scopes only).
    """
    del now  # the day comes with the spend figures, so it matches them exactly
    spend = snapshot.spend
    if spend is None:
        return Decision((), state, ("kill_on_cost: no spend figures for today yet; nothing checked",))
    configured = {key for key, _, _ in _cost_scopes(config)}
    # Today's marks are kept whole (not pruned with the sessions): one command per
    # session and day, even for a session that leaves the snapshot and comes back.
    today = {key: brake for key, brake in state.scopes.items() if brake.day == spend.day and key in configured}
    done = set(KillOnCostState(today).handled(dry_run=config.dry_run))
    command: CommandType = "abort_session" if config.action == "abort" else "kill_session"
    actions: list[Action] = []
    notes: list[str] = []
    for key, project, limit in _over_limit(config, spend):
        spent = spend.of(project)
        label = "fleet" if project is None else f"project {project}"
        in_scope = [s for s in _ordered(snapshot.sessions) if s.is_active and project in (None, s.project)]
        waiting = [s.id for s in in_scope if not s.is_reachable and s.id not in done]
        if waiting:
            notes.append(
                f"kill_on_cost: {label} over its limit; unreachable sessions to stop once reachable: {waiting}"
            )
        if not in_scope:
            notes.append(f"kill_on_cost: {label} over its limit; no active session to stop")
        reason = f"{label} spend today {_usd(spent)} reached the daily limit {_usd(limit)}; {config.action}"
        stopped: list[str] = []
        for s in in_scope:
            if not s.is_reachable or s.id in done:
                continue
            done.add(s.id)
            stopped.append(s.id)
            idempotency_key = f"kill_on_cost:{key}:{spend.day}:{s.id}"
            actions.append(
                _on_session("kill_on_cost", s, reason, idempotency_key, dry_run=config.dry_run, command=command)
            )
        brake = today.get(key, CostBrake(spend.day))
        if config.dry_run:
            brake = attrs.evolve(brake, reported=tuple(sorted({*brake.reported, *stopped})))
        else:
            brake = attrs.evolve(brake, commanded=tuple(sorted({*brake.commanded, *stopped})))
        today[key] = brake
    return Decision(tuple(actions), KillOnCostState(today), tuple(notes))


# ---- error_loop --------------------------------------------------------------------------


def decide_error_loop(
    config: ErrorLoopPolicy,
    snapshot: Snapshot,
    state: ErrorLoopState,
    now: float,
    *,
    claimed: frozenset[str] = frozenset(),
) -> Decision[ErrorLoopState]:
    """Alert on (or restart) sessions with ``consecutive_errors`` errors in a row, once per streak.

    A streak ends when the count falls below the threshold, or below the count seen at
    the last tick (reset and climbed back between two ticks). Retry caps are per
    project, as for restart_on_compaction, and count alerts and restarts alike. A
    restart waits for a :data:`RESTARTABLE` status; an alert goes to any active session.

    Returns:
        Alerts or ``restart_session`` commands, Suppressed entries and the new state.
    """
    hold = snapshot.in_flight | claimed
    window_length = config.reset_window_seconds
    windows = _open_windows(state.windows, now, window_length)
    episodes: dict[str, ErrorEpisode] = {}
    actions: list[Action] = []
    for s in _ordered(snapshot.sessions):
        episode = state.episodes.get(s.id)
        if _held(s, hold):
            if episode is not None:
                episodes[s.id] = episode
            continue
        errors = s.consecutive_errors
        if episode is not None and (errors < config.consecutive_errors or errors < episode.errors):
            episode = None  # the streak ended
        if errors < config.consecutive_errors or not s.is_active:
            continue
        ready = config.action == "alert" or s.status in RESTARTABLE
        if (episode is not None and episode.outcome == "acted") or not ready:
            if episode is not None:
                episodes[s.id] = attrs.evolve(episode, errors=errors)
            continue
        started = episode.started if episode is not None else now
        window = current_window(windows.get(s.project), now, window_length)
        what = f"{errors} consecutive errors (threshold {config.consecutive_errors})"
        if window.has_room(config.max_retries):
            windows[s.project] = window.spend(now)
            episodes[s.id] = ErrorEpisode(started, errors, "acted")
            restart = config.action == "restart"
            actions.append(
                _on_session(
                    "error_loop",
                    s,
                    f"{what}; {config.action}",
                    f"error_loop:{s.id}:{started!r}",
                    dry_run=config.dry_run,
                    command="restart_session" if restart else None,
                    args=_HANDOVER if restart else None,
                )
            )
        else:
            episodes[s.id] = ErrorEpisode(started, errors, "suppressed")
            if episode is None:
                noun = "restarts" if config.action == "restart" else "alerts"
                actions.append(
                    Suppressed(
                        policy="error_loop",
                        target=s.id,
                        reason=_cap_reason(what, window, config.max_retries, f"{noun} for {s.project}"),
                        project=s.project,
                        retries_used=window.used,
                        next_reset=window.next_reset(window_length),
                        dry_run=config.dry_run,
                    )
                )
    return Decision(tuple(actions), ErrorLoopState(episodes, windows))


# ---- stuck_busy --------------------------------------------------------------------------


def decide_stuck_busy(
    config: StuckBusyPolicy,
    snapshot: Snapshot,
    state: StuckBusyState,
    now: float,
    *,
    claimed: frozenset[str] = frozenset(),
) -> Decision[StuckBusyState]:
    """Alert on (or abort) sessions busy with no activity for ``minutes``, once per quiet stretch.

    The stretch starts at the later of ``status_since`` and ``last_activity``; new
    activity or another status ends it. No retry cap: each stretch is at least
    ``minutes`` long, which bounds the rate by itself.

    Returns:
        Alerts or ``abort_session`` commands and the new state.
    """
    hold = snapshot.in_flight | claimed
    threshold = config.minutes * 60.0
    episodes: dict[str, float] = {}
    actions: list[Action] = []
    for s in _ordered(snapshot.sessions):
        acted_on = state.episodes.get(s.id)
        if _held(s, hold):
            if acted_on is not None:
                episodes[s.id] = acted_on
            continue
        if s.status != "busy":
            continue
        mark = s.quiet_since
        if acted_on == mark:
            episodes[s.id] = mark
            continue
        quiet = now - mark
        if quiet < threshold:
            continue
        episodes[s.id] = mark
        reason = f"busy with no activity for {_seconds(quiet)} (threshold {config.minutes:g} min); {config.action}"
        actions.append(
            _on_session(
                "stuck_busy",
                s,
                reason,
                f"stuck_busy:{s.id}:{mark!r}",
                dry_run=config.dry_run,
                command="abort_session" if config.action == "abort" else None,
            )
        )
    return Decision(tuple(actions), StuckBusyState(episodes))


# ---- node_offline ------------------------------------------------------------------------


def decide_node_offline(
    config: NodeOfflinePolicy, snapshot: Snapshot, state: NodeOfflineState, now: float
) -> Decision[NodeOfflineState]:
    """Alert once per offline period of a node.

    The period ends only when the node is seen in another status, so a status_since
    re-stamped by a supervisor restart does not alert again. Nodes in the engine's
    startup grace (``NodeView.grace``) raise nothing and keep what was reported.

    Returns:
        Alerts (target: the node id) and the new state.
    """
    del config  # the only action is an alert
    active: dict[str, int] = {}
    for s in snapshot.sessions:
        if s.is_active:
            active[s.node_id] = active.get(s.node_id, 0) + 1
    alerted: dict[str, float] = {}
    actions: list[Action] = []
    for node in sorted(snapshot.nodes, key=lambda n: n.id):
        if node.status != "offline":
            continue
        since = state.alerted.get(node.id)
        if since is not None:
            alerted[node.id] = since
            continue
        if node.grace:
            continue  # not reconnected yet after a supervisor restart: no news
        alerted[node.id] = node.status_since
        count = active.get(node.id, 0)
        actions.append(
            PolicyAction(
                policy="node_offline",
                kind="alert",
                target=node.id,
                reason=f"node {node.id} offline for {_seconds(now - node.status_since)}; "
                f"{count} active session(s) unreachable",
                idempotency_key=f"node_offline:{node.id}:{node.status_since!r}",
                node_id=node.id,
            )
        )
    return Decision(tuple(actions), NodeOfflineState(alerted))
