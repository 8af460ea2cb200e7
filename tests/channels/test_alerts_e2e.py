"""Issue 7's end-to-end path: a ``session.error`` from an agent reaches ``discord#alerts``
(the real Discord service posting to a fake Discord's REST API) and a signed webhook,
within one router tick, on a real supervisor with loopback sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.config.policies import PoliciesConfig
from halswarm.config.routing import RouteConfig, WebhookConfig
from halswarm.config.supervisor import ChannelsConfig, DiscordChannel
from halswarm.testing import api_client, open_supervisor, supervisor_config, wait_until
from tests.channels.discord.fake_discord import BOT_TOKEN, PUBLIC_KEY_HEX, open_fake_discord
from tests.channels.discord.live import ALERTS
from tests.channels.discord.support import APP_ID, CHANNEL_ID, GUILD_ID
from tests.channels.fake_receivers import open_fake_receiver
from tests.channels.test_router_service import SECRET, TICK, Sessions, at
from tests.policy.scripted import ManualClock, fleet_ready, open_agent_with

if TYPE_CHECKING:
    from pathlib import Path


async def test_a_session_error_reaches_the_discord_channel_and_a_webhook_within_one_tick(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = Sessions(clock, [("ses-a", "alpha", "busy")])
    with trio.fail_after(60):
        async with open_fake_discord() as fake, open_fake_receiver() as receiver:
            discord = DiscordChannel(
                bot_token=BOT_TOKEN,
                guild_id=GUILD_ID,
                application_id=APP_ID,
                public_key=PUBLIC_KEY_HEX,
                transport="interactions",
                channels={ALERTS: CHANNEL_ID},
                api_base_url=fake.rest_url,
                gateway_url=fake.gateway_url,
            )
            config = attrs.evolve(
                supervisor_config(tmp_path / "sup.db"),
                routes=[
                    RouteConfig("session.error", f"discord#{ALERTS}", throttle="5m"),
                    RouteConfig("session.error", "webhook#n8n"),
                ],
                channels=ChannelsConfig(
                    discord=discord, webhooks={"n8n": WebhookConfig(receiver.url("/hooks/n8n"), secret=SECRET)}
                ),
                policies=PoliciesConfig(tick_seconds=TICK),
            )
            async with (
                open_supervisor(config, now=clock) as sup,
                open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock),
            ):
                await fleet_ready(sup, backend)
                posts = f"/channels/{CHANNEL_ID}/messages"
                start = trio.current_time()
                await backend.error("ses-a")

                def delivered() -> bool:
                    return bool(fake.rest.calls_to("POST", posts) and receiver.requests)

                await wait_until(delivered, within=5 * TICK, what="the Discord alert and the webhook")
                elapsed = trio.current_time() - start
                [alert] = fake.rest.calls_to("POST", posts)
                # Operators see both channels in the probes and the metrics.
                assert sup.discord is not None
                await sup.discord.commands_registered.wait()
                async with api_client(sup) as api:
                    ready = (await api.get("/readyz")).json()
                    scraped = (await api.get("/metrics")).text
    assert ready["components"]["discord"] == "ok", ready
    assert ready["components"]["routing"] == "ok", ready
    assert "hal_o_swarm_discord_up 1.0" in scraped
    assert 'hal_o_swarm_route_queue_depth{queue="discord#alerts"} 0.0' in scraped
    assert 'hal_o_swarm_route_deliveries_total{outcome="delivered",target="webhook#n8n"} 1.0' in scraped
    assert elapsed <= 2 * TICK  # within one tick of the router (plus loopback latency)
    assert alert.authorization == f"Bot {BOT_TOKEN}"
    text = str(alert.obj)
    assert "alpha" in text  # the project in the embed
    assert "ses-a" in text  # the buttons act on this session
    [hook] = receiver.requests
    assert hook.signed_by(SECRET, now=clock().timestamp())
    assert at(hook.json(), "event", "type") == "session.error"
