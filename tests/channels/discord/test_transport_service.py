"""DiscordService on its own (a fake backend, the fake Discord): retries, the 3 s guard, failures."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.client import RestTimeouts
from halswarm.channels.discord.interactions import parse_interaction
from halswarm.channels.discord.service import DiscordService, DiscordTimeouts
from halswarm.config.supervisor import DiscordChannel
from halswarm.testing import wait_until
from tests.channels.discord import support as s
from tests.channels.discord.fake_discord import BOT_TOKEN, PUBLIC_KEY_HEX, FakeDiscord, open_fake_discord
from tests.channels.discord.live import fresh

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.channels.discord.interactions import Actor
    from halswarm.commands import CommandRequest
    from halswarm.models import Command, Session

QUICK = DiscordTimeouts(
    answer_guard_s=0.2,
    register_backoff=Backoff(initial=0.01, maximum=0.05),
    rest=RestTimeouts(request_s=5.0, max_attempts=1),
)


@attrs.define
class SlowBackend(s.FakeBackend):
    """Reads take *delay* seconds; submitting can blow up."""

    delay: float = 0.0
    explode: bool = False

    async def sessions(self, project: str | None) -> list[Session]:
        await trio.sleep(self.delay)
        return await super().sessions(project)

    async def submit(self, request: CommandRequest, actor: Actor) -> Command:
        if self.explode:
            raise RuntimeError("a bug in the supervisor")
        return await super().submit(request, actor)


@asynccontextmanager
async def running(backend: s.FakeBackend) -> AsyncGenerator[tuple[DiscordService, FakeDiscord], None]:
    async with open_fake_discord() as fake, trio.open_nursery() as nursery:
        config = DiscordChannel(
            bot_token=BOT_TOKEN,
            guild_id=s.GUILD_ID,
            application_id=s.APP_ID,
            public_key=PUBLIC_KEY_HEX,
            transport="interactions",
            allowed_users=[s.ANA],
            api_base_url=fake.rest_url,
        )
        service = DiscordService(config, backend, now=lambda: s.NOW, timeouts=QUICK, rng=random.Random(1))
        for _ in range(3):
            fake.rest.inject(503, "/commands")  # Discord is down at first
        await nursery.start(service.run)
        try:
            yield service, fake
        finally:
            nursery.cancel_scope.cancel()


async def test_registration_retries_until_discord_answers() -> None:
    async with running(s.FakeBackend()) as (service, fake):
        with trio.fail_after(10):
            await service.commands_registered.wait()
        assert len(fake.rest.calls_to("PUT", "/commands")) == 4


async def test_a_slow_read_is_deferred_and_sent_late() -> None:
    async with running(SlowBackend(delay=0.6)) as (service, fake):
        payload, token = fresh(s.slash("status"))
        with trio.fail_after(5):
            response = await service.answer(parse_interaction(payload))
        assert response.to_json() == {"type": 5, "data": {"flags": 64}}  # private "thinking..."
        path = f"/webhooks/{s.APP_ID}/{token}/messages/@original"
        await wait_until(lambda: bool(fake.rest.calls_to("PATCH", path)), what="the late answer")
        late = fake.rest.calls_to("PATCH", path)[0].obj
        assert late["embeds"]
        assert "flags" not in late


async def test_a_failing_followup_edits_in_an_error() -> None:
    async with running(SlowBackend(explode=True)) as (service, fake):
        payload, token = fresh(s.slash("kill", [s.option("target", "ses_df2c01")]))
        response = await service.answer(parse_interaction(payload))
        assert response.to_json() == {"type": 5}
        path = f"/webhooks/{s.APP_ID}/{token}/messages/@original"
        await wait_until(lambda: bool(fake.rest.calls_to("PATCH", path)), what="the error edit")
        assert "Failed" in str(fake.rest.calls_to("PATCH", path)[0].json)


async def test_an_expired_token_drops_the_followup_quietly() -> None:
    async with running(s.FakeBackend()) as (service, fake):
        payload, token = fresh(s.slash("kill", [s.option("target", "ses_df2c01")]))
        fake.rest.inject(404, f"/{token}/")
        await service.answer(parse_interaction(payload))
        await wait_until(lambda: bool(fake.rest.calls_to("PATCH", f"/{token}/")), what="the edit attempt")
        assert len(fake.rest.calls_to("PATCH", f"/{token}/")) == 1
