"""The policy engine (issue #6): every tick, run the pure decisions and carry them out.

::

    PolicyEngine.run                  in the supervisor's core nursery
    └─ every policies.tick_seconds    trio's clock, drift-free (a late tick skips the missed ones)
       1. look      sessions (tracker), nodes (registry), today's spend (cost buckets measured
                    by halswarm.cost.budgets.today_spend, as the daily budgets are), commands in
                    flight (store + dispatcher)
       2. decide    halswarm.policy.decide_all with the effective config (runtime overrides,
                    kill_on_cost's fallback to the budgets)
       3. persist   changed policy states, what the engine saw (status_since), last actions and
                    the audit rows of alerts, suppressions and dry runs: one transaction
       4. act       commands through the dispatcher with actor ``policy:<name>`` and source
                    ``policy``; events ``policy.action``, ``policy.alert``, ``policy.suppressed``

**At most once.** Step 3 happens before step 4, so an action whose episode is marked
handled is never decided again, even after a crash between the two (the action is then
lost rather than repeated); the decision's idempotency key makes a replayed command run
once anyway. A tick whose write fails acts on nothing and is decided again next tick. A
command that fails is not retried in the same episode: its outcome is in the command
record and the audit log. The exception is kill_on_cost, the emergency brake: its state
is stored after step 4 (at least once; see ``_store_brake_marks``).

**Time.** Decisions run on epoch seconds of the injected wall clock (``now``), so the
persisted state means the same after a restart; the schedule and the startup grace of
node_offline use trio's clock (virtual in tests).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.commands import SESSION_TARGETED, CommandRequest
from halswarm.config.policies import PoliciesConfig
from halswarm.convert import dumps, load_json_row
from halswarm.cost.budgets import today_spend
from halswarm.models import ACTIVE_STATUSES, SESSION_STATUSES, TERMINAL_COMMAND_STATUSES, Command, SessionStatus
from halswarm.obs.logging import ctx
from halswarm.policy.completions import DEPENDENCY_ROWS
from halswarm.policy.fleet import decide_all
from halswarm.policy.model import POLICY_NAMES, Action, PolicyAction, PolicyName, Snapshot, SpendView, Suppressed
from halswarm.policy.observe import Observed, TrackedNode, TrackedSession, observe
from halswarm.policy.records import (
    SOURCE,
    action_data,
    alert_data,
    audit_row,
    event_session,
    last_action,
    refused_row,
    suppressed_data,
)
from halswarm.policy.state import KillOnCostState, PolicyStates, restore_states
from halswarm.policy.summary import effective_config, policy_name, section, summarize
from halswarm.policy.views import LastAction, PolicyInfo, PolicyOverride
from halswarm.schedule import Ticks
from halswarm.store import AuditRecord, StoreError
from halswarm.supervisor.dispatcher import CommandError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

    from halswarm.config.supervisor import BudgetsConfig
    from halswarm.jsontypes import JSONObject
    from halswarm.policy.storage import CommandPath, PolicyStore, TryEmit
    from halswarm.supervisor.registry import NodeRegistry
    from halswarm.supervisor.tracker import SessionTracker
    from halswarm.timeutil import Clock

__all__ = [
    "ENGINE_ROW_PREFIX",
    "LAST_ACTIONS_ROW",
    "OBSERVED_ROW",
    "PolicyEngine",
    "PolicyNotConfiguredError",
    "PolicyReload",
    "TickReport",
    "UnknownPolicyError",
]

log = logging.getLogger(__name__)

#: ``policy_state`` rows of the engine itself (not policies): never passed to restore_states.
ENGINE_ROW_PREFIX: Final = "engine."
OBSERVED_ROW: Final = "engine.observed"
LAST_ACTIONS_ROW: Final = "engine.last_actions"

_STATUSES: Final[dict[str, SessionStatus]] = {s: s for s in SESSION_STATUSES}


class UnknownPolicyError(LookupError):
    """No policy has that name."""


class PolicyNotConfiguredError(ValueError):
    """The policy cannot be enabled as configured (kill_on_cost without any limit)."""


@attrs.frozen
class TickReport:
    """What one tick did: its decisions, and the commands the dispatcher accepted."""

    actions: tuple[Action, ...] = ()
    commands: tuple[Command, ...] = ()
    #: False when the tick's state could not be stored (then nothing was carried out).
    persisted: bool = True


@attrs.frozen
class PolicyReload:
    """A new ``policies`` section and its effect on the runtime overrides (:meth:`PolicyEngine.plan_reload`)."""

    config: PoliciesConfig
    #: Overrides that still differ from the new file: they keep winning over it.
    kept: Mapping[PolicyName, PolicyOverride]
    #: Overrides the new file makes redundant: cleared (in the store and in memory).
    cleared: Mapping[PolicyName, PolicyOverride]
    #: Why the new section cannot run with the overrides in force (the reload is refused).
    problems: list[str]


@attrs.frozen
class _Planned:
    action: Action
    correlation_id: str


def _restore_last_actions(text: str | None) -> tuple[dict[str, LastAction], list[str]]:
    return load_json_row(text, dict[str, LastAction], "last actions")


class PolicyEngine:
    """Runs the policies. Start with ``nursery.start(engine.run)``; see the module doc."""

    def __init__(
        self,
        config: PoliciesConfig,
        budgets: BudgetsConfig,
        *,
        store: PolicyStore,
        tracker: SessionTracker,
        registry: NodeRegistry,
        commands: CommandPath,
        emit: TryEmit,
        now: Clock,
        coverage: Collection[str] = frozenset(),
        startup_grace: float = 0.0,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.config = config
        self.budgets = budgets
        self.store = store
        self.tracker = tracker
        self.registry = registry
        self.commands = commands
        self.emit = emit
        self.now = now
        #: Whose data is the bill on which days: the cost poller's ``coverage``, so today's
        #: spend is measured exactly as the daily budgets measure it.
        self.coverage = coverage
        #: Seconds after start during which a node not seen yet is not reported offline.
        self.startup_grace = startup_grace
        self.new_id = new_id
        #: Ticks run so far, whatever their outcome (for tests and health).
        self.ticks = 0
        self._states = PolicyStates()
        #: kill_on_cost's state as stored: it is written after its commands (_store_brake_marks).
        self._stored_kill = KillOnCostState()
        self._observed = Observed()
        self._last_actions: dict[str, LastAction] = {}
        self._last_actions_dirty = False
        self._overrides: dict[PolicyName, PolicyOverride] = {}
        self._started: float | None = None
        self._seen_nodes: set[str] = set()
        self._notes: frozenset[str] = frozenset()

    # ---- lifecycle ------------------------------------------------------------------------

    async def load(self) -> None:
        """Restore policy states, what the engine saw and runtime overrides from the store.

        Unreadable rows start empty with a WARNING (never a crash). A policy whose row is
        unreadable forgets its handled episodes and its retry windows alike (one row), so
        each episode still going may act once more and its retry caps start over.

        Raises:
            StoreError: the database cannot be read.
        """
        rows = await self.store.load_policy_rows()
        # The table also holds the engine's own rows and the dependencies' (not policies).
        policy_rows = {k: v for k, v in rows.items() if not (k.startswith(ENGINE_ROW_PREFIX) or k in DEPENDENCY_ROWS)}
        states, problems = restore_states(policy_rows)
        observed, more = Observed.restore(rows.get(OBSERVED_ROW))
        last_actions, most = _restore_last_actions(rows.get(LAST_ACTIONS_ROW))
        for problem in problems + more + most:
            log.warning("policy state: %s", problem)
        overrides: dict[PolicyName, PolicyOverride] = {}
        for name, override in (await self.store.load_policy_overrides()).items():
            known = policy_name(name)
            if known is None:
                log.warning("runtime override of unknown policy %r ignored", name)
            else:
                overrides[known] = override
        self._states, self._observed, self._last_actions, self._overrides = states, observed, last_actions, overrides
        self._stored_kill = states.kill_on_cost

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the persisted state, then tick every ``policies.tick_seconds`` forever.

        Raises:
            StoreError: the persisted state cannot be read at start.

        Cancellation: safe at any await. Cancelled between persisting a tick and carrying
        it out (shutdown), that tick's actions are lost, never repeated (at most once).
        Error handling: a failing tick (store errors, a bug) is logged; the next tick runs.
        """
        await self.load()
        start = self._started = trio.current_time()
        task_status.started()
        effective = self.effective_config()
        log.info(
            "policy engine started",
            extra=ctx(
                enabled=[n for n in POLICY_NAMES if section(effective, n).enabled],
                tick_seconds=self.config.tick_seconds,
                overrides=sorted(self._overrides),
            ),
        )
        ticks = Ticks(self.config.tick_seconds, start=start)
        while True:
            # A reload may have changed tick_seconds: a new schedule starts from here.
            await ticks.wait(self.config.tick_seconds)
            try:
                await self.tick()
            except StoreError as exc:
                log.error("policy tick skipped, the database failed (next tick runs as usual): %s", exc)
            except Exception:
                log.exception("policy tick failed; the next tick runs as usual")

    # ---- reload ---------------------------------------------------------------------------

    def plan_reload(self, config: PoliciesConfig) -> PolicyReload:
        """What switching to a new ``policies`` section does to the runtime overrides (changes nothing).

        Runtime overrides persist across a reload, as across a restart: an operator who
        disabled a policy through the API keeps it disabled until they enable it again.
        An override that the new file makes redundant (the file now says the same) is
        cleared, so that a later edit of the file is not masked by it. An override that
        enables kill_on_cost while the new file leaves it no limit is a problem: the
        reload is refused rather than run the brake without a limit.
        """
        kept = {n: o for n, o in self._overrides.items() if o.enabled != section(config, n).enabled}
        cleared = {n: o for n, o in self._overrides.items() if n not in kept}
        problems: list[str] = []
        override = kept.get("kill_on_cost")
        kill = effective_config(config, self.budgets, {}).kill_on_cost
        if override is not None and override.enabled and kill.daily_limit_usd is None and not kill.projects:
            problems.append(
                f"policies.kill_on_cost: enabled at runtime by {override.actor}, but the new file gives it no limit "
                "(set one, or disable it first: halctl policies disable kill_on_cost)"
            )
        return PolicyReload(config, kept, cleared, problems)

    def apply_reload(self, plan: PolicyReload) -> None:
        """Run with ``plan.config`` from the next tick on, dropping the overrides it made redundant.

        A new ``tick_seconds`` takes effect after the tick that is due. An override
        changed through the API since the plan was made is left as it is now.
        """
        self.config = plan.config
        for name, override in plan.cleared.items():
            if self._overrides.get(name) == override:
                del self._overrides[name]

    # ---- the tick -------------------------------------------------------------------------

    def effective_config(self) -> PoliciesConfig:
        """The config the next tick runs with (overrides applied, kill_on_cost's limits filled in)."""
        return effective_config(self.config, self.budgets, self._overrides)

    async def tick(self) -> TickReport:
        """Run every enabled policy once and carry out what they decide (see the module doc).

        Raises:
            StoreError: spend or commands in flight cannot be read (nothing was decided).
        """
        try:
            return await self._tick()
        finally:
            self.ticks += 1  # counted however it ended: tests and health wait on ticks, not outcomes

    async def _tick(self) -> TickReport:
        if self._started is None:
            self._started = trio.current_time()
        wall = self.now()
        now = wall.timestamp()
        stamp = format_ts(wall)
        config = self.effective_config()
        seen = observe(self._observed, self._tracked_sessions(), self._tracked_nodes(), now)
        spend = await self._spend(wall) if config.kill_on_cost.enabled else None
        snapshot = Snapshot(seen.sessions, seen.nodes, spend, await self._in_flight())
        decision = decide_all(config, snapshot, self._states, now)
        self._log_notes(decision.notes)
        planned = [_Planned(a, self.new_id()[:16]) for a in decision.actions]
        last_actions = dict(self._last_actions)
        for p in planned:
            if isinstance(p.action, PolicyAction):
                last_actions[p.action.policy] = last_action(p.action, stamp)
        rows = decision.states.changed(self._states)
        rows.pop("kill_on_cost", None)  # stored after its commands are out: see _store_brake_marks
        if seen.observed != self._observed:
            rows[OBSERVED_ROW] = seen.observed.dump()
        if last_actions != self._last_actions or self._last_actions_dirty:
            rows[LAST_ACTIONS_ROW] = dumps(last_actions).decode()
        audits = [a for a in (audit_row(p.action, p.correlation_id, stamp) for p in planned) if a is not None]
        if rows or audits:
            try:
                await self.store.save_policy_rows(rows, stamp, audits)
            except StoreError as exc:
                log.error("cannot store the policies' state; nothing carried out this tick: %s", exc)
                return TickReport(decision.actions, persisted=False)
        self._states, self._observed, self._last_actions = decision.states, seen.observed, last_actions
        self._last_actions_dirty = False
        accepted = await self._act(planned, stamp)
        await self._store_brake_marks(stamp)
        return TickReport(decision.actions, tuple(accepted))

    def _tracked_sessions(self) -> list[TrackedSession]:
        tracked = []
        for view in self.tracker.sessions():
            real = _STATUSES.get(self.tracker.real_status(view.id) or "")
            if real is None or real not in ACTIVE_STATUSES:
                continue
            entry = self.registry.get(view.node_id)
            session = view if view.status == real else attrs.evolve(view, status=real)
            tracked.append(TrackedSession(session, reachable=entry is not None and entry.online))
        return tracked

    def _tracked_nodes(self) -> list[TrackedNode]:
        started = self._started if self._started is not None else trio.current_time()
        in_grace = trio.current_time() < started + self.startup_grace
        nodes = []
        for entry in self.registry:
            node_id, status = entry.record.id, entry.status()
            if status != "offline":
                self._seen_nodes.add(node_id)
            grace = in_grace and status == "offline" and node_id not in self._seen_nodes
            nodes.append(TrackedNode(node_id, status, grace=grace))
        return nodes

    async def _spend(self, wall: dt.datetime) -> SpendView | None:
        """Today's spend as the daily budgets measure it (None: no figure for today yet)."""
        today = wall.astimezone(dt.UTC).date()
        buckets = await self.store.cost_buckets(today, today)
        if not buckets:
            return None
        spend = today_spend(buckets, self.coverage)
        return SpendView(today.isoformat(), spend.fleet, dict(spend.projects))

    async def _in_flight(self) -> frozenset[str]:
        """Sessions with a command (from anyone) still pending or sent."""
        held: set[str] = set()
        for row in await self.store.unfinished_commands():
            if row.type not in SESSION_TARGETED:
                continue
            # The store may lag the dispatcher (an outcome being written): ask it.
            current = await self.commands.wait(row.id, 0.0)
            if current is None or current.status in TERMINAL_COMMAND_STATUSES:
                continue
            session = self.tracker.get(row.target) or self.tracker.active_for_project(row.target)
            if session is not None:
                held.add(session.id)
        return frozenset(held)

    def _log_notes(self, notes: Iterable[str]) -> None:
        # Notes repeat every tick while their cause lasts: log each once, when it appears.
        current = frozenset(notes)
        for note in sorted(current - self._notes):
            log.info("policy note: %s", note)
        self._notes = current

    async def _store_brake_marks(self, stamp: str) -> None:
        """Store kill_on_cost's state once its commands are out: the brake acts at least once.

        Every other policy's state is stored before acting (at most once). Stored first,
        kill_on_cost's "stopped today" marks would outlive a shutdown or crash inside
        ``_act`` and leave the remaining sessions of the scope running all day. Stored
        after, such a stop makes the next tick (or run) decide those sessions again, with
        the same idempotency keys: the dispatcher returns the commands already sent
        instead of running them twice. A failed write is retried after the next tick.
        """
        marks = self._states.kill_on_cost
        if marks == self._stored_kill:
            return
        try:
            await self.store.save_policy_rows({"kill_on_cost": dumps(marks).decode()}, stamp)
        except StoreError as exc:
            log.error("cannot store kill_on_cost's state (retried after the next tick): %s", exc)
            return
        self._stored_kill = marks

    # ---- carrying out ---------------------------------------------------------------------

    async def _act(self, planned: list[_Planned], stamp: str) -> list[Command]:
        accepted: list[Command] = []
        for p in planned:
            try:
                command = await self._carry_out(p, stamp)
            except Exception:  # one action's failure (a bug) must not drop the others
                log.exception("carrying out a policy action failed", extra=ctx(policy=p.action.policy))
                continue
            if command is not None:
                accepted.append(command)
        return accepted

    async def _carry_out(self, planned: _Planned, stamp: str) -> Command | None:
        action, correlation = planned.action, planned.correlation_id
        if isinstance(action, Suppressed):
            fields = ctx(policy=action.policy, target=action.target, dry_run=action.dry_run, correlation_id=correlation)
            log.warning("policy suppressed: %s", action.reason, extra=fields)
            data = suppressed_data(action, correlation)
            self._emit("policy.suppressed", data, session_id=action.target, project=action.project)
            return None
        context: dict[str, object] = {
            "policy": action.policy,
            "target": action.target,
            "dry_run": action.dry_run,
            "correlation_id": correlation,
        }
        if action.kind == "alert" and not action.dry_run:
            log.warning("policy alert: %s", action.reason, extra=ctx(**context))
            data = alert_data(action, correlation)
            self._emit("policy.alert", data, session_id=event_session(action), project=action.project)
            return None
        if action.dry_run or action.command_type is None:
            what = action.command_type or "alert"
            log.info(
                "policy dry run, nothing sent: %s %s: %s", what, action.target, action.reason, extra=ctx(**context)
            )
            self._emit_action(action_data(action, correlation), action)
            return None
        request = CommandRequest(action.command_type, action.target, dict(action.args), action.idempotency_key)
        try:
            command = await self.commands.submit(request, actor=action.actor, source=SOURCE, correlation_id=correlation)
        except CommandError as exc:
            error = f"{exc.message} ({exc.code})"
            log.warning("policy command refused: %s", error, extra=ctx(**context))
            command_id = exc.command.id if exc.command is not None else None
            if command_id is None:  # nothing stored, so no audit row yet
                await self._audit_refused(refused_row(action, correlation, stamp, exc.code, exc.message))
            self._remember(action, command_id=command_id, error=error)
            self._emit_action(action_data(action, correlation, command_id=command_id, error=error), action)
            return None
        context["command_id"] = command.id
        log.info("policy command %s on %s: %s", action.command_type, action.target, action.reason, extra=ctx(**context))
        self._remember(action, command_id=command.id)
        self._emit_action(action_data(action, correlation, command_id=command.id), action)
        return command

    async def _audit_refused(self, audit: AuditRecord) -> None:
        try:
            await self.store.insert_audit(audit)
        except StoreError as exc:
            log.error("cannot audit a refused policy command: %s", exc, extra=ctx(correlation_id=audit.correlation_id))

    def _emit_action(self, data: JSONObject, action: PolicyAction) -> None:
        self._emit("policy.action", data, session_id=event_session(action), project=action.project)

    def _emit(self, event_type: str, data: JSONObject, *, session_id: str | None, project: str | None) -> None:
        if not self.emit(event_type, data, session_id=session_id, project=project):
            # The audit row (written by the engine or the dispatcher) still records the decision.
            log.warning(
                "policy event %s dropped: the event queue is congested (the audit log has it)",
                event_type,
                extra=ctx(event=event_type, session_id=session_id, correlation_id=data.get("correlation_id")),
            )

    def _remember(self, action: PolicyAction, *, command_id: str | None, error: str | None = None) -> None:
        # The decision itself is stored; its command id is stored with the next tick.
        last = self._last_actions.get(action.policy)
        if last is not None and last.target == action.target:
            self._last_actions[action.policy] = attrs.evolve(last, command_id=command_id, error=error)
            self._last_actions_dirty = True

    # ---- API ------------------------------------------------------------------------------

    def infos(self) -> list[PolicyInfo]:
        """Every policy with its config, effective state and live state, in priority order."""
        return [self.info(name) for name in POLICY_NAMES]

    def info(self, name: str) -> PolicyInfo:
        """One policy (see :class:`~halswarm.policy.views.PolicyInfo`).

        Raises:
            UnknownPolicyError: no policy has that name.
        """
        known = self._known(name)
        return summarize(
            known,
            effective=self.effective_config(),
            configured=self.config,
            override=self._overrides.get(known),
            states=self._states,
            last_action=self._last_actions.get(known),
            now=self.now().timestamp(),
        )

    @staticmethod
    def _known(name: str) -> PolicyName:
        known = policy_name(name)
        if known is None:
            raise UnknownPolicyError(f"no policy {name!r} (policies: {', '.join(POLICY_NAMES)})")
        return known

    async def set_enabled(
        self, name: str, enabled: bool, *, actor: str, source: str, correlation_id: str | None = None
    ) -> PolicyInfo:
        """Enable or disable a policy at runtime, from the next tick on; audited.

        The override is persisted while it differs from the config file (and cleared
        when it matches it). A disabled policy keeps its state for when it is enabled.

        Raises:
            UnknownPolicyError: no policy has that name.
            PolicyNotConfiguredError: kill_on_cost has no limit (its own or the budgets').
            StoreError: the change cannot be stored (nothing changed).
        """
        known = self._known(name)
        kill = effective_config(self.config, self.budgets, {}).kill_on_cost
        if enabled and known == "kill_on_cost" and kill.daily_limit_usd is None and not kill.projects:
            raise PolicyNotConfiguredError(
                "kill_on_cost has no limit to act on: set policies.kill_on_cost.daily_limit_usd or .projects, "
                "or budgets.daily_usd / budgets.projects"
            )
        stamp = format_ts(self.now())
        configured = section(self.config, known).enabled
        was = section(self.effective_config(), known).enabled
        override = None if enabled == configured else PolicyOverride(enabled, actor, stamp)
        verb = "enable" if enabled else "disable"
        detail: JSONObject = {"enabled": enabled, "was_enabled": was, "configured": configured}
        correlation = correlation_id or self.new_id()[:16]
        audit = AuditRecord(stamp, actor, source, f"policy.{verb}", known, "ok", correlation, detail)
        await self.store.set_policy_override(known, override, audit)
        if override is None:
            self._overrides.pop(known, None)
        else:
            self._overrides[known] = override
        context = ctx(policy=known, actor=actor, was_enabled=was, correlation_id=correlation)
        log.info("policy %sd at runtime (from the next tick)", verb, extra=context)
        return self.info(known)
