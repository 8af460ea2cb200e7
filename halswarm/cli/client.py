"""A small typed client for the supervisor's HTTP API, used by halctl.

It returns the same attrs models the server sends (:mod:`halswarm.models`), so the CLI
reads exactly the field names the API writes. Every failure becomes one of:

* :class:`SupervisorUnreachableError`: no connection, or no answer in time;
* :class:`AuthenticationError`: 401, the token is missing or wrong;
* :class:`NotFoundError`: 404, unknown node, session, command or target;
* :class:`ApiError`: any other 4xx/5xx, with the API's ``code`` and ``message`` and,
  for commands that failed, timed out or hit an offline node, the command itself.

All derive from :class:`ClientError`. Every request has explicit timeouts; a command's
read timeout is its server-side ``wait`` plus a margin, so the client never gives up
before the server answers.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import quote

import attrs
import cattrs
import httpx
import orjson

from halswarm.audit import AuditEntry
from halswarm.convert import converter, describe_errors, unstructure
from halswarm.http.correlation import CORRELATION_HEADER, new_correlation_id
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object
from halswarm.models import Command, Event, Node, Session
from halswarm.policy.views import PolicyInfo
from halswarm.projects import CompleteAnswer, CompleteRequest, ProjectInfo
from halswarm.tls import CERT_VERIFY_HINT, cert_verify_error, client_ssl_context

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.commands import CommandRequest

__all__ = [
    "ApiClient",
    "ApiError",
    "AuthenticationError",
    "ClientError",
    "ClientTimeouts",
    "NotFoundError",
    "SupervisorUnreachableError",
    "open_api",
]

T = TypeVar("T")

_USER_AGENT: Final = "halctl"
_Params = dict[str, str | int | float]


class ClientError(Exception):
    """Base of every error the API client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: The invocation's ``X-Correlation-ID`` (set for error answers; grep the supervisor log for it).
        self.correlation_id: str | None = None


class SupervisorUnreachableError(ClientError):
    """No connection to the supervisor, or no answer before the timeout."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the supervisor at {url}: {reason}")
        self.url = url
        self.reason = reason


class AuthenticationError(ClientError):
    """The supervisor answered 401: the bearer token is missing or wrong."""


class NotFoundError(ClientError):
    """The supervisor answered 404 (``code`` says what kind of thing is missing)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApiError(ClientError):
    """Any other error answer, with the API's code and message.

    ``command`` is set when the body carried one: a command that failed (502), timed
    out (504) or targeted an offline node (409).
    """

    def __init__(self, status: int, code: str, message: str, command: Command | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.command = command
        #: The whole error answer (e.g. ``problems`` of an invalid manifest); None if not JSON.
        self.body: JSONObject | None = None


@attrs.frozen
class ClientTimeouts:
    """Deadlines of every request, in seconds (house-style rule 9: named, never literals)."""

    connect_s: float = 5.0
    read_s: float = 30.0
    write_s: float = 10.0
    pool_s: float = 5.0
    #: Added to a command's ``wait`` to get its read timeout, so the server answers first.
    wait_margin_s: float = 15.0

    def httpx(self, read_s: float | None = None) -> httpx.Timeout:
        """The httpx form, optionally with a longer read timeout."""
        return httpx.Timeout(
            connect=self.connect_s,
            read=self.read_s if read_s is None else read_s,
            write=self.write_s,
            pool=self.pool_s,
        )


class ApiClient:
    """Typed calls on ``/api/v1``; open one with :func:`open_api`."""

    def __init__(self, http: httpx.AsyncClient, url: str, timeouts: ClientTimeouts) -> None:
        self._http = http
        self.url = url
        self.timeouts = timeouts
        #: Sent as ``X-Correlation-ID`` on every request of this invocation.
        self.correlation_id = str(http.headers.get(CORRELATION_HEADER, ""))

    # ---- reads ---------------------------------------------------------------------------

    async def health(self) -> JSONObject:
        """``GET /healthz`` (no token needed)."""
        return await self._request("GET", "/healthz")

    async def nodes(self) -> list[Node]:
        """Every known node, online or not, sorted by id."""
        body = await self._request("GET", "/api/v1/nodes")
        return self._structure(body, "nodes", list[Node])

    async def node(self, node_id: str) -> Node:
        """One node. Raises :class:`NotFoundError` if unknown."""
        body = await self._request("GET", f"/api/v1/nodes/{_segment(node_id)}")
        return self._structure(body, "node", Node)

    async def sessions(
        self, *, status: str | None = None, project: str | None = None, node: str | None = None
    ) -> list[Session]:
        """Tracked sessions matching the filters, ordered by start time."""
        params = _params(status=status, project=project, node=node)
        body = await self._request("GET", "/api/v1/sessions", params=params)
        return self._structure(body, "sessions", list[Session])

    async def session(self, session_id: str) -> Session:
        """One session. Raises :class:`NotFoundError` if unknown."""
        body = await self._request("GET", f"/api/v1/sessions/{_segment(session_id)}")
        return self._structure(body, "session", Session)

    async def events(
        self,
        session_id: str,
        *,
        limit: int,
        event_type: str | None = None,
        since: str | None = None,
        after: int | None = None,
    ) -> list[Event]:
        """A session's events, oldest first.

        Without *after*: the newest *limit* events. With *after* (an event id): up to
        *limit* events that came after it, for follow mode. *event_type* filters on
        the event type (``message.updated``...), *since* on time (RFC 3339).
        """
        params = _params(limit=limit, type=event_type, since=since, after=after)
        body = await self._request("GET", f"/api/v1/sessions/{_segment(session_id)}/events", params=params)
        return self._structure(body, "events", list[Event])

    # ---- commands ------------------------------------------------------------------------

    async def cost(self, params: dict[str, str | int | float]) -> JSONObject:
        """``GET /api/v1/cost`` as sent (the caller keeps it for ``-o json``)."""
        return await self._request("GET", "/api/v1/cost", params=params)

    async def submit(self, request: CommandRequest, *, wait: float) -> Command:
        """``POST /api/v1/commands?wait=``: the command as it stands after at most *wait* s.

        Returns:
            The command, ``succeeded`` (200) or still ``pending``/``sent`` (202).

        Raises:
            ApiError: failed (502), timed out (504) or offline target (409), each with
                ``command`` set; idempotency conflicts and bad arguments without it.
            NotFoundError: no such session, project or node.
        """
        body = await self._request(
            "POST",
            "/api/v1/commands",
            params={"wait": wait},
            json_body=unstructure(request),
            read_timeout=wait + self.timeouts.wait_margin_s,
        )
        return self._structure(body, "command", Command)

    async def command(self, command_id: str, *, wait: float = 0.0) -> Command:
        """``GET /api/v1/commands/{id}?wait=``: a command after at most *wait* seconds.

        Raises:
            ApiError: the command failed or timed out (``command`` set).
            NotFoundError: no such command.
        """
        body = await self._request(
            "GET",
            f"/api/v1/commands/{_segment(command_id)}",
            params={"wait": wait},
            read_timeout=wait + self.timeouts.wait_margin_s,
        )
        return self._structure(body, "command", Command)

    # ---- policies and the audit log ------------------------------------------------------

    async def policies(self) -> list[PolicyInfo]:
        """Every policy with its config and live state, in priority order."""
        body = await self._request("GET", "/api/v1/policies")
        return self._structure(body, "policies", list[PolicyInfo])

    async def set_policy(self, name: str, *, enabled: bool) -> PolicyInfo:
        """``POST /api/v1/policies/{name}/enable|disable``: the policy afterwards.

        Raises:
            NotFoundError: no policy has that name.
            ApiError: 409 ``policy_not_configured`` (kill_on_cost without any limit).
        """
        verb = "enable" if enabled else "disable"
        body = await self._request("POST", f"/api/v1/policies/{_segment(name)}/{verb}")
        return self._structure(body, "policy", PolicyInfo)

    async def audit(
        self,
        *,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
    ) -> list[AuditEntry]:
        """Audit rows, newest first; *actor* and *action* take a trailing ``*`` as a prefix match.

        *since* (inclusive) and *until* (exclusive) are RFC 3339 times; *before* an audit
        row id, to page back.
        """
        params = _params(
            limit=limit, actor=actor, action=action, target=target, since=since, until=until, before=before
        )
        body = await self._request("GET", "/api/v1/audit", params=params)
        return self._structure(body, "audit", list[AuditEntry])

    # ---- projects and their dependencies -------------------------------------------------

    async def projects(self) -> list[ProjectInfo]:
        """Every known project: hosts, dependencies, completion, sessions; sorted by name."""
        body = await self._request("GET", "/api/v1/projects")
        return self._structure(body, "projects", list[ProjectInfo])

    async def complete_project(self, name: str, *, detail: str | None = None) -> CompleteAnswer:
        """``POST /api/v1/projects/{name}/complete``: what marking it complete did.

        Raises:
            NotFoundError: no node hosts the project and the dependencies do not name it.
        """
        path = f"/api/v1/projects/{_segment(name)}/complete"
        body = await self._request("POST", path, json_body=unstructure(CompleteRequest(detail)))
        try:
            return converter.structure(body, CompleteAnswer)
        except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
            problems = "; ".join(describe_errors(exc, "$"))
            raise ApiError(200, "invalid_response", f"unexpected answer from the supervisor: {problems}") from None

    # ---- for command modules with their own typed wrappers (env_remote.py) ---------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int | float | None] | None = None,
        json_body: JSONValue = None,
        read_timeout: float | None = None,
    ) -> JSONObject:
        """Any request on the API, with this client's errors and deadlines; unset params are left out."""
        query = _params(**params) if params is not None else None
        return await self._request(method, path, params=query, json_body=json_body, read_timeout=read_timeout)

    @classmethod
    def structure(cls, body: JSONObject, key: str, into: type[T], *, status: int = 200) -> T:
        """``body[key]`` as *into*; a missing key or wrong shape is an ``invalid_response`` ApiError."""
        return cls._structure(body, key, into, status=status)

    # ---- plumbing ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: _Params | None = None,
        json_body: JSONValue = None,
        read_timeout: float | None = None,
    ) -> JSONObject:
        content = orjson.dumps(json_body) if json_body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                content=content,
                headers=headers,
                timeout=self.timeouts.httpx(read_timeout),
            )
        except httpx.TimeoutException as exc:
            raise SupervisorUnreachableError(self.url, _timeout_reason(exc, self.timeouts, read_timeout)) from None
        except httpx.TransportError as exc:
            raise SupervisorUnreachableError(self.url, _transport_reason(exc)) from None
        body = _json_object(response.content)
        if response.status_code < 400:
            if body is None:
                raise ApiError(response.status_code, "invalid_response", "the supervisor sent a body that is not JSON")
            return body
        code, message = _error_of(body, response)
        error: ClientError
        if response.status_code == 401:
            error = AuthenticationError(message)
        elif response.status_code == 404:
            error = NotFoundError(code, message)
        else:
            command = None
            if body is not None and "command" in body:
                command = self._structure(body, "command", Command, status=response.status_code)
            error = ApiError(response.status_code, code, message, command)
            error.body = body
        error.correlation_id = response.headers.get(CORRELATION_HEADER) or self.correlation_id
        raise error

    @staticmethod
    def _structure(body: JSONObject, key: str, cls: type[T], *, status: int = 200) -> T:
        try:
            return converter.structure(body[key], cls)
        except KeyError:
            raise ApiError(status, "invalid_response", f"the supervisor's answer has no {key!r}") from None
        except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
            problems = "; ".join(describe_errors(exc, f"$.{key}"))
            raise ApiError(status, "invalid_response", f"unexpected answer from the supervisor: {problems}") from None


@asynccontextmanager
async def open_api(
    url: str,
    token: str | None,
    *,
    timeouts: ClientTimeouts | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    ca_file: str | None = None,
) -> AsyncGenerator[ApiClient]:
    """An :class:`ApiClient` for the supervisor at *url*, closed on exit.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8421``.
        token: bearer token (``None`` sends no Authorization header).
        timeouts: request deadlines (defaults: :class:`ClientTimeouts`).
        transport: an httpx transport for tests (default: real sockets).
        ca_file: PEM CA file to verify an ``https://`` supervisor with (default: system CAs).

    Raises:
        TlsConfigError: *ca_file* cannot be read or is not PEM.

    Resource handling: one connection pool for the block; closing it does not wait for
    the peer.
    """
    effective = timeouts or ClientTimeouts()
    headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # One id per invocation: every request of this halctl run can be found in the supervisor log.
    headers[CORRELATION_HEADER] = new_correlation_id()
    # Our own context (TLS >= 1.2, host name checked); httpx deprecates a path for verify=.
    verify = client_ssl_context(ca_file) if url.startswith("https:") else True
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=effective.httpx(), transport=transport, verify=verify
    ) as http:
        yield ApiClient(http, url, effective)


def _segment(value: str) -> str:
    """A path segment, escaped so an id can never change the route."""
    return quote(value, safe="")


def _params(**values: str | int | float | None) -> _Params:
    """Query parameters without the unset ones."""
    return {k: v for k, v in values.items() if v is not None}


def _json_object(content: bytes) -> JSONObject | None:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return value if is_json_object(value) else None


def _error_of(body: JSONObject | None, response: httpx.Response) -> tuple[str, str]:
    """The API's ``{"error": {"code", "message"}}``, or a stand-in for non-API answers."""
    error = body.get("error") if body is not None else None
    if is_json_object(error):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return code, message
    return f"http_{response.status_code}", f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _timeout_reason(exc: httpx.TimeoutException, timeouts: ClientTimeouts, read_timeout: float | None) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {timeouts.connect_s:g}s"
    if isinstance(exc, httpx.ReadTimeout):
        read = timeouts.read_s if read_timeout is None else read_timeout
        return f"no answer within {read:g}s"
    return f"timed out ({type(exc).__name__})"


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        if _caused_by_refusal(exc):
            return "connection refused"
        if (cert_problem := cert_verify_error(exc)) is not None:
            return f"TLS certificate verify failed ({cert_problem}); {CERT_VERIFY_HINT}"
        return f"cannot connect: {exc}" if str(exc) else "cannot connect"
    return str(exc) or type(exc).__name__


def _caused_by_refusal(exc: BaseException) -> bool:
    """True if a ConnectionRefusedError is in the cause chain (trio groups the attempts)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False
