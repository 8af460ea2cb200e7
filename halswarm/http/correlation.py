"""Correlation ids over HTTP: every request runs in a :func:`correlation_scope` (issue 8).

The id is the request's ``X-Correlation-ID`` header when it is a sane token (at most 64
characters of ``[A-Za-z0-9._-]``; anything else is answered 400 naming the header, so a
caller's typo is not silently replaced), or a fresh one. It is echoed in the response's
``X-Correlation-ID`` header, carried by every log line of the request and handed to
commands, policy switches and audit rows (:func:`~halswarm.obs.logging.current_correlation_id`).

This is ASGI middleware around ``app.asgi_app`` rather than a ``before_request`` hook so
that the scope covers everything Quart does for the request, error handlers included.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Final

import orjson

from halswarm.obs.logging import correlation_scope

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

    AsgiApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

__all__ = ["CORRELATION_HEADER", "CorrelationMiddleware", "new_correlation_id", "valid_correlation_id"]

CORRELATION_HEADER: Final = "X-Correlation-ID"
_HEADER_BYTES: Final = CORRELATION_HEADER.lower().encode()
_VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_correlation_id() -> str:
    """A fresh id: 16 hex characters."""
    return secrets.token_hex(8)


def valid_correlation_id(value: str) -> bool:
    """Whether *value* is acceptable as an ``X-Correlation-ID``."""
    return _VALID.fullmatch(value) is not None


class CorrelationMiddleware:
    """Wraps an ASGI app: validates or creates the id, scopes the request in it, echoes it."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Handle one ASGI connection (HTTP only; other scope types pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = [value for name, value in scope["headers"] if name.lower() == _HEADER_BYTES]
        presented = raw[-1].decode("latin-1").strip() if raw else ""
        if presented and not valid_correlation_id(presented):
            await _bad_header(send)
            return
        correlation_id = presented or new_correlation_id()
        echo = (_HEADER_BYTES, correlation_id.encode())

        async def send_with_id(event: ASGISendEvent) -> None:
            if event["type"] == "http.response.start":
                headers = [h for h in event.get("headers", ()) if h[0].lower() != _HEADER_BYTES]
                event = {**event, "headers": [*headers, echo]}
            await send(event)

        with correlation_scope(correlation_id):
            await self.app(scope, receive, send_with_id)


async def _bad_header(send: ASGISendCallable) -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": "invalid_header",
                "message": f"{CORRELATION_HEADER} must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
