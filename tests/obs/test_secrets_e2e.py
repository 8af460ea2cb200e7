"""No configured secret reaches the logs of a real deployment (issue 8's done-when).

``hal-supervisor`` and ``hal-agent --simulate`` run as processes with JSON logs. Every
secret field of the supervisor config holds a value, and every integration that uses
one is made to fail and log about it: Discord (REST and gateway), a webhook with a
secret path and signing secret, a Slack webhook and both cost providers all point at a
closed loopback port; a wrong token and a viewer token misused hit the API. After a
clean stop neither process's output contains any secret, in its raw or JSON-escaped
spelling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx
import orjson
import pytest
import trio

from halswarm.testing import free_port, start_daemon, wait_supervisor_ready, wait_until, write_json

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

AUTH_TOKEN: Final = "shared-auth-token-Q1w2E3r4T5y6U7i8"
VIEWER_TOKEN: Final = "viewer-api-token-Z9x8C7v6B5n4M3"
NODE_TOKEN: Final = "other-node-token-P0o9I8u7Y6t5R4"
BOT_TOKEN: Final = "discord-bot-token-L1k2J3h4G5f6D7"
WEBHOOK_PATH_SECRET: Final = "hookpath-S3cr3tPathSegment9"
WEBHOOK_SECRET: Final = 'webhook-hmac "quoted\\secret" ß'  # JSON escaping changes it
SLACK_PATH: Final = "T0SLACK/B0SLACK/slackPathSecretXy12"
ANTHROPIC_KEY: Final = "sk-ant-admin01-anthropicSecretKey0123"
OPENAI_KEY: Final = "sk-admin-openaiSecretKey0123456789"


def secrets_in(text: str) -> list[str]:
    found = []
    for secret in (
        AUTH_TOKEN,
        VIEWER_TOKEN,
        NODE_TOKEN,
        BOT_TOKEN,
        WEBHOOK_PATH_SECRET,
        WEBHOOK_SECRET,
        SLACK_PATH,
        ANTHROPIC_KEY,
        OPENAI_KEY,
    ):
        escaped = orjson.dumps(secret).decode()[1:-1]
        if secret in text or escaped in text:
            found.append(secret)
    return found


async def test_logs_of_an_end_to_end_run_hold_no_secret(tmp_path: Path) -> None:
    ws_port, http_port, dead = free_port(), free_port(), free_port()  # nothing listens on `dead`
    closed = f"http://127.0.0.1:{dead}"
    sup_config = write_json(
        tmp_path / "supervisor.json",
        {
            "server": {
                "auth_token": AUTH_TOKEN,
                "host": "127.0.0.1",
                "port": ws_port,
                "http_port": http_port,
                "shutdown_grace_sec": 2,
                "tokens": [{"name": "dashboard", "token": VIEWER_TOKEN, "role": "viewer"}],
                "node_tokens": {"node-other": NODE_TOKEN},
            },
            "database": {"path": str(tmp_path / "supervisor.db")},
            "channels": {
                "discord": {
                    "bot_token": BOT_TOKEN,
                    "guild_id": "1",
                    "application_id": "2",
                    "channels": {"alerts": "3"},
                    "api_base_url": f"{closed}/api/v10",
                    "gateway_url": f"ws://127.0.0.1:{dead}",
                },
                "webhooks": {"n8n": {"url": f"{closed}/webhook/{WEBHOOK_PATH_SECRET}", "secret": WEBHOOK_SECRET}},
                "slack": {"ops": {"webhook_url": f"{closed}/services/{SLACK_PATH}"}},
            },
            "routes": [
                {"match": "*", "target": "webhook#n8n"},
                {"match": "*", "target": "slack#ops"},
                {"match": "*", "target": "discord#alerts"},
            ],
            "cost": {
                "poll_interval_minutes": 60,
                "request_timeout_sec": 2,
                "max_attempts": 1,
                "providers": {
                    "anthropic": {"admin_api_key": ANTHROPIC_KEY, "base_url": closed},
                    "openai": {"org_api_key": OPENAI_KEY, "base_url": f"{closed}/v1"},
                },
            },
        },
    )
    agent_config = write_json(
        tmp_path / "agent.json",
        {
            "supervisor_url": f"ws://127.0.0.1:{ws_port}",
            "auth_token": AUTH_TOKEN,
            "node_id": "node-s",
            "data_dir": str(tmp_path / "agent"),
            "link": {
                "backoff_initial_sec": 0.1,
                "backoff_max_sec": 1.0,
                "stable_after_sec": 2,
                "connect_timeout_sec": 1.5,
            },
        },
    )
    logs = tmp_path / "logs"
    with trio.fail_after(90):
        supervisor = await start_daemon(
            "supervisor", ["--config", str(sup_config), "--log-level", "debug"], logs / "sup.log"
        )
        agent = None
        try:
            await wait_supervisor_ready(http_port, within=30)
            agent = await start_daemon(
                "agent",
                ["--config", str(agent_config), "--log-level", "debug", "--simulate", "2", "--rate", "20"],
                logs / "agent.log",
            )
            base = f"http://127.0.0.1:{http_port}"
            # Longer than the command's wait=10 below, so the two never race on a busy machine.
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                operator = {"Authorization": f"Bearer {AUTH_TOKEN}"}

                async def node_online() -> bool:
                    nodes = (await client.get("/api/v1/nodes", headers=operator)).json()["nodes"]
                    return any(n["id"] == "node-s" and n["status"] != "offline" for n in nodes)

                await wait_until(node_online, within=30, what="agent online")
                wrong = await client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {AUTH_TOKEN}x"})
                assert wrong.status_code == 401
                viewer = await client.post(
                    "/api/v1/commands",
                    headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
                    json={"type": "start_session", "target": "sim-project-1"},
                )
                assert viewer.status_code in (401, 403)
                started = await client.post(
                    "/api/v1/commands",
                    params={"wait": 10},
                    headers=operator,
                    json={"type": "start_session", "target": "sim-project-1", "args": {"prompt": "go"}},
                )
                assert started.status_code == 200, started.text

                async def deliveries_failed() -> bool:
                    text = (await client.get("/metrics")).text
                    return all(f'target="{t}"' in text for t in ("webhook#n8n", "slack#ops", "discord#alerts"))

                # Each integration has tried its secret-bearing request and failed.
                await wait_until(deliveries_failed, within=30, interval=0.2, what="routed deliveries attempted")
                await wait_until(
                    lambda: "cost" in supervisor.log_text() and "anthropic" in supervisor.log_text(),
                    within=20,
                    what="cost polls logged",
                )
        finally:
            with trio.move_on_after(30, shield=True):  # a clean stop: its shutdown lines are checked too
                if agent is not None:
                    await agent.stop()
                await supervisor.stop()
    sup_log, agent_log = supervisor.log_text(), agent.log_text() if agent is not None else ""
    assert sup_log.count("\n") > 10
    for line in sup_log.splitlines():  # JSON lines: each must parse (no half-redacted escapes)
        if line.startswith("{"):
            orjson.loads(line)
    assert secrets_in(sup_log) == [], "supervisor log leaks secrets"
    assert secrets_in(agent_log) == [], "agent log leaks secrets"
