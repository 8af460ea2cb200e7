"""The REST client against the fake Discord: auth, rate limits, retries, errors without secrets."""

from __future__ import annotations

import pytest
import trio

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.client import DiscordRestError, RestTimeouts, open_rest_client
from halswarm.channels.discord.messages import Message
from halswarm.channels.discord.rest import USER_AGENT
from tests.channels.discord import support as s
from tests.channels.discord.fake_discord import BOT_TOKEN, open_fake_discord

FAST = RestTimeouts(request_s=5.0, max_attempts=3, backoff=Backoff(initial=0.01, maximum=0.02))
CHANNEL = f"/channels/{s.CHANNEL_ID}/messages"


async def test_messages_are_created_and_edited_with_the_bot_token() -> None:
    async with open_fake_discord() as fake, open_rest_client(base_url=fake.rest_url, bot_token=BOT_TOKEN) as client:
        message_id = await client.create_message(s.CHANNEL_ID, Message(content="hello"))
        await client.edit_message(s.CHANNEL_ID, message_id, Message(content="edited"))
        await client.interaction_callback("786008729715212338", "tok_abc", {"type": 5})
    created, edited = fake.rest.calls_to("POST", CHANNEL)[0], fake.rest.calls_to("PATCH", message_id)[0]
    assert created.authorization == edited.authorization == f"Bot {BOT_TOKEN}"
    assert created.obj["content"] == "hello"
    assert fake.rest.messages[message_id]["content"] == "edited"
    callback = fake.rest.calls_to("POST", "/callback")[0]
    assert callback.authorization is None
    assert callback.json == {"type": 5}
    assert USER_AGENT.startswith("DiscordBot (")


async def test_a_429_is_retried_after_retry_after() -> None:
    async with open_fake_discord() as fake, open_rest_client(base_url=fake.rest_url, bot_token=BOT_TOKEN) as client:
        fake.rest.inject(429, CHANNEL, retry_after=0.4)
        with trio.fail_after(10):
            await client.create_message(s.CHANNEL_ID, Message(content="hello"))
        first, second = fake.rest.calls_to("POST", CHANNEL)
        assert second.at - first.at >= 0.4
        assert client.rate_limited == 1


async def test_a_global_429_holds_every_bot_request() -> None:
    async with open_fake_discord() as fake, open_rest_client(base_url=fake.rest_url, bot_token=BOT_TOKEN) as client:
        fake.rest.inject(429, CHANNEL, retry_after=0.3, is_global=True)
        with trio.fail_after(10):
            await client.create_message(s.CHANNEL_ID, Message(content="hello"))
            start = trio.current_time()
            await client.overwrite_guild_commands(s.APP_ID, s.GUILD_ID, [])
        first = fake.rest.calls_to("POST", CHANNEL)[0]
        put = fake.rest.calls_to("PUT", "/commands")[0]
        assert put.at - first.at >= 0.3
        assert start - first.at >= 0.3


async def test_5xx_is_retried_then_reported_by_route_name_without_secrets() -> None:
    async with (
        open_fake_discord() as fake,
        open_rest_client(base_url=fake.rest_url, bot_token=BOT_TOKEN, timeouts=FAST) as client,
    ):
        fake.rest.inject(502, CHANNEL)
        await client.create_message(s.CHANNEL_ID, Message(content="after one 502"))
        assert len(fake.rest.calls_to("POST", CHANNEL)) == 2
        for _ in range(3):
            fake.rest.inject(503, "/webhooks/")
        with pytest.raises(DiscordRestError) as caught:
            await client.edit_original(s.APP_ID, "secret_interaction_token", Message(content="x"))
        text = str(caught.value)
        assert "PATCH /webhooks/{application_id}/{token}/messages/@original" in text
        assert "HTTP 503" in text
        assert "secret_interaction_token" not in text
        assert BOT_TOKEN not in text


async def test_a_wrong_token_is_a_clear_error() -> None:
    async with open_fake_discord() as fake, open_rest_client(base_url=fake.rest_url, bot_token="wrong") as client:
        with pytest.raises(DiscordRestError) as caught:
            await client.create_message(s.CHANNEL_ID, Message(content="x"))
    assert caught.value.status == 401
    assert "POST /channels/{channel_id}/messages" in str(caught.value)
    assert len(fake.rest.calls) == 1  # a 4xx is not retried


async def test_an_unreachable_discord_fails_within_the_retries() -> None:
    async with open_rest_client(base_url="http://127.0.0.1:9", bot_token=BOT_TOKEN, timeouts=FAST) as client:
        with trio.fail_after(10), pytest.raises(DiscordRestError) as caught:
            await client.create_message(s.CHANNEL_ID, Message(content="x"))
    assert caught.value.status is None
    assert "transport failure" in str(caught.value)
