"""``POST /discord/interactions``: Discord's HTTP interactions endpoint.

Not under ``/api/``: Discord cannot present the bearer token; the Ed25519 signature of
every request is the authentication instead (checked on the raw body, before any JSON
parsing). A bad signature is answered 401 with no body, counted in
``hal_o_swarm_auth_failures{listener="discord"}`` and logged with the reason only (never
the key, the signature or the body). The answer itself comes from
:meth:`~halswarm.channels.discord.service.DiscordService.answer`, within Discord's 3 s.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from quart import Quart, Response, request

from halswarm.channels.discord.errors import DiscordConfigError, PayloadError
from halswarm.channels.discord.interactions import parse_interaction_body
from halswarm.channels.discord.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from halswarm.http.responses import error_response

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["INTERACTIONS_PATH", "register_discord"]

log = logging.getLogger(__name__)

INTERACTIONS_PATH = "/discord/interactions"


def register_discord(app: Quart, api: ApiContext) -> None:
    """Add the interactions endpoint to *app* when the Discord channel is configured."""
    service = api.discord
    if service is None:
        return

    @app.post(INTERACTIONS_PATH)
    async def discord_interactions() -> Response:
        raw = await request.get_data(as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode()
        verdict = service.verify(request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER), body)
        if not verdict.ok:
            api.metrics.auth_failures.labels("discord").inc()
            log.warning("Discord interaction refused: %s", verdict.reason)
            return Response(b"", status=401)
        try:
            interaction = parse_interaction_body(body)
        except PayloadError as exc:
            log.warning("Discord interaction unusable: %s", exc)
            return error_response(400, "invalid_body", "not a usable interaction")
        try:
            answer = await service.answer(interaction)
        except DiscordConfigError:
            return error_response(503, "unavailable", "the Discord channel is not running")
        return Response(json.dumps(answer.to_json()), status=200, content_type="application/json")
