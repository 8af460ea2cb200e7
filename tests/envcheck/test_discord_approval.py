"""Issue #9 point 4 end to end: a risky fix approved from Discord.

A real supervisor (routes ``env.provision.manual_required`` to ``discord#alerts``, the
Discord channel on the HTTP interactions transport, pointed at a fake Discord), a real
agent checking a real git repository whose runtime is too old, and signed button
clicks: nothing is installed until an allowed user clicks "Approve install"; a stranger
is refused and audited; stale buttons (manifest changed, node offline, install gone)
are answered privately and run nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import trio

from halswarm.channels.discord.customid import encode_custom_id, install_ref
from halswarm.config.agent import OpencodeConfig
from halswarm.config.policies import PoliciesConfig
from halswarm.config.routing import RouteConfig
from halswarm.config.supervisor import ChannelsConfig, DiscordChannel, EnvConfig
from halswarm.models import Project
from halswarm.supervisor.installs import InstallRefusedError
from halswarm.testing import agent_config, api_client, open_sim_agent, open_supervisor, supervisor_config, wait_until
from tests.channels.discord import support as s
from tests.channels.discord.fake_discord import BOT_TOKEN, PUBLIC_KEY_HEX, Call, FakeDiscord, open_fake_discord, sign
from tests.channels.discord.live import ALERTS, fresh
from tests.envcheck.test_env_wiring import MANIFEST

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.config.agent import AgentConfig
    from halswarm.config.supervisor import SupervisorConfig
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.supervisor.app import SupervisorHandle
    from tests.envcheck.conftest import Workspace

STRANGER: Final = s.member(user_id="111111111111111111", roles=(), username="mallory")
TICK: Final = 0.5


def _manifest(
    workspace: Workspace, marker: Path, *, timeout_sec: int = 30, install: bool = True, script: str | None = None
) -> JSONObject:
    """The wiring test's manifest plus runtime fakert >=2, fixed by a declared install
    that appends a line to *marker* (its visible side effect) and upgrades fakert
    (or runs *script*)."""
    script = script or (
        f"echo ran >> {marker} && printf '#!/bin/sh\\necho fakert 2.1\\n' > {workspace.bin_dir}/fakert"
        f" && chmod 755 {workspace.bin_dir}/fakert && echo upgraded"
    )
    manifest = orjson.loads(orjson.dumps(MANIFEST))
    app = manifest["projects"]["app"]
    app["runtimes"] = {"fakert": ">=2"}
    if install:
        app["install"] = {
            "upgrade": {"command": ["sh", "-c", script], "timeout_sec": timeout_sec, "fixes": "runtime:fakert"}
        }
    value: JSONObject = manifest
    return value


def _discord(
    fake: FakeDiscord, *, allowed_users: list[str] | None = None, allowed_roles: list[str] | None = None
) -> DiscordChannel:
    """The Discord channel on the interactions transport, pointed at *fake*."""
    return DiscordChannel(
        bot_token=BOT_TOKEN,
        guild_id=s.GUILD_ID,
        application_id=s.APP_ID,
        public_key=PUBLIC_KEY_HEX,
        transport="interactions",
        channels={ALERTS: s.CHANNEL_ID},
        allowed_users=allowed_users or [],
        allowed_roles=allowed_roles or [],
        api_base_url=fake.rest_url,
        gateway_url=fake.gateway_url,
    )


def _supervisor(tmp_path: Path, manifest_path: Path, discord: DiscordChannel | None = None) -> SupervisorConfig:
    """A supervisor holding the manifest at *manifest_path* (and *discord*, when given)."""
    config = attrs.evolve(supervisor_config(tmp_path / "sup.db"), env=EnvConfig(manifest_path=str(manifest_path)))
    return config if discord is None else attrs.evolve(config, channels=ChannelsConfig(discord=discord))


def _manifest_file(tmp_path: Path, workspace: Workspace, marker: Path, *, script: str | None = None) -> Path:
    """:func:`_manifest` written where the supervisor reads it, with fakert 1.4 installed
    (too old: the declared install fixes it)."""
    path = tmp_path / "env-manifest.json"
    path.write_bytes(orjson.dumps(_manifest(workspace, marker, script=script)))
    workspace.runtime("fakert", "echo fakert 1.4")
    return path


def _agent(sup: SupervisorHandle, tmp_path: Path, workspace: Workspace) -> AgentConfig:
    """Agent n1 checking project ``app`` (the workspace) on demand only."""
    agent = agent_config(
        sup.ws_port, tmp_path / "agent", node_id="n1", projects=[Project("app", str(workspace.directory))]
    )
    return attrs.evolve(agent, env_check_interval_sec=0, opencode=OpencodeConfig(env=workspace.env))


def _interactions_client(sup: SupervisorHandle) -> httpx.AsyncClient:
    """Unauthenticated HTTP to the supervisor: Discord's interactions are signed, not token-bearing."""
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{sup.http_port}", timeout=30.0)


def _runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def _button_ids(alert: Call) -> list[str]:
    rows = alert.obj.get("components")
    assert isinstance(rows, list), alert.obj
    ids: list[str] = []
    for row in rows:
        assert isinstance(row, dict)
        buttons = row["components"]
        assert isinstance(buttons, list)
        ids += [str(b["custom_id"]) for b in buttons if isinstance(b, dict)]
    return ids


def _labels(alert: Call) -> list[str]:
    return [
        str(b["label"])
        for row in alert.obj["components"]  # type: ignore[union-attr]
        if isinstance(row, dict)
        for b in row["components"]  # type: ignore[union-attr]
        if isinstance(b, dict)
    ]


@attrs.frozen
class Clicker:
    """Signed interactions to the supervisor's endpoint, as Discord sends them."""

    fake: FakeDiscord
    http: httpx.AsyncClient

    async def click(self, custom_id: str, message_id: str, *, who: JSONObject | None = None) -> tuple[JSONObject, str]:
        payload, token = fresh(s.click(custom_id, who=who))
        message = payload["message"]
        assert isinstance(message, dict)
        payload["message"] = {**message, "id": message_id}
        return await self.post(payload), token

    async def post(self, payload: JSONObject) -> JSONObject:
        body = json.dumps(payload).encode()
        ts = str(int(dt.datetime.now(dt.UTC).timestamp()))
        response = await self.http.post("/discord/interactions", content=body, headers=sign(body, ts))
        assert response.status_code == 200, response.text
        answer: JSONObject = response.json()
        return answer

    async def edit_of(self, token: str) -> JSONObject:
        path = f"/webhooks/{s.APP_ID}/{token}/messages/@original"
        await wait_until(lambda: bool(self.fake.rest.calls_to("PATCH", path)), within=20, what="the alert's edit")
        return self.fake.rest.calls_to("PATCH", path)[-1].obj


def _private_text(answer: JSONObject) -> str:
    """The text of a private (ephemeral) immediate answer."""
    assert answer["type"] == 4, answer
    data = answer["data"]
    assert isinstance(data, dict)
    assert data["flags"] == 64, data
    return str(data)


async def _audit(sup: SupervisorHandle, **params: str) -> list[JSONObject]:
    async with api_client(sup) as admin:
        rows: list[JSONValue] = (await admin.get("/api/v1/audit", params=params)).json()["audit"]
    return [r for r in rows if isinstance(r, dict)]


async def test_an_install_is_approved_from_a_discord_button(tmp_path: Path, workspace: Workspace) -> None:
    marker = tmp_path / "installed.txt"
    manifest_path = _manifest_file(tmp_path, workspace, marker)
    with trio.fail_after(90):
        async with open_fake_discord() as fake:
            discord = _discord(fake, allowed_users=[s.ANA])
            config = attrs.evolve(
                _supervisor(tmp_path, manifest_path, discord),
                routes=[RouteConfig("env.provision.manual_required", f"discord#{ALERTS}")],
                policies=PoliciesConfig(tick_seconds=TICK),
            )
            async with open_supervisor(config) as sup:
                assert sup.env is not None
                env = sup.env
                agent = _agent(sup, tmp_path, workspace)
                async with (
                    _interactions_client(sup) as http,
                    api_client(sup) as admin,
                ):
                    clicker = Clicker(fake, http)
                    async with open_sim_agent(agent, sessions=1, rate=0):
                        # 1. The drifted project: provisioning leaves the risky fix for a person.
                        await wait_until(
                            lambda: ("n1", "app") in env.reports and env.reports["n1", "app"].failed() != [],
                            what="a degraded report",
                        )
                        assert "runtime:fakert" in env.reports["n1", "app"].failed()
                        provision = await admin.post("/api/v1/env/provision/n1")
                        assert provision.status_code == 200, provision.text

                        # 2. The alert reaches Discord with the buttons; nothing ran.
                        posts = f"/channels/{s.CHANNEL_ID}/messages"
                        await wait_until(lambda: bool(fake.rest.calls_to("POST", posts)), what="the Discord alert")
                        [alert] = fake.rest.calls_to("POST", posts)
                        assert alert.authorization == f"Bot {BOT_TOKEN}"
                        assert _labels(alert) == ["Approve install upgrade", "Decline upgrade"]
                        approve_id, decline_id = _button_ids(alert)
                        assert all(len(i) <= 100 for i in (approve_id, decline_id))
                        assert "fakert" in str(alert.obj["embeds"])  # the exact command line is shown
                        [message_id] = fake.rest.messages  # the alert, as the fake stored it
                        assert _runs(marker) == 0

                        # 3. Someone not allowed: refused privately, audited, nothing runs.
                        refused, _ = await clicker.click(approve_id, message_id, who=STRANGER)
                        assert "not allowed" in _private_text(refused)
                        [row] = await _audit(sup, actor="discord:111111111111111111")
                        assert (row["action"], row["outcome"], row["target"]) == (
                            "discord.button.install",
                            "refused",
                            "n1/app",
                        )
                        assert _runs(marker) == 0
                        assert await _audit(sup, action="env.install.approve") == []

                        # 4. An allowed user: the install runs once, the alert says how it went.
                        answer, token = await clicker.click(approve_id, message_id)
                        assert answer == {"type": 6}  # acknowledged silently; the outcome edits the alert
                        edit = await clicker.edit_of(token)
                        content = str(edit["content"])
                        assert content.startswith(f"✅ Install by <@{s.ANA}>: ok"), content
                        assert "`upgrade` on n1/app exited 0; the project is now ready" in content
                        assert edit["components"] == []  # done: the buttons go
                        assert _runs(marker) == 1
                        [approval] = await _audit(sup, action="env.install.approve")
                        assert approval["actor"] == f"discord:{s.ANA}"
                        assert approval["source"] == "discord"
                        assert approval["target"] == "n1/app"
                        detail = approval["detail"]
                        assert isinstance(detail, dict)
                        assert detail["manifest_hash"] == env.hash
                        command_rows = await _audit(sup, action="command.env_install")
                        assert command_rows
                        for command in command_rows:  # accepted, then its outcome
                            assert command["actor"] == f"discord:{s.ANA}"
                            assert command["correlation_id"] == approval["correlation_id"]
                        await wait_until(lambda: env.reports["n1", "app"].state == "ready", what="ready")

                        # 5. The manifest changed since the alert: a private answer, nothing runs.
                        changed = await admin.put(
                            "/api/v1/env/manifest", content=orjson.dumps(_manifest(workspace, marker, timeout_sec=60))
                        )
                        assert changed.status_code == 200, changed.text
                        stale, _ = await clicker.click(approve_id, message_id)
                        assert "manifest changed since this was offered" in _private_text(stale)
                        assert _runs(marker) == 1
                        assert env.hash is not None
                        current = encode_custom_id("install", install_ref("n1", "app", "upgrade", env.hash))

                    # 6. The node went offline: a private answer, nothing runs.
                    await wait_until(lambda: sup.registry.online_count() == 0, within=30, what="the node offline")
                    offline, _ = await clicker.click(current, message_id)
                    assert "Node `n1` is offline" in _private_text(offline)

                    # 7. The install is no longer declared.
                    gone = await admin.put(
                        "/api/v1/env/manifest", content=orjson.dumps(_manifest(workspace, marker, install=False))
                    )
                    assert gone.status_code == 200, gone.text
                    undeclared, _ = await clicker.click(current, message_id)
                    assert "no longer declared" in _private_text(undeclared)
                    assert _runs(marker) == 1
                    assert len(await _audit(sup, action="env.install.approve")) == 1


async def test_an_install_is_declined_from_a_discord_button(tmp_path: Path, workspace: Workspace) -> None:
    """Decline: an audit row naming the Discord user, the alert updated, nothing runs."""
    marker = tmp_path / "installed.txt"
    manifest_path = _manifest_file(tmp_path, workspace, marker)
    with trio.fail_after(60):
        async with open_fake_discord() as fake:
            discord = _discord(fake, allowed_roles=[s.OPS_ROLE])
            config = _supervisor(tmp_path, manifest_path, discord)
            async with open_supervisor(config) as sup:
                assert sup.env is not None
                env = sup.env
                agent = _agent(sup, tmp_path, workspace)
                async with (
                    _interactions_client(sup) as http,
                    open_sim_agent(agent, sessions=1, rate=0),
                ):
                    await wait_until(lambda: ("n1", "app") in env.reports, what="a report")
                    assert env.hash is not None
                    ref = install_ref("n1", "app", "upgrade", env.hash)
                    # /approve and /deny offer the installs the latest reports ask for.
                    typed = s.autocomplete("deny", [s.option("request", "upgrade", focused=True)])
                    suggested = await Clicker(fake, http).post(fresh(typed)[0])
                    assert suggested == {
                        "type": 8,
                        "data": {
                            "choices": [
                                {"name": "install upgrade on n1/app (fixes runtime:fakert)", "value": f"install:{ref}"}
                            ]
                        },
                    }
                    decline = encode_custom_id("decline", ref)
                    answer, token = await Clicker(fake, http).click(decline, "999")  # a member of the ops role
                    assert answer == {"type": 6}
                    edit = await Clicker(fake, http).edit_of(token)
                    assert edit["content"] == f"🚫 Decline by <@{s.ANA}>: install `upgrade` on n1/app will not run"
                    assert edit["components"] == []
                    [row] = await _audit(sup, action="env.install.decline")
                    assert (row["actor"], row["outcome"], row["target"]) == (f"discord:{s.ANA}", "declined", "n1/app")
                    assert await _audit(sup, action="command.env_install") == []
                    assert _runs(marker) == 0


async def test_one_run_at_a_time_whichever_way_it_was_approved(tmp_path: Path, workspace: Workspace) -> None:
    """The API and Discord share one approval path: a click while an API-approved run is
    under way is refused on the alert (and audited nowhere as an approval)."""
    gate = tmp_path / "go"
    marker = tmp_path / "installed.txt"
    # Waits for the test to create the gate file: the run lasts exactly as long as the test wants.
    script = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo ran >> {marker}"
    manifest_path = _manifest_file(tmp_path, workspace, marker, script=script)
    with trio.fail_after(60):
        async with open_fake_discord() as fake:
            discord = _discord(fake, allowed_users=[s.ANA])
            config = _supervisor(tmp_path, manifest_path, discord)
            async with open_supervisor(config) as sup:
                assert sup.env is not None
                env = sup.env
                agent = _agent(sup, tmp_path, workspace)
                async with (
                    _interactions_client(sup) as http,
                    api_client(sup) as admin,
                    open_sim_agent(agent, sessions=1, rate=0),
                ):
                    await wait_until(lambda: ("n1", "app") in env.reports, what="a report")
                    body = {"project": "app", "install": "upgrade"}
                    started = await admin.post("/api/v1/env/approve/n1", params={"wait": 0}, json=body)
                    assert started.status_code == 202, started.text
                    command_id = started.json()["command"]["id"]
                    again = await admin.post("/api/v1/env/approve/n1", params={"wait": 0}, json=body)
                    assert again.status_code == 409, again.text
                    assert again.json()["error"]["code"] == "install_running"

                    assert env.hash is not None
                    approve = encode_custom_id("install", install_ref("n1", "app", "upgrade", env.hash))
                    clicker = Clicker(fake, http)
                    answer, token = await clicker.click(approve, "999")
                    assert answer == {"type": 6}
                    edit = await clicker.edit_of(token)
                    assert edit["content"] == (
                        f"❌ <@{s.ANA}>: install 'upgrade' is already running on n1 (approved by api, "
                        f"command {command_id})"
                    )
                    assert "components" not in edit  # the buttons stay for later

                    gate.touch()
                    done = await admin.get(f"/api/v1/commands/{command_id}", params={"wait": 30})
                    assert done.status_code == 200, done.text
                    assert done.json()["command"]["result"]["exit_code"] == 0
                    assert _runs(marker) == 1
                    approvals = await _audit(sup, action="env.install.approve")
                    assert [row["actor"] for row in approvals] == ["api"]


async def test_two_approvals_at_the_same_moment_run_the_install_once(tmp_path: Path, workspace: Workspace) -> None:
    """Two operators approving in the same instant (a button and the API): one run, one
    approval audited; the other is told the install is already running."""
    gate = tmp_path / "go"
    marker = tmp_path / "installed.txt"
    script = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo ran >> {marker}"
    manifest_path = _manifest_file(tmp_path, workspace, marker, script=script)
    with trio.fail_after(60):
        async with open_supervisor(_supervisor(tmp_path, manifest_path)) as sup:
            assert sup.env is not None
            assert sup.installs is not None
            env, installs = sup.env, sup.installs
            async with open_sim_agent(_agent(sup, tmp_path, workspace), sessions=1, rate=0):
                await wait_until(lambda: ("n1", "app") in env.reports, what="a report")
                accepted: list[str] = []
                refused: list[str] = []

                async def approve(actor: str, source: str) -> None:
                    try:
                        command = await installs.approve("n1", "app", "upgrade", actor=actor, source=source)
                    except InstallRefusedError as exc:
                        refused.append(exc.code)
                    else:
                        accepted.append(command.id)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(approve, f"discord:{s.ANA}", "discord")
                    nursery.start_soon(approve, "token:ops", "http")
                assert (len(accepted), refused) == (1, ["install_running"])
                gate.touch()
                done = await sup.dispatcher.wait(accepted[0], 30)
                assert done is not None
                assert done.status == "succeeded", done
                assert len(await _audit(sup, action="env.install.approve")) == 1
                assert _runs(marker) == 1
