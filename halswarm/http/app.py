"""The supervisor's HTTP API as a quart-trio app: auth, error shapes, route registration."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Final

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from halswarm.http.api_audit import register_audit
from halswarm.http.api_commands import register_commands
from halswarm.http.api_cost import register_cost
from halswarm.http.api_nodes import register_nodes
from halswarm.http.api_policies import register_policies
from halswarm.http.api_projects import register_projects
from halswarm.http.api_sessions import register_sessions
from halswarm.http.discord import register_discord
from halswarm.http.probes import register_probes
from halswarm.http.responses import ApiError, error_response
from halswarm.store import StoreError

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_MAX_BODY: Final = 1024 * 1024
_PROTECTED_PREFIX: Final = "/api/"
_HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def create_app(api: ApiContext) -> QuartTrio:
    """Build the app. Every ``/api/`` route requires ``Authorization: Bearer <token>``."""
    app = QuartTrio("halswarm")
    app.config["MAX_CONTENT_LENGTH"] = _MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    token = api.token.encode()

    @app.before_request
    async def authenticate() -> Response | None:
        if not request.path.startswith(_PROTECTED_PREFIX):
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token):
            # Refuse an oversized body from its declared length, before it is uploaded.
            if (request.content_length or 0) > _MAX_BODY:
                return error_response(413, "body_too_large", f"request body exceeds {_MAX_BODY} bytes")
            return None
        api.metrics.auth_failures.labels("http").inc()
        log.warning("HTTP request rejected: missing or invalid bearer token", extra={"ctx": {"path": request.path}})
        return error_response(401, "unauthorized", "missing or invalid bearer token")

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.extra)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        if status == 404:
            message = f"no route {request.method} {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif status == 413:
            message = f"request body exceeds {_MAX_BODY} bytes"
        else:
            message = exc.description or exc.name
        return error_response(status, code, message)

    @app.errorhandler(StoreError)
    async def store_error(exc: StoreError) -> Response:
        log.error("storage failure in %s %s: %s", request.method, request.path, exc)
        return error_response(503, "storage_unavailable", "the supervisor's database is unavailable; retry later")

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # Logged with its traceback here; the client gets no internals.
        log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the supervisor log")

    register_probes(app, api)
    register_sessions(app, api)
    register_nodes(app, api)
    register_commands(app, api)
    register_cost(app, api)
    register_policies(app, api)
    register_projects(app, api)
    register_audit(app, api)
    register_discord(app, api)
    return app
