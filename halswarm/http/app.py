"""The supervisor's HTTP API as a quart-trio app: auth, error shapes, route registration."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from halswarm.auth_failures import AuthFailures
from halswarm.config.security import origin_allowed
from halswarm.http.api_audit import register_audit
from halswarm.http.api_commands import register_commands
from halswarm.http.api_cost import register_cost
from halswarm.http.api_env import register_env
from halswarm.http.api_nodes import register_nodes
from halswarm.http.api_policies import register_policies
from halswarm.http.api_projects import register_projects
from halswarm.http.api_sessions import register_sessions
from halswarm.http.auth import Authenticator, check_routes, role_allows, route_role
from halswarm.http.correlation import CORRELATION_HEADER, CorrelationMiddleware
from halswarm.http.discord import INTERACTIONS_PATH, register_discord
from halswarm.http.openapi import register_openapi
from halswarm.http.probes import register_probes
from halswarm.http.responses import ApiError, error_response
from halswarm.obs.logging import ctx
from halswarm.store import StoreError

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_MAX_BODY: Final = 1024 * 1024
_AUDIT_PATH_MAX: Final = 200
_PROTECTED_PREFIX: Final = "/api/"
# Discord sends no Origin and authenticates by signature; exempt by name so a future
# generic origin rule cannot break the interactions endpoint.
_ORIGIN_EXEMPT: Final = frozenset({INTERACTIONS_PATH})
_HTTP_CODES: Final = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def create_app(api: ApiContext) -> QuartTrio:
    """Build the app.

    Every ``/api/`` route requires ``Authorization: Bearer <token>`` with at least the role
    its view is marked with (:func:`~halswarm.http.auth.requires`; an unmarked ``/api/``
    route is a startup error). Requests carrying an ``Origin`` header must come from the
    allowlist (``/discord/interactions`` excepted) and get CORS headers. Every request runs
    in a correlation scope (:mod:`halswarm.http.correlation`).

    Raises:
        RuntimeError: an ``/api/`` route has no required role.
    """
    app = QuartTrio("halswarm")
    app.config["MAX_CONTENT_LENGTH"] = _MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    authenticator = Authenticator(api.token, api.tokens)
    failures = AuthFailures(
        listener="http",
        throttle=api.throttle,
        write_audit=api.store.insert_audit,
        count=api.metrics.auth_failures.labels("http").inc,
        now=api.now,
    )
    allowlist = tuple(api.origin_allowlist)

    @app.before_request
    async def receive_body_first() -> Response | None:
        # Registered first, so no hook or view answers before the request is complete.
        # Under hypercorn 0.18 with quart-trio, an answer sent while the body is still
        # arriving makes hypercorn close the connection from inside the app's task, which
        # quart-trio cancels on that disconnect: the socket stays open, hypercorn waits for
        # a request cycle that never starts, and the client's next request on that
        # keep-alive connection hangs. Receiving the body (at most _MAX_BODY) first keeps
        # every answer after the request; an oversized body is refused unread and the
        # connection closed (see close_after_refused_body).
        if (request.content_length or 0) > _MAX_BODY:
            return error_response(413, "body_too_large", f"request body exceeds {_MAX_BODY} bytes")
        if request.content_length or "Transfer-Encoding" in request.headers:
            await request.get_data()  # cached for the view; over the limit: 413 (http_error)
        return None

    @app.before_request
    async def check_origin() -> Response | None:
        if request.path in _ORIGIN_EXEMPT:
            return None
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, allowlist):
            log.warning("HTTP request refused: origin not allowed", extra=ctx(origin=origin, path=request.path))
            return error_response(403, "origin_not_allowed", f"origin {origin!r} is not in security.origin_allowlist")
        if request.method == "OPTIONS" and origin is not None:
            return _preflight(origin)
        return None

    @app.before_request
    async def authenticate() -> Response | None:
        if not request.path.startswith(_PROTECTED_PREFIX):
            return None
        address = _remote_address()
        # The sender chooses the path and it lands in the audit table: cut it short.
        path = request.path[:_AUDIT_PATH_MAX]
        principal = authenticator.from_header(request.headers.get("Authorization"))
        if principal is None:
            await failures.refuse(
                address=address, reason="missing or invalid bearer token", target=path, detail={"path": path}
            )
            return error_response(401, "unauthorized", "missing or invalid bearer token")
        rule = request.url_rule
        # An unrouted path (404/405 next) needs any valid token: no route, no rights to check.
        required = route_role(app.view_functions.get(rule.endpoint)) if rule is not None else "viewer"
        if required is None or not role_allows(principal.role, required):
            needed = required or "admin"
            await failures.refuse(
                address=address,
                reason=f"role {principal.role} is below the required {needed}",
                actor=principal.actor,
                target=path,
                detail={"path": path},
            )
            return error_response(
                403,
                "forbidden",
                f"{request.method} {request.path} requires role {needed}; this token has role {principal.role}",
                {"required_role": needed},
            )
        g.principal = principal
        return None

    @app.after_request
    async def close_after_refused_body(response: Response) -> Response:
        # A body refused as too large was not received: the connection cannot carry a
        # next request (see receive_body_first).
        if response.status_code == 413:
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is not None and request.path not in _ORIGIN_EXEMPT and origin_allowed(origin, allowlist):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORRELATION_HEADER
            response.vary.add("Origin")
        return response

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
    register_env(app, api)
    register_discord(app, api)
    register_openapi(app)
    check_routes(app)
    app.asgi_app = CorrelationMiddleware(app.asgi_app)  # type: ignore[method-assign]
    return app


def _remote_address() -> str:
    """The peer's address (hypercorn fills ``scope["client"]``); the throttle's key."""
    return request.remote_addr or "unknown"


def _preflight(origin: str) -> Response:
    """Answer a CORS preflight: the methods the path has, the headers the API reads."""
    methods = {"GET", "POST"}
    if isinstance(request.routing_exception, MethodNotAllowed):
        methods = set(request.routing_exception.valid_methods or ()) - {"HEAD"} or methods
    response = Response(b"", status=204)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
    response.headers["Access-Control-Allow-Headers"] = f"Authorization, Content-Type, {CORRELATION_HEADER}"
    response.headers["Access-Control-Max-Age"] = "600"
    response.vary.add("Origin")
    return response
