"""Roles, origin checks, refusals and correlation ids on a live supervisor (issue 8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import httpx
import pytest
import trio

from halswarm.config.security import ApiToken, token_sha256
from halswarm.config.supervisor import SecurityConfig
from halswarm.testing import (
    TEST_TOKEN,
    agent_config,
    api_client,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from halswarm.supervisor.app import SupervisorHandle

VIEWER = "viewer-token-" + "v" * 16
OPERATOR = "operator-token-" + "o" * 16
ADMIN = "admin-token-" + "a" * 16
ALLOWED_ORIGIN = "https://ops.example.com"


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[SupervisorHandle]:
    """A supervisor with a viewer, an operator and an admin (hashed) token, one agent online."""
    base = supervisor_config(tmp_path / "supervisor.db")
    server = attrs.evolve(
        base.server,
        tokens=[
            ApiToken("dash", "viewer", token=VIEWER),
            ApiToken("ops", "operator", token=OPERATOR),
            ApiToken("root", "admin", token_sha256=token_sha256(ADMIN)),
        ],
    )
    config = attrs.evolve(base, server=server, security=SecurityConfig(origin_allowlist=[ALLOWED_ORIGIN]))
    with trio.fail_after(60):
        async with open_supervisor(config) as handle:
            agent = agent_config(handle.ws_port, tmp_path / "agent", node_id="node-1")
            async with open_sim_agent(agent, sessions=2, rate=20.0):
                await wait_until(lambda: len(handle.tracker) == 2, what="2 sessions")
                yield handle


async def _live_session(sup: SupervisorHandle) -> str:
    return next(s.id for s in sup.tracker.sessions() if s.status != "completed")


async def test_a_viewer_reads_but_gets_403_on_commands(sup: SupervisorHandle) -> None:
    async with api_client(sup, token=VIEWER) as viewer:
        assert (await viewer.get("/api/v1/sessions")).status_code == 200
        refused = await viewer.post("/api/v1/commands", json={"type": "abort_session", "target": "x"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert "requires role operator" in refused.json()["error"]["message"]
    assert refused.json()["required_role"] == "operator"


async def test_an_operator_runs_commands_but_cannot_switch_policies(sup: SupervisorHandle) -> None:
    session_id = await _live_session(sup)
    async with api_client(sup, token=OPERATOR) as operator:
        done = await operator.post(
            "/api/v1/commands",
            json={"type": "abort_session", "target": session_id},
            headers={"X-Correlation-ID": "op-run.1"},
        )
        refused = await operator.post("/api/v1/policies/resume_on_idle/disable")
    assert done.status_code == 200, done.text
    assert done.headers["x-correlation-id"] == "op-run.1"
    command = done.json()["command"]
    assert (command["actor"], command["correlation_id"]) == ("token:ops", "op-run.1")
    assert refused.status_code == 403
    assert refused.json()["required_role"] == "admin"
    async with api_client(sup) as shared:
        rows = (await shared.get("/api/v1/audit", params={"actor": "token:ops"})).json()["audit"]
    commands = [r for r in rows if r["action"] == "command.abort_session"]
    assert commands
    assert {r["correlation_id"] for r in commands} == {"op-run.1"}
    refusals = [r for r in rows if r["action"] == "auth.failure"]
    assert [(r["outcome"], r["detail"]["path"]) for r in refusals] == [
        ("refused", "/api/v1/policies/resume_on_idle/disable")
    ]


async def test_an_admin_with_a_hashed_token_switches_policies(sup: SupervisorHandle) -> None:
    async with api_client(sup, token=ADMIN) as admin:
        enabled = await admin.post("/api/v1/policies/resume_on_idle/enable", headers={"X-Correlation-ID": "adm-1"})
        rows = (await admin.get("/api/v1/audit", params={"actor": "token:root"})).json()["audit"]
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["policy"]["override"]["actor"] == "token:root"
    assert [(r["source"], r["correlation_id"]) for r in rows] == [("http", "adm-1")]


async def test_the_shared_token_still_has_full_rights_as_api(sup: SupervisorHandle) -> None:
    async with api_client(sup, token=TEST_TOKEN) as shared:
        response = await shared.post("/api/v1/policies/resume_on_idle/enable")
    assert response.status_code == 200, response.text
    assert response.json()["policy"]["override"]["actor"] == "api"


async def test_unknown_tokens_are_401_counted_and_audited_once(sup: SupervisorHandle) -> None:
    async with api_client(sup, token="wrong-token-" + "w" * 16) as stranger:
        answers = [await stranger.get("/api/v1/nodes") for _ in range(3)]
    assert {a.status_code for a in answers} == {401}
    assert answers[0].json() == {"error": {"code": "unauthorized", "message": "missing or invalid bearer token"}}
    metrics = sup.metrics.render().decode()
    assert 'hal_o_swarm_auth_failures_total{listener="http"} 3.0' in metrics
    async with api_client(sup) as shared:
        rows = (await shared.get("/api/v1/audit", params={"action": "auth.failure"})).json()["audit"]
    assert len(rows) == 1  # one row per address per minute
    assert rows[0]["actor"] == "unknown"
    assert rows[0]["detail"]["address"] == "127.0.0.1"
    assert rows[0]["detail"]["reason"] == "missing or invalid bearer token"


async def test_origin_allowlist_and_cors(sup: SupervisorHandle) -> None:
    async with api_client(sup, token=VIEWER) as client:
        bad = await client.get("/api/v1/nodes", headers={"Origin": "https://evil.example.com"})
        good = await client.get("/api/v1/nodes", headers={"Origin": ALLOWED_ORIGIN})
        none = await client.get("/api/v1/nodes")
        probe = await client.get("/healthz", headers={"Origin": "https://evil.example.com"})
        preflight = await client.options(
            "/api/v1/commands",
            headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST", "Authorization": ""},
        )
    assert bad.status_code == 403
    assert bad.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in bad.headers
    assert good.status_code == 200
    assert good.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in good.headers["vary"]
    assert none.status_code == 200
    assert "access-control-allow-origin" not in none.headers
    assert probe.status_code == 403
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]


async def test_correlation_ids_are_echoed_or_made_and_validated(sup: SupervisorHandle) -> None:
    async with api_client(sup, token=VIEWER) as client:
        given = await client.get("/healthz", headers={"X-Correlation-ID": "abc-123_x.y"})
        fresh = [await client.get("/api/v1/nodes") for _ in range(2)]
        bad = await client.get("/api/v1/nodes", headers={"X-Correlation-ID": "no spaces/please"})
        long = await client.get("/api/v1/nodes", headers={"X-Correlation-ID": "x" * 65})
    assert given.headers["x-correlation-id"] == "abc-123_x.y"
    ids = [r.headers["x-correlation-id"] for r in fresh]
    assert len(set(ids)) == 2
    assert all(len(i) == 16 for i in ids)
    for response in (bad, long):
        assert response.status_code == 400
        assert "X-Correlation-ID" in response.json()["error"]["message"]


async def test_probes_and_openapi_need_no_token(sup: SupervisorHandle) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sup.http_port}", timeout=10) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/openapi.json")).json()["openapi"].startswith("3.1")
