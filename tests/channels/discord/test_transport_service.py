"""DiscordService on its own (a fake backend, the fake Discord): retries, the 3 s guard, failures."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.client import RestTimeouts
from halswarm.channels.discord.customid import encode_custom_id
from halswarm.channels.discord.interactions import parse_interaction
from halswarm.channels.discord.responses import CallbackType
from halswarm.channels.discord.service import DiscordService, DiscordTimeouts
from halswarm.config.supervisor import DiscordChannel
from halswarm.testing import wait_until
from tests.channels.discord import support as s
from tests.channels.discord.fake_discord import BOT_TOKEN, PUBLIC_KEY_HEX, FakeDiscord, open_fake_discord
from tests.channels.discord.live import fresh

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.channels.discord.backend import AuditNote
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
    """Reads and audit rows take *delay* seconds; submitting can blow up."""

    delay: float = 0.0
    explode: bool = False

    async def sessions(self, project: str | None) -> list[Session]:
        await trio.sleep(self.delay)
        return await super().sessions(project)

    async def audit(self, note: AuditNote) -> None:
        await trio.sleep(self.delay)
        await super().audit(note)

    async def submit(self, request: CommandRequest, actor: Actor) -> Command:
        if self.explode:
            raise RuntimeError("a bug in the supervisor")
        return await super().submit(request, actor)


@asynccontextmanager
async def running(
    backend: s.FakeBackend, timeouts: DiscordTimeouts = QUICK
) -> AsyncGenerator[tuple[DiscordService, FakeDiscord], None]:
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
        service = DiscordService(config, backend, now=lambda: s.NOW, timeouts=timeouts, rng=random.Random(1))
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
        for _ in range(2):
            fake.rest.inject(404, f"/{token}/")
        await service.answer(parse_interaction(payload))
        await wait_until(lambda: service.jobs == 0, what="the job to give up")
        # The first 404 may be Discord not knowing the interaction yet: one more try, then drop.
        assert len(fake.rest.calls_to("PATCH", f"/{token}/")) == 2


async def test_an_edit_racing_the_initial_answer_is_tried_again() -> None:
    async with running(s.FakeBackend()) as (service, fake):
        payload, token = fresh(s.slash("kill", [s.option("target", "ses_df2c01")]))
        fake.rest.inject(404, f"/{token}/")  # "Unknown Webhook": Discord is still on the initial response
        await service.answer(parse_interaction(payload))
        await wait_until(lambda: service.jobs == 0, what="the follow-up")
        first, second = fake.rest.calls_to("PATCH", f"/{token}/")
        assert second.at - first.at >= QUICK.unknown_original_retry_s
        assert "succeeded" in str(second.json), "the outcome reached Discord"


def _click_paths(token: str) -> tuple[str, str]:
    """(the alert's PATCH path, the follow-up POST path) of a click's interaction token."""
    return f"/webhooks/{s.APP_ID}/{token}/messages/@original", f"/webhooks/{s.APP_ID}/{token}"


async def test_a_late_refusal_of_a_click_is_private_and_leaves_the_alert_alone() -> None:
    stranger = s.member(user_id="111111111111111111", roles=(), username="mallory")
    async with running(SlowBackend(delay=0.6)) as (service, fake):
        payload, token = fresh(s.click(encode_custom_id("kill", "ses_df2c01"), who=stranger))
        response = await service.answer(parse_interaction(payload))
        assert response.to_json() == {"type": 6}  # the audit row was slow: deferred update
        await wait_until(lambda: service.jobs == 0, what="the late refusal")
        original, followup = _click_paths(token)
        assert fake.rest.calls_to("PATCH", original) == []  # everyone's alert is untouched
        (sent,) = [c for c in fake.rest.calls_to("POST", followup) if c.path.endswith(token)]
        assert isinstance(sent.json, dict)
        assert sent.json["flags"] == 64
        assert "not allowed" in str(sent.json["content"])


async def test_a_click_that_fails_inside_tells_only_the_clicker() -> None:
    async with running(SlowBackend(explode=True)) as (service, fake):
        payload, token = fresh(s.click(encode_custom_id("kill", "ses_df2c01")))
        assert (await service.answer(parse_interaction(payload))).to_json() == {"type": 6}
        await wait_until(lambda: service.jobs == 0, what="the failure notice")
        original, followup = _click_paths(token)
        assert fake.rest.calls_to("PATCH", original) == []
        (sent,) = [c for c in fake.rest.calls_to("POST", followup) if c.path.endswith(token)]
        assert isinstance(sent.json, dict)
        assert sent.json["flags"] == 64
        assert "failed inside the supervisor" in str(sent.json)


async def test_an_abandoned_request_ends_its_job_and_sends_nothing() -> None:
    async with running(SlowBackend(delay=0.6)) as (service, fake):
        payload, token = fresh(s.slash("status"))
        with trio.move_on_after(0.05):  # the HTTP client went away before the answer
            await service.answer(parse_interaction(payload))
        with trio.fail_after(2):  # not the 13-minute follow-up deadline
            await wait_until(lambda: service.jobs == 0, what="the abandoned job to end")
        assert fake.rest.calls_to("PATCH", f"/{token}/") == []


async def test_too_many_interactions_at_once_are_told_to_retry() -> None:
    async with running(SlowBackend(delay=0.6), attrs.evolve(QUICK, max_jobs=1)) as (service, fake):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.answer, parse_interaction(fresh(s.slash("status"))[0]))
            await wait_until(lambda: service.jobs == 1, what="the first job")
            busy = await service.answer(parse_interaction(fresh(s.slash("status"))[0]))
        assert busy.type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
        assert "busy" in str(busy.to_json())
        await wait_until(lambda: service.jobs == 0, what="the first job to end")
        assert len(fake.rest.calls_to("PATCH", "/messages/@original")) == 1  # only the first was answered


async def test_health_is_degraded_while_discord_is_unreachable_then_ok() -> None:
    slow_retries = attrs.evolve(QUICK, register_backoff=Backoff(initial=0.3, maximum=0.3))
    async with running(s.FakeBackend(), slow_retries) as (service, fake):
        # The first registration attempts meet 503s (see running()).
        assert service.health() == "degraded: slash commands not registered yet (is Discord reachable?)"
        assert not service.figures().up
        with trio.fail_after(10):
            await service.commands_registered.wait()
        assert service.health() == "ok"
        assert service.figures().up
        assert len(fake.rest.calls_to("PUT", "/commands")) == 4
