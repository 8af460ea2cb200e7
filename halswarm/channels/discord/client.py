"""The Discord REST transport: :mod:`~halswarm.channels.discord.rest` requests over httpx.

Every call goes through one :class:`~halswarm.channels.discord.ratelimit.RateLimiter`
(``delay`` -> ``sent`` -> send -> ``update``): a 429 is retried after the advice
(per-bucket or global), a 5xx or a transport failure after a short backoff, each at
most :attr:`RestTimeouts.max_attempts` times. Failures become
:class:`DiscordRestError`, which names the route **template** (``PATCH
/webhooks/{application_id}/{token}/messages/@original``), never the path: interaction
tokens in paths are credentials, and so is the bot token in the headers.

Use :func:`open_rest_client` (it owns the httpx client), or build
:class:`DiscordRestClient` around an ``httpx.AsyncClient`` you own.
"""

from __future__ import annotations

import logging
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import trio

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord import rest
from halswarm.channels.discord.errors import DiscordError
from halswarm.channels.discord.ratelimit import RateLimiter
from halswarm.obs.logging import ctx

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from halswarm.channels.discord.messages import Message
    from halswarm.channels.discord.rest import RestRequest
    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = ["DiscordRestClient", "DiscordRestError", "RestTimeouts", "open_rest_client"]

log = logging.getLogger(__name__)

_ERROR_TEXT_MAX: Final = 200
_RETRY_BACKOFF: Final = Backoff(initial=0.5, maximum=8.0)


class DiscordRestError(DiscordError):
    """A REST call failed; the message names the route template and the status, never a token."""

    def __init__(self, route_name: str, status: int | None, reason: str) -> None:
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"Discord {route_name}: {where}: {reason}")
        self.route_name = route_name
        self.status = status
        self.reason = reason

    @property
    def token_expired(self) -> bool:
        """A 404 on an interaction route: the 15-minute token is gone, drop the follow-up."""
        return self.status == 404 and ("{token}" in self.route_name)


@attrs.frozen
class RestTimeouts:
    """Deadlines and retries of REST calls."""

    #: One HTTP exchange (connect, send, read).
    request_s: float = 10.0
    #: Tries per call (429, 5xx and transport failures are retried).
    max_attempts: int = 5
    #: Between tries after a 5xx or a transport failure.
    backoff: Backoff = _RETRY_BACKOFF
    #: Never wait longer than this for a 429's ``retry_after``: fail instead.
    max_retry_after_s: float = 60.0


def _reason(body: JSONValue, response: httpx.Response) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        code = body.get("code")
        if isinstance(message, str):
            return f"{message} (code {code})" if code is not None else message
    return (response.reason_phrase or "error")[:_ERROR_TEXT_MAX]


class DiscordRestClient:
    """REST calls of one bot, paced by one rate limiter (see the module docstring)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        bot_token: str,
        limiter: RateLimiter | None = None,
        timeouts: RestTimeouts = RestTimeouts(),
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._token = bot_token
        self.limiter = limiter or RateLimiter()
        self.timeouts = timeouts
        self._rng = rng or random.Random()
        #: 429 answers seen (a metric for health output).
        self.rate_limited = 0

    def __repr__(self) -> str:
        return f"DiscordRestClient(base_url={self.base_url!r})"

    async def send(self, request: RestRequest) -> JSONValue:
        """Make one call (with the retries above) and return the decoded JSON body (None if empty).

        Raises:
            DiscordRestError: a 4xx (other than a retried 429), retries exhausted, or a timeout.
        """
        route = request.route
        headers = rest.request_headers(self._token if request.bot_auth else None)
        url = self.base_url + request.path
        last: DiscordRestError | None = None
        for attempt in range(self.timeouts.max_attempts):
            await self._wait_turn(route)
            try:
                with trio.fail_after(self.timeouts.request_s):
                    if request.json is None:
                        response = await self._http.request(request.method, url, headers=headers)
                    else:
                        response = await self._http.request(request.method, url, headers=headers, json=request.json)
            except trio.TooSlowError:
                last = DiscordRestError(route.name, None, f"timed out after {self.timeouts.request_s:g}s")
            except httpx.HTTPError as exc:
                # The exception text may carry the URL: keep only its kind.
                last = DiscordRestError(route.name, None, f"transport failure ({type(exc).__name__})")
            else:
                body: JSONValue = None
                if response.content:
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                advice = self.limiter.update(route, response.status_code, response.headers, body, trio.current_time())
                if advice.retry:
                    self.rate_limited += 1
                    log.warning(
                        "Discord rate limit: retrying after %.2fs",
                        advice.after,
                        extra=ctx(route=route.name, scope=advice.scope, is_global=advice.is_global),
                    )
                    last = DiscordRestError(route.name, 429, "rate limited")
                    if advice.after > self.timeouts.max_retry_after_s:
                        break
                    continue  # delay() includes the wait
                if response.status_code < 400:
                    return body
                last = DiscordRestError(route.name, response.status_code, _reason(body, response))
                if response.status_code < 500:
                    raise last
            log.warning(
                "Discord REST call failed (attempt %d): %s", attempt + 1, last.reason, extra=ctx(route=route.name)
            )
            if attempt + 1 < self.timeouts.max_attempts:
                await trio.sleep(self.timeouts.backoff.delay(attempt, self._rng))
        assert last is not None
        raise last

    async def _wait_turn(self, route: rest.Route) -> None:
        """Wait until the limiter lets a request on *route* go, and count it as sent.

        Asked again after every sleep, and ``sent`` follows the last ``delay`` with no
        checkpoint in between: concurrent calls waiting on one bucket cannot all see the
        same last request left and go together (which earned 429s).
        """
        while True:
            wait = self.limiter.delay(route, trio.current_time())
            if wait <= 0:
                break
            await trio.sleep(wait)
        self.limiter.sent(route, trio.current_time())

    # ---- the calls halswarm makes ---------------------------------------------------------

    async def overwrite_guild_commands(
        self, application_id: str, guild_id: str, commands: Sequence[JSONObject]
    ) -> list[JSONValue]:
        """Replace the guild's commands; returns the registered command objects."""
        body = await self.send(rest.overwrite_guild_commands(application_id, guild_id, commands))
        return body if isinstance(body, list) else []

    async def create_message(self, channel_id: str, message: Message) -> str:
        """Post *message* in a channel; returns the new message's id."""
        body = await self.send(rest.create_message(channel_id, message))
        ident = body.get("id") if isinstance(body, dict) else None
        if not isinstance(ident, str):
            raise DiscordRestError(rest.create_message(channel_id, message).route.name, 200, "answer has no id")
        return ident

    async def edit_message(self, channel_id: str, message_id: str, message: Message) -> None:
        """Edit a message the bot posted."""
        await self.send(rest.edit_message(channel_id, message_id, message))

    async def interaction_callback(self, interaction_id: str, token: str, response: JSONObject) -> None:
        """The initial response to an interaction (gateway transport)."""
        await self.send(rest.interaction_callback(interaction_id, token, response))

    async def edit_original(self, application_id: str, token: str, message: Message) -> None:
        """Fill in a deferred reply, or edit the message whose button was clicked."""
        await self.send(rest.edit_original(application_id, token, message))

    async def edit_original_body(self, application_id: str, token: str, body: JSONObject) -> None:
        """:meth:`edit_original` with the message already in JSON."""
        await self.send(rest.edit_original_body(application_id, token, body))

    async def create_followup(self, application_id: str, token: str, message: Message) -> None:
        """One more message on an interaction."""
        await self.send(rest.create_followup(application_id, token, message))

    async def create_followup_body(self, application_id: str, token: str, body: JSONObject) -> None:
        """:meth:`create_followup` with the message already in JSON."""
        await self.send(rest.create_followup_body(application_id, token, body))

    async def gateway_url(self) -> str | None:
        """``GET /gateway/bot``'s ``url`` (None if the answer has none)."""
        body = await self.send(rest.get_gateway_bot())
        url = body.get("url") if isinstance(body, dict) else None
        return url if isinstance(url, str) else None


@asynccontextmanager
async def open_rest_client(
    *,
    base_url: str,
    bot_token: str,
    timeouts: RestTimeouts = RestTimeouts(),
    rng: random.Random | None = None,
) -> AsyncGenerator[DiscordRestClient, None]:
    """A client owning its httpx connection pool for the duration of the block."""
    async with httpx.AsyncClient(timeout=timeouts.request_s, follow_redirects=False) as http:
        yield DiscordRestClient(http, base_url=base_url, bot_token=bot_token, timeouts=timeouts, rng=rng)
