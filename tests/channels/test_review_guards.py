"""Guards found in review: a bad Discord gateway URL cannot stop the supervisor, and
agent text cannot notify a whole Slack channel through the notification fallback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from halswarm.channels.discord.gateway import GatewayConfig
from halswarm.channels.discord.gateway_runner import GatewayRunner
from halswarm.channels.router import Delivery
from halswarm.channels.senders import slack_message
from halswarm.channels.targets import Target
from halswarm.models import Event

if TYPE_CHECKING:
    import pytest


async def test_a_gateway_url_that_is_not_a_websocket_ends_the_gateway_not_the_supervisor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = GatewayConfig(token="bot-token-0123456789", url="https://gateway.invalid")
    runner = GatewayRunner(config, on_dispatch=lambda _name, _data: None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)  # returns; nothing escapes into this nursery
    assert any(
        r.levelno == logging.ERROR and "Discord gateway stopped by an unexpected error" in r.getMessage()
        for r in caplog.records
    )


def test_slack_fallback_text_escapes_mentions_from_agent_output() -> None:
    event = Event(
        id=1,
        node_id="node-1",
        seq=1,
        ts="2026-11-24T10:00:00.000000Z",
        type="session.error",
        session_id="ses-a",
        project="alpha",
        data={"error": {"name": "APIError", "data": {"message": "<!channel> wake up & look"}}},
    )
    message = slack_message(Delivery(Target.parse("slack#ops"), event, 0))
    text = message["text"]
    assert isinstance(text, str)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
