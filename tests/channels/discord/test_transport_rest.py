"""The REST client against the fake Discord: auth, rate limits, retries, errors without secrets."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.client import DiscordRestClient, DiscordRestError, RestTimeouts, open_rest_client
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


class _BucketServer:
    """An in-process Discord bucket: *limit* requests per *window* seconds, 429 beyond it."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.window_end = -1.0
        self.used = 0
        self.too_many = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        now = trio.current_time()
        if now >= self.window_end:
            self.window_end, self.used = now + self.window, 0
        reset_after = f"{self.window_end - now:.3f}"
        headers = {"X-RateLimit-Bucket": "b1", "X-RateLimit-Reset-After": reset_after}
        if self.used >= self.limit:
            self.too_many += 1
            headers |= {"X-RateLimit-Remaining": "0", "X-RateLimit-Scope": "user"}
            return httpx.Response(429, headers=headers, json={"message": "limited", "retry_after": float(reset_after)})
        self.used += 1
        headers["X-RateLimit-Remaining"] = str(self.limit - self.used)
        await trio.sleep(0.05)  # the answer takes a moment: concurrent calls overlap
        return httpx.Response(200, headers=headers, json={"id": "1"})


async def test_concurrent_calls_share_what_is_left_of_a_bucket(autojump_clock: trio.testing.MockClock) -> None:
    """One request left in the bucket and three callers: one goes, two wait for the reset."""
    server = _BucketServer(limit=2, window=2.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        client = DiscordRestClient(http, base_url="https://discord.test/api/v10", bot_token=BOT_TOKEN)
        await client.create_message(s.CHANNEL_ID, Message(content="learn the bucket"))
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(client.create_message, s.CHANNEL_ID, Message(content=f"concurrent {n}"))
    assert server.too_many == 0
    assert client.rate_limited == 0
