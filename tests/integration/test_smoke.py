"""The backbone works end to end in one process: agents connect, events flow, commands run."""

from __future__ import annotations

from halswarm.testing import Cluster, wait_until


async def test_nodes_online_and_sessions_tracked(cluster: Cluster) -> None:
    response = await cluster.client.get("/api/v1/nodes")
    assert response.status_code == 200
    nodes = response.json()["nodes"]
    assert [n["id"] for n in nodes] == ["node-1", "node-2"]
    assert all(n["status"] == "online" for n in nodes)

    await wait_until(lambda: len(cluster.supervisor.tracker) == 6, what="6 sessions")
    sessions = (await cluster.client.get("/api/v1/sessions")).json()["sessions"]
    assert len(sessions) == 6
    assert {s["node_id"] for s in sessions} == {"node-1", "node-2"}


async def test_restart_command_returns_new_session(cluster: Cluster) -> None:
    await wait_until(lambda: len(cluster.supervisor.tracker) == 6, what="6 sessions")
    session = cluster.supervisor.tracker.sessions(node_id="node-1")[0]
    response = await cluster.client.post("/api/v1/commands", json={"type": "restart_session", "target": session.id})
    assert response.status_code == 200, response.text
    command = response.json()["command"]
    assert command["status"] == "succeeded"
    new_id = command["result"]["session_id"]
    assert command["result"]["predecessor_id"] == session.id
    await wait_until(lambda: cluster.supervisor.tracker.get(new_id) is not None, what="new session tracked")
    new = cluster.supervisor.tracker.get(new_id)
    assert new is not None
    assert new.predecessor_id == session.id
