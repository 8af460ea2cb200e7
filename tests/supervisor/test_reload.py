"""Config reload in a running supervisor (in-process, loopback): what applies live, what waits for
a restart, invalid files, the audit row, systemd's RELOADING/READY, and runtime policy overrides."""

from __future__ import annotations

import copy
import logging
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from halswarm.config import load_supervisor_config
from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from halswarm.supervisor.reload import ReloadRequest
from halswarm.testing import TEST_TOKEN, api_client, wait_until, write_json
from tests.notify_recorder import Recorder

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    import httpx
    import pytest

    from halswarm.jsontypes import JSONObject

TICK: Final = 0.5


def base_config(tmp_path: Path) -> JSONObject:
    return {
        "server": {"auth_token": TEST_TOKEN, "host": "127.0.0.1", "port": 0, "http_port": 0},
        "database": {"path": str(tmp_path / "sup.db")},
        "channels": {"webhooks": {"n8n": {"url": "http://127.0.0.1:9/hook/first-secret-path"}}},
        "policies": {"tick_seconds": TICK, "resume_on_idle": {"enabled": True}},
    }


class Rig:
    def __init__(self, sup: SupervisorHandle, path: Path, raw: JSONObject, notifier: Recorder) -> None:
        self.sup = sup
        self.path = path
        self.raw = raw
        self.notifier = notifier

    def edit(self) -> JSONObject:
        """A copy of the file's contents to change and :meth:`write`."""
        return copy.deepcopy(self.raw)

    def write(self, raw: JSONObject) -> None:
        write_json(self.path, raw)


@asynccontextmanager
async def open_rig(
    tmp_path: Path, raw: JSONObject | None = None
) -> AsyncGenerator[tuple[Rig, httpx.AsyncClient], None]:
    raw = raw if raw is not None else base_config(tmp_path)
    path = write_json(tmp_path / "supervisor.json", raw)
    config = load_supervisor_config(path)
    notifier = Recorder(watchdog=None)
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        run = partial(run_supervisor, config, shutdown=shutdown, notifier=notifier, config_path=path)
        sup: SupervisorHandle = await nursery.start(run)
        try:
            async with api_client(sup) as client:
                yield Rig(sup, path, raw, notifier), client
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + 15


async def policy(client: httpx.AsyncClient, name: str) -> JSONObject:
    body = (await client.get(f"/api/v1/policies/{name}")).json()["policy"]
    assert isinstance(body, dict)
    return body


async def reload_audit(client: httpx.AsyncClient) -> list[JSONObject]:
    rows = (await client.get("/api/v1/audit", params={"action": "config.reload"})).json()["audit"]
    assert isinstance(rows, list)
    return [r for r in rows if isinstance(r, dict)]


async def test_routes_targets_and_policies_apply_live_and_other_keys_wait_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(30):
        async with open_rig(tmp_path) as (rig, client):
            assert rig.notifier.lifecycle() == ["READY"]
            new = rig.edit()
            new["routes"] = [{"match": "session.error", "target": "slack#team"}]
            new["channels"] = {
                "webhooks": {"n8n": {"url": "http://127.0.0.1:9/hook/second-secret-path"}},
                "slack": {"team": {"webhook_url": "http://127.0.0.1:9/services/T/B/X"}},
            }
            new["policies"] = _policies(resume_on_idle=False)
            new["server"] = {**rig.raw["server"], "command_timeout_sec": 30}  # type: ignore[dict-item]
            new["budgets"] = {"daily_usd": 50}
            rig.write(new)
            result = await rig.sup.reloader.reload(ReloadRequest("test:reload", "test"))
            assert result.outcome == "applied"
            assert result.restart_required == ("budgets.daily_usd", "server.command_timeout_sec")
            assert (await policy(client, "stuck_busy"))["enabled"] is True
            assert (await policy(client, "resume_on_idle"))["enabled"] is False
            assert [str(r.target) for r in rig.sup.router.router.routes] == ["slack#team"]
            assert rig.sup.router.active
            [row] = await reload_audit(client)
            assert rig.notifier.lifecycle() == ["READY", "RELOADING", "READY"]
            assert "last reload: applied 5 changed keys; 2 changed keys need a restart" in rig.notifier.messages[-1][1]
    assert (row["actor"], row["source"], row["outcome"], row["target"]) == (
        "test:reload",
        "test",
        "applied",
        str(rig.path),
    )
    detail = row["detail"]
    assert isinstance(detail, dict)
    assert detail["applied"] == [
        "channels.slack['team']",
        "channels.webhooks['n8n'].url",
        "policies.resume_on_idle.enabled",
        "policies.stuck_busy.enabled",
        "routes",
    ]
    assert detail["restart_required"] == ["budgets.daily_usd", "server.command_timeout_sec"]
    assert "changed; takes effect after a restart: budgets.daily_usd, server.command_timeout_sec" in caplog.text
    assert "second-secret-path" not in caplog.text  # key paths, never values


async def test_an_invalid_file_is_logged_with_every_problem_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(30):
        async with open_rig(tmp_path) as (rig, client):
            new = rig.edit()
            new["routes"] = [{"match": "session.error &&", "target": "webhook#nope"}]
            new["policies"] = {"tick_seconds": 0, "resume_on_idle": {"enabled": False}}
            rig.write(new)
            result = await rig.sup.reloader.reload()
            assert result.outcome == "rejected"
            assert (await policy(client, "resume_on_idle"))["enabled"] is True  # the running config is kept
            assert not rig.sup.router.active
            [row] = await reload_audit(client)
            # A file that is not even JSON is refused the same way.
            rig.path.write_text("{ not json")
            assert (await rig.sup.reloader.reload()).outcome == "rejected"
            assert rig.notifier.lifecycle() == ["READY", "RELOADING", "READY", "RELOADING", "READY"]
    problems = result.problems
    assert any(p.startswith("routes[0].match:") for p in problems)
    assert any(p.startswith("routes[0].target: webhook#nope: no webhook named 'nope'") for p in problems)
    assert "policies.tick_seconds: must be greater than 0" in problems
    for problem in problems:
        assert f"config reload: {problem}" in caplog.text
    assert "config reload refused" in caplog.text
    assert (row["actor"], row["source"], row["outcome"]) == ("signal:SIGHUP", "signal", "rejected")
    assert isinstance(row["detail"], dict)
    assert row["detail"]["problems"] == list(problems)
    assert "config file is not valid JSON" in caplog.text


async def test_live_changes_that_need_restart_only_keys_are_refused_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(30):
        async with open_rig(tmp_path) as (rig, client):
            # A route to a Discord channel that only the new file configures (channels.discord
            # needs a restart), next to a policy change that alone would be fine: nothing applies.
            new = rig.edit()
            new["channels"] = {
                **rig.raw["channels"],  # type: ignore[dict-item]
                "discord": {"bot_token": "b" * 40, "channels": {"alerts": "123"}},
            }
            new["routes"] = [{"match": "session.error", "target": "discord#alerts"}]
            new["policies"] = {"tick_seconds": TICK, "resume_on_idle": {"enabled": False}}
            rig.write(new)
            result = await rig.sup.reloader.reload()
            assert result.outcome == "rejected"
            assert (await policy(client, "resume_on_idle"))["enabled"] is True
            assert not rig.sup.router.active
    assert result.restart_required == ("channels.discord",)
    assert result.problems == ("routes[0].target: discord#alerts needs channels.discord, which is not configured",)
    assert "do not fit the settings in effect until a restart (channels.discord)" in caplog.text


async def test_an_unchanged_file_and_restart_only_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(30):
        async with open_rig(tmp_path) as (rig, client):
            assert (await rig.sup.reloader.reload()).outcome == "unchanged"
            new = rig.edit()
            new["server"] = {**rig.raw["server"], "http_port": 1}  # type: ignore[dict-item]
            rig.write(new)
            result = await rig.sup.reloader.reload()
            rows = await reload_audit(client)
    assert (result.outcome, result.applied, result.restart_required) == ("restart_required", (), ("server.http_port",))
    assert [r["outcome"] for r in rows] == ["restart_required", "unchanged"]  # newest first
    assert "changed; takes effect after a restart: server.http_port" in caplog.text


def _policies(*, resume_on_idle: bool) -> JSONObject:
    """The policies section with resume_on_idle as given and stuck_busy on."""
    return {"tick_seconds": TICK, "resume_on_idle": {"enabled": resume_on_idle}, "stuck_busy": {"enabled": True}}


async def test_runtime_overrides_persist_across_a_reload_until_the_file_agrees(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(30):
        async with open_rig(tmp_path) as (rig, client):
            disabled = await client.post("/api/v1/policies/resume_on_idle/disable")
            assert disabled.status_code == 200, disabled.text
            # An unrelated policy change: the operator's runtime switch still wins over the file.
            new = rig.edit()
            new["policies"] = _policies(resume_on_idle=True)
            rig.write(new)
            assert (await rig.sup.reloader.reload()).outcome == "applied"
            resume = await policy(client, "resume_on_idle")
            assert (resume["enabled"], resume["configured"]) == (False, True)
            assert isinstance(resume["override"], dict)
            # The file now says the same as the override: the override is cleared...
            new["policies"] = _policies(resume_on_idle=False)
            rig.write(new)
            assert (await rig.sup.reloader.reload()).outcome == "applied"
            resume = await policy(client, "resume_on_idle")
            assert (resume["enabled"], resume["configured"], resume["override"]) == (False, False, None)
            assert await rig.sup.store.load_policy_overrides() == {}
            # ...so a later edit of the file is not masked by it.
            new["policies"] = _policies(resume_on_idle=True)
            rig.write(new)
            assert (await rig.sup.reloader.reload()).outcome == "applied"
            assert (await policy(client, "resume_on_idle"))["enabled"] is True
            rows = await reload_audit(client)
    assert "policy resume_on_idle stays disabled at runtime" in caplog.text
    assert "policy resume_on_idle: runtime override cleared, the file now says the same" in caplog.text
    details = [r["detail"] for r in reversed(rows)]
    assert [(d["overrides_kept"], d["overrides_cleared"]) for d in details if isinstance(d, dict)] == [
        (["resume_on_idle"], []),
        ([], ["resume_on_idle"]),
        ([], []),
    ]


async def test_kill_on_cost_enabled_at_runtime_keeps_its_limit(tmp_path: Path) -> None:
    raw = base_config(tmp_path)
    raw["policies"] = {"tick_seconds": TICK, "kill_on_cost": {"daily_limit_usd": 100}}
    with trio.fail_after(30):
        async with open_rig(tmp_path, raw) as (rig, client):
            enabled = await client.post("/api/v1/policies/kill_on_cost/enable")
            assert enabled.status_code == 200, enabled.text
            new = rig.edit()
            new["policies"] = {"tick_seconds": TICK}  # the limit is gone
            rig.write(new)
            result = await rig.sup.reloader.reload()
            kill = await policy(client, "kill_on_cost")
    assert result.outcome == "rejected"
    [problem] = result.problems
    assert problem.startswith("policies.kill_on_cost: enabled at runtime by ")
    assert (kill["enabled"], kill["config"]) == (True, {**kill["config"], "daily_limit_usd": 100.0})  # type: ignore[dict-item]


async def test_reload_requests_are_served_from_the_channel(tmp_path: Path) -> None:
    send, receive = trio.open_memory_channel[ReloadRequest](1)
    raw = base_config(tmp_path)
    path = write_json(tmp_path / "supervisor.json", raw)
    config = load_supervisor_config(path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            shutdown = trio.Event()
            run = partial(run_supervisor, config, shutdown=shutdown, config_path=path, reload_requests=receive)
            sup: SupervisorHandle = await nursery.start(run)
            raw["policies"] = {"tick_seconds": TICK, "stuck_busy": {"enabled": True}}
            write_json(path, raw)
            await send.send(ReloadRequest())
            await wait_until(lambda: sup.reloader.reloads >= 1, what="the reload")
            shutdown.set()
    assert sup.reloader.last is not None
    assert sup.reloader.last.outcome == "applied"
    assert sup.policies.config.stuck_busy.enabled
