"""WebhookSender and SlackSender against a fake receiver on a loopback port (real sockets, no autojump)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Final

import httpx
import pytest
import trio

from halswarm.channels.router import Delivery
from halswarm.channels.senders import DELIVERY_HEADER, RetryTuning, SlackSender, WebhookSender, slack_message
from halswarm.channels.targets import Target
from halswarm.config.routing import SlackWebhookConfig, WebhookConfig, routing_secrets
from halswarm.obs.logging import redact
from tests.channels.fake_receivers import open_fake_receiver
from tests.channels.support import event

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.jsontypes import JSONObject

SECRET: Final = "a-long-random-webhook-secret"
SLACK_PATH: Final = "/services/T000/B000/sEcReTsLaCkPaTh"
WALL: Final = dt.datetime(2026, 8, 1, 12, 0, tzinfo=dt.UTC)
FAST: Final = RetryTuning(initial_backoff_sec=0.01, max_backoff_sec=0.05, slack_timeout_sec=2.0)


def wall() -> dt.datetime:
    return WALL


def error_delivery(target: str = "webhook#n8n", *, suppressed: int = 0) -> Delivery:
    data: JSONObject = {"error": {"name": "APIError", "data": {"message": "overloaded <529>", "statusCode": 529}}}
    return Delivery(Target.parse(target), event("session.error", data=data), 0, suppressed, "k")


@pytest.fixture
async def client() -> AsyncGenerator[httpx.AsyncClient, None]:
    async with httpx.AsyncClient() as c:
        yield c


async def test_a_webhook_gets_the_documented_body_signed(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            config = WebhookConfig(receiver.url("/hooks/n8n"), headers={"X-Source": "halswarm"}, secret=SECRET)
            sender = WebhookSender("n8n", config, client, wall, FAST)
            delivery = error_delivery(suppressed=3)
            assert await sender.send(delivery, "session.error") == "delivered"
    [got] = receiver.requests
    assert got.signed_by(SECRET, now=WALL.timestamp())
    assert not got.signed_by("another-secret", now=WALL.timestamp())
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-source"] == "halswarm"
    assert got.headers[DELIVERY_HEADER.lower()] == f"node-a:{delivery.event.seq}:0"
    body = got.json()
    assert body == {
        "event": {
            "node_id": "node-a",
            "seq": delivery.event.seq,
            "ts": "2026-08-01T12:00:00.000000Z",
            "type": "session.error",
            "session_id": "ses_1",
            "project": "api",
            "data": delivery.event.data,
        },
        "route": {"index": 0, "match": "session.error", "target": "webhook#n8n"},
        "suppressed_count": 3,
        "sent_at": "2026-08-01T12:00:00.000000Z",
    }


async def test_an_unsigned_webhook_has_no_signature_headers(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            sender = WebhookSender("plain", WebhookConfig(receiver.url("/plain")), client, wall, FAST)
            assert await sender.send(error_delivery("webhook#plain"), "*") == "delivered"
    [got] = receiver.requests
    assert "x-halswarm-signature" not in got.headers
    assert "x-halswarm-timestamp" not in got.headers


async def test_a_5xx_is_retried_then_succeeds(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.answers["/hooks/n8n"] = [500, 503]
            config = WebhookConfig(receiver.url("/hooks/n8n"), secret=SECRET, max_attempts=3)
            sender = WebhookSender("n8n", config, client, wall, FAST)
            assert await sender.send(error_delivery(), "session.error") == "delivered"
    assert len(receiver.requests) == 3
    assert all(r.signed_by(SECRET, now=WALL.timestamp()) for r in receiver.requests)
    # One delivery: same body and delivery id on every attempt.
    assert len({r.body for r in receiver.requests}) == 1
    assert len({r.headers[DELIVERY_HEADER.lower()] for r in receiver.requests}) == 1


async def test_a_5xx_on_every_attempt_fails_after_max_attempts(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.answers["/hooks/n8n"] = [500, 500, 500, 500]
            config = WebhookConfig(receiver.url("/hooks/n8n"), max_attempts=2)
            sender = WebhookSender("n8n", config, client, wall, FAST)
            assert await sender.send(error_delivery(), "session.error") == "failed"
    assert len(receiver.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 410])
async def test_a_4xx_is_not_retried(client: httpx.AsyncClient, status: int) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.answers["/hooks/n8n"] = [status]
            config = WebhookConfig(receiver.url("/hooks/n8n"), max_attempts=3)
            sender = WebhookSender("n8n", config, client, wall, FAST)
            assert await sender.send(error_delivery(), "session.error") == "failed"
    assert len(receiver.requests) == 1


async def test_a_429_is_retried(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.answers["/hooks/n8n"] = [429]
            sender = WebhookSender("n8n", WebhookConfig(receiver.url("/hooks/n8n")), client, wall, FAST)
            assert await sender.send(error_delivery(), "session.error") == "delivered"
    assert len(receiver.requests) == 2


async def test_a_timeout_is_retried_within_the_deadline(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.delays["/slow"] = 5.0
            config = WebhookConfig(receiver.url("/slow"), timeout_sec=0.2, max_attempts=2)
            sender = WebhookSender("slow", config, client, wall, FAST)
            start = trio.current_time()
            assert await sender.send(error_delivery("webhook#slow"), "*") == "failed"
            assert trio.current_time() - start < 2.0
    assert len(receiver.requests) == 2


async def test_slack_gets_text_and_blocks(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            sender = SlackSender("ops", SlackWebhookConfig(receiver.url(SLACK_PATH)), client, FAST)
            assert await sender.send(error_delivery("slack#ops", suppressed=2), "session.error") == "delivered"
    [got] = receiver.requests
    body = got.json()
    assert set(body) == {"text", "blocks"}
    text = body["text"]
    assert isinstance(text, str)
    assert "session.error" in text
    assert "APIError: overloaded &lt;529&gt;" in text  # escaped: agent text cannot @channel
    assert "+2 similar suppressed" in text
    blocks = body["blocks"]
    assert isinstance(blocks, list)
    assert [b["type"] for b in blocks if isinstance(b, dict)] == ["header", "section", "section", "context"]
    # mrkdwn is escaped: a '<' would start a Slack link.
    assert "overloaded &lt;529&gt;" in got.body.decode()


async def test_slack_answering_anything_but_ok_is_a_failure(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.answers[SLACK_PATH] = [404]
            sender = SlackSender("ops", SlackWebhookConfig(receiver.url(SLACK_PATH)), client, FAST)
            assert await sender.send(error_delivery("slack#ops"), "*") == "failed"
    assert len(receiver.requests) == 1


def test_slack_messages_stay_within_block_kit_limits() -> None:
    long = "x" * 10_000
    delivery = Delivery(Target("slack", "ops"), event("session.error", data={"message": long}), 0)
    message = slack_message(delivery)
    text, blocks = message["text"], message["blocks"]
    assert isinstance(text, str)
    assert len(text) <= 3000
    assert isinstance(blocks, list)
    header = blocks[0]
    assert isinstance(header, dict)
    assert header["type"] == "header"
    section = blocks[1]
    assert isinstance(section, dict)
    inner = section["text"]
    assert isinstance(inner, dict)
    assert isinstance(inner["text"], str)
    assert len(inner["text"]) <= 3000


async def test_secrets_and_slack_urls_are_never_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        async with open_fake_receiver() as receiver:
            receiver.answers["/hooks/n8n"] = [500, 400]
            receiver.answers[SLACK_PATH] = [500, 500]
            config = WebhookConfig(
                receiver.url("/hooks/n8n"), headers={"Authorization": "Bearer hdr-token"}, secret=SECRET
            )
            webhook = WebhookSender("n8n", config, client, wall, FAST)
            slack = SlackSender("ops", SlackWebhookConfig(receiver.url(SLACK_PATH)), client, FAST)
            assert await webhook.send(error_delivery(), "session.error") == "failed"
            assert await slack.send(error_delivery("slack#ops"), "session.error") == "delivered"
            # A refused connection: httpx's messages may carry the URL; ours do not.
            dead = SlackSender("dead", SlackWebhookConfig(f"http://127.0.0.1:1{SLACK_PATH}"), client, FAST)
            assert await dead.send(error_delivery("slack#dead"), "*") == "failed"
    ours = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("halswarm"))
    assert "webhook#n8n" in ours
    assert "slack#ops" in ours
    for secret in (SECRET, "hdr-token", SLACK_PATH, "sEcReT"):
        assert secret not in ours
    # httpx logs each request's URL at INFO: the supervisor's log redaction (config.secrets(),
    # which lists Slack URLs, webhook secrets and credential headers) removes them.
    hooks = {"n8n": config}
    slacks = {"ops": slack.config, "dead": dead.config}
    redacted = redact(caplog.text, routing_secrets(hooks, slacks))
    for secret in (SECRET, "hdr-token", SLACK_PATH, "sEcReT"):
        assert secret not in redacted
    for sender in (webhook, slack, dead):
        assert SECRET not in repr(sender)
        assert "sEcReT" not in repr(sender)
