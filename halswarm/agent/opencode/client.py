"""A thin httpx client over the ``opencode serve`` HTTP API (v1 routes, opencode 1.18).

Not the PyPI SDK: it targets the pre-1.0 API (see docs of opencode-api). Every call:

- carries ``?directory=`` when it concerns a project (one server hosts many projects);
- has a deadline (early requests can hang forever, see the startup-hang pitfall);
- requires ``application/json`` (or 204) on success, because unknown routes answer
  ``200 text/html`` from the web UI's catch-all and must not pass as data.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson

from halswarm.jsontypes import JSONObject, JSONValue, is_json_object

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

__all__ = [
    "OpencodeAuthError",
    "OpencodeClient",
    "OpencodeError",
    "OpencodeNotFoundError",
    "OpencodeUnavailableError",
    "split_model",
]

log = logging.getLogger(__name__)

_HEALTH_TIMEOUT: Final = 1.5
_PAGE_SIZE: Final = 500
_MAX_PAGES: Final = 200  # 100,000 sessions: a bound, never reached in practice


class OpencodeError(Exception):
    """opencode answered something other than what the call needs."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpencodeUnavailableError(OpencodeError):
    """No answer: connection refused, reset or timed out."""


class OpencodeAuthError(OpencodeError):
    """401: the password (or user name) is wrong or missing."""


class OpencodeNotFoundError(OpencodeError):
    """404: the session or request does not exist (any more)."""


@attrs.frozen
class Health:
    """``GET /global/health``."""

    healthy: bool
    version: str


def split_model(model: str) -> tuple[str, str]:
    """``"provider/model-id"`` -> ``("provider", "model-id")``.

    Raises:
        ValueError: no provider part.
    """
    provider, sep, model_id = model.partition("/")
    if not sep or not provider or not model_id:
        raise ValueError(f"model must look like provider/model, got {model!r}")
    return provider, model_id


def _obj(value: JSONValue) -> JSONObject:
    return value if is_json_object(value) else {}


def _error_message(response: httpx.Response) -> str:
    """The server's own message from a JSON error body, else the status line."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if is_json_object(body):
        data = body.get("data")
        if is_json_object(data) and isinstance(data.get("message"), str):
            return f"{body.get('name', 'error')}: {data['message']}"
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


class OpencodeClient:
    """One per opencode server. Close with :meth:`aclose` (or ``async with``)."""

    def __init__(
        self,
        base_url: str,
        *,
        password: str | None = None,
        username: str = "opencode",
        timeout: float = 30.0,
        event_read_timeout: float = 25.0,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.event_read_timeout = event_read_timeout
        auth = httpx.BasicAuth(username, password) if password else None
        # No proxies from the environment: the server is local and its password must
        # not travel through some HTTP_PROXY.
        self._http = httpx.AsyncClient(base_url=base_url, auth=auth, timeout=timeout, trust_env=False)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> OpencodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- transport ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        directory: str | None = None,
        body: JSONObject | None = None,
        params: dict[str, str] | None = None,
        time_limit: float | None = None,
    ) -> JSONValue:
        query = dict(params or {})
        if directory is not None:
            query["directory"] = directory
        try:
            response = await self._http.request(
                method,
                path,
                params=query,
                content=orjson.dumps(body) if body is not None else None,
                headers={"content-type": "application/json"} if body is not None else None,
                timeout=time_limit if time_limit is not None else self.timeout,
            )
        except httpx.TimeoutException:
            raise OpencodeUnavailableError(f"{method} {path}: no answer from opencode at {self.base_url}") from None
        except httpx.TransportError as exc:
            raise OpencodeUnavailableError(
                f"{method} {path}: cannot reach opencode at {self.base_url}: {exc}"
            ) from None
        return self._decode(method, path, response)

    def _decode(self, method: str, path: str, response: httpx.Response) -> JSONValue:
        status = response.status_code
        if status == 401:
            raise OpencodeAuthError(
                f"opencode at {self.base_url} refused the credentials (HTTP 401): check opencode.password", status=401
            )
        if status == 404:
            raise OpencodeNotFoundError(f"{method} {path}: {_error_message(response)}", status=404)
        if status >= 400:
            raise OpencodeError(f"{method} {path}: {_error_message(response)}", status=status)
        if status == 204:
            return None
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            # The web UI answers unknown routes with 200 HTML: a wrong URL or version.
            raise OpencodeError(
                f"{method} {path}: expected JSON from opencode, got {content_type or 'no content type'} "
                f"(is {self.base_url} an opencode {method} API of a supported version?)",
                status=status,
            )
        try:
            value: JSONValue = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise OpencodeError(f"{method} {path}: invalid JSON from opencode: {exc}", status=status) from None
        return value

    async def _object(self, method: str, path: str, **kwargs: object) -> JSONObject:
        value = await self._call(method, path, **kwargs)  # type: ignore[arg-type]
        if not is_json_object(value):
            raise OpencodeError(f"{method} {path}: expected a JSON object from opencode")
        return value

    async def _list(self, method: str, path: str, **kwargs: object) -> list[JSONObject]:
        value = await self._call(method, path, **kwargs)  # type: ignore[arg-type]
        if not isinstance(value, list):
            raise OpencodeError(f"{method} {path}: expected a JSON list from opencode")
        return [item for item in value if is_json_object(item)]

    # ---- meta --------------------------------------------------------------------------

    async def health(self, *, time_limit: float = _HEALTH_TIMEOUT) -> Health:
        """``GET /global/health`` with a short deadline (readiness probes).

        Raises:
            OpencodeError: unreachable, refused, or not an opencode health answer.
        """
        body = await self._object("GET", "/global/health", time_limit=time_limit)
        healthy = body.get("healthy") is True
        version = body.get("version")
        return Health(healthy, version if isinstance(version, str) else "")

    # ---- sessions ----------------------------------------------------------------------

    async def all_sessions(self, *, page_size: int = _PAGE_SIZE) -> list[JSONObject]:
        """Sessions of every project (``GET /experimental/session``), for a full resync.

        The route answers 100 sessions by default, newest first: follow its ``cursor``
        (the last session's ``time.updated``) to the end, so older sessions are not
        mistaken for deleted ones.
        """
        sessions: dict[str, JSONObject] = {}
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"limit": str(page_size)}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self._list("GET", "/experimental/session", params=params)
            fresh = [s for s in page if isinstance(s.get("id"), str) and s["id"] not in sessions]
            sessions.update((str(s["id"]), s) for s in fresh)
            updated = _obj(page[-1].get("time")).get("updated") if page else None
            if len(page) < page_size or not fresh or not isinstance(updated, int | float):
                break
            cursor = str(updated)
        return list(sessions.values())

    async def project_sessions(self, directory: str) -> list[JSONObject]:
        """Sessions of one directory, newest first."""
        return await self._list("GET", "/session", directory=directory)

    async def session(self, session_id: str) -> JSONObject:
        """One session. Raises :class:`OpencodeNotFoundError` when unknown or deleted."""
        return await self._object("GET", f"/session/{session_id}")

    async def last_message(self, session_id: str, directory: str) -> JSONObject | None:
        """The info of the session's newest message (``GET /session/{id}/message?limit=1``);
        None when it has none. An assistant reply carries ``error`` and ``time.completed``."""
        items = await self._list("GET", f"/session/{session_id}/message", directory=directory, params={"limit": "1"})
        return _obj(items[-1].get("info")) if items else None

    async def session_status(self, directory: str) -> dict[str, JSONObject]:
        """Non-idle sessions of *directory* -> their status (idle ones are omitted)."""
        body = await self._object("GET", "/session/status", directory=directory)
        return {key: value for key, value in body.items() if is_json_object(value)}

    async def create_session(
        self,
        directory: str,
        *,
        title: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        metadata: JSONObject | None = None,
    ) -> JSONObject:
        """``POST /session``: a new, idle session in *directory*."""
        body: JSONObject = {}
        if title:
            body["title"] = title
        if agent:
            body["agent"] = agent
        if model:
            provider, model_id = split_model(model)
            body["model"] = {"id": model_id, "providerID": provider}
        if metadata:
            body["metadata"] = metadata
        return await self._object("POST", "/session", directory=directory, body=body)

    async def prompt_async(
        self, session_id: str, directory: str, text: str, *, model: str | None = None, agent: str | None = None
    ) -> None:
        """``POST /session/{id}/prompt_async``: queue a prompt; the outcome comes as events."""
        body: JSONObject = {"parts": [{"type": "text", "text": text}]}
        if model:
            provider, model_id = split_model(model)
            body["model"] = {"providerID": provider, "modelID": model_id}
        if agent:
            body["agent"] = agent
        await self._call("POST", f"/session/{session_id}/prompt_async", directory=directory, body=body)

    async def abort(self, session_id: str, directory: str) -> None:
        """Cancel the running turn (a no-op for idle sessions)."""
        await self._call("POST", f"/session/{session_id}/abort", directory=directory)

    async def delete(self, session_id: str, directory: str) -> None:
        """Delete a session and its history."""
        await self._call("DELETE", f"/session/{session_id}", directory=directory)

    # ---- human in the loop -------------------------------------------------------------

    async def permissions(self, directory: str) -> list[JSONObject]:
        """Pending permission requests of *directory*'s instance."""
        return await self._list("GET", "/permission", directory=directory)

    async def questions(self, directory: str) -> list[JSONObject]:
        """Pending questions of *directory*'s instance."""
        return await self._list("GET", "/question", directory=directory)

    async def reply_permission(self, request_id: str, directory: str, reply: str, message: str | None) -> None:
        """Answer a permission request: ``once``, ``always`` or ``reject``."""
        body: JSONObject = {"reply": reply}
        if message:
            body["message"] = message
        await self._call("POST", f"/permission/{request_id}/reply", directory=directory, body=body)

    async def reply_question(self, request_id: str, directory: str, answers: list[list[str]]) -> None:
        """Answer a question request: one list of labels per question."""
        body: JSONObject = {"answers": [list(a) for a in answers]}
        await self._call("POST", f"/question/{request_id}/reply", directory=directory, body=body)

    # ---- events ------------------------------------------------------------------------

    @asynccontextmanager
    async def global_events(self) -> AsyncGenerator[AsyncIterator[JSONObject], None]:
        """Open ``GET /global/event`` and yield an iterator of its envelopes.

        The stream cannot resume: callers resync over REST after every (re)open. A
        stream silent for ``event_read_timeout`` seconds (opencode sends a heartbeat
        every 10 s) ends with :class:`OpencodeUnavailableError`.
        """
        timeout = httpx.Timeout(self.timeout, read=self.event_read_timeout)
        try:
            async with self._http.stream("GET", "/global/event", timeout=timeout) as response:
                if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
                    "text/event-stream"
                ):
                    await response.aread()
                    self._decode("GET", "/global/event", response)
                    raise OpencodeError("GET /global/event: expected an event stream from opencode")
                yield _EventStream(response)
        except httpx.TimeoutException:
            raise OpencodeUnavailableError(
                f"event stream from {self.base_url} went silent for {self.event_read_timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise OpencodeUnavailableError(f"event stream from {self.base_url} failed: {exc}") from None


class _EventStream:
    """Parses SSE ``data:`` lines into JSON objects (opencode sends no ``event:``/``id:``).

    A plain async iterator rather than an async generator, so cancellation and cleanup
    stay with the ``stream()`` block that owns the response.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> JSONObject:
        data: list[str] = []
        async for line in self._lines:
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
                continue
            if line or not data:
                continue
            raw = "\n".join(data)
            data.clear()
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("opencode sent an event that is not JSON; skipped", extra={"ctx": {"bytes": len(raw)}})
                continue
            if is_json_object(value):
                return value
        raise StopAsyncIteration
