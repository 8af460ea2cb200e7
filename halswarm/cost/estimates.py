"""opencode's own per-session costs, folded into daily ``estimate`` buckets (issue 5).

A session's ``cost_usd`` (which already includes its subagent children) and its token
counts only grow. Each estimate tick compares every tracked session with what was
booked of it so far and adds the growth to a daily bucket of
(provider, model, project). What was booked per session is persisted in the same
transaction as the buckets, so a supervisor restart neither re-adds nor loses anything.

Invariants (the sans-IO core, :func:`estimate_update`):

- The sum of a session's booked deltas equals its largest seen cost, exactly: money is
  booked in integer nano-dollars, and each delta is ``nanos(new) - nanos(booked)``.
- A figure that goes down (a stale snapshot) books nothing and lowers nothing, so the
  growth after it is not counted twice.
- Growth of a session already booked goes to *today* (UTC). A session seen for the first
  time (a supervisor upgraded with sessions already in its store, or one that started
  and finished while the supervisor was down) books its whole cost on the UTC day of
  its last activity (its start when there is none), never later than today, so old
  sessions do not land on today's bill and trip today's budgets.
- opencode's reasoning tokens are counted as output tokens (providers bill them so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from halswarm.cost.model import CostBucket
from halswarm.cost.money import from_nanos, to_nanos, usd_from_float
from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Mapping

    from halswarm.cost.storage import CostStore
    from halswarm.models import Session

__all__ = ["EstimateBook", "EstimateUpdate", "SessionCost", "estimate_update", "split_model"]

# Model names opencode may report without their provider prefix (the simulator, old
# configs): the provider is inferred from the family name so polled providers' rules apply.
_ANTHROPIC_PREFIXES: Final = ("claude",)
_OPENAI_PREFIXES: Final = ("gpt-", "gpt4", "o1", "o3", "o4", "chatgpt", "codex", "text-embedding", "davinci")


@attrs.frozen
class SessionCost:
    """What the estimates have booked of one session so far (persisted per session)."""

    cost_nanos: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def of(cls, session: Session) -> SessionCost:
        """A session's current cumulative figures."""
        t = session.tokens
        return cls(
            cost_nanos=to_nanos(usd_from_float(session.cost_usd)),
            input_tokens=max(0, t.input),
            output_tokens=max(0, t.output) + max(0, t.reasoning),
            cache_read_tokens=max(0, t.cache_read),
            cache_write_tokens=max(0, t.cache_write),
        )

    def high_water(self, other: SessionCost) -> SessionCost:
        """Field by field the larger of the two: what is booked after seeing *other*."""
        return SessionCost(
            max(self.cost_nanos, other.cost_nanos),
            max(self.input_tokens, other.input_tokens),
            max(self.output_tokens, other.output_tokens),
            max(self.cache_read_tokens, other.cache_read_tokens),
            max(self.cache_write_tokens, other.cache_write_tokens),
        )

    def minus(self, other: SessionCost) -> SessionCost:
        """Field-wise difference (callers pass ``other`` <= ``self``)."""
        return SessionCost(
            self.cost_nanos - other.cost_nanos,
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
            self.cache_read_tokens - other.cache_read_tokens,
            self.cache_write_tokens - other.cache_write_tokens,
        )


def split_model(model: str) -> tuple[str, str]:
    """opencode's ``provider/model`` id as (provider, model).

    Only the first slash splits (``openrouter/anthropic/claude-x`` is provider
    ``openrouter``). Without a slash the provider is inferred from the model family:
    ``claude*`` is ``anthropic``; ``gpt-*``, ``o1``/``o3``/``o4*``, ``chatgpt*``,
    ``codex*`` are ``openai``; anything else has provider ``""`` (never polled, so its
    estimates always count).
    """
    model = model.strip()
    provider, slash, name = model.partition("/")
    if slash:
        return provider.lower(), name
    lowered = model.lower()
    if lowered.startswith(_ANTHROPIC_PREFIXES):
        return "anthropic", model
    if lowered.startswith(_OPENAI_PREFIXES):
        return "openai", model
    return "", model


def _first_day(session: Session, today: dt.date) -> dt.date:
    for stamp in (session.last_activity, session.started_at):
        if stamp:
            try:
                return min(today, parse_ts(stamp).date())
            except ValueError:
                continue
    return today


@attrs.frozen
class EstimateUpdate:
    """What one estimate tick adds: bucket deltas and the sessions' new bookkeeping."""

    #: ``source="estimate"`` buckets whose counts and cost are *increments*, one per key.
    buckets: list[CostBucket]
    #: The new booked figures of every session that grew.
    seen: dict[str, SessionCost]


def estimate_update(sessions: Iterable[Session], seen: Mapping[str, SessionCost], today: dt.date) -> EstimateUpdate:
    """Compare sessions with what was booked of them; return the growth to book.

    Args:
        sessions: every tracked session (any status: a finished session may still have
            grown since the last tick).
        seen: what was booked so far, per session id (absent: nothing).
        today: the current UTC day.

    Returns:
        Deltas merged per (day, provider, model, project), and the updated bookkeeping.
    """
    deltas: dict[tuple[dt.date, str, str, str], SessionCost] = {}
    updated: dict[str, SessionCost] = {}
    zero = SessionCost()
    for session in sessions:
        current = SessionCost.of(session)
        before = seen.get(session.id)
        booked = before if before is not None else zero
        after = booked.high_water(current)
        if after == booked:
            continue
        day = today if before is not None else _first_day(session, today)
        provider, model = split_model(session.model)
        key = (day, provider, model, session.project)
        growth = after.minus(booked)
        acc = deltas.get(key, zero)
        deltas[key] = SessionCost(
            acc.cost_nanos + growth.cost_nanos,
            acc.input_tokens + growth.input_tokens,
            acc.output_tokens + growth.output_tokens,
            acc.cache_read_tokens + growth.cache_read_tokens,
            acc.cache_write_tokens + growth.cache_write_tokens,
        )
        updated[session.id] = after
    buckets = [
        CostBucket(
            day=day,
            provider=provider,
            model=model,
            project=project,
            source="estimate",
            input_tokens=d.input_tokens,
            output_tokens=d.output_tokens,
            cache_read_tokens=d.cache_read_tokens,
            cache_write_tokens=d.cache_write_tokens,
            cost_usd=from_nanos(d.cost_nanos),
        )
        for (day, provider, model, project), d in sorted(deltas.items())
    ]
    return EstimateUpdate(buckets, updated)


class EstimateBook:
    """The persisted bookkeeping plus the thin async step around :func:`estimate_update`."""

    def __init__(self, store: CostStore, seen: Mapping[str, SessionCost]) -> None:
        self.store = store
        self._seen = dict(seen)

    @classmethod
    async def load(cls, store: CostStore) -> EstimateBook:
        """Read what earlier runs booked.

        Raises:
            StoreError: the database cannot be read.
        """
        return cls(store, await store.load_estimate_seen())

    def booked(self, session_id: str) -> SessionCost | None:
        """What is booked of one session (None: nothing yet)."""
        return self._seen.get(session_id)

    async def step(self, sessions: Iterable[Session], today: dt.date, now: str) -> list[CostBucket]:
        """Book the growth of *sessions* in one transaction; returns the deltas booked.

        Raises:
            StoreError: the write failed; nothing was booked (memory is unchanged, so the
                next step books the same growth).

        Cancellation: the write runs to completion in its thread (SQLite atomicity);
        memory is updated only after it, and a restart reloads from the store.
        """
        update = estimate_update(sessions, self._seen, today)
        if update.seen:
            await self.store.add_cost_estimates(update.buckets, update.seen, now)
            self._seen.update(update.seen)
        return update.buckets
