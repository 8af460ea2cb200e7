"""Shared request logic for the providers' admin APIs: deadlines, retries, errors, pages.

Both providers answer the same way (``docs: provider-apis.md`` §1.3, §2.3): JSON bodies,
``{"error": {"type", "message"}}`` on failure, 429 with ``retry-after`` in seconds, and
pages of time buckets chained by ``has_more`` + ``next_page`` -> ``page``.

Invariants:

- every attempt has a deadline (``RetryPolicy.timeout``) enforced with a trio cancel
  scope, so it holds for any transport and runs on trio's clock (MockClock in tests);
- every wait between attempts is a ``trio.sleep``; attempts are bounded by
  ``RetryPolicy.max_attempts`` and pages by the caller's ``max_pages``;
- the API key lives only in the client's default headers: it is never formatted into a
  log line or an exception message, and provider-supplied text is redacted before use.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import trio

from halswarm import __version__
from halswarm.agent.backoff import Backoff
from halswarm.cost.model import ProviderError
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object
from halswarm.obs.logging import redact

if TYPE_CHECKING:
    import datetime as dt
    import random
    from collections.abc import AsyncGenerator, Mapping, Sequence

__all__ = [
    "USER_AGENT",
    "PageResult",
    "ProviderHttp",
    "RetryPolicy",
    "fetch_reports",
    "log_fetched",
    "open_provider_http",
]

log = logging.getLogger("halswarm.cost.providers")

#: Both providers ask for a descriptive User-Agent on admin API calls.
USER_AGENT: Final = f"halswarm/{__version__} (cost poller; +https://github.com/halswarm/halswarm)"

# Provider text quoted in errors is cut here: an HTML error page must not flood the log.
_MAX_MESSAGE_CHARS: Final = 300
_NOT_RETRIED_AUTH: Final = {401: "authentication failed (check the admin API key)", 403: "permission denied"}


@attrs.frozen
class RetryPolicy:
    """How one provider request is attempted.

    ``max_attempts`` counts every try (the first one included) whatever went wrong:
    a 5xx answer, a 429, a timeout or a transport error.
    """

    #: Tries per request, first one included.
    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    #: Deadline of one attempt, seconds: connect, send and the whole body read.
    timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    #: First backoff delay (before the 2nd attempt), seconds; doubles per retry.
    backoff_initial: float = 1.0
    #: Ceiling of one backoff delay, seconds.
    backoff_max: float = 30.0
    #: A 429 asking for a longer wait than this fails the request instead of sleeping.
    max_retry_after: float = 300.0

    @property
    def backoff(self) -> Backoff:
        """Delays between attempts: exponential with equal jitter."""
        return Backoff(initial=self.backoff_initial, maximum=self.backoff_max)


@attrs.frozen
class PageResult:
    """Every bucket of a paginated report and how many pages it took."""

    buckets: list[JSONObject]
    pages: int


class _Retry(Exception):
    """One attempt failed in a way worth another try (internal to :class:`ProviderHttp`)."""

    def __init__(self, reason: str, *, retry_after: float | None = None, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.request_id = request_id


def _clip(text: str, secret: str) -> str:
    text = redact(" ".join(text.split()), [secret])
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"


def _provider_message(response: httpx.Response) -> str:
    """``type: message`` from either provider's error body, else the start of the body."""
    try:
        body: JSONValue = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text.strip() or response.reason_phrase
    error = body.get("error") if is_json_object(body) else None
    if is_json_object(error):
        message, kind = error.get("message"), error.get("type")
        parts = [str(part) for part in (kind, message) if isinstance(part, str) and part]
        if parts:
            return ": ".join(parts)
    return response.text.strip()


def _request_id(response: httpx.Response) -> str | None:
    """Anthropic's ``request-id`` or OpenAI's ``x-request-id``: support asks for it."""
    value: str | None = response.headers.get("request-id") or response.headers.get("x-request-id")
    return value


def _retry_after(response: httpx.Response) -> float | None:
    """``retry-after`` in seconds (the only form both providers document), else None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class ProviderHttp:
    """Requests to one provider's admin API over an open ``httpx.AsyncClient``.

    Made by :func:`open_provider_http`; lives for one ``fetch``.
    """

    def __init__(
        self, client: httpx.AsyncClient, *, provider: str, policy: RetryPolicy, rng: random.Random, secret: str
    ) -> None:
        self._client = client
        self.provider = provider
        self.policy = policy
        self._rng = rng
        self._secret = secret

    def _error(self, path: str, what: str, response: httpx.Response | None = None) -> ProviderError:
        where = f"{self.provider}: GET {path}"
        if response is None:
            return ProviderError(f"{where}: {_clip(what, self._secret)}")
        request_id = _request_id(response)
        detail = _clip(_provider_message(response), self._secret)
        text = f"{where}: HTTP {response.status_code} {what}"
        if detail:
            text += f": {detail}"
        if request_id:
            text += f" (request-id {_clip(request_id, self._secret)})"
        return ProviderError(text)

    async def _attempt(self, path: str, params: Sequence[tuple[str, str]]) -> JSONObject:
        """One try. Raises :class:`_Retry` for transient failures, ProviderError otherwise."""
        response: httpx.Response | None = None
        try:
            with trio.move_on_after(self.policy.timeout):
                response = await self._client.get(path, params=tuple(params))
        except httpx.TimeoutException:
            response = None
        except httpx.TransportError as exc:
            raise _Retry(f"transport error: {_clip(str(exc) or type(exc).__name__, self._secret)}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._error(path, f"request failed: {str(exc) or type(exc).__name__}") from None
        if response is None:
            raise _Retry(f"no answer within {self.policy.timeout:g} s")
        status = response.status_code
        if status == 429:
            raise _Retry("HTTP 429 rate limited", retry_after=_retry_after(response), request_id=_request_id(response))
        if status >= 500:
            detail = _clip(_provider_message(response), self._secret)
            raise _Retry(f"HTTP {status}: {detail}", request_id=_request_id(response))
        if status in _NOT_RETRIED_AUTH:
            raise self._error(path, _NOT_RETRIED_AUTH[status], response)
        if status != 200:
            raise self._error(path, "request rejected", response)
        try:
            body: JSONValue = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            content_type = response.headers.get("content-type") or "no content type"
            # A proxy or captive portal answering 200 with HTML is not going to change on retry.
            raise self._error(path, f"expected a JSON body, got {content_type}") from None
        if not is_json_object(body):
            raise self._error(path, "expected a JSON object in the response body")
        return body

    async def get_json(self, path: str, params: Sequence[tuple[str, str]]) -> JSONObject:
        """``GET path?params``, retried per the policy.

        Args:
            path: endpoint path, relative to the client's base URL.
            params: query pairs; repeat a key for array parameters (``group_by[]``).

        Returns:
            The decoded JSON object of a 200 answer.

        Raises:
            ProviderError: a non-retryable answer (4xx other than 429, a non-JSON body),
                or every attempt failed. The message names the provider, the endpoint,
                the status and the provider's own message, never the key.
        """
        policy = self.policy
        for attempt in range(1, policy.max_attempts + 1):
            try:
                return await self._attempt(path, params)
            except _Retry as retry:
                if attempt == policy.max_attempts:
                    last = f"{retry.reason} (request-id {retry.request_id})" if retry.request_id else retry.reason
                    raise self._error(path, f"gave up after {attempt} attempts; last: {last}") from None
                if retry.retry_after is not None and retry.retry_after > policy.max_retry_after:
                    raise self._error(
                        path, f"{retry.reason}; the provider asks to wait {retry.retry_after:g} s, too long to wait"
                    ) from None
                delay = (
                    retry.retry_after if retry.retry_after is not None else policy.backoff.delay(attempt - 1, self._rng)
                )
                log.warning(
                    "provider request failed; retrying",
                    extra={
                        "ctx": {
                            "provider": self.provider,
                            "endpoint": path,
                            "attempt": attempt,
                            "max_attempts": policy.max_attempts,
                            "reason": retry.reason,
                            "delay_s": round(delay, 3),
                            "request_id": retry.request_id,
                        }
                    },
                )
                await trio.sleep(delay)
        # Unreachable: max_attempts >= 1, and the loop returns or raises on its last attempt.
        raise self._error(path, "no attempt was made")

    async def get_pages(self, path: str, params: Sequence[tuple[str, str]], *, max_pages: int) -> PageResult:
        """Every bucket of a paginated report: the same query plus ``page=<next_page>``.

        Stops when ``has_more`` is false or ``next_page`` is null (both providers).

        Args:
            path: endpoint path.
            params: the query, without ``page``.
            max_pages: bound on pages; a provider that keeps saying ``has_more`` beyond
                it (or repeats a page token) is an error rather than an endless loop.

        Returns:
            The ``data`` buckets of every page, in order, and the page count.

        Raises:
            ProviderError: a request failed, a page is malformed, or the bound was hit.
        """
        buckets: list[JSONObject] = []
        seen: set[str] = set()
        token: str | None = None
        for page in range(1, max_pages + 1):
            query = [*params, ("page", token)] if token is not None else list(params)
            body = await self.get_json(path, query)
            data = body.get("data")
            if not isinstance(data, list):
                raise self._error(path, f"page {page} has no 'data' list")
            for bucket in data:
                if not is_json_object(bucket):
                    raise self._error(path, f"page {page} has a bucket that is not an object")
                buckets.append(bucket)
            next_page = body.get("next_page")
            if body.get("has_more") is not True or not isinstance(next_page, str) or not next_page:
                return PageResult(buckets=buckets, pages=page)
            if next_page in seen:
                raise self._error(path, f"page {page} repeats an earlier page token; stopped")
            seen.add(next_page)
            token = next_page
        raise self._error(path, f"more than {max_pages} pages; stopped")


@asynccontextmanager
async def open_provider_http(
    provider: str,
    *,
    base_url: str,
    headers: Mapping[str, str],
    secret: str,
    policy: RetryPolicy,
    rng: random.Random,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncGenerator[ProviderHttp, None]:
    """An httpx client (trio via anyio) for one fetch; closed on exit.

    Args:
        provider: ``"anthropic"`` or ``"openai"``, for messages and logs.
        base_url: API root; endpoint paths are appended to it.
        headers: auth and version headers; ``User-Agent`` is added.
        secret: the API key, redacted from any provider text quoted in errors.
        policy: deadlines and retries.
        rng: jitter source for backoff delays.
        transport: replaces the network (``httpx.MockTransport`` in tests).

    Resource handling: the connection pool is closed when the block exits; the close is
    bounded by a shielded deadline so a cancelled poll cannot hang on it.
    """
    try:
        client = httpx.AsyncClient(
            base_url=base_url,
            headers={"user-agent": USER_AGENT, "accept": "application/json", **headers},
            timeout=httpx.Timeout(policy.timeout),
            transport=transport,
            follow_redirects=False,
        )
    except httpx.InvalidURL:
        raise ProviderError(f"{provider}: invalid base_url; check cost.providers.{provider}.base_url") from None
    try:
        yield ProviderHttp(client, provider=provider, policy=policy, rng=rng, secret=secret)
    finally:
        with trio.move_on_after(policy.timeout, shield=True):
            await client.aclose()


async def fetch_reports(
    provider: str,
    queries: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    *,
    base_url: str,
    headers: Mapping[str, str],
    secret: str,
    policy: RetryPolicy,
    rng: random.Random,
    transport: httpx.AsyncBaseTransport | None,
    max_pages: int,
) -> list[PageResult]:
    """Every page of each ``(path, params)`` query, in order, over one client.

    The skeleton both providers' ``fetch`` share; see :func:`open_provider_http` for the
    arguments and :meth:`ProviderHttp.get_pages` for *max_pages*.

    Raises:
        ProviderError: any report could not be read.
    """
    async with open_provider_http(
        provider, base_url=base_url, headers=headers, secret=secret, policy=policy, rng=rng, transport=transport
    ) as http:
        return [await http.get_pages(path, params, max_pages=max_pages) for path, params in queries]


def log_fetched(provider: str, start: dt.date, end: dt.date, pages: int, buckets: int) -> None:
    """The one log line of a successful fetch."""
    log.info(
        "provider usage and cost fetched",
        extra={
            "ctx": {
                "provider": provider,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "days": (end - start).days,
                "pages": pages,
                "buckets": buckets,
            }
        },
    )
