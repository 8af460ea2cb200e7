"""``GET /api/v1/audit``: the audit log, newest first, with filters.

Query: ``actor`` and ``action`` (exact, or a prefix with a trailing ``*``: ``policy:*``,
``command.*``), ``target`` (exact), ``since`` (inclusive) and ``until`` (exclusive) as
RFC 3339 times, ``limit`` (1..1000, default 100), and ``before``/``after`` (row ids) to
page: the next page of older rows is ``before=<the last id of this page>``. The answer
is ``{"audit": [AuditEntry...]}`` (:class:`halswarm.audit.AuditEntry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quart import Quart, Response, request

from halswarm.http.auth import requires
from halswarm.http.responses import ApiError, json_response, query_int, query_str
from halswarm.store.policy_sql import AuditQuery
from halswarm.timeutil import format_ts, parse_ts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.http.context import ApiContext

__all__ = ["register_audit"]

_MAX_ROWS: Final = 1000
_MAX_ID: Final = 2**62


def _time(args: Mapping[str, str], name: str) -> str | None:
    raw = query_str(args, name)
    if raw is None:
        return None
    try:
        return format_ts(parse_ts(raw))
    except ValueError:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be an RFC 3339 time like 2026-01-01T00:00:00Z, got {raw!r}"
        ) from None


def _id(args: Mapping[str, str], name: str) -> int | None:
    value = query_int(args, name, default=-1, low=0, high=_MAX_ID)
    return None if value < 0 else value


def audit_query(args: Mapping[str, str]) -> AuditQuery:
    """The query string as an :class:`AuditQuery`.

    Raises:
        ApiError: 400 naming the bad parameter.
    """
    return AuditQuery(
        actor=query_str(args, "actor"),
        action=query_str(args, "action"),
        target=query_str(args, "target"),
        since=_time(args, "since"),
        until=_time(args, "until"),
        before=_id(args, "before"),
        after=_id(args, "after"),
        limit=query_int(args, "limit", default=100, low=1, high=_MAX_ROWS),
    )


def register_audit(app: Quart, api: ApiContext) -> None:
    """Add the audit route to *app*."""

    @app.get("/api/v1/audit")
    @requires("viewer")
    async def list_audit() -> Response:
        return json_response({"audit": await api.store.query_audit(audit_query(request.args))})
