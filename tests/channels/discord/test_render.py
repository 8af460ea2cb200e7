"""Alerts, answers and their limits (provider-apis.md §3.3), and button ids."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.discord.customid import BUTTON_ACTIONS, encode_custom_id, parse_custom_id
from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.interactions import Actor, User
from halswarm.channels.discord.messages import (
    CUSTOM_ID_MAX,
    ActionRow,
    Button,
    Embed,
    EmbedField,
    Message,
    text_length,
    truncate,
)
from halswarm.channels.discord.render import (
    click_outcome,
    command_outcome,
    error_message,
    format_duration,
    permission_alert,
    refusal_message,
    session_alert,
)
from halswarm.channels.discord.tables import cost_message, logs_message, nodes_message, status_message
from halswarm.models import Command, Event, Pending, PermissionRequest
from tests.channels.discord import support as s

if TYPE_CHECKING:
    from halswarm.channels.discord.customid import ButtonAction
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import CommandStatus, CommandType, SessionStatus

FEW = settings(max_examples=80, deadline=None, database=None)
ANA = Actor(User(s.ANA, "ana"), frozenset({s.OPS_ROLE}))


def embeds_of(body: JSONObject) -> list[JSONObject]:
    embeds = body.get("embeds", [])
    assert isinstance(embeds, list)
    out = []
    for e in embeds:
        assert isinstance(e, dict)
        out.append(e)
    return out


def embed_text_total(embed: JSONObject) -> int:
    total = 0
    for key in ("title", "description"):
        value = embed.get(key, "")
        assert isinstance(value, str)
        total += text_length(value)
    footer = embed.get("footer", {})
    assert isinstance(footer, dict)
    footer_text = footer.get("text", "")
    assert isinstance(footer_text, str)
    total += text_length(footer_text)
    fields = embed.get("fields", [])
    assert isinstance(fields, list)
    for f in fields:
        assert isinstance(f, dict)
        name, value = f["name"], f["value"]
        assert isinstance(name, str)
        assert isinstance(value, str)
        total += text_length(name) + text_length(value)
    return total


def assert_within_limits(body: JSONObject) -> None:
    """Every documented limit of a message body."""
    content = body.get("content", "")
    assert isinstance(content, str)
    assert text_length(content) <= 2000
    embeds = embeds_of(body)
    assert len(embeds) <= 10
    assert sum(embed_text_total(e) for e in embeds) <= 6000
    for e in embeds:
        title, description = e.get("title", ""), e.get("description", "")
        assert isinstance(title, str)
        assert isinstance(description, str)
        assert text_length(title) <= 256
        assert text_length(description) <= 4096
        fields = e.get("fields", [])
        assert isinstance(fields, list)
        assert len(fields) <= 25
        for f in fields:
            assert isinstance(f, dict)
            name, value = f["name"], f["value"]
            assert isinstance(name, str)
            assert isinstance(value, str)
            assert 1 <= text_length(name) <= 256
            assert 1 <= text_length(value) <= 1024
    rows = body.get("components", [])
    assert isinstance(rows, list)
    assert len(rows) <= 5
    ids: list[JSONValue] = []
    for row in rows:
        assert isinstance(row, dict)
        buttons = row["components"]
        assert isinstance(buttons, list)
        assert len(buttons) <= 5
        for b in buttons:
            assert isinstance(b, dict)
            label, custom_id = b["label"], b["custom_id"]
            assert isinstance(label, str)
            assert isinstance(custom_id, str)
            assert len(label) <= 80
            assert 1 <= len(custom_id) <= 100
            ids.append(custom_id)
    assert len(ids) == len(set(map(str, ids))), "custom ids must be unique per message"
    assert body["allowed_mentions"] == {"parse": []}


# ---- alerts ----------------------------------------------------------------------------------


def test_a_session_alert_has_the_spec_s_fields_and_buttons() -> None:
    body = session_alert(
        s.session(status="idle"), now=s.NOW, headline="Idle for 12 min.", context_limit=200_000
    ).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    assert embed["title"] == "🟡 app-backend: idle"
    assert embed["description"] == "Idle for 12 min."
    assert embed["color"] == 16763904
    assert embed["footer"] == {"text": "ses_df2c01"}
    assert embed["timestamp"] == "2026-08-22T12:00:00.000000Z"
    fields = embed["fields"]
    assert isinstance(fields, list)
    by_name = {f["name"]: f["value"] for f in fields if isinstance(f, dict)}
    assert by_name == {
        "Node": "build-01",
        "Tokens": "45,231 / 200,000 (22%)",
        "Compactions": "2",
        "Duration": "2h 12m",
        "Cost": "$0.84",
        "Current task": "Add the Discord handler",
    }
    assert body["components"] == [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 1, "label": "Resume", "custom_id": "hs1:resume:ses_df2c01", "disabled": False},
                {"type": 2, "style": 2, "label": "Restart", "custom_id": "hs1:restart:ses_df2c01", "disabled": False},
                {"type": 2, "style": 4, "label": "Kill", "custom_id": "hs1:kill:ses_df2c01", "disabled": False},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("status", "emoji", "color"),
    [("busy", "🟢", 0x2ECC71), ("error", "🔴", 0xE74C3C), ("waiting", "🙋", 0xE67E22), ("completed", "✅", 0x3498DB)],
)
def test_status_emoji_and_colour(status: SessionStatus, emoji: str, color: int) -> None:
    session = s.session(status=status)
    (embed,) = embeds_of(session_alert(session, now=s.NOW).to_json())
    assert embed["title"] == f"{emoji} app-backend: {status}"
    assert embed["color"] == color


def test_tokens_without_a_known_limit() -> None:
    (embed,) = embeds_of(session_alert(s.session(), now=s.NOW).to_json())
    fields = embed["fields"]
    assert isinstance(fields, list)
    assert {"name": "Tokens", "value": "45,231", "inline": True} in fields


def test_a_huge_task_text_is_cut_to_the_field_limit() -> None:
    body = session_alert(s.session(current_task="x" * 50_000), now=s.NOW, headline="h" * 10_000).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    description = embed["description"]
    assert isinstance(description, str)
    assert description.endswith("…")


def test_a_waiting_session_gets_approve_and_reject_per_request() -> None:
    requests = [PermissionRequest(id=f"per_{i}", permission="bash") for i in range(7)]
    session = s.session(status="waiting", pending=Pending(permissions=requests))
    body = session_alert(session, now=s.NOW).to_json()
    assert_within_limits(body)
    rows = body["components"]
    assert isinstance(rows, list)
    assert len(rows) == 5  # the session row and four requests: the rest are left for /approve
    second = rows[1]
    assert isinstance(second, dict)
    buttons = second["components"]
    assert isinstance(buttons, list)
    assert [b["custom_id"] for b in buttons if isinstance(b, dict)] == [
        "hs1:approve:per_0",
        "hs1:reject:per_0",
    ]


def test_an_alert_without_buttons() -> None:
    assert "components" not in session_alert(s.session(), now=s.NOW, buttons=False).to_json()


def test_a_permission_alert() -> None:
    session = s.waiting_session()
    body = permission_alert(session, session.pending.permissions[0], now=s.NOW).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    assert embed["title"] == "🙋 web-ui: permission asked"
    assert embed["description"] == "Run rm"
    rows = body["components"]
    assert isinstance(rows, list)
    row = rows[0]
    assert isinstance(row, dict)
    buttons = row["components"]
    assert isinstance(buttons, list)
    assert [(b["label"], b["custom_id"]) for b in buttons if isinstance(b, dict)] == [
        ("Approve bash", "hs1:approve:per_20d3aa"),
        ("Reject bash", "hs1:reject:per_20d3aa"),
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h 00m"), (90000, "1d 1h"), (-5, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# ---- outcomes --------------------------------------------------------------------------------


def command(status: CommandStatus = "succeeded", type_: CommandType = "restart_session", **result: str) -> Command:
    return Command(
        id="cmd1",
        type=type_,
        target="app-backend",
        status=status,
        result=dict(result) or None,
        args={"request_id": "per_1", "reply": "once"},
        error="node offline" if status == "failed" else None,
    )


def test_a_command_outcome() -> None:
    body = command_outcome(command(session_id="ses_new", predecessor_id="ses_old"), ANA).to_json()
    (embed,) = embeds_of(body)
    assert embed["title"] == "✅ Restart app-backend: succeeded"
    assert embed["description"] == "new session `ses_new` (was `ses_old`)"
    assert embed["footer"] == {"text": "by ana · command cmd1"}


@pytest.mark.parametrize(
    ("status", "emoji", "detail"),
    [("failed", "❌", "node offline"), ("timed_out", "⌛", "no answer from the node"), ("sent", "⏳", "still sent")],
)
def test_outcomes_that_did_not_succeed(status: CommandStatus, emoji: str, detail: str) -> None:
    (embed,) = embeds_of(command_outcome(command(status), ANA).to_json())
    title, description = embed["title"], embed["description"]
    assert isinstance(title, str)
    assert isinstance(description, str)
    assert title.startswith(emoji)
    assert description.startswith(detail)


def test_a_click_outcome_clears_the_buttons_only_on_success() -> None:
    ok = click_outcome(command(type_="reply_permission"), ANA).to_json()
    assert ok["content"] == f"✅ Permission reply by <@{s.ANA}>: succeeded — permission `per_1` approved (once)"
    assert ok["components"] == []
    assert "embeds" not in ok  # the alert's embed stays as it was
    failed = click_outcome(command("failed"), ANA).to_json()
    assert "components" not in failed


def test_refusal_and_error_messages_are_private() -> None:
    refusal = refusal_message(ANA, "/kill").to_json()
    assert refusal["flags"] == 64
    content = refusal["content"]
    assert isinstance(content, str)
    assert "not allowed to run /kill" in content
    assert error_message("boom").to_json()["flags"] == 64
    assert "flags" not in error_message("boom", ephemeral=False).to_json()


# ---- tables ----------------------------------------------------------------------------------


def test_status_lists_sessions_and_counts_them() -> None:
    body = status_message([s.session(), s.waiting_session()], now=s.NOW).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    description = embed["description"]
    assert isinstance(description, str)
    assert description.startswith("```\n")
    assert "ses_df2c01" in description
    assert "2m ago" in description
    assert embed["footer"] == {"text": "2 sessions: 1 busy, 1 waiting"}


def test_status_with_no_sessions() -> None:
    (embed,) = embeds_of(status_message([], now=s.NOW, project="x").to_json())
    assert embed["description"] == "No sessions for project x."


def test_status_of_a_thousand_sessions_is_cut_and_says_so() -> None:
    sessions = [s.session(f"ses_{i:06d}", f"project-with-a-long-name-{i}") for i in range(1000)]
    body = status_message(sessions, now=s.NOW).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    description = embed["description"]
    assert isinstance(description, str)
    assert "more" in description.splitlines()[-1]
    assert embed["footer"] == {"text": "1000 sessions: 1000 busy"}


def test_agent_text_cannot_break_out_of_the_code_block() -> None:
    body = status_message([s.session(project="a```b")], now=s.NOW).to_json()
    (embed,) = embeds_of(body)
    description = embed["description"]
    assert isinstance(description, str)
    assert description.count("```") == 2


def test_nodes() -> None:
    body = nodes_message([s.node(), s.node("build-02")], now=s.NOW).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    assert embed["footer"] == {"text": "2 of 2 online"}
    assert "10s ago" in str(embed["description"])
    assert embeds_of(nodes_message([], now=s.NOW).to_json())[0]["description"] == "No nodes have connected yet."


def test_logs_keep_the_newest_events_when_cut() -> None:
    events = [
        Event(
            id=i,
            node_id="n",
            seq=i,
            ts=f"2026-08-22T11:00:{i % 60:02d}.000000Z",
            type="session.error",
            data={"error": f"e{i} " + "x" * 200},
        )
        for i in range(500)
    ]
    body = logs_message("app-backend", events).to_json()
    assert_within_limits(body)
    description = str(embeds_of(body)[0]["description"])
    assert "e499" in description
    assert "e0 " not in description
    assert description.splitlines()[-1].endswith("earlier")


def test_cost_groups_by_provider_then_model() -> None:
    body = cost_message(s.cost_report()).to_json()
    assert_within_limits(body)
    (embed,) = embeds_of(body)
    assert embed["title"] == "Cost: today (2026-08-22)"
    description = embed["description"]
    assert isinstance(description, str)
    assert "Total $12.50" in description
    fields = embed["fields"]
    assert isinstance(fields, list)
    first = fields[0]
    assert isinstance(first, dict)
    assert first["name"] == "anthropic: $10.00"
    assert str(first["value"]).startswith("claude-sonnet-4: $10.00")
    assert "openai: polling fails" in str(embed["footer"])


def test_cost_with_many_providers_stays_within_limits() -> None:
    report = s.cost_report()
    many = [report.providers[0]] * 60
    body = cost_message(attrs.evolve(report, providers=many)).to_json()
    assert_within_limits(body)
    fields = embeds_of(body)[0]["fields"]
    assert isinstance(fields, list)
    assert len(fields) == 25


# ---- limits enforced by Message.to_json --------------------------------------------------------


texts = st.text(max_size=5000)  # no lone surrogates: JSON cannot carry them


@FEW
@given(
    title=texts,
    description=st.text(max_size=9000),
    fields=st.lists(st.tuples(texts, texts), max_size=40),
    footer=texts,
    embeds=st.integers(1, 14),
)
def test_any_embeds_fit_every_limit(
    title: str, description: str, fields: list[tuple[str, str]], footer: str, embeds: int
) -> None:
    embed = Embed(title, description, 1, tuple(EmbedField(n, v) for n, v in fields), footer)
    assert_within_limits(Message(content=description, embeds=(embed,) * embeds).to_json())


@FEW
@given(text=st.text(max_size=300), limit=st.integers(1, 300))
def test_truncate(text: str, limit: int) -> None:
    cut = truncate(text, limit)
    assert text_length(cut) <= limit
    if text_length(text) <= limit:
        assert cut == text
    else:
        assert cut.endswith("…")
        assert text.startswith(cut[:-1])


def test_truncate_never_splits_an_emoji() -> None:
    assert truncate("🟢🟢🟢", 4) == "🟢…"
    assert truncate("🟢🟢🟢", 2) == "…"


def test_a_custom_id_over_100_characters_is_a_bug() -> None:
    with pytest.raises(ValueError, match="custom_id"):
        Message(components=(ActionRow((Button("x", "x" * 101),)),)).to_json()


def test_repeated_custom_ids_are_a_bug() -> None:
    with pytest.raises(ValueError, match="unique"):
        Message(components=(ActionRow((Button("a", "same"), Button("b", "same"))),)).to_json()


# ---- custom ids ------------------------------------------------------------------------------

refs = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"), min_size=1, max_size=88
)


@FEW
@given(action=st.sampled_from(BUTTON_ACTIONS), ref=refs)
def test_custom_id_round_trip(action: ButtonAction, ref: str) -> None:
    custom_id = encode_custom_id(action, ref)
    assert len(custom_id) <= CUSTOM_ID_MAX
    parsed = parse_custom_id(custom_id)
    assert (parsed.action, parsed.ref) == (action, ref)


@FEW
@given(text=st.text(max_size=120))
def test_parse_custom_id_raises_only_payload_errors(text: str) -> None:
    try:
        parsed = parse_custom_id(text)
    except PayloadError:
        return
    assert encode_custom_id(parsed.action, parsed.ref) == text


@pytest.mark.parametrize(
    "custom_id",
    [
        "approve:per_20d3",
        "hs2:kill:ses_1",
        "hs1:explode:ses_1",
        "hs1:kill:",
        "hs1:kill:a b",
        "hs1:kill:a:b",
        "hs1:kill",
    ],
)
def test_foreign_or_broken_custom_ids_are_refused(custom_id: str) -> None:
    with pytest.raises(PayloadError, match="custom_id"):
        parse_custom_id(custom_id)


@pytest.mark.parametrize("ref", ["", "a b", "a:b", "x" * 90, "ses_ü"])
def test_encode_refuses_refs_that_cannot_round_trip(ref: str) -> None:
    with pytest.raises(ValueError, match="button reference"):
        encode_custom_id("kill", ref)


def test_durations_use_the_injected_clock() -> None:
    later = s.NOW + dt.timedelta(days=2)
    (embed,) = embeds_of(session_alert(s.session(), now=later).to_json())
    fields = embed["fields"]
    assert isinstance(fields, list)
    assert {"name": "Duration", "value": "2d 2h", "inline": True} in fields
