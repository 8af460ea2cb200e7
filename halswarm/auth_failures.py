"""What a refused credential costs its sender, the same on every listener (issue 8).

:class:`AuthFailures` is used by the HTTP API and the agent hub: each refusal is
counted (``hal_o_swarm_auth_failures{listener}``), logged without the token, audited
(:class:`FailureAudit` decides which refusals become rows) and then answered after the
delay the :class:`~halswarm.auth_throttle.FailureThrottle` asks for.

Addresses are grouped before counting (:func:`address_key`): an IPv6 sender controls a
whole /64, so rotating through it must not escape the throttle or the audit limits.

Audit rows are bounded twice: at most one per address per ``interval`` (carrying how
many failures it stands for), and at most ``max_rows`` per ``interval`` in all; failures
beyond that are counted and reported in the next row written (``unlisted``), so a flood
from many addresses cannot grow the audit table without bound either.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.obs.logging import ctx, current_correlation_id
from halswarm.store import AuditRecord, StoreError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from halswarm.auth_throttle import FailureThrottle
    from halswarm.jsontypes import JSONObject
    from halswarm.timeutil import Clock

__all__ = ["AuthFailures", "FailureAudit", "address_key"]

log = logging.getLogger(__name__)

_INTERVAL_S: Final = 60.0
_MAX_ADDRESSES: Final = 10_000
_MAX_ROWS: Final = 60
_AUDIT_WRITE_TIMEOUT_S: Final = 3.0


def address_key(address: str) -> str:
    """The unit failures are counted by: the IPv4 address, or the IPv6 /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a test name, "(disconnected)"): itself
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@attrs.define
class _Entry:
    last_row: float
    unrecorded: int = 0


class FailureAudit:
    """Decides which auth failures become audit rows (pure; the caller writes the row).

    Invariants: at most ``max_addresses`` addresses are remembered (stalest first out);
    at most ``max_rows`` rows are allowed per ``interval`` in all.
    """

    def __init__(
        self, *, interval: float = _INTERVAL_S, max_addresses: int = _MAX_ADDRESSES, max_rows: int = _MAX_ROWS
    ) -> None:
        self.interval = interval
        self.max_addresses = max_addresses
        self.max_rows = max_rows
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._period_start = -float("inf")
        self._rows_in_period = 0
        #: Failures that got no row because the global cap was reached (reported later).
        self.unlisted = 0

    def failed(self, address: str, now: float) -> int | None:
        """Record one failure; returns how many failures a row written now stands for, or
        None when no row is due (this address had one within ``interval``, or the cap is hit)."""
        entry = self._entries.get(address)
        if entry is not None and now - entry.last_row < self.interval:
            entry.unrecorded += 1
            return None
        if now - self._period_start >= self.interval:
            self._period_start, self._rows_in_period = now, 0
        if self._rows_in_period >= self.max_rows:
            self.unlisted += 1
            return None
        self._rows_in_period += 1
        count = 1 + (entry.unrecorded if entry is not None else 0)
        self._entries[address] = _Entry(last_row=now)
        self._entries.move_to_end(address)
        while len(self._entries) > self.max_addresses:
            self._entries.popitem(last=False)
        return count

    def take_unlisted(self) -> int:
        """Failures left out by the cap since the last call (to report in the next row)."""
        unlisted, self.unlisted = self.unlisted, 0
        return unlisted

    def __len__(self) -> int:
        return len(self._entries)


class AuthFailures:
    """Counts, logs, audits and slows down refusals on one listener.

    Args:
        listener: ``http`` or ``ws`` (the audit row's source and the metric's label).
        throttle: per-address failure bookkeeping; its delay is slept before answering.
        write_audit: appends an audit row (``Store.insert_audit``).
        count: increments ``hal_o_swarm_auth_failures{listener=...}``.
        now: wall clock for audit timestamps; durations use ``trio.current_time()``.
        audit: which refusals become rows (injectable for tests).
    """

    def __init__(
        self,
        *,
        listener: str,
        throttle: FailureThrottle,
        write_audit: Callable[[AuditRecord], Awaitable[None]],
        count: Callable[[], None],
        now: Clock,
        audit: FailureAudit | None = None,
    ) -> None:
        self.listener = listener
        self.throttle = throttle
        self.write_audit = write_audit
        self.count = count
        self.now = now
        self.audit = audit if audit is not None else FailureAudit()

    async def refuse(
        self, *, address: str, reason: str, actor: str = "unknown", target: str = "", detail: JSONObject | None = None
    ) -> None:
        """Count, log and audit one refusal, then sleep the delay the throttle asks for.

        Args:
            address: the remote address (grouped by :func:`address_key`).
            reason: why, in words (never the token).
            actor: ``unknown`` for a bad token, else who was refused (``token:x``, ``node:y``).
            target: the audit row's target (a path, a node id).
            detail: extra audit fields (never a secret).

        Cancellation: safe at any await; the sleep is the last step.
        Error handling: an audit row that cannot be stored (or not in time) is logged;
        the refusal stands.
        """
        moment = trio.current_time()
        key = address_key(address)
        delay = self.throttle.failed(key, moment)
        self.count()
        log.warning(
            "%s request refused: %s",
            self.listener.upper(),
            reason,
            extra=ctx(address=address, actor=actor, target=target, delay_s=delay),
        )
        rows = self.audit.failed(key, moment)
        if rows is not None:
            fields: JSONObject = {"address": address, **(detail or {}), "reason": reason, "count": rows}
            unlisted = self.audit.take_unlisted()
            if unlisted:
                fields["unlisted"] = unlisted  # failures from other addresses over the row cap
            record = AuditRecord(
                ts=format_ts(self.now()),
                actor=actor,
                source=self.listener,
                action="auth.failure",
                target=target,
                outcome="refused",
                correlation_id=current_correlation_id() or "",
                detail=fields,
            )
            try:
                with trio.move_on_after(_AUDIT_WRITE_TIMEOUT_S) as scope:
                    await self.write_audit(record)
                if scope.cancelled_caught:
                    log.error("auth-failure audit row not stored in time", extra=ctx(address=address))
            except StoreError as exc:
                log.error("cannot store the auth-failure audit row: %s", exc, extra=ctx(address=address))
        if delay > 0:
            await trio.sleep(delay)
