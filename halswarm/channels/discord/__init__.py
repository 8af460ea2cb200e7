"""Discord: slash commands, alerts with buttons, and the protocol cores of both transports (issue 7).

Everything here is sans-IO: no sockets, no trio. The transports (planned: the HTTP
interactions endpoint on the supervisor's server, a gateway client on trio-websocket,
REST on httpx) feed bytes and frames in and carry the results out. ``docs/discord.md``
explains the set-up and what each transport must do.

Modules:

- :mod:`.signature` — Ed25519 verification of interaction requests.
- :mod:`.interactions` — typed interactions (parsing); :mod:`.responses` — what we answer.
- :mod:`.commands` — the slash command definitions and their limits.
- :mod:`.handler` — one handler for both transports; :mod:`.backend` — what it needs from the supervisor.
- :mod:`.render`, :mod:`.tables`, :mod:`.messages`, :mod:`.customid` — alerts, answers, limits, button ids.
- :mod:`.rest` — REST requests as data; :mod:`.ratelimit` — rate-limit bookkeeping.
- :mod:`.gateway` — the gateway state machine.
"""

from __future__ import annotations

from halswarm.channels.discord.backend import AuditNote, BackendError, DiscordBackend, PendingPermission
from halswarm.channels.discord.commands import check_definitions, command_payloads, definitions
from halswarm.channels.discord.errors import DiscordConfigError, DiscordError, GatewayStateError, PayloadError
from halswarm.channels.discord.gateway import Gateway, GatewayConfig
from halswarm.channels.discord.handler import Access, HandlerContext, HandlerOptions, Reply, handle
from halswarm.channels.discord.interactions import Interaction, parse_interaction, parse_interaction_body
from halswarm.channels.discord.messages import Message
from halswarm.channels.discord.ratelimit import RateLimiter, RetryAdvice
from halswarm.channels.discord.responses import Response
from halswarm.channels.discord.rest import RestRequest, Route
from halswarm.channels.discord.signature import InteractionVerifier, Verdict

__all__ = [
    "Access",
    "AuditNote",
    "BackendError",
    "DiscordBackend",
    "DiscordConfigError",
    "DiscordError",
    "Gateway",
    "GatewayConfig",
    "GatewayStateError",
    "HandlerContext",
    "HandlerOptions",
    "Interaction",
    "InteractionVerifier",
    "Message",
    "PayloadError",
    "PendingPermission",
    "RateLimiter",
    "Reply",
    "Response",
    "RestRequest",
    "RetryAdvice",
    "Route",
    "Verdict",
    "check_definitions",
    "command_payloads",
    "definitions",
    "handle",
    "parse_interaction",
    "parse_interaction_body",
]
