"""Declared installs in Discord: button references, the approval alert, clicks and /approve (issue #9)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.discord.customid import (
    encode_custom_id,
    install_key,
    install_ref,
    parse_custom_id,
    parse_install_ref,
)
from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.handler import Access, HandlerContext, HandlerOptions, Reply, handle
from halswarm.channels.discord.installs import MANUAL_REQUIRED_EVENT, install_alert
from halswarm.channels.discord.interactions import OptionType, parse_interaction
from halswarm.channels.discord.messages import CUSTOM_ID_MAX, Message
from halswarm.channels.discord.responses import CallbackType
from halswarm.channels.discord.service import event_alert
from halswarm.models import Event
from tests.channels.discord import support as s

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

FEW = settings(max_examples=60, deadline=None, database=None)
OPS = Access(allowed_roles=frozenset({s.OPS_ROLE}))
STRANGER: Final = s.member("111111111111111111", roles=("222222222222222222",), username="eve")
ITEM: Final = s.pending_install()
REF: Final = install_ref(ITEM.node_id, ITEM.project, ITEM.install, s.MANIFEST_HASH)
APPROVE: Final = encode_custom_id("install", REF)
DECLINE: Final = encode_custom_id("decline", REF)
OLD_HASH: Final = "0ld0" + "0" * 60


async def run(raw: JSONObject, backend: s.FakeBackend, access: Access = OPS) -> Reply:
    return await handle(parse_interaction(raw), HandlerContext(backend, access, lambda: s.NOW, HandlerOptions()))


async def followup(reply: Reply) -> JSONObject:
    assert reply.followup is not None
    message: Message = await reply.followup()
    return message.to_json()


def private_text(reply: Reply) -> str:
    assert reply.followup is None  # nothing more happens
    assert reply.response.type is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    data = reply.response.to_json()["data"]
    assert isinstance(data, dict)
    assert data["flags"] == 64, data
    return str(data)


# ---- button references ------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=128)


@FEW
@given(node=names, project=names, install=names, manifest=st.text("0123456789abcdef", min_size=64, max_size=64))
def test_an_install_button_fits_discord_whatever_the_names(
    node: str, project: str, install: str, manifest: str
) -> None:
    ref = install_ref(node, project, install, manifest)
    for action in ("install", "decline"):
        custom_id = encode_custom_id(action, ref)
        assert len(custom_id) <= CUSTOM_ID_MAX
        assert parse_custom_id(custom_id).ref == ref
    parsed = parse_install_ref(ref)
    assert parsed.key == install_key(node, project, install)
    assert parsed.matches(manifest)


def test_the_key_is_stable_and_tells_installs_apart() -> None:
    # The same on every run (the supervisor may restart between alert and click).
    assert install_key("n1", "app", "upgrade") == "411e4e4e691c5f88"
    keys = {install_key(*t) for t in [("n1", "app", "upgrade"), ("n1", "app", "upgrad"), ("n1", "appu", "pgrade")]}
    assert len(keys) == 3  # the separator keeps ("app", "upgrade") apart from ("appu", "pgrade")


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "da9f3ec25e6b8e8e",
        "da9f3ec25e6b8e8e.",
        "da9f3ec25e6b8e8e.5a1e0123456",  # hash prefix too short
        "da9f3ec25e6b8e8e.5a1e01234567a",  # too long
        "DA9F3EC25E6B8E8E.5a1e01234567",  # upper case
        "da9f3ec25e6b8e8g.5a1e01234567",  # not hex
        "da9f3ec25e6b8e8e-5a1e01234567",
        "da9f3ec25e6b8e8e.5a1e01234567.x",
        "per_20d3aa",
    ],
)
def test_bad_install_references_are_refused(ref: str) -> None:
    with pytest.raises(PayloadError, match="not an install reference"):
        parse_install_ref(ref)


@pytest.mark.parametrize("manifest_hash", ["", "abc", "XYZ" * 30, "0123456789AB" + "0" * 52])
def test_an_install_reference_needs_a_hex_manifest_hash(manifest_hash: str) -> None:
    with pytest.raises(ValueError, match="not a manifest hash"):
        install_ref("n1", "app", "upgrade", manifest_hash)


# ---- the alert ----------------------------------------------------------------------------------


def manual_required(data: JSONObject, node_id: str = "build-01") -> Event:
    return Event(
        id=1,
        node_id=node_id,
        seq=9,
        ts="2026-08-22T11:00:00.000000Z",
        type=MANUAL_REQUIRED_EVENT,
        project="app-backend",
        data=data,
    )


def risky(install: str, check: str = "runtime:java", command: list[JSONValue] | None = None) -> JSONObject:
    return {
        "check": check,
        "fix": "risky",
        "expected": ">=17",
        "actual": "11.0.2",
        "install": install,
        "command": command or ["sudo", "apt-get", "install", "-y", "openjdk-17-jdk"],
        "timeout_sec": 900.0,
    }


def buttons(body: JSONObject) -> list[tuple[str, str]]:
    rows = body.get("components", [])
    assert isinstance(rows, list)
    return [
        (str(b["label"]), str(b["custom_id"]))
        for r in rows
        if isinstance(r, dict) and isinstance(r["components"], list)
        for b in r["components"]
        if isinstance(b, dict)
    ]


def test_the_alert_offers_approve_and_decline_per_declared_install() -> None:
    manual: list[JSONValue] = [
        risky("jdk17"),
        {"check": "git:remote", "fix": "manual", "expected": "git@x:y.git", "actual": "none"},
    ]
    body = install_alert(
        manual_required({"project": "app-backend", "manual": manual, "manifest_hash": s.MANIFEST_HASH}),
        manifest_hash=None,
    ).to_json()
    assert buttons(body) == [("Approve install jdk17", APPROVE), ("Decline jdk17", DECLINE)]
    text = str(body["embeds"])
    assert "sudo apt-get install -y openjdk-17-jdk" in text  # what an approval runs, exactly
    assert "timeout 900s" in text
    assert "git:remote (manual)" in text
    assert "🛠️ app-backend: approval needed" in text


def test_the_alert_falls_back_to_the_supervisor_s_manifest_hash() -> None:
    # Agents before this version send no hash with the event.
    event = manual_required({"project": "app-backend", "manual": [risky("jdk17")]})
    assert buttons(install_alert(event, manifest_hash=s.MANIFEST_HASH).to_json())[0][1] == APPROVE
    without = install_alert(event, manifest_hash=None).to_json()
    assert buttons(without) == []
    assert "Nothing here can be approved from Discord" in str(without["embeds"])
    # event_alert (the router's path) renders the same.
    assert event_alert(event, None, now=s.NOW, manifest_hash=s.MANIFEST_HASH) == install_alert(
        event, manifest_hash=s.MANIFEST_HASH
    )


def test_many_installs_fit_the_message_limits() -> None:
    long_name = "i" * 120
    manual: list[JSONValue] = [risky(f"{long_name}{n}", check=f"tool:t{n}") for n in range(8)]
    manual.append(risky(f"{long_name}0", check="tool:again"))  # the same install twice: one row
    manual.append(risky("quote", command=["sh", "-c", "echo `id`"]))
    event = manual_required({"project": "app-backend", "manual": manual, "manifest_hash": s.MANIFEST_HASH}, "n" * 128)
    body = install_alert(event, manifest_hash=None).to_json()  # raises on a bad custom_id
    found = buttons(body)
    assert len(found) == 10  # five rows, Discord's maximum
    assert all(len(custom_id) <= CUSTOM_ID_MAX for _, custom_id in found)
    embeds = body["embeds"]
    assert isinstance(embeds, list)
    assert isinstance(embeds[0], dict)
    fields = embeds[0]["fields"]
    assert isinstance(fields, list)
    quoted = next(f for f in fields if isinstance(f, dict) and f["name"] == "runtime:java → install quote")
    # A backtick would end the code span early: shown as a quote instead.
    assert str(quoted["value"]).startswith("`sh -c 'echo 'id''` (timeout 900s)")


# ---- clicks ---------------------------------------------------------------------------------------


async def test_approve_defers_then_runs_through_the_approval_path_and_edits_the_alert() -> None:
    backend = s.FakeBackend()
    reply = await run(s.click(APPROVE, interaction_id="777"), backend)
    assert reply.response.to_json() == {"type": 6}
    assert backend.approved == []  # nothing runs before the answer
    body = await followup(reply)
    assert backend.approved == [(ITEM, f"discord:{s.ANA}", "discord:777")]
    assert backend.submitted == []  # never through the generic command path
    assert body["content"] == (
        f"✅ Install by <@{s.ANA}>: ok — `jdk17` on build-01/app-backend exited 0; the project is now ready"
    )
    assert body["components"] == []


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [
        (3, "❌ Install by <@{}>: failed — `jdk17` on build-01/app-backend exited 3"),
        (None, "⌛ Install by <@{}>: timed out"),
    ],
)
async def test_a_failed_install_keeps_the_buttons(exit_code: int | None, expected: str) -> None:
    backend = s.FakeBackend(install_exit=exit_code)
    body = await followup(await run(s.click(APPROVE), backend))
    assert str(body["content"]).startswith(expected.format(s.ANA)), body
    assert "components" not in body  # for another try


async def test_an_approval_refused_by_the_supervisor_says_why_on_the_alert() -> None:
    backend = s.FakeBackend(install_refusal="install 'jdk17' is already running on build-01")
    body = await followup(await run(s.click(APPROVE), backend))
    assert body["content"] == f"❌ <@{s.ANA}>: install 'jdk17' is already running on build-01"
    assert "components" not in body


async def test_decline_records_and_closes_the_alert() -> None:
    backend = s.FakeBackend()
    body = await followup(await run(s.click(DECLINE), backend))
    assert backend.declined == [(ITEM, f"discord:{s.ANA}", None)]
    assert backend.approved == []
    assert body["content"] == f"🚫 Decline by <@{s.ANA}>: install `jdk17` on build-01/app-backend will not run"
    assert body["components"] == []


@pytest.mark.parametrize("custom_id", [APPROVE, DECLINE])
async def test_a_stranger_is_refused_and_audited_with_the_install_named(custom_id: str) -> None:
    backend = s.FakeBackend()
    text = private_text(await run(s.click(custom_id, who=STRANGER), backend))
    assert "not allowed to run this button" in text
    (note,) = backend.audits
    action = parse_custom_id(custom_id).action
    assert (note.action, note.target, note.outcome) == (f"discord.button.{action}", "build-01/app-backend", "refused")
    assert note.detail["install"] == "jdk17"
    assert note.actor == "discord:111111111111111111"
    assert (backend.approved, backend.declined) == ([], [])


async def test_a_stale_button_is_answered_privately_and_runs_nothing() -> None:
    changed = s.FakeBackend(installs_=[attrs.evolve(ITEM, manifest_hash=OLD_HASH)])
    assert "manifest changed since this was offered (`5a1e01234567` then, `0ld000000000` now)" in private_text(
        await run(s.click(APPROVE), changed)
    )
    gone = s.FakeBackend(installs_=[])
    assert "no longer declared" in private_text(await run(s.click(APPROVE), gone))
    offline = s.FakeBackend(nodes_=[attrs.evolve(s.node(), status="offline")])
    assert "Node `build-01` is offline" in private_text(await run(s.click(APPROVE), offline))
    broken = s.FakeBackend()
    assert "not an install awaiting approval" in private_text(
        await run(s.click(encode_custom_id("install", "per_20d3aa")), broken)
    )
    for backend in (changed, gone, offline, broken):
        assert (backend.approved, backend.declined, backend.audits) == ([], [], [])


async def test_declining_needs_no_online_node() -> None:
    offline = s.FakeBackend(nodes_=[attrs.evolve(s.node(), status="offline")])
    await followup(await run(s.click(DECLINE), offline))
    assert len(offline.declined) == 1


async def test_a_stranger_s_refusal_of_an_unknown_install_names_the_button() -> None:
    backend = s.FakeBackend(installs_=[])
    private_text(await run(s.click(APPROVE, who=STRANGER), backend))
    (note,) = backend.audits
    assert note.target == REF


# ---- /approve and /deny ------------------------------------------------------------------------


async def test_approve_accepts_an_install_choice() -> None:
    backend = s.FakeBackend()
    reply = await run(s.slash("approve", [s.option("request", f"install:{REF}")], interaction_id="55"), backend)
    assert reply.response.to_json() == {"type": 5}
    assert backend.approved == []
    body = await followup(reply)
    assert backend.approved == [(ITEM, f"discord:{s.ANA}", "discord:55")]
    embeds = body["embeds"]
    assert isinstance(embeds, list)
    assert isinstance(embeds[0], dict)
    assert embeds[0]["title"] == "✅ Install build-01: ok"


async def test_deny_declines_an_install_with_the_reason() -> None:
    backend = s.FakeBackend()
    options: list[JSONValue] = [s.option("request", f"install:{REF}"), s.option("reason", "not on a Friday")]
    body = await followup(await run(s.slash("deny", options), backend))
    assert backend.declined == [(ITEM, f"discord:{s.ANA}", "not on a Friday")]
    assert "🚫 Install jdk17 on build-01/app-backend: declined" in str(body)
    assert "not on a Friday" in str(body)


async def test_install_choices_are_checked_like_buttons() -> None:
    stale = s.FakeBackend(installs_=[attrs.evolve(ITEM, manifest_hash=OLD_HASH)])
    assert "manifest changed" in private_text(
        await run(s.slash("approve", [s.option("request", f"install:{REF}")]), stale)
    )
    typo = s.FakeBackend()
    assert "not an install awaiting approval" in private_text(
        await run(s.slash("approve", [s.option("request", "install:jdk17")]), typo)
    )
    always: list[JSONValue] = [s.option("request", f"install:{REF}"), s.option("always", True, OptionType.BOOLEAN)]
    assert "`always` applies to permission requests" in private_text(await run(s.slash("approve", always), typo))
    stranger = await run(s.slash("approve", [s.option("request", f"install:{REF}")], who=STRANGER), typo)
    assert "not allowed to run /approve" in private_text(stranger)
    assert (typo.approved, stale.approved) == ([], [])


async def test_autocomplete_offers_installs_awaiting_approval() -> None:
    backend = s.FakeBackend()
    reply = await run(s.autocomplete("approve", [s.option("request", "jdk", focused=True)]), backend)
    data = reply.response.to_json()["data"]
    assert isinstance(data, dict)
    assert data["choices"] == [
        {"name": "install jdk17 on build-01/app-backend (fixes runtime:java)", "value": f"install:{REF}"}
    ]
