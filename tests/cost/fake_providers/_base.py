"""Requests, responses, faults, query checks and pagination shared by both fakes."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

import attrs
import orjson
import trio

from tests.cost.fake_providers._dataset import Dataset

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONValue

__all__ = [
    "HANG_LIMIT",
    "BadRequest",
    "FakeProvider",
    "FakeRequest",
    "FakeResponse",
    "Spec",
    "json_response",
    "midnight",
    "parse_query",
    "rfc3339",
    "unix_time",
]

# A hang ends when the fake closes; this only bounds a fake left open by mistake.
HANG_LIMIT: Final = 600.0


@attrs.frozen
class FakeRequest:
    """A request as the fake sees it, whichever way it arrived."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-case names

    def params(self, key: str) -> list[str]:
        """Every value of one query parameter, in order."""
        return [v for k, v in self.query if k == key]


@attrs.frozen
class FakeResponse:
    """What the fake answers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


@attrs.frozen
class _Fault:
    kind: Literal["error", "hang", "rate_limit", "garbage"]
    status: int = 500
    retry_after: float | None = None


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@attrs.frozen
class Spec:
    """The query parameters one endpoint accepts."""

    single: frozenset[str]
    #: ``group_by[]`` values: documented, and implemented by the fake.
    group_by: frozenset[str]
    group_by_supported: frozenset[str]
    #: Documented but not implemented by the fake (filters and such).
    unsupported: frozenset[str]
    max_limit: int
    bucket_widths: frozenset[str] = frozenset({"1d"})


def parse_query(req: FakeRequest, spec: Spec) -> tuple[dict[str, str], list[str]]:
    """``(single-valued params, group_by[] values)``, or :class:`BadRequest`."""
    single: dict[str, str] = {}
    groups: list[str] = []
    for key, value in req.query:
        if key == "group_by[]":
            if value not in spec.group_by:
                raise BadRequest(f"group_by[]: invalid value {value!r}", "group_by")
            if value not in spec.group_by_supported:
                raise BadRequest(f"group_by[]={value} is documented but this fake does not implement it", "group_by")
            groups.append(value)
        elif key in spec.single:
            if key in single:
                raise BadRequest(f"{key}: given more than once", key)
            single[key] = value
        elif key in spec.unsupported:
            raise BadRequest(f"{key} is documented but this fake does not implement it", key)
        elif key.rstrip("[]") == "group_by" or key.startswith("group_by["):
            raise BadRequest(f"{key}: array parameters are sent as group_by[] (pitfall 7)", key)
        else:
            raise BadRequest(f"{key}: unexpected query parameter", key)
    width = single.get("bucket_width", "1d")
    if width not in spec.bucket_widths:
        raise BadRequest(f"bucket_width: {width!r} is not supported here (fake: 1d only)", "bucket_width")
    if "limit" in single:
        text = single["limit"]
        if not text.isdigit() or not 1 <= int(text) <= spec.max_limit:
            raise BadRequest(f"limit: must be an integer from 1 to {spec.max_limit}, got {text!r}", "limit")
    return single, groups


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def rfc3339(value: str, key: str) -> dt.datetime:
    if not _RFC3339.fullmatch(value):
        raise BadRequest(f"{key}: expected an RFC 3339 date-time such as 2026-08-01T00:00:00Z, got {value!r}", key)
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def unix_time(value: str, key: str) -> dt.datetime:
    if not value.isdigit():
        raise BadRequest(f"{key}: expected Unix seconds (an integer), got {value!r}", key)
    return dt.datetime.fromtimestamp(int(value), dt.UTC)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def json_response(value: JSONValue, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> FakeResponse:
    return FakeResponse(status=status, body=orjson.dumps(value), headers=headers)


@attrs.define
class FakeProvider:
    """The shared state of a fake: dataset, key, page size, faults and the request log."""

    dataset: Dataset
    api_key: str
    #: Buckets per page at most, whatever ``limit`` asks (the fake's own cap).
    page_size: int = 2
    #: The last day the fake has data for is before this (bounds queries without an end).
    today: dt.date | None = None
    #: Every request received, faults included.
    requests: list[FakeRequest] = attrs.Factory(list)
    #: The status of every answer, in order (hangs: none until released).
    statuses: list[int] = attrs.Factory(list)
    _faults: deque[_Fault] = attrs.Factory(deque)
    _pages: dict[str, tuple[str, tuple[tuple[str, str], ...], dt.date]] = attrs.Factory(dict)
    _release: trio.Event = attrs.Factory(trio.Event)
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    # -- faults --

    def fail_next(self, n: int = 1, *, status: int = 500) -> None:
        """Answer the next *n* requests with *status* (5xx, or any error) and an error body."""
        self._faults.extend(_Fault("error", status=status) for _ in range(n))

    def hang_next(self, n: int = 1) -> None:
        """Never answer the next *n* requests (until the fake closes)."""
        self._faults.extend(_Fault("hang") for _ in range(n))

    def rate_limit_next(self, retry_after: float | None, n: int = 1) -> None:
        """Answer the next *n* requests with 429 and ``retry-after: <seconds>`` (None: no header)."""
        self._faults.extend(_Fault("rate_limit", status=429, retry_after=retry_after) for _ in range(n))

    def garbage_next(self, n: int = 1) -> None:
        """Answer the next *n* requests with ``200 text/html`` (a proxy's login page)."""
        self._faults.extend(_Fault("garbage", status=200) for _ in range(n))

    def release(self) -> None:
        """End every hang (called when a served fake closes)."""
        self._release.set()

    def count(self, path: str | None = None) -> int:
        """Requests received, on one path or all."""
        return sum(1 for r in self.requests if path is None or r.path == path)

    # -- handling --

    async def handle(self, req: FakeRequest) -> FakeResponse:
        """Answer one request: a queued fault, else the endpoint's documented answer."""
        self.requests.append(req)
        response = await self._answer(req)
        self.statuses.append(response.status)
        return response

    async def _answer(self, req: FakeRequest) -> FakeResponse:
        if self._faults:
            fault = self._faults.popleft()
            if fault.kind == "hang":
                with trio.move_on_after(HANG_LIMIT):
                    await self._release.wait()
                return self.error(503, "the fake was closed while hanging")
            if fault.kind == "garbage":
                return FakeResponse(200, b"<html><body>Sign in to continue</body></html>", content_type="text/html")
            if fault.kind == "rate_limit":
                headers = () if fault.retry_after is None else (("retry-after", f"{fault.retry_after:g}"),)
                return self.error(429, "rate limited", extra_headers=headers)
            return self.error(fault.status, "injected failure")
        try:
            return self.route(req)
        except BadRequest as bad:
            return self.error(400, bad.message, param=bad.param)

    def route(self, req: FakeRequest) -> FakeResponse:
        """The provider-specific answer (overridden)."""
        raise NotImplementedError

    def error(
        self, status: int, message: str, *, param: str | None = None, extra_headers: tuple[tuple[str, str], ...] = ()
    ) -> FakeResponse:
        """An error in the provider's documented shape (overridden)."""
        raise NotImplementedError

    def request_id(self) -> str:
        """A fresh request id."""
        return f"req_fake{next(self._ids):06d}"

    # -- pagination --

    def paginate(
        self, req: FakeRequest, days: list[dt.date], limit: int, page: str | None
    ) -> tuple[list[dt.date], str | None]:
        """This page's days and the next page token (None on the last page).

        Tokens are ``page_`` + base64 of the next bucket's start (the shape of the doc's
        example) and are only valid for the identical query on the same path.
        """
        query = tuple(sorted((k, v) for k, v in req.query if k != "page"))
        first = 0
        if page is not None:
            issued = self._pages.get(page)
            if issued is None:
                raise BadRequest("page: unknown page token", "page")
            if issued[:2] != (req.path, query):
                raise BadRequest("page: the token belongs to a different query (resend it unchanged)", "page")
            first = days.index(issued[2]) if issued[2] in days else len(days)
        size = min(limit, self.page_size)
        chunk = days[first : first + size]
        if first + size >= len(days):
            return chunk, None
        next_day = days[first + size]
        token = "page_" + base64.b64encode(midnight(next_day).strftime("%Y-%m-%dT%H:%M:%SZ").encode()).decode()
        self._pages[token] = (req.path, query, next_day)
        return chunk, token

    def window(self, since: dt.datetime, until: dt.datetime | None) -> list[dt.date]:
        """Daily buckets from *since* (snapped to its day) that end by *until*."""
        last = until or midnight(self.today or (max(self.dataset.days(), default=since.date()) + dt.timedelta(1)))
        days: list[dt.date] = []
        day = since.date()
        for _ in range(10_000):
            if midnight(day + dt.timedelta(days=1)) > last:
                break
            days.append(day)
            day += dt.timedelta(days=1)
        return days
