"""Discord REST requests as data (provider-apis.md §3): what to send, never how.

A transport (httpx) turns a :class:`RestRequest` into an HTTP call: ``base_url +
request.path``, :func:`request_headers` (with the bot token only when
``request.bot_auth``), and ``request.json`` as the body. The :class:`Route` is the key
for :mod:`halswarm.channels.discord.ratelimit`.

Interaction follow-ups (``/webhooks/{application_id}/{token}/...``) and the interaction
callback need no bot token: the interaction token in the path is the credential, valid
15 minutes. Paths that contain one are secrets: :class:`RestRequest` and :class:`Route`
keep them out of their reprs, and :attr:`Route.name` (the template) is what to log.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Literal

import attrs

from halswarm import __version__
from halswarm.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from collections.abc import Sequence

    from halswarm.channels.discord.messages import Message

__all__ = [
    "API_BASE_URL",
    "USER_AGENT",
    "HttpMethod",
    "RestRequest",
    "Route",
    "create_followup",
    "create_followup_body",
    "create_message",
    "delete_original",
    "edit_message",
    "edit_original",
    "edit_original_body",
    "get_gateway_bot",
    "interaction_callback",
    "overwrite_guild_commands",
    "request_headers",
]

#: Always versioned: unversioned requests get the deprecated v6.
API_BASE_URL: Final = "https://discord.com/api/v10"
USER_AGENT: Final = f"DiscordBot (https://github.com/halswarm/halswarm, {__version__})"

HttpMethod = Literal["GET", "POST", "PATCH", "PUT", "DELETE"]

# Path segments we fill in: snowflakes and interaction tokens. Anything else (a "/",
# "..", a "?") would change which resource the request hits.
_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9_\-.]{1,500}")
_SNOWFLAKE_RE: Final = re.compile(r"[0-9]{1,20}")


def _snowflake(value: str, what: str) -> str:
    if not _SNOWFLAKE_RE.fullmatch(value):
        raise ValueError(f"{what} must be a Discord id (digits), got {value!r}")
    return value


def _token(value: str) -> str:
    if not _SEGMENT_RE.fullmatch(value) or set(value) == {"."}:
        raise ValueError("the interaction token has unexpected characters")
    return value


@attrs.frozen
class Route:
    """A rate-limit key: the route template plus its top-level ("major") resource.

    Discord keys limits by bucket and major parameter (channel, guild, or webhook id and
    token), so the same route on two channels has two independent limits.
    """

    method: HttpMethod
    template: str  # e.g. "/channels/{channel_id}/messages"
    major: str = attrs.field(default="", repr=False)  # "channels/123"; may hold a token
    #: Counts towards the global 50 requests/s of the bot (interaction routes do not).
    global_limited: bool = True

    @property
    def name(self) -> str:
        """``POST /channels/{channel_id}/messages``: safe to log, no ids or tokens."""
        return f"{self.method} {self.template}"

    @property
    def key(self) -> str:
        """Identifies the route and its major resource (contains the token of webhooks)."""
        return f"{self.method} {self.template} {self.major}"


@attrs.frozen
class RestRequest:
    """One REST call for a transport to make."""

    route: Route
    path: str = attrs.field(repr=False)  # after the base URL; may contain a token
    json: JSONValue = attrs.field(default=None, repr=False)
    #: Send ``Authorization: Bot <token>``.
    bot_auth: bool = True

    @property
    def method(self) -> HttpMethod:
        """The HTTP method."""
        return self.route.method


def request_headers(bot_token: str | None) -> dict[str, str]:
    """Headers for every request: User-Agent, JSON content type, and the bot token if given.

    Without ``Content-Type: application/json`` Discord answers 50035.
    """
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    if bot_token:
        headers["Authorization"] = f"Bot {bot_token}"
    return headers


# ---- bot-token routes ------------------------------------------------------------------

_CHANNEL_MESSAGES: Final = "/channels/{channel_id}/messages"
_CHANNEL_MESSAGE: Final = "/channels/{channel_id}/messages/{message_id}"
_GUILD_COMMANDS: Final = "/applications/{application_id}/guilds/{guild_id}/commands"
_GATEWAY_BOT: Final = "/gateway/bot"
_CALLBACK: Final = "/interactions/{interaction_id}/{token}/callback"
_ORIGINAL: Final = "/webhooks/{application_id}/{token}/messages/@original"
_FOLLOWUP: Final = "/webhooks/{application_id}/{token}"


def create_message(channel_id: str, message: Message) -> RestRequest:
    """``POST /channels/{channel_id}/messages`` (needs Send Messages and Embed Links).

    The answer is the message object; keep its ``id`` to edit the alert later.
    """
    channel = _snowflake(channel_id, "channel_id")
    route = Route("POST", _CHANNEL_MESSAGES, f"channels/{channel}")
    return RestRequest(route, _CHANNEL_MESSAGES.format(channel_id=channel), message.to_json())


def edit_message(channel_id: str, message_id: str, message: Message) -> RestRequest:
    """``PATCH /channels/{channel_id}/messages/{message_id}``: fields left out stay as they were."""
    channel = _snowflake(channel_id, "channel_id")
    ident = _snowflake(message_id, "message_id")
    route = Route("PATCH", _CHANNEL_MESSAGE, f"channels/{channel}")
    return RestRequest(route, _CHANNEL_MESSAGE.format(channel_id=channel, message_id=ident), message.to_json())


def overwrite_guild_commands(application_id: str, guild_id: str, commands: Sequence[JSONObject]) -> RestRequest:
    """``PUT /applications/{application_id}/guilds/{guild_id}/commands`` with the full list.

    Replaces every command of the app in that guild at once (missing ones are deleted);
    idempotent, so it is sent at every start.
    """
    app = _snowflake(application_id, "application_id")
    guild = _snowflake(guild_id, "guild_id")
    route = Route("PUT", _GUILD_COMMANDS, f"guilds/{guild}")
    body: list[JSONValue] = list(commands)
    return RestRequest(route, _GUILD_COMMANDS.format(application_id=app, guild_id=guild), body)


def get_gateway_bot() -> RestRequest:
    """``GET /gateway/bot``: the gateway URL and the identify budget (``session_start_limit``)."""
    return RestRequest(Route("GET", _GATEWAY_BOT), _GATEWAY_BOT)


# ---- interaction routes (the token is the credential) ------------------------------------


def interaction_callback(interaction_id: str, token: str, response: JSONObject) -> RestRequest:
    """``POST /interactions/{interaction_id}/{token}/callback``: the initial response, over REST.

    The gateway transport answers every interaction this way (within 3 s); the HTTP
    transport returns the same body as its HTTP response instead.
    """
    ident = _snowflake(interaction_id, "interaction_id")
    tok = _token(token)
    route = Route("POST", _CALLBACK, f"interactions/{ident}/{tok}", global_limited=False)
    return RestRequest(route, _CALLBACK.format(interaction_id=ident, token=tok), response, bot_auth=False)


def _webhook(method: HttpMethod, template: str, application_id: str, token: str) -> tuple[Route, str]:
    app = _snowflake(application_id, "application_id")
    tok = _token(token)
    route = Route(method, template, f"webhooks/{app}/{tok}", global_limited=False)
    return route, template.format(application_id=app, token=tok)


def edit_original(application_id: str, token: str, message: Message) -> RestRequest:
    """``PATCH /webhooks/{application_id}/{token}/messages/@original``.

    Fills in a deferred reply (type 5), or edits the message whose button was clicked
    (after a type 6 deferred update). Fields left out stay as they were.
    """
    return edit_original_body(application_id, token, message.to_json())


def edit_original_body(application_id: str, token: str, body: JSONObject) -> RestRequest:
    """:func:`edit_original` with a message body already in JSON (e.g. a response's ``data``)."""
    route, path = _webhook("PATCH", _ORIGINAL, application_id, token)
    body = dict(body)
    body.pop("flags", None)  # visibility was fixed by the deferral
    return RestRequest(route, path, body, bot_auth=False)


def delete_original(application_id: str, token: str) -> RestRequest:
    """``DELETE /webhooks/{application_id}/{token}/messages/@original``."""
    route, path = _webhook("DELETE", _ORIGINAL, application_id, token)
    return RestRequest(route, path, bot_auth=False)


def create_followup(application_id: str, token: str, message: Message) -> RestRequest:
    """``POST /webhooks/{application_id}/{token}``: one more message (ephemeral if flagged)."""
    return create_followup_body(application_id, token, message.to_json())


def create_followup_body(application_id: str, token: str, body: JSONObject) -> RestRequest:
    """:func:`create_followup` with a message body already in JSON (its flags are kept)."""
    route, path = _webhook("POST", _FOLLOWUP, application_id, token)
    return RestRequest(route, path, body, bot_auth=False)
