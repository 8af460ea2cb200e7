"""REST requests as data: paths, auth, bodies, and that tokens stay out of reprs."""

from __future__ import annotations

import pytest

from halswarm.channels.discord.messages import Embed, Message
from halswarm.channels.discord.rest import (
    API_BASE_URL,
    USER_AGENT,
    create_followup,
    create_message,
    delete_original,
    edit_message,
    edit_original,
    get_gateway_bot,
    interaction_callback,
    request_headers,
)

TOKEN = "aW50ZXJhY3Rpb246ODc.secret-token_x"


def test_base_url_is_versioned_and_user_agent_follows_the_format() -> None:
    assert API_BASE_URL.endswith("/api/v10")
    assert USER_AGENT.startswith("DiscordBot (https://")
    assert USER_AGENT.endswith(")")


def test_headers() -> None:
    assert request_headers(None) == {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    assert request_headers("bot.token")["Authorization"] == "Bot bot.token"


def test_channel_messages_use_the_bot_token() -> None:
    message = Message(embeds=(Embed(title="t"),))
    post = create_message("645027906669510667", message)
    assert (post.method, post.path, post.bot_auth) == ("POST", "/channels/645027906669510667/messages", True)
    assert post.json == message.to_json()
    assert post.route.major == "channels/645027906669510667"
    assert post.route.global_limited
    patch = edit_message("645027906669510667", "999", Message(content="x"))
    assert (patch.method, patch.path) == ("PATCH", "/channels/645027906669510667/messages/999")
    assert patch.route.major == post.route.major


def test_interaction_routes_need_no_bot_token_and_are_exempt_from_the_global_limit() -> None:
    requests = [
        interaction_callback("786008729715212338", TOKEN, {"type": 5}),
        edit_original("456", TOKEN, Message(content="done")),
        delete_original("456", TOKEN),
        create_followup("456", TOKEN, Message(content="more", ephemeral=True)),
    ]
    paths = [
        f"/interactions/786008729715212338/{TOKEN}/callback",
        f"/webhooks/456/{TOKEN}/messages/@original",
        f"/webhooks/456/{TOKEN}/messages/@original",
        f"/webhooks/456/{TOKEN}",
    ]
    assert [r.path for r in requests] == paths
    assert [r.method for r in requests] == ["POST", "PATCH", "DELETE", "POST"]
    for r in requests:
        assert not r.bot_auth
        assert not r.route.global_limited
        assert TOKEN not in repr(r)
        assert TOKEN not in r.route.name
    assert requests[0].json == {"type": 5}
    assert requests[2].json is None


def test_the_reference_follow_up_edit() -> None:
    message = Message(embeds=(Embed(title="Prompt sent", description="ses_df2c… is busy", color=3381759),))
    request = edit_original("456", "A_UNIQUE_TOKEN", message)
    assert request.path == "/webhooks/456/A_UNIQUE_TOKEN/messages/@original"
    assert request.json == {
        "allowed_mentions": {"parse": []},
        "embeds": [{"title": "Prompt sent", "description": "ses_df2c… is busy", "color": 3381759}],
    }


def test_an_edit_drops_the_ephemeral_flag_but_a_followup_keeps_it() -> None:
    edit = edit_original("456", TOKEN, Message(content="x", ephemeral=True)).json
    assert isinstance(edit, dict)
    assert "flags" not in edit
    more = create_followup("456", TOKEN, Message(content="x", ephemeral=True)).json
    assert isinstance(more, dict)
    assert more["flags"] == 64


def test_gateway_bot() -> None:
    request = get_gateway_bot()
    assert (request.method, request.path, request.bot_auth) == ("GET", "/gateway/bot", True)


@pytest.mark.parametrize("bad", ["", "12a", "../1", "1/2", "1?x=2"])
def test_ids_must_be_snowflakes(bad: str) -> None:
    with pytest.raises(ValueError, match="Discord id"):
        create_message(bad, Message(content="x"))


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a?b", "a b"])
def test_tokens_cannot_change_the_path(bad: str) -> None:
    with pytest.raises(ValueError, match="token"):
        edit_original("456", bad, Message(content="x"))
