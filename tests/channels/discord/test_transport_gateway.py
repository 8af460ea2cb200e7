"""The gateway transport against the fake gateway, with a live supervisor behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.testing import wait_until
from tests.channels.discord import support as s
from tests.channels.discord.fake_discord import BOT_TOKEN
from tests.channels.discord.live import Live, fresh, open_live

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.channels.discord.gateway_runner import GatewayRunner


def runner(live: Live) -> GatewayRunner:
    service = live.supervisor.discord
    assert service is not None
    assert service.gateway is not None
    return service.gateway


async def interaction_answered(live: Live, name: str) -> None:
    """Dispatch /name over the gateway; the answer must come back by the callback POST."""
    payload, token = fresh(s.slash(name))
    await live.fake.gateway.dispatch("INTERACTION_CREATE", payload)
    await wait_until(lambda: bool(live.fake.rest.calls_to("POST", f"/{token}/callback")), what=f"/{name} callback")
    callback = live.fake.rest.calls_to("POST", f"/{token}/callback")[0].obj
    assert callback["type"] == 4
    data = callback["data"]
    assert isinstance(data, dict)
    assert data["embeds"]


async def test_identify_heartbeat_and_interactions(tmp_path: Path) -> None:
    async with open_live(tmp_path, transport="gateway", heartbeat_interval_ms=200) as live:
        gw = live.fake.gateway
        await wait_until(lambda: bool(runner(live).readies), what="READY")
        identify = gw.frames(2)[0]["d"]
        assert isinstance(identify, dict)
        assert identify["token"] == BOT_TOKEN
        assert identify["intents"] == 0
        assert gw.conns[0].path.endswith("?v=10&encoding=json")
        await wait_until(lambda: len(gw.frames(1)) >= 2, what="two heartbeats")
        await interaction_answered(live, "status")
        assert runner(live).machine.latency is not None


async def test_the_gateway_resumes_after_a_dropped_connection(tmp_path: Path) -> None:
    async with open_live(tmp_path, transport="gateway") as live:
        gw = live.fake.gateway
        await wait_until(lambda: bool(runner(live).readies), what="READY")
        await interaction_answered(live, "nodes")
        session_id, seq = gw.current.session_id, gw.seq
        await gw.drop()
        await wait_until(lambda: bool(gw.frames(6)), what="RESUME")
        resume = gw.frames(6)[0]["d"]
        assert resume == {"token": BOT_TOKEN, "session_id": session_id, "seq": seq}
        await wait_until(lambda: len(runner(live).readies) == 2, what="RESUMED")
        assert runner(live).readies[-1].resumed
        assert len(gw.frames(2)) == 1  # no second IDENTIFY
        await interaction_answered(live, "status")

        await gw.send_op(7)  # the server asks for a reconnect: resume again
        await wait_until(lambda: len(gw.frames(6)) == 2, what="second RESUME")
        await wait_until(lambda: len(runner(live).readies) == 3, what="RESUMED again")
        service = live.supervisor.discord
        assert service is not None
        await wait_until(lambda: service.health() == "ok", what="the channel healthy again")
        assert service.figures().gateway_connects == 3


async def test_a_non_resumable_invalid_session_identifies_anew(tmp_path: Path) -> None:
    async with open_live(tmp_path, transport="gateway") as live:
        gw = live.fake.gateway
        await wait_until(lambda: bool(runner(live).readies), what="READY")
        await gw.send_op(9, False)
        await wait_until(lambda: len(gw.frames(2)) == 2, within=15, what="a new IDENTIFY")
        await wait_until(lambda: len(runner(live).readies) == 2, what="READY again")
        assert not runner(live).readies[-1].resumed
        await interaction_answered(live, "status")
