"""Discord REST rate limits, as pure bookkeeping (provider-apis.md §3.4).

Discord does not publish fixed limits; every response says where a route stands:

- ``X-RateLimit-Bucket`` — the bucket the route belongs to (routes can share one);
  limits apply per bucket **and** major resource (channel, guild, webhook), so the key
  here is ``bucket + major`` (the route itself until the bucket is known).
- ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset-After`` — requests left, and seconds
  (fractional) until the bucket refills. ``X-RateLimit-Reset`` (epoch) is not used: it
  depends on our wall clock agreeing with Discord's.
- **429** — body ``{"message", "retry_after": <float s>, "global": bool}`` plus
  ``Retry-After``, ``X-RateLimit-Global`` and ``X-RateLimit-Scope`` (``user``, ``global``
  or ``shared``). Wait ``retry_after``, then retry. ``global`` stops every bot-token
  request; otherwise only that bucket.
- The global limit is 50 requests/s per bot; interaction callbacks and webhook
  follow-ups are exempt (:attr:`Route.global_limited`). We also pace ourselves under it.
- More than 10,000 invalid requests (401, 403, 429 except ``shared``) in 10 minutes
  from one IP earn a temporary Cloudflare ban: :meth:`RateLimiter.invalid_requests`
  counts them for a metric and a warning.

Use: ``await trio.sleep(limiter.delay(route, now))``; ``limiter.sent(route, now)``; send;
``advice = limiter.update(route, status, headers, body, now)``; if ``advice.retry``, go
round again (``delay`` already includes ``advice.after``). ``now`` is a monotonic clock
(``trio.current_time()``): only differences matter.
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, Final, Literal

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.channels.discord.rest import Route
    from halswarm.jsontypes import JSONValue

__all__ = ["GLOBAL_PER_SECOND", "INVALID_LIMIT", "INVALID_WINDOW_S", "RateLimiter", "RetryAdvice"]

GLOBAL_PER_SECOND: Final = 50
INVALID_WINDOW_S: Final = 600.0
INVALID_LIMIT: Final = 10_000
_DEFAULT_RETRY_S: Final = 1.0  # a 429 that says nothing about when to retry
_MAX_ENTRIES: Final = 2048  # interaction tokens are majors too: keep memory bounded

Scope = Literal["user", "global", "shared", ""]


@attrs.frozen
class RetryAdvice:
    """What to do after a response."""

    retry: bool  # a 429: send the same request again after ``after`` seconds
    after: float = 0.0
    is_global: bool = False
    scope: Scope = ""


@attrs.define
class _Bucket:
    remaining: int | None
    reset_at: float


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


class RateLimiter:
    """Per-bucket and global limits of one bot, learnt from responses.

    Invariants: ``_buckets`` holds at most ``max_entries`` keys (expired ones go first);
    ``_recent`` holds the send times of the last second, at most ``global_per_second``.
    """

    def __init__(self, *, global_per_second: int = GLOBAL_PER_SECOND, max_entries: int = _MAX_ENTRIES) -> None:
        self.global_per_second = global_per_second
        self.max_entries = max_entries
        self._bucket_of: dict[str, str] = {}  # "METHOD template" -> bucket hash
        self._buckets: dict[str, _Bucket] = {}
        self._global_until = -math.inf
        self._recent: collections.deque[float] = collections.deque()
        self._invalid: collections.deque[float] = collections.deque()

    def _key(self, route: Route) -> str:
        bucket = self._bucket_of.get(f"{route.method} {route.template}")
        return f"{bucket}:{route.major}" if bucket is not None else route.key

    def delay(self, route: Route, now: float) -> float:
        """Seconds to wait before sending a request on *route* (0: send now)."""
        wait = 0.0
        if route.global_limited:
            wait = max(wait, self._global_until - now)
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.global_per_second:
                wait = max(wait, self._recent[0] + 1.0 - now)
        bucket = self._buckets.get(self._key(route))
        if bucket is not None and bucket.remaining is not None and bucket.remaining <= 0:
            wait = max(wait, bucket.reset_at - now)
        return max(0.0, wait)

    def sent(self, route: Route, now: float) -> None:
        """Record that a request on *route* leaves now (counts it against what is left)."""
        if route.global_limited:
            self._recent.append(now)
            while len(self._recent) > self.global_per_second:
                self._recent.popleft()
        bucket = self._buckets.get(self._key(route))
        if bucket is not None and bucket.remaining is not None:
            if bucket.reset_at <= now:
                bucket.remaining = None  # refilled; the next response says by how much
            else:
                bucket.remaining -= 1

    def update(self, route: Route, status: int, headers: Mapping[str, str], body: JSONValue, now: float) -> RetryAdvice:
        """Learn from a response on *route*.

        Args:
            route: the route the request went to.
            status: the HTTP status.
            headers: the response headers (any case).
            body: the decoded JSON body (only read on a 429), or None.
            now: the monotonic clock when the response arrived.

        Returns:
            Whether to retry (429) and after how long.
        """
        h = {k.lower(): v for k, v in headers.items()}
        bucket_hash = h.get("x-ratelimit-bucket")
        if bucket_hash:
            self._bucket_of[f"{route.method} {route.template}"] = bucket_hash
        key = self._key(route)
        remaining = _count(h.get("x-ratelimit-remaining"))
        reset_after = _seconds(h.get("x-ratelimit-reset-after"))
        if remaining is not None and reset_after is not None:
            self._buckets[key] = _Bucket(remaining, now + reset_after)
        advice = RetryAdvice(retry=False)
        if status == 429:
            advice = self._too_many(key, h, body, now, reset_after)
        if status in (401, 403) or (status == 429 and advice.scope != "shared"):
            self._invalid.append(now)
        self.invalid_requests(now)  # drop old entries: the deque stays bounded by the window
        self._prune(now)
        return advice

    def _too_many(
        self, key: str, h: dict[str, str], body: JSONValue, now: float, reset_after: float | None
    ) -> RetryAdvice:
        retry_after: float | None = None
        body_global = False
        if isinstance(body, dict):
            raw = body.get("retry_after")
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                retry_after = float(raw) if math.isfinite(raw) and raw >= 0 else None
            body_global = body.get("global") is True
        if retry_after is None:
            retry_after = _seconds(h.get("retry-after"))
        if retry_after is None:
            retry_after = reset_after if reset_after is not None else _DEFAULT_RETRY_S
        is_global = body_global or h.get("x-ratelimit-global", "").lower() == "true"
        raw_scope = h.get("x-ratelimit-scope", "global" if is_global else "user")
        scope: Scope = "global" if raw_scope == "global" else "shared" if raw_scope == "shared" else "user"
        if is_global:
            self._global_until = max(self._global_until, now + retry_after)
        else:
            self._buckets[key] = _Bucket(0, now + retry_after)
        return RetryAdvice(retry=True, after=retry_after, is_global=is_global, scope=scope)

    @property
    def tracked_buckets(self) -> int:
        """How many (bucket, major) limits are remembered (bounded by ``max_entries``)."""
        return len(self._buckets)

    def invalid_requests(self, now: float) -> int:
        """401/403/429 responses in the last 10 minutes (Cloudflare bans at 10,000)."""
        while self._invalid and self._invalid[0] <= now - INVALID_WINDOW_S:
            self._invalid.popleft()
        return len(self._invalid)

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= self.max_entries:
            return
        for key in [k for k, b in self._buckets.items() if b.reset_at <= now]:
            del self._buckets[key]
        if len(self._buckets) > self.max_entries:
            by_reset = sorted(self._buckets, key=lambda k: self._buckets[k].reset_at)
            for key in by_reset[: len(self._buckets) - self.max_entries]:
                del self._buckets[key]
