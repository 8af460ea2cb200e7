"""/restart, /start, /deny and autocomplete against a live supervisor, agent and fake Discord.

Each test goes through the interactions endpoint like Discord does and checks what a user
would see: the immediate answer, and for agent commands the edit of the deferred reply.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from halswarm.testing import wait_until
from tests.channels.discord import support as s
from tests.channels.discord.live import Live, fresh, open_live
from tests.channels.discord.test_transport_http import STRANGER, live_session, slash_edit, title

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import PermissionRequest, Session

_NEW_SESSION = re.compile(r"new session `(ses_[0-9a-f]+)`")
_DENY_ATTEMPTS = 3  # the simulated human may answer a request first; bounded retries


def embed(body: JSONObject) -> dict[str, JSONValue]:
    embeds = body["embeds"]
    assert isinstance(embeds, list)
    assert embeds
    first = embeds[0]
    assert isinstance(first, dict)
    return first


def description(body: JSONObject) -> str:
    return str(embed(body).get("description", ""))


def command_id(body: JSONObject) -> str:
    """The command id the outcome's footer shows (``by ana · command <id>``)."""
    footer = embed(body).get("footer")
    assert isinstance(footer, dict), body
    found = re.search(r"command (\S+)$", str(footer.get("text", "")))
    assert found is not None, footer
    return found.group(1)


async def command_record(live: Live, body: JSONObject) -> JSONObject:
    """The supervisor's record of the command an outcome edit names."""
    response = await live.api.get(f"/api/v1/commands/{command_id(body)}")
    assert response.status_code == 200, response.text
    record = response.json()["command"]
    assert isinstance(record, dict)
    return record


async def suggest(
    live: Live, name: str, options: list[JSONValue], *, who: JSONObject | None = None
) -> list[JSONObject]:
    """Autocomplete for /name: answered at once with type 8; returns the choices."""
    response = await live.post(fresh(s.autocomplete(name, options, who=who))[0])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == 8, body
    choices = body["data"]["choices"]
    assert isinstance(choices, list)
    return choices


def projects(live: Live) -> set[str]:
    return {x.project for x in live.supervisor.tracker.sessions()}


def pending_requests(live: Live) -> list[tuple[Session, PermissionRequest]]:
    """Pending permission requests, the newest first (the simulated human answers old ones)."""
    found = [(x, p) for x in live.supervisor.tracker.sessions() for p in x.pending.permissions]
    found.sort(key=lambda sp: sp[1].asked_at or "", reverse=True)
    return found


async def test_restart_replaces_the_session_and_edits_the_reply(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        old = live_session(live)
        restarted = await slash_edit(live, "restart", [s.option("target", old.id)])
        assert title(restarted) == f"✅ Restart {old.id}: succeeded", restarted
        assert f"(was `{old.id}`)" in description(restarted), restarted
        found = _NEW_SESSION.search(description(restarted))
        assert found is not None, restarted
        new_id = found.group(1)
        assert new_id != old.id

        record = await command_record(live, restarted)
        assert record["type"] == "restart_session"
        assert record["status"] == "succeeded"
        assert record["source"] == "discord"
        assert record["actor"] == f"discord:{s.ANA}"
        assert record["result"] == {"session_id": new_id, "predecessor_id": old.id, "handover": True}

        tracker = live.supervisor.tracker
        await wait_until(lambda: tracker.get(new_id) is not None, what="the successor in the tracker")
        successor = tracker.get(new_id)
        assert successor is not None
        assert successor.project == old.project
        assert successor.predecessor_id == old.id
        await wait_until(lambda: (tracker.get(old.id) or old).status == "completed", what="the original ended")

        # /status shows the successor (ids are cut to the table's column) and the ended original.
        status = (await live.post(fresh(s.slash("status", [s.option("project", old.project)]))[0])).json()
        assert new_id[:12] in description(status["data"]), status
        assert "1 completed" in str(embed(status["data"])["footer"]), status


async def test_start_creates_a_session_for_the_project(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        tracker = live.supervisor.tracker
        project = live_session(live).project
        before = {x.id for x in tracker.sessions()}
        started = await slash_edit(
            live, "start", [s.option("project", project), s.option("prompt", "write the changelog")]
        )
        assert title(started) == f"✅ Start {project}: succeeded", started
        found = _NEW_SESSION.search(description(started))
        assert found is not None, started
        new_id = found.group(1)
        assert new_id not in before

        record = await command_record(live, started)
        assert record["type"] == "start_session"
        assert record["status"] == "succeeded"
        assert record["args"] == {"prompt": "write the changelog", "model": None, "agent": None}
        assert record["result"] == {"session_id": new_id}

        await wait_until(lambda: tracker.get(new_id) is not None, what="the new session in the tracker")
        created = tracker.get(new_id)
        assert created is not None
        assert created.project == project
        assert created.status != "completed"

        # Without a prompt it works too; an unknown project is refused in words.
        bare = await slash_edit(live, "start", [s.option("project", project)])
        assert title(bare) == f"✅ Start {project}: succeeded", bare
        unknown = await slash_edit(live, "start", [s.option("project", "no-such-project")])
        assert title(unknown) == "❌ Failed", unknown
        assert "no node hosts a project named 'no-such-project'" in description(unknown), unknown
        assert "flags" not in unknown  # the deferred reply was public; so is its edit


async def test_deny_rejects_a_pending_request(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        tracker = live.supervisor.tracker
        denied: JSONObject | None = None
        waiting: Session | None = None
        request_id = ""
        for _ in range(_DENY_ATTEMPTS):
            await wait_until(lambda: bool(pending_requests(live)), within=20, what="a permission request")
            waiting, request = pending_requests(live)[0]
            request_id = request.id
            # Only an exact id answers a request: a prefix could hit one that came later.
            prefix = request_id[: len(request_id) // 2]
            partial = await slash_edit(live, "deny", [s.option("request", prefix)])
            assert f"no session is waiting on permission request {prefix!r}" in description(partial), partial
            denied = await slash_edit(
                live, "deny", [s.option("request", request_id), s.option("reason", "not on the build box")]
            )
            if title(denied).endswith(": succeeded"):
                break
            # Only acceptable failure: the simulated human answered it first.
            assert "answered already" in description(denied) or "no pending permission" in description(denied)
        assert denied is not None
        assert waiting is not None
        assert title(denied) == f"✅ Permission reply {waiting.id}: succeeded", denied
        assert f"permission `{request_id}` rejected" in description(denied), denied

        record = await command_record(live, denied)
        assert record["type"] == "reply_permission"
        assert record["args"] == {"request_id": request_id, "reply": "reject", "message": "not on the build box"}

        def gone() -> bool:
            current = tracker.get(waiting.id)
            return current is not None and all(p.id != request_id for p in current.pending.permissions)

        await wait_until(gone, what="the request answered")
        # Denying it again, or a request that never existed, says so.
        again = await slash_edit(live, "deny", [s.option("request", request_id)])
        assert title(again) == "❌ Failed", again
        assert f"no session is waiting on permission request {request_id!r} (answered already?)" in description(again)
        nope = await slash_edit(live, "deny", [s.option("request", "per_nope")])
        assert "no session is waiting on permission request 'per_nope'" in description(nope), nope
        audit = (await live.api.get("/api/v1/audit", params={"actor": f"discord:{s.ANA}"})).json()["audit"]
        assert any(row["action"] == "command.reply_permission" for row in audit)


async def test_autocomplete_suggests_live_projects_sessions_and_requests(tmp_path: Path) -> None:
    async with open_live(tmp_path) as live:
        names = projects(live)
        assert names
        every = await suggest(live, "start", [s.option("project", "", focused=True)])
        assert {c["value"] for c in every} == names
        assert all(c["name"] == c["value"] for c in every)

        one = sorted(names)[-1]
        narrowed = await suggest(live, "resume", [s.option("project", one, focused=True)])
        assert narrowed[0]["value"] == one
        assert {c["value"] for c in narrowed} <= names

        session = live_session(live)
        targets = await suggest(live, "restart", [s.option("target", session.id[:10], focused=True)])
        assert targets[0]["value"] == session.id, targets
        assert str(targets[0]["name"]).startswith(f"{session.id} ({session.project}, ")
        all_targets = {c["value"] for c in await suggest(live, "kill", [s.option("target", "", focused=True)])}
        assert names | {x.id for x in live.supervisor.tracker.sessions() if x.status != "completed"} <= all_targets

        # The other options given so far do not matter; the focused one does.
        typed = one[:3]
        with_prompt = await suggest(
            live, "start", [s.option("project", typed, focused=True), s.option("prompt", "hello")]
        )
        assert {c["value"] for c in with_prompt} <= names
        assert with_prompt

        requests: list[JSONObject] = []

        async def suggested() -> bool:
            nonlocal requests
            requests = await suggest(live, "deny", [s.option("request", "per_", focused=True)])
            return bool(requests)

        # Requests come and go (the simulated human answers them): poll, bounded.
        await wait_until(suggested, within=20, interval=0.2, what="a pending request suggested")
        assert all(str(c["value"]).startswith("per_") for c in requests)
        assert all(": bash (" in str(c["name"]) for c in requests)

        assert await suggest(live, "start", [s.option("project", "", focused=True)], who=STRANGER) == []
