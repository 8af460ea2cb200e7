"""``/api/v1/policies`` and ``/api/v1/audit`` on a live in-process cluster: shapes, runtime
enable/disable (audited), filters and paging of the audit log, and clear errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.audit import AuditEntry
from halswarm.convert import structure_strict
from halswarm.policy.views import PolicyInfo
from halswarm.testing import api_client, wait_until

if TYPE_CHECKING:
    from halswarm.testing import Cluster

POLICY_KEYS = {
    "name",
    "enabled",
    "configured",
    "override",
    "dry_run",
    "config",
    "max_retries",
    "retry_scope",
    "retries_used",
    "next_reset",
    "windows",
    "last_action",
    "notes",
}
AUDIT_KEYS = {"id", "ts", "actor", "source", "action", "target", "outcome", "correlation_id", "detail"}


async def test_policies_list_config_and_live_state_in_priority_order(cluster: Cluster) -> None:
    response = await cluster.client.get("/api/v1/policies")
    assert response.status_code == 200
    body = response.json()["policies"]
    assert [p["name"] for p in body] == [
        "kill_on_cost",
        "restart_on_compaction",
        "error_loop",
        "stuck_busy",
        "resume_on_idle",
        "node_offline",
    ]
    assert all(set(p) == POLICY_KEYS for p in body)
    policies = {p.name: p for p in structure_strict(body, list[PolicyInfo])}  # the exact shared schema
    resume = policies["resume_on_idle"]
    assert (resume.enabled, resume.configured, resume.override, resume.dry_run) == (False, False, None, False)
    assert (resume.max_retries, resume.retry_scope, resume.retries_used, resume.windows) == (3, "session", 0, [])
    assert (resume.next_reset, resume.last_action) == (None, None)
    assert resume.config == {
        "enabled": False,
        "idle_threshold_seconds": 300.0,
        "max_retries": 3,
        "reset_window_seconds": 3600.0,
        "prompt": None,
        "dry_run": False,
    }
    assert policies["restart_on_compaction"].retry_scope == "project"
    offline = policies["node_offline"]
    assert (offline.enabled, offline.max_retries, offline.retry_scope) == (True, None, None)
    assert policies["kill_on_cost"].notes == [
        "no limit set: neither its own limits nor budgets.daily_usd / budgets.projects"
    ]
    one = await cluster.client.get("/api/v1/policies/stuck_busy")
    assert one.json()["policy"]["name"] == "stuck_busy"


async def test_enable_and_disable_at_runtime_are_audited_with_the_caller(cluster: Cluster) -> None:
    enabled = await cluster.client.post(
        "/api/v1/policies/resume_on_idle/enable", headers={"X-Correlation-ID": "change-7"}
    )
    assert enabled.status_code == 200, enabled.text
    policy = enabled.json()["policy"]
    assert (policy["enabled"], policy["configured"]) == (True, False)
    assert (policy["override"]["enabled"], policy["override"]["actor"]) == (True, "api")
    listed = (await cluster.client.get("/api/v1/policies")).json()["policies"]
    assert next(p for p in listed if p["name"] == "resume_on_idle")["enabled"] is True
    assert cluster.supervisor.policies.effective_config().resume_on_idle.enabled  # the next tick runs it
    disabled = await cluster.client.post("/api/v1/policies/resume_on_idle/disable")
    assert (disabled.json()["policy"]["enabled"], disabled.json()["policy"]["override"]) == (False, None)
    off = await cluster.client.post("/api/v1/policies/node_offline/disable")
    assert off.json()["policy"]["override"]["enabled"] is False
    audit = (await cluster.client.get("/api/v1/audit", params={"action": "policy.*"})).json()["audit"]
    assert [(a["actor"], a["source"], a["action"], a["target"], a["outcome"]) for a in audit] == [
        ("api", "http", "policy.disable", "node_offline", "ok"),
        ("api", "http", "policy.disable", "resume_on_idle", "ok"),
        ("api", "http", "policy.enable", "resume_on_idle", "ok"),
    ]
    assert audit[2]["correlation_id"] == "change-7"
    assert audit[2]["detail"] == {"enabled": True, "was_enabled": False, "configured": False}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/policies/resume"),
        ("POST", "/api/v1/policies/resume/enable"),
        ("POST", "/api/v1/policies/resume/disable"),
    ],
)
async def test_unknown_policies_are_404(cluster: Cluster, method: str, path: str) -> None:
    response = await cluster.client.request(method, path)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "no policy 'resume' (policies: kill_on_cost, restart_on_compaction, error_loop, stuck_busy, "
        "resume_on_idle, node_offline)",
    }
    assert (await cluster.client.get("/api/v1/audit", params={"action": "policy.*"})).json() == {"audit": []}


async def test_kill_on_cost_without_any_limit_cannot_be_enabled(cluster: Cluster) -> None:
    response = await cluster.client.post("/api/v1/policies/kill_on_cost/enable")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "policy_not_configured"
    assert "budgets.daily_usd" in error["message"]
    wrong = await cluster.client.get("/api/v1/policies/kill_on_cost/enable")
    assert wrong.status_code == 405


async def test_policy_and_audit_routes_need_the_token(cluster: Cluster) -> None:
    async with api_client(cluster.supervisor, token=None) as anonymous:
        for response in (
            await anonymous.get("/api/v1/policies"),
            await anonymous.post("/api/v1/policies/resume_on_idle/enable"),
            await anonymous.get("/api/v1/audit"),
        ):
            assert response.status_code == 401
    assert not cluster.supervisor.policies.effective_config().resume_on_idle.enabled


async def _abort_a_live_session(cluster: Cluster) -> str:
    await wait_until(lambda: len(cluster.supervisor.tracker) == 6, what="6 sessions")
    session = next(s for s in cluster.supervisor.tracker.sessions() if s.status != "completed")
    response = await cluster.client.post("/api/v1/commands", json={"type": "abort_session", "target": session.id})
    assert response.status_code == 200, response.text
    return session.id


async def test_audit_rows_newest_first_with_filters_and_paging(cluster: Cluster) -> None:
    target = await _abort_a_live_session(cluster)
    await cluster.client.post("/api/v1/policies/error_loop/enable")
    everything = (await cluster.client.get("/api/v1/audit")).json()["audit"]
    assert all(set(a) == AUDIT_KEYS for a in everything)
    entries = structure_strict(everything, list[AuditEntry])
    assert [(e.action, e.outcome) for e in entries] == [
        ("policy.enable", "ok"),
        ("command.abort_session", "succeeded"),
        ("command.abort_session", "accepted"),
    ]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    command_rows = entries[1:]
    assert {(e.actor, e.source, e.target) for e in command_rows} == {("api", "http", target)}

    async def ids(**params: str | int) -> list[int]:
        response = await cluster.client.get("/api/v1/audit", params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["audit"]]

    newest, middle, oldest = (e.id for e in entries)
    assert await ids(action="command.*") == [middle, oldest]
    assert await ids(action="command.abort_session", target=target) == [middle, oldest]
    assert await ids(actor="api", target="error_loop") == [newest]
    assert await ids(actor="policy:*") == []
    assert await ids(limit=2) == [newest, middle]
    assert await ids(limit=2, before=middle) == [oldest]
    assert await ids(after=oldest) == [newest, middle]
    assert await ids(since=entries[0].ts) == [newest]
    assert await ids(until=entries[-1].ts) == []
    assert await ids(since="2000-01-01T00:00:00+02:00", until="2100-01-01T00:00:00Z") == [newest, middle, oldest]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"limit": "0"}, "limit must be between 1 and 1000"),
        ({"limit": "many"}, "limit must be an integer"),
        ({"before": "-3"}, "before must be between 0 and"),
        ({"since": "yesterday"}, "since must be an RFC 3339 time"),
        ({"until": "2026-01-01"}, "until must be an RFC 3339 time"),
    ],
)
async def test_bad_audit_parameters_are_400(cluster: Cluster, query: dict[str, str], words: str) -> None:
    response = await cluster.client.get("/api/v1/audit", params=query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert words in error["message"]
