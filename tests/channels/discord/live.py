"""A live harness for the Discord transports: fake Discord + supervisor + simulated agent."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Literal

import attrs
import httpx

from halswarm.agent.app import AgentHandle
from halswarm.config.supervisor import ChannelsConfig, DiscordChannel
from halswarm.supervisor.app import SupervisorHandle
from halswarm.testing import api_client, wait_until
from halswarm.testing.harness import agent_config, open_sim_agent, open_supervisor, supervisor_config
from tests.channels.discord.fake_discord import (
    BOT_TOKEN,
    PRIVATE_KEY,
    PUBLIC_KEY_HEX,
    Call,
    FakeDiscord,
    open_fake_discord,
    sign,
)
from tests.channels.discord.support import ANA, APP_ID, CHANNEL_ID, GUILD_ID

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from halswarm.jsontypes import JSONObject

ALERTS: Final = "alerts"
_tokens = itertools.count(1)


@attrs.frozen
class Live:
    """What a transport test works with."""

    fake: FakeDiscord
    supervisor: SupervisorHandle
    agent: AgentHandle
    http: httpx.AsyncClient  # the supervisor's HTTP server, no bearer token
    api: httpx.AsyncClient  # the same with the bearer token

    async def post(
        self, payload: JSONObject, *, key: Ed25519PrivateKey = PRIVATE_KEY, timestamp: str | None = None
    ) -> httpx.Response:
        """Send *payload* to the interactions endpoint, signed like Discord does."""
        body = json.dumps(payload).encode()
        ts = timestamp or str(int(dt.datetime.now(dt.UTC).timestamp()))
        return await self.http.post("/discord/interactions", content=body, headers=sign(body, ts, key))

    async def edit_of(self, token: str, within: float = 15.0) -> Call:
        """The ``PATCH .../messages/@original`` the supervisor sent for interaction *token*."""
        path = f"/webhooks/{APP_ID}/{token}/messages/@original"
        await wait_until(lambda: bool(self.fake.rest.calls_to("PATCH", path)), within=within, what="edit of original")
        return self.fake.rest.calls_to("PATCH", path)[-1]


def fresh(payload: JSONObject) -> tuple[JSONObject, str]:
    """*payload* with a unique interaction id and token (the fake keys edits by token)."""
    n = next(_tokens)
    token = f"tok_{n}_abcdefghijklmnopqrstuvwxyz"
    return {**payload, "id": str(786008729715300000 + n), "token": token}, token


@asynccontextmanager
async def open_live(
    tmp_path: Path,
    *,
    transport: Literal["gateway", "interactions"] = "interactions",
    heartbeat_interval_ms: int = 45_000,
    sessions: int = 3,
) -> AsyncGenerator[Live, None]:
    """Fake Discord, a supervisor with ``channels.discord`` pointing at it, one simulated agent."""
    async with open_fake_discord(heartbeat_interval_ms=heartbeat_interval_ms) as fake:
        discord = DiscordChannel(
            bot_token=BOT_TOKEN,
            guild_id=GUILD_ID,
            application_id=APP_ID,
            public_key=PUBLIC_KEY_HEX,
            transport=transport,
            channels={ALERTS: CHANNEL_ID},
            allowed_users=[ANA],
            api_base_url=fake.rest_url,
            gateway_url=fake.gateway_url,
        )
        config = attrs.evolve(supervisor_config(tmp_path / "sup.db"), channels=ChannelsConfig(discord=discord))
        async with (
            open_supervisor(config) as sup,
            open_sim_agent(agent_config(sup.ws_port, tmp_path / "agent", node_id="node-1"), sessions=sessions) as agent,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{sup.http_port}", timeout=30.0) as http,
            api_client(sup) as api,
        ):
            await wait_until(lambda: len(sup.tracker) == sessions, what=f"{sessions} sessions")
            yield Live(fake, sup, agent, http, api)
