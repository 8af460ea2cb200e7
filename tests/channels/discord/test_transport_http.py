"""The interactions endpoint against a live supervisor, a simulated agent and a fake Discord."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from halswarm.channels.discord.commands import command_payloads
from halswarm.channels.discord.customid import encode_custom_id
from halswarm.channels.discord.render import session_alert
from halswarm.models import Event
from halswarm.testing import wait_until
from tests.channels.discord import support as s
from tests.channels.discord.fake_discord import BOT_TOKEN
from tests.channels.discord.live import ALERTS, Live, fresh, open_live

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import Session

STRANGER = s.member(user_id="111111111111111111", roles=(), username="mallory")


def title(body: JSONObject) -> str:
    embeds = body["embeds"]
    assert isinstance(embeds, list)
    assert embeds
    first = embeds[0]
    assert isinstance(first, dict)
    return str(first.get("title", ""))


def live_session(live: Live) -> Session:
    for session in live.supervisor.tracker.sessions():
        if session.status != "completed":
            return session
    raise AssertionError("no live session")


async def slash_edit(live: Live, name: str, options: list[JSONValue]) -> JSONObject:
    """Run an agent command: deferred at once, then the outcome edits the original."""
    payload, token = fresh(s.slash(name, options))
    response = await live.post(payload)
    assert response.status_code == 200
    assert response.json() == {"type": 5}
    call = await live.edit_of(token)
    assert call.authorization is None  # the interaction token is the credential
    assert isinstance(call.json, dict)
    return call.json


async def test_signatures_are_checked_before_anything(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        pong = await live.post(fresh(s.ping())[0])
        assert pong.status_code == 200
        assert pong.json() == {"type": 1}
        assert pong.headers["content-type"].startswith("application/json")
        stranger = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        forged = await live.post(fresh(s.ping())[0], key=stranger)
        stale = await live.post(fresh(s.ping())[0], timestamp="1000000000")
        unsigned = await live.http.post("/discord/interactions", content=b'{"type": 1}')
        for refused in (forged, stale, unsigned):
            assert refused.status_code == 401
            assert refused.content == b""
        metrics = (await live.http.get("/metrics")).text
        assert 'hal_o_swarm_auth_failures_total{listener="discord"} 3.0' in metrics
        # No bearer token needed here; still needed under /api/.
        assert (await live.http.get("/api/v1/sessions")).status_code == 401


async def test_commands_are_registered_by_bulk_overwrite_at_start(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        service = live.supervisor.discord
        assert service is not None
        with trio.fail_after(10):
            await service.commands_registered.wait()
        calls = live.fake.rest.calls_to("PUT", f"/applications/{s.APP_ID}/guilds/{s.GUILD_ID}/commands")
        assert len(calls) == 1
        assert calls[0].authorization == f"Bot {BOT_TOKEN}"
        assert calls[0].json == command_payloads()


async def test_read_commands_answer_at_once(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        session = live_session(live)
        reads: tuple[tuple[str, list[JSONValue]], ...] = (
            ("status", []),
            ("status", [s.option("project", session.project)]),
            ("nodes", []),
            ("logs", [s.option("target", session.id), s.option("count", 5, 4)]),
            ("cost", [s.option("period", "week")]),
        )
        for name, options in reads:
            response = await live.post(fresh(s.slash(name, options))[0])
            assert response.status_code == 200, name
            body = response.json()
            assert body["type"] == 4, name
            assert body["data"]["flags"] == 64, name  # private to the asker
            assert body["data"]["embeds"], name
        nodes = await live.post(fresh(s.slash("nodes"))[0])
        assert "node-1" in str(nodes.json())
        missing = await live.post(fresh(s.slash("logs", [s.option("target", "nope")]))[0])
        assert "no session or project named 'nope'" in str(missing.json())
        metrics = (await live.http.get("/metrics")).text
        answered = len(reads) + 2
        assert f'hal_o_swarm_discord_interactions_total{{answer="immediate",kind="command"}} {answered:.1f}' in metrics


async def test_agent_commands_run_and_edit_the_reply(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        session = live_session(live)
        injected = await slash_edit(
            live, "inject", [s.option("project", session.project), s.option("message", "run the tests")]
        )
        assert title(injected).startswith("✅"), injected
        assert title(injected).endswith(f"{session.project}: succeeded"), injected
        resumed = await slash_edit(live, "resume", [s.option("project", session.project)])
        assert title(resumed).endswith(": succeeded"), resumed
        killed = await slash_edit(live, "kill", [s.option("target", session.id)])
        assert title(killed).endswith(f"{session.id}: succeeded"), killed
        await wait_until(
            lambda: (live.supervisor.tracker.get(session.id) or session).status == "completed", what="killed"
        )
        audit = (await live.api.get("/api/v1/audit", params={"actor": f"discord:{s.ANA}"})).json()["audit"]
        actions = {row["action"] for row in audit}
        assert {"command.prompt_session", "command.resume_session", "command.kill_session"} <= actions
        assert all(row["source"] == "discord" for row in audit)


async def test_approve_and_an_unauthorized_user_is_refused_and_audited(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        tracker = live.supervisor.tracker
        await wait_until(
            lambda: any(x.pending.permissions for x in tracker.sessions()), within=20, what="a permission request"
        )
        waiting = next(x for x in tracker.sessions() if x.pending.permissions)
        request_id = waiting.pending.permissions[0].id

        refused = await live.post(fresh(s.slash("approve", [s.option("request", request_id)], who=STRANGER))[0])
        assert refused.status_code == 200
        body = refused.json()
        assert body["type"] == 4
        assert body["data"]["flags"] == 64
        denied_read = await live.post(fresh(s.slash("status", who=STRANGER))[0])
        assert denied_read.json()["type"] == 4
        audit = (await live.api.get("/api/v1/audit", params={"actor": "discord:111111111111111111"})).json()["audit"]
        assert {(row["action"], row["outcome"], row["source"]) for row in audit} == {
            ("discord.approve", "refused", "discord"),
            ("discord.status", "refused", "discord"),
        }

        approved = await slash_edit(live, "approve", [s.option("request", request_id)])
        assert title(approved).endswith(f"{waiting.id}: succeeded"), approved
        assert f"permission `{request_id}` approved (once)" in str(approved), approved
        audit = (await live.api.get("/api/v1/audit", params={"actor": f"discord:{s.ANA}"})).json()["audit"]
        assert any(row["action"] == "command.reply_permission" for row in audit)


async def test_a_button_click_runs_the_command_and_edits_the_alert(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        service = live.supervisor.discord
        assert service is not None
        session = live_session(live)
        message_id = await service.post_alert(ALERTS, session_alert(session, now=s.NOW, headline="Idle."))
        assert message_id is not None
        posted = live.fake.rest.calls_to("POST", f"/channels/{s.CHANNEL_ID}/messages")
        assert posted
        assert posted[0].authorization == f"Bot {BOT_TOKEN}"
        assert await service.post_alert("nowhere", session_alert(session, now=s.NOW)) is None

        payload, token = fresh(s.click(encode_custom_id("kill", session.id)))
        payload["message"] = {**payload["message"], "id": message_id}  # type: ignore[dict-item]
        response = await live.post(payload)
        assert response.json() == {"type": 6}  # deferred update, then the edit
        edit = await live.edit_of(token)
        assert isinstance(edit.json, dict)
        assert "succeeded" in str(edit.json["content"]), edit.json
        assert edit.json["components"] == []  # done: the buttons go
        assert "flags" not in edit.json
        await wait_until(
            lambda: (live.supervisor.tracker.get(session.id) or session).status == "completed", what="killed"
        )
        assert await service.edit_alert(ALERTS, message_id, session_alert(session, now=s.NOW, buttons=False))
        assert live.fake.rest.calls_to("PATCH", f"/channels/{s.CHANNEL_ID}/messages/{message_id}")


async def test_routed_events_are_posted_as_alerts(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        service = live.supervisor.discord
        assert service is not None
        session = live_session(live)
        error = Event(
            id=1,
            node_id="node-1",
            seq=7,
            ts="2026-08-22T11:00:00.000000Z",
            type="session.error",
            session_id=session.id,
            project=session.project,
            data={"error": "rate limited by the provider"},
        )
        assert await service.post_event(ALERTS, error)
        orphan = attrs.evolve(error, session_id="ses_gone", project=None, type="node.offline", data={"reason": "x"})
        assert await service.post_event(ALERTS, orphan)
        assert not await service.post_event("nowhere", error)
        alert, plain = (c.obj for c in live.fake.rest.calls_to("POST", f"/channels/{s.CHANNEL_ID}/messages"))
        assert f" {session.project}: " in title(alert)  # the session's alert (its status may have moved on)
        assert "rate limited by the provider" in str(alert["embeds"])
        assert encode_custom_id("kill", session.id) in str(alert["components"])
        assert title(plain) == "📣 node.offline"
        assert "components" not in plain
