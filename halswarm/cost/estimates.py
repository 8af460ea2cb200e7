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
- Growth is booked on the UTC day of the session's last activity, never later than
  today: the growth of a known session after a supervisor outage lands on the day it
  happened, not on the day the supervisor came back. A session seen for the first time
  (a supervisor upgraded with sessions already in its store, or one that started and
  finished while the supervisor was down) books its whole cost the same way (on its
  start day when it has no activity). So old spend does not land on today's bill and
  trip today's budgets.
- opencode's reasoning tokens are counted as output tokens (providers bill them so).
- A figure beyond :data:`MAX_SESSION_USD` or :data:`MAX_SESSION_TOKENS` is corrupt (no
  session costs a million dollars): the session is skipped, named in the result, and
  nothing of it is booked until its figures are sane again. Stored integers stay far
  from SQLite's 64-bit limit.
- A session that completed more than :data:`SETTLED_AFTER_DAYS` days ago (beyond every
  named period) is *settled*: it is neither booked nor kept in the bookkeeping, which
  the poller prunes (completed sessions never grow again).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.cost.model import CostBucket
from halswarm.cost.money import from_nanos, to_nanos, usd_from_float
from halswarm.obs.logging import ctx
from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from halswarm.cost.storage import CostStore
    from halswarm.models import Session

__all__ = [
    "MAX_SESSION_TOKENS",
    "MAX_SESSION_USD",
    "SETTLED_AFTER_DAYS",
    "EstimateBook",
    "EstimateUpdate",
    "SessionCost",
    "estimate_update",
    "is_settled",
    "split_model",
]

log = logging.getLogger(__name__)

#: A session figure above these is corrupt, not spend (see the module invariants).
MAX_SESSION_USD: Final = Decimal(10**6)
MAX_SESSION_TOKENS: Final = 10**12
#: Days after its last activity a completed session is settled (beyond the 30-day month).
SETTLED_AFTER_DAYS: Final = 35

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
        """A session's current cumulative figures.

        Raises:
            ValueError: a figure is beyond :data:`MAX_SESSION_USD` or
                :data:`MAX_SESSION_TOKENS` (the message says which).
        """
        usd = usd_from_float(session.cost_usd)
        if usd > MAX_SESSION_USD:
            raise ValueError(f"cost_usd {session.cost_usd!r} is beyond ${MAX_SESSION_USD:,}")
        t = session.tokens
        figures = cls(
            cost_nanos=to_nanos(usd),
            input_tokens=max(0, t.input),
            output_tokens=max(0, t.output) + max(0, t.reasoning),
            cache_read_tokens=max(0, t.cache_read),
            cache_write_tokens=max(0, t.cache_write),
        )
        if max(figures.tokens()) > MAX_SESSION_TOKENS:
            raise ValueError(f"a token count is beyond {MAX_SESSION_TOKENS:,} ({session.tokens})")
        return figures

    def tokens(self) -> tuple[int, int, int, int]:
        """Input, output, cache read, cache write."""
        return (self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens)

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


def _activity_day(session: Session) -> dt.date | None:
    """The UTC day of the session's last activity (its start when there is none)."""
    for stamp in (session.last_activity, session.started_at):
        if stamp:
            try:
                return parse_ts(stamp).date()
            except ValueError:
                continue
    return None


def _booking_day(session: Session, today: dt.date) -> dt.date:
    day = _activity_day(session)
    return today if day is None else min(today, day)


def is_settled(session: Session, today: dt.date) -> bool:
    """Completed more than :data:`SETTLED_AFTER_DAYS` days before *today*: it cannot grow."""
    if session.status != "completed":
        return False
    day = _activity_day(session)
    return day is not None and day < today - dt.timedelta(days=SETTLED_AFTER_DAYS)


@attrs.frozen
class EstimateUpdate:
    """What one estimate tick adds: bucket deltas and the sessions' new bookkeeping."""

    #: ``source="estimate"`` buckets whose counts and cost are *increments*, one per key.
    buckets: list[CostBucket]
    #: The new booked figures of every session that grew.
    seen: dict[str, SessionCost]
    #: Sessions skipped because a figure is absurd: id -> why.
    rejected: dict[str, str] = attrs.field(factory=dict)


def estimate_update(sessions: Iterable[Session], seen: Mapping[str, SessionCost], today: dt.date) -> EstimateUpdate:
    """Compare sessions with what was booked of them; return the growth to book.

    Args:
        sessions: every tracked session (any status: a finished session may still have
            grown since the last tick; settled ones are skipped).
        seen: what was booked so far, per session id (absent: nothing).
        today: the current UTC day.

    Returns:
        Deltas merged per (day, provider, model, project), the updated bookkeeping, and
        the sessions skipped for absurd figures.
    """
    deltas: dict[tuple[dt.date, str, str, str], SessionCost] = {}
    updated: dict[str, SessionCost] = {}
    rejected: dict[str, str] = {}
    zero = SessionCost()
    for session in sessions:
        if is_settled(session, today):
            continue
        try:
            current = SessionCost.of(session)
        except ValueError as exc:
            rejected[session.id] = str(exc)
            continue
        booked = seen.get(session.id, zero)
        after = booked.high_water(current)
        if after == booked:
            continue
        day = _booking_day(session, today)
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
    return EstimateUpdate(buckets, updated, rejected)


class EstimateBook:
    """The persisted bookkeeping plus the thin async step around :func:`estimate_update`."""

    def __init__(self, store: CostStore, seen: Mapping[str, SessionCost]) -> None:
        self.store = store
        self._seen = dict(seen)
        self._rejected: set[str] = set()  # warned about once each

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
        for session_id, why in update.rejected.items():
            if session_id not in self._rejected:
                log.warning(
                    "session %s reports an impossible cost figure (%s); its estimate is not booked until it is sane",
                    session_id,
                    why,
                    extra=ctx(session_id=session_id),
                )
        self._rejected = set(update.rejected)
        if update.seen:
            await self.store.add_cost_estimates(update.buckets, update.seen, now)
            self._seen.update(update.seen)
        return update.buckets

    def settled(self, sessions: Iterable[Session], today: dt.date) -> list[str]:
        """Booked sessions that are settled (see :func:`is_settled`): their bookkeeping can go."""
        return sorted(s.id for s in sessions if s.id in self._seen and is_settled(s, today))

    def forget(self, session_ids: Iterable[str]) -> None:
        """Drop pruned sessions from memory (the store dropped them already)."""
        for session_id in session_ids:
            self._seen.pop(session_id, None)
