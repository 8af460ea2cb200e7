"""``/api/v1/projects`` on a live in-process cluster: the list's shape, completing a project
(audited, idempotent) and clear errors. Dependants starting is in
``tests/policy/test_dependencies_integration.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.convert import structure_strict
from halswarm.projects import CompleteAnswer, ProjectInfo

if TYPE_CHECKING:
    from halswarm.testing import Cluster

PROJECT_KEYS = {
    "name",
    "nodes",
    "nodes_online",
    "depends_on",
    "dependants",
    "complete",
    "started_by_dependency",
    "sessions",
    "active_sessions",
}


async def test_projects_lists_every_hosted_project(cluster: Cluster) -> None:
    response = await cluster.client.get("/api/v1/projects")
    assert response.status_code == 200
    body = response.json()["projects"]
    assert all(set(p) == PROJECT_KEYS for p in body)
    projects = structure_strict(body, list[ProjectInfo])  # the exact shared schema
    assert [p.name for p in projects] == ["proj-1-1", "proj-1-2", "proj-2-1", "proj-2-2"]
    first = projects[0]
    assert (first.nodes, first.nodes_online, first.depends_on, first.dependants) == (["node-1"], ["node-1"], [], [])
    assert (first.complete, first.started_by_dependency) == (None, None)
    tracked = cluster.supervisor.tracker.sessions()
    assert sum(p.sessions for p in projects) == len(tracked)
    assert [p.sessions for p in projects] == [sum(1 for s in tracked if s.project == p.name) for p in projects]
    one = await cluster.client.get("/api/v1/projects/proj-2-1")
    assert one.json()["project"]["nodes"] == ["node-2"]


async def test_completing_a_project_is_audited_and_idempotent(cluster: Cluster) -> None:
    response = await cluster.client.post(
        "/api/v1/projects/proj-1-1/complete", json={"detail": "  v1 shipped "}, headers={"X-Correlation-ID": "op-3"}
    )
    assert response.status_code == 200, response.text
    answer = structure_strict(response.json(), CompleteAnswer)
    assert (answer.already_complete, answer.started) == (False, [])
    done = answer.project.complete
    assert done is not None
    assert (done.source, done.actor, done.detail, done.node_id) == ("api", "api", "v1 shipped", None)
    again = await cluster.client.post("/api/v1/projects/proj-1-1/complete")  # no body
    assert again.status_code == 200
    assert again.json()["already_complete"] is True
    assert again.json()["project"]["complete"] == response.json()["project"]["complete"]
    audit = (await cluster.client.get("/api/v1/audit", params={"action": "project.*"})).json()["audit"]
    assert [(a["actor"], a["source"], a["target"], a["outcome"]) for a in audit] == [
        ("api", "http", "proj-1-1", "already_complete"),
        ("api", "http", "proj-1-1", "recorded"),
    ]
    assert audit[1]["correlation_id"] == "op-3"
    assert audit[1]["detail"] == {"source": "api", "detail": "v1 shipped", "start": []}
    listed = (await cluster.client.get("/api/v1/projects")).json()["projects"]
    assert [p["name"] for p in listed if p["complete"] is not None] == ["proj-1-1"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/v1/projects/nope"), ("POST", "/api/v1/projects/nope/complete")]
)
async def test_unknown_projects_are_404(cluster: Cluster, method: str, path: str) -> None:
    response = await cluster.client.request(method, path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"].startswith("no project 'nope'")
    assert (await cluster.client.get("/api/v1/audit", params={"action": "project.*"})).json() == {"audit": []}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[1]", "request body must be a JSON object, got list"),
        (b'{"detail": 5}', "detail: expected a string, got int"),
        (b'{"note": "x"}', "note"),
    ],
)
async def test_a_bad_body_is_400(cluster: Cluster, body: bytes, problem: str) -> None:
    response = await cluster.client.post(
        "/api/v1/projects/proj-1-1/complete", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert problem in response.json()["error"]["message"]
    assert (await cluster.client.get("/api/v1/projects/proj-1-1")).json()["project"]["complete"] is None
