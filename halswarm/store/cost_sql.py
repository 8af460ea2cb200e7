"""Synchronous SQL for cost tracking (issue 5). Called only from worker threads via
:class:`~halswarm.store.Store`; each public function is one transaction.

Tables (migration ``0002_cost``):

- ``cost_daily``: one row per (day, provider, model, project, source); tokens and
  ``cost_nanos`` (integer nano-dollars, see :mod:`halswarm.cost.money`). Provider rows
  are replaced per fetched day range; estimate rows grow by deltas.
- ``cost_estimate_sessions``: per session, what the estimates booked of it so far.
- ``cost_state``: small key/value state: ``poll:<provider>`` (last successful poll, RFC
  3339), ``coverage:<provider>`` (the UTC days its stored rows cover,
  ``YYYY-MM-DD..YYYY-MM-DD``) and ``budget:<scope>`` (budget notifications sent, JSON).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

from halswarm.cost.estimates import SessionCost
from halswarm.cost.model import CostBucket
from halswarm.cost.money import from_nanos, to_nanos

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping, Sequence

    from halswarm.cost.model import Span

__all__ = [
    "COVERAGE_KEY_PREFIX",
    "POLL_KEY_PREFIX",
    "add_estimates",
    "cost_buckets",
    "cost_state",
    "decode_span",
    "encode_span",
    "load_estimate_seen",
    "prune_estimate_sessions",
    "put_cost_state",
    "replace_provider_days",
]

#: ``cost_state`` key prefix of each provider's last successful poll.
POLL_KEY_PREFIX: Final = "poll:"
#: ``cost_state`` key prefix of the days each provider's stored rows cover.
COVERAGE_KEY_PREFIX: Final = "coverage:"

_ADD_BUCKET: Final = """
    INSERT INTO cost_daily (day, provider, model, project, source, input_tokens, output_tokens,
                            cache_read_tokens, cache_write_tokens, cost_nanos, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (day, provider, model, project, source) DO UPDATE SET
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        updated_at = excluded.updated_at
"""

_PUT_STATE: Final = """
    INSERT INTO cost_state (key, value, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
"""


def encode_span(span: Span) -> str:
    """``YYYY-MM-DD..YYYY-MM-DD``, as stored."""
    return f"{span[0].isoformat()}..{span[1].isoformat()}"


def decode_span(text: str) -> Span | None:
    """A stored span (None when unreadable: then nothing counts as covered)."""
    first, sep, last = text.partition("..")
    try:
        span = (dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    except ValueError:
        return None
    return span if sep and span[0] <= span[1] else None


def _bucket_row(b: CostBucket, now: str) -> tuple[object, ...]:
    return (
        b.day.isoformat(),
        b.provider,
        b.model,
        b.project,
        b.source,
        b.input_tokens,
        b.output_tokens,
        b.cache_read_tokens,
        b.cache_write_tokens,
        to_nanos(b.cost_usd),
        now,
    )


def replace_provider_days(
    conn: sqlite3.Connection,
    provider: str,
    start: dt.date,
    end: dt.date,
    buckets: Iterable[CostBucket],
    now: str,
    *,
    covered: Span | None = None,
    complete: bool = True,
) -> int:
    """Replace *provider*'s ``source="provider"`` rows for days ``start <= day < end``.

    One transaction deletes the range and inserts *buckets* (buckets with the same key
    are added together), records *covered* as the days the provider's rows now cover,
    and (when *complete*: the last part of a poll) *now* as its last successful poll.
    So fetching the same period twice leaves the same rows: nothing is double counted,
    and estimate rows are never touched.

    Returns:
        How many rows the range holds now.

    Raises:
        ValueError: a bucket is not a provider bucket of *provider* inside the range, or
            an amount is out of range (nothing is written).
    """
    rows = []
    for b in buckets:
        if b.provider != provider or b.source != "provider" or not start <= b.day < end:
            raise ValueError(f"bucket outside the replaced range of {provider} {start}..{end}: {b!r}")
        rows.append(_bucket_row(b, now))
    with conn:
        conn.execute(
            "DELETE FROM cost_daily WHERE provider = ? AND source = 'provider' AND day >= ? AND day < ?",
            (provider, start.isoformat(), end.isoformat()),
        )
        conn.executemany(_ADD_BUCKET, rows)
        if covered is not None:
            conn.execute(_PUT_STATE, (COVERAGE_KEY_PREFIX + provider, encode_span(covered), now))
        if complete:
            conn.execute(_PUT_STATE, (POLL_KEY_PREFIX + provider, now, now))
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM cost_daily WHERE provider = ? AND source = 'provider' AND day >= ? AND day < ?",
            (provider, start.isoformat(), end.isoformat()),
        ).fetchone()
    return int(count)


def add_estimates(
    conn: sqlite3.Connection, deltas: Iterable[CostBucket], seen: Mapping[str, SessionCost], now: str
) -> None:
    """Add estimate *deltas* to their daily rows and store the sessions' new bookkeeping.

    One transaction: the deltas and the record of having booked them commit together.

    Raises:
        ValueError: a delta is not an ``estimate`` bucket (nothing is written).
    """
    rows = []
    for b in deltas:
        if b.source != "estimate":
            raise ValueError(f"not an estimate bucket: {b!r}")
        rows.append(_bucket_row(b, now))
    with conn:
        conn.executemany(_ADD_BUCKET, rows)
        conn.executemany(
            """
            INSERT INTO cost_estimate_sessions (session_id, cost_nanos, input_tokens, output_tokens,
                                                cache_read_tokens, cache_write_tokens, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (session_id) DO UPDATE SET
                cost_nanos = excluded.cost_nanos, input_tokens = excluded.input_tokens,
                output_tokens = excluded.output_tokens, cache_read_tokens = excluded.cache_read_tokens,
                cache_write_tokens = excluded.cache_write_tokens, updated_at = excluded.updated_at
            """,
            [
                (
                    sid,
                    s.cost_nanos,
                    s.input_tokens,
                    s.output_tokens,
                    s.cache_read_tokens,
                    s.cache_write_tokens,
                    now,
                )
                for sid, s in seen.items()
            ],
        )


def prune_estimate_sessions(conn: sqlite3.Connection, session_ids: Sequence[str]) -> int:
    """Forget what the estimates booked of *session_ids* (settled sessions); returns how many went."""
    with conn:
        cursor = conn.executemany(
            "DELETE FROM cost_estimate_sessions WHERE session_id = ?", [(sid,) for sid in session_ids]
        )
    return max(0, cursor.rowcount)


def load_estimate_seen(conn: sqlite3.Connection) -> dict[str, SessionCost]:
    """What the estimates booked of every session so far."""
    rows = conn.execute(
        "SELECT session_id, cost_nanos, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
        " FROM cost_estimate_sessions"
    ).fetchall()
    return {sid: SessionCost(int(c), int(i), int(o), int(r), int(w)) for sid, c, i, o, r, w in rows}


def cost_buckets(conn: sqlite3.Connection, first: dt.date, last: dt.date) -> list[CostBucket]:
    """Every stored bucket (both sources) of UTC days ``first..last``, both inclusive."""
    rows = conn.execute(
        """
        SELECT day, provider, model, project, source, input_tokens, output_tokens,
               cache_read_tokens, cache_write_tokens, cost_nanos
        FROM cost_daily WHERE day >= ? AND day <= ?
        ORDER BY day, provider, model, project, source
        """,
        (first.isoformat(), last.isoformat()),
    ).fetchall()
    return [
        CostBucket(
            day=dt.date.fromisoformat(day),
            provider=provider,
            model=model,
            project=project,
            source="provider" if source == "provider" else "estimate",
            input_tokens=int(i),
            output_tokens=int(o),
            cache_read_tokens=int(r),
            cache_write_tokens=int(w),
            cost_usd=from_nanos(int(nanos)),
        )
        for day, provider, model, project, source, i, o, r, w, nanos in rows
    ]


def cost_state(conn: sqlite3.Connection, prefix: str) -> dict[str, str]:
    """Every ``cost_state`` entry whose key starts with *prefix*."""
    rows = conn.execute(
        "SELECT key, value FROM cost_state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
    ).fetchall()
    return {str(key): str(value) for key, value in rows}


def put_cost_state(conn: sqlite3.Connection, items: Mapping[str, str], now: str) -> None:
    """Set ``cost_state`` entries in one transaction."""
    with conn:
        conn.executemany(_PUT_STATE, [(key, value, now) for key, value in items.items()])
