"""Fakes for driving the policy engine on trio's virtual clock: no threads, no sockets.

The tracker and registry are the real components; the store and the command path are
in-memory stand-ins with the engine's narrow protocols (a thread hop would let the
autojump clock skip past the engine's deadlines). The engine's events go the way
production's do, synchronously (:class:`Events`): through the store's own ``ingest``
into the real tracker, so what they do to session activity shows here too.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.config.supervisor import BudgetsConfig
from halswarm.cost.model import CostBucket
from halswarm.jsontypes import JSONObject
from halswarm.models import SUPERVISOR_NODE_ID, Command, CommandStatus, Project, Session
from halswarm.policy.engine import PolicyEngine
from halswarm.policy.views import PolicyOverride
from halswarm.proto.messages import Hello, WireEvent
from halswarm.store import AuditRecord, StoreError
from halswarm.store.policy_sql import UnfinishedCommand
from halswarm.store.sql import IngestBatch, ingest
from halswarm.store.store import migrate
from halswarm.supervisor.dispatcher import CommandError
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.tracker import SessionTracker
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from halswarm.commands import CommandRequest
    from halswarm.config.policies import PoliciesConfig
    from halswarm.models import SessionStatus
    from halswarm.proto.errors import CloseCode
    from halswarm.proto.messages import CommandMsg

#: The wall clock's start: a fixed UTC day, so cost days are deterministic.
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@attrs.define
class WallClock:
    """The injected wall clock; tests move it with :meth:`advance`."""

    current: dt.datetime = T0

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)

    def epoch(self) -> float:
        return self.current.timestamp()


@attrs.define
class FakePolicyStore:
    """The engine's store protocol in memory; ``fail_writes`` makes every write fail."""

    rows: dict[str, str] = attrs.field(factory=dict)
    overrides: dict[str, PolicyOverride] = attrs.field(factory=dict)
    audits: list[AuditRecord] = attrs.field(factory=list)
    buckets: list[CostBucket] = attrs.field(factory=list)
    unfinished: list[UnfinishedCommand] = attrs.field(factory=list)
    fail_writes: bool = False
    #: Virtual time of every tick's first read (the in-flight look-up).
    reads_at: list[float] = attrs.field(factory=list)
    #: Seconds the in-flight look-up takes (a slow database).
    read_delay: float = 0.0
    #: Raised by the in-flight look-up (a bug, or a failing database).
    read_error: Exception | None = None
    saves: int = 0

    async def load_policy_rows(self) -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return dict(self.rows)

    async def save_policy_rows(self, rows: Mapping[str, str], now: str, audits: Sequence[AuditRecord] = ()) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_writes:
            raise StoreError("database write failed: disk I/O error")
        self.rows.update(rows)
        self.audits += audits
        self.saves += 1

    async def load_policy_overrides(self) -> dict[str, PolicyOverride]:
        await trio.lowlevel.checkpoint()
        return dict(self.overrides)

    async def set_policy_override(self, name: str, override: PolicyOverride | None, audit: AuditRecord) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_writes:
            raise StoreError("database write failed: disk I/O error")
        if override is None:
            self.overrides.pop(name, None)
        else:
            self.overrides[name] = override
        self.audits.append(audit)

    async def insert_audit(self, audit: AuditRecord) -> None:
        await trio.lowlevel.checkpoint()
        self.audits.append(audit)

    async def unfinished_commands(self) -> list[UnfinishedCommand]:
        self.reads_at.append(trio.current_time())
        if self.read_delay:
            await trio.sleep(self.read_delay)
        await trio.lowlevel.checkpoint()
        if self.read_error is not None:
            raise self.read_error
        return list(self.unfinished)

    async def cost_buckets(self, first: dt.date, last: dt.date) -> list[CostBucket]:
        await trio.lowlevel.checkpoint()
        return [b for b in self.buckets if first <= b.day <= last]


@attrs.define
class FakeCommands:
    """The command path: records what is submitted, and when relative to the store's saves."""

    store: FakePolicyStore
    submitted: list[Command] = attrs.field(factory=list)
    #: ``store.saves`` at each submit: proves the state was written first.
    saves_at_submit: list[int] = attrs.field(factory=list)
    #: Target -> the error submitting a command to it raises.
    refuse: dict[str, CommandError] = attrs.field(factory=dict)
    #: Targets whose submit never returns (until cancelled: a shutdown in mid-tick).
    hang: set[str] = attrs.field(factory=set)
    statuses: dict[str, CommandStatus] = attrs.field(factory=dict)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    async def submit(
        self, request: CommandRequest, *, actor: str, source: str, correlation_id: str | None = None
    ) -> Command:
        await trio.lowlevel.checkpoint()
        self.saves_at_submit.append(self.store.saves)
        if request.target in self.hang:
            await trio.sleep_forever()
        if request.target in self.refuse:
            raise self.refuse[request.target]
        command = Command(
            id=f"cmd-{next(self._ids)}",
            type=request.type,
            target=request.target,
            args=request.args,
            actor=actor,
            source=source,
            correlation_id=correlation_id or "",
            idempotency_key=request.idempotency_key or "",
        )
        self.submitted.append(command)
        return command

    async def wait(self, command_id: str, max_wait: float) -> Command | None:
        await trio.lowlevel.checkpoint()
        for command in self.submitted:
            if command.id == command_id:
                return attrs.evolve(command, status=self.statuses.get(command_id, command.status))
        status = self.statuses.get(command_id)
        return None if status is None else Command(command_id, "resume_session", "?", status=status)

    def summary(self) -> list[tuple[str, str, str]]:
        """(type, target, actor) of every command submitted."""
        return [(c.type, c.target, c.actor) for c in self.submitted]


@attrs.define
class Events:
    """The engine's emitter (``Pipeline.try_emit``), doing what production does with an event.

    Synchronously, without the pipeline's task: the event is stored by the store's own
    ``ingest`` (in a fresh in-memory database) as a supervisor event, and what ``ingest``
    returns updates the real tracker as the pipeline's commit does. So if the engine's
    own events counted as session activity (a new idle period or quiet stretch after
    every action), these tests would see it as production would.
    """

    tracker: SessionTracker = attrs.field(factory=SessionTracker)
    clock: WallClock = attrs.field(factory=WallClock)
    emitted: list[tuple[str, JSONObject]] = attrs.field(factory=list)
    #: Event types the congested queue drops (``try_emit`` returns False).
    drop: set[str] = attrs.field(factory=set)
    _seq: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> bool:
        if event_type in self.drop:
            return False
        self.emitted.append((event_type, data))
        stamp = format_ts(self.clock())
        event = WireEvent(next(self._seq), stamp, event_type, session_id, project, data)
        with closing(sqlite3.connect(":memory:")) as conn:
            migrate(conn)
            summary = ingest(conn, [IngestBatch(SUPERVISOR_NODE_ID, [event])], stamp)
        # As Pipeline._commit does with what the store returns.
        for seq, state in summary.states.values():
            self.tracker.apply(seq, state)
        for session_id_, ts in summary.activity.items():
            self.tracker.touch(session_id_, ts)
        return True

    def of(self, event_type: str) -> list[JSONObject]:
        return [data for t, data in self.emitted if t == event_type]


class NoLink:
    """A live connection stand-in (the engine never sends through it)."""

    async def send_command(self, command: CommandMsg) -> None:
        raise AssertionError("the fake command path sends nothing")

    def close_soon(self, code: CloseCode, reason: str) -> None:
        pass


@attrs.define
class World:
    """An engine wired to the real tracker and registry, and fakes for the rest."""

    engine: PolicyEngine
    clock: WallClock
    store: FakePolicyStore
    commands: FakeCommands
    events: Events
    tracker: SessionTracker
    registry: NodeRegistry
    seq: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    def connect(self, node_id: str = "n1", *projects: str) -> None:
        hello = Hello(
            node_id=node_id,
            instance_key=f"key-{node_id}",
            hostname=node_id,
            version="t",
            projects=[Project(p, f"/srv/{p}") for p in projects],
        )
        self.registry.attach(hello, NoLink(), now=trio.current_time(), wall=format_ts(self.clock()))

    def set(
        self,
        sid: str,
        status: SessionStatus,
        *,
        node: str = "n1",
        project: str = "alpha",
        activity: bool = True,
        **fields: int | float | str,
    ) -> None:
        """The node reports a new state of session *sid* (with activity now, unless told otherwise)."""
        current = self.tracker.get(sid)
        base = current if current is not None else Session(id=sid, node_id=node, project=project)
        stamp = format_ts(self.clock()) if activity else base.last_activity
        state = attrs.evolve(base, status=status, last_activity=stamp, **fields)  # type: ignore[arg-type]
        self.tracker.apply(next(self.seq), state)

    async def tick_at(self, seconds: float) -> None:
        """Move the wall clock to T0 + *seconds* and run one tick."""
        self.clock.current = T0 + dt.timedelta(seconds=seconds)
        await self.engine.tick()


def make_world(
    config: PoliciesConfig,
    *,
    budgets: BudgetsConfig | None = None,
    store: FakePolicyStore | None = None,
    startup_grace: float = 0.0,
    clock: WallClock | None = None,
    tracker: SessionTracker | None = None,
    registry: NodeRegistry | None = None,
) -> World:
    """An engine over fresh (or given) components; call ``await world.engine.load()`` first."""
    store = store if store is not None else FakePolicyStore()
    clock = clock if clock is not None else WallClock()
    tracker = tracker if tracker is not None else SessionTracker()
    registry = registry if registry is not None else NodeRegistry(on_reachability=tracker.set_node_reachable)
    commands = FakeCommands(store)
    events = Events(tracker, clock)
    ids = itertools.count(1)
    engine = PolicyEngine(
        config,
        budgets if budgets is not None else BudgetsConfig(),
        store=store,
        tracker=tracker,
        registry=registry,
        commands=commands,
        emit=events,
        now=clock,
        coverage=frozenset({"anthropic"}),
        startup_grace=startup_grace,
        new_id=lambda: f"{next(ids):032x}",
    )
    return World(engine, clock, store, commands, events, tracker, registry)


def refused(status: int, code: str, message: str, command: Command | None = None) -> CommandError:
    return CommandError(status, code, message, command)


def audit_rows(store: FakePolicyStore) -> list[tuple[str, str, str, str]]:
    """(actor, action, target, outcome) of every audit row the engine wrote."""
    return [(a.actor, a.action, a.target, a.outcome) for a in store.audits]
