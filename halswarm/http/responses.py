"""JSON responses, API errors and query-parameter parsing with clear messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from quart import Response

from halswarm.convert import converter

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ApiError", "error_response", "json_response", "query_float", "query_int", "query_str"]


class ApiError(Exception):
    """An error the API answers as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, extra: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


def json_response(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Serialise *body* (attrs values allowed; bytes are sent as-is) as a JSON response."""
    payload = body if isinstance(body, bytes) else orjson.dumps(converter.unstructure(body))
    return Response(payload, status=status, content_type="application/json", headers=dict(headers or {}))


def error_response(status: int, code: str, message: str, extra: Mapping[str, object] | None = None) -> Response:
    """The API's error shape. ``extra`` adds sibling keys (e.g. the failed command)."""
    headers = {"WWW-Authenticate": 'Bearer realm="halswarm"'} if status == 401 else None
    return json_response({**(extra or {}), "error": {"code": code, "message": message}}, status, headers)


def query_str(args: Mapping[str, str], name: str) -> str | None:
    """An optional string parameter; empty counts as absent."""
    value = args.get(name)
    return value if value else None


def query_int(args: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """An integer parameter within [low, high].

    Raises:
        ApiError: 400 naming the parameter and the accepted range.
    """
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}, got {value}")
    return value


def query_float(args: Mapping[str, str], name: str, *, default: float, low: float, high: float) -> float:
    """A number parameter within [low, high].

    Raises:
        ApiError: 400 naming the parameter and the accepted range.
    """
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value
