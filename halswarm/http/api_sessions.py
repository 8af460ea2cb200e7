"""``/api/v1/sessions`` and ``/api/v1/events``: the tracked sessions and stored events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart, Response, request

from halswarm.http.auth import requires
from halswarm.http.responses import ApiError, json_response, query_int, query_str
from halswarm.models import SESSION_STATUSES
from halswarm.store import EventQuery
from halswarm.timeutil import format_ts, parse_ts

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["register_sessions"]

_MAX_EVENTS = 1000


def _event_query(*, session_id: str | None = None) -> EventQuery:
    args = request.args
    since = query_str(args, "since")
    if since is not None:
        try:
            since = format_ts(parse_ts(since))
        except ValueError:
            raise ApiError(
                400, "invalid_parameter", f"since must be an RFC 3339 time like 2026-01-01T00:00:00Z, got {since!r}"
            ) from None
    after = query_int(args, "after", default=-1, low=0, high=2**62)
    return EventQuery(
        session_id=session_id if session_id is not None else query_str(args, "session"),
        node_id=query_str(args, "node"),
        project=query_str(args, "project"),
        type=query_str(args, "type"),
        since=since,
        after=None if after < 0 else after,
        limit=query_int(args, "limit", default=100, low=1, high=_MAX_EVENTS),
    )


def register_sessions(app: Quart, api: ApiContext) -> None:
    """Add the session and event routes to *app*."""

    @app.get("/api/v1/sessions")
    @requires("viewer")
    async def list_sessions() -> Response:
        status = query_str(request.args, "status")
        if status is not None and status not in SESSION_STATUSES:
            raise ApiError(400, "invalid_parameter", f"status must be one of {', '.join(SESSION_STATUSES)}")
        body = api.tracker.sessions_json(
            status=status, project=query_str(request.args, "project"), node_id=query_str(request.args, "node")
        )
        return json_response(body)

    @app.get("/api/v1/sessions/<session_id>")
    @requires("viewer")
    async def get_session(session_id: str) -> Response:
        session = api.tracker.get(session_id)
        if session is None:
            raise ApiError(404, "not_found", f"no session {session_id!r}")
        return json_response({"session": session})

    @app.get("/api/v1/sessions/<session_id>/events")
    @requires("viewer")
    async def session_events(session_id: str) -> Response:
        if api.tracker.get(session_id) is None:
            raise ApiError(404, "not_found", f"no session {session_id!r}")
        events = await api.store.query_events(_event_query(session_id=session_id))
        return json_response({"events": events})

    @app.get("/api/v1/events")
    @requires("viewer")
    async def list_events() -> Response:
        events = await api.store.query_events(_event_query())
        return json_response({"events": events})
