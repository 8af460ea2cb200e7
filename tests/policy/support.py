"""Builders and a tick driver shared by the policy tests."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

import orjson

from halswarm.convert import converter, dumps
from halswarm.policy import NodeView, PolicyAction, SessionView, Snapshot, SpendView, Suppressed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from halswarm.models import NodeStatus, SessionStatus
    from halswarm.policy import Action, Decision

S = TypeVar("S")


def session(
    sid: str = "s1",
    *,
    status: SessionStatus = "idle",
    since: float = 0.0,
    project: str = "alpha",
    node: str = "n1",
    compactions: int = 0,
    errors: int = 0,
    activity: float | None = None,
    reachable: bool = True,
) -> SessionView:
    return SessionView(
        id=sid,
        node_id=node,
        project=project,
        status=status,
        status_since=since,
        compaction_count=compactions,
        consecutive_errors=errors,
        last_activity=activity,
        reachable=reachable,
    )


def node(nid: str = "n1", *, status: NodeStatus = "online", since: float = 0.0) -> NodeView:
    return NodeView(id=nid, status=status, status_since=since)


def snap(
    *sessions: SessionView,
    nodes: Iterable[NodeView] = (),
    spend: SpendView | None = None,
    in_flight: Iterable[str] = (),
) -> Snapshot:
    return Snapshot(tuple(sessions), tuple(nodes), spend, frozenset(in_flight))


def spend(fleet: str, day: str = "2026-03-01", **projects: str) -> SpendView:
    return SpendView(day, Decimal(fleet), {name: Decimal(v) for name, v in projects.items()})


def roundtrip(state: S) -> S:
    """Through JSON text and back, as the engine persists and restores it."""
    restored: S = converter.structure(orjson.loads(dumps(state)), type(state))
    return restored


def acts(decision: Decision[S]) -> list[PolicyAction]:
    return [a for a in decision.actions if isinstance(a, PolicyAction)]


def suppressed(decision: Decision[S]) -> list[Suppressed]:
    return [a for a in decision.actions if isinstance(a, Suppressed)]


def drive(
    decide: Callable[[Snapshot, S, float], Decision[S]],
    state: S,
    ticks: Iterable[tuple[float, Snapshot]],
    *,
    persist: bool = False,
) -> tuple[list[tuple[float, Action]], S]:
    """Run *decide* over ticks, threading the state; returns (time, action) pairs and the final state.

    With *persist*, the state goes through JSON between every two ticks (a restart each tick).
    """
    out: list[tuple[float, Action]] = []
    for now, snapshot in ticks:
        decision = decide(snapshot, state, now)
        out += [(now, a) for a in decision.actions]
        state = roundtrip(decision.state) if persist else decision.state
    return out, state
