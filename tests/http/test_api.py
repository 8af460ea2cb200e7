"""The HTTP API against a live in-process cluster: shapes, auth, errors, commands, probes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from halswarm.testing import Cluster, api_client, wait_until
from tests.sqlite_faults import reads_failing

if TYPE_CHECKING:
    from halswarm.models import Session


async def _live_session(cluster: Cluster, node_id: str = "node-1") -> Session:
    await wait_until(lambda: len(cluster.supervisor.tracker) == 6, what="6 sessions")
    for session in cluster.supervisor.tracker.sessions(node_id=node_id):
        if session.status != "completed":
            return session
    raise AssertionError("no live session")


async def test_probes_and_metrics_need_no_token(cluster: Cluster) -> None:
    async with api_client(cluster.supervisor, token=None) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "healthy"
        assert body["components"] == {"database": "ok", "hub": "ok", "pipeline": "ok", "http": "ok"}
        assert body["details"]["pipeline_queue"]["capacity"] == 256
        metrics = (await anonymous.get("/metrics")).text
    assert "hal_o_swarm_nodes_online 2.0" in metrics
    assert "hal_o_swarm_connections_active 2.0" in metrics
    assert 'hal_o_swarm_events_total{type="session.created"} 6.0' in metrics
    assert 'hal_o_swarm_sessions_active{status="' in metrics


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-xxxxxxxxxxxx", "Basic abc", "Bearer"])
async def test_api_requires_the_bearer_token(cluster: Cluster, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with api_client(cluster.supervisor, token=None) as client:
        response = await client.get("/api/v1/sessions", headers=headers)
        post = await client.post("/api/v1/commands", headers=headers, json={"type": "kill_session", "target": "x"})
    for r in (response, post):
        assert r.status_code == 401
        assert r.json() == {"error": {"code": "unauthorized", "message": "missing or invalid bearer token"}}
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_route_and_method_are_json_errors(cluster: Cluster) -> None:
    missing = await cluster.client.get("/api/v1/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no route GET /api/v1/nope"}}
    wrong_method = await cluster.client.delete("/api/v1/sessions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"type": "explode", "target": "x"}', "type: must be one of: start_session"),
        (b'{"type": "kill_session"}', "target: required key is missing"),
        (b'{"type": "kill_session", "target": "x", "color": "red"}', "unknown key(s): color"),
        (b'{"type": "prompt_session", "target": "x", "args": {"prompt": 5}}', "args.prompt: expected a string"),
        (b'{"type": "reply_permission", "target": "x", "args": {"request_id": "r", "reply": "maybe"}}', "args.reply"),
    ],
)
async def test_bad_command_bodies_are_400_with_the_reason(cluster: Cluster, body: bytes, words: str) -> None:
    response = await cluster.client.post("/api/v1/commands", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in ("invalid_body", "invalid_args")
    assert words in error["message"]


async def test_oversized_body_is_413_without_reading_it(cluster: Cluster) -> None:
    # A raw request declaring 2 MiB: the API refuses from the header alone.
    token = cluster.client.headers["Authorization"]
    stream = await trio.open_tcp_stream("127.0.0.1", cluster.supervisor.http_port)
    async with stream:
        head = (
            "POST /api/v1/commands HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {token}\r\nContent-Length: {2 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
        )
        await stream.send_all(head.encode() + b"{")
        response = b""
        with trio.fail_after(10):
            # Read one response (the server need not close: the declared body never came).
            while b'"}}' not in response:
                response += await stream.receive_some()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    body = rest.partition(b"\r\n\r\n")[2]
    assert b'"code":"body_too_large"' in body


async def _read_response(stream: trio.SocketStream, pending: bytes) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response (head and Content-Length body) from *stream*; returns it and what follows."""
    data = pending
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some()
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += await stream.receive_some()
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


async def test_a_refused_request_whose_body_comes_late_leaves_the_connection_usable(cluster: Cluster) -> None:
    # Clients (httpx among them) send a request's head and body in separate writes. A
    # refusal answered before the body arrived used to wedge the keep-alive connection:
    # the client's next request on it never got an answer (seen as a 30 s ReadTimeout).
    body = b'{"type": "kill_session", "target": "x"}'
    head = (
        "POST /api/v1/commands HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer wrong-token-xxxxxxxxxxxx\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    token = cluster.client.headers["Authorization"]
    stream = await trio.open_tcp_stream("127.0.0.1", cluster.supervisor.http_port)
    async with stream:
        await stream.send_all(head.encode())
        early: tuple[bytes, bytes] | None = None
        with trio.move_on_after(0.5):  # the bug answered here, before the body was sent ...
            early = await _read_response(stream, b"")
        if early is not None:
            await trio.testing.wait_all_tasks_blocked()  # ... and finished with it
        await stream.send_all(body)
        with trio.fail_after(10):
            refused, rest = early if early is not None else await _read_response(stream, b"")
            await stream.send_all(f"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n".encode())
            answered, _ = await _read_response(stream, rest)
    assert refused.startswith(b"HTTP/1.1 401")
    assert answered.startswith(b"HTTP/1.1 200")
    assert b'"nodes"' in answered


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("status=bogus", "status must be one of"),
        ("limit=abc", "limit must be an integer"),
        ("limit=0", "limit must be between 1 and 1000"),
        ("since=yesterday", "since must be an RFC 3339 time"),
    ],
)
async def test_bad_query_parameters_are_400(cluster: Cluster, query: str, words: str) -> None:
    session = await _live_session(cluster)
    path = "/api/v1/sessions" if query.startswith("status") else f"/api/v1/sessions/{session.id}/events"
    response = await cluster.client.get(f"{path}?{query}")
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


async def test_session_filters_and_get(cluster: Cluster) -> None:
    session = await _live_session(cluster)
    by_node = (await cluster.client.get("/api/v1/sessions", params={"node": "node-2"})).json()["sessions"]
    assert {s["node_id"] for s in by_node} == {"node-2"}
    assert len(by_node) == 3
    by_project = (await cluster.client.get("/api/v1/sessions", params={"project": session.project})).json()
    assert all(s["project"] == session.project for s in by_project["sessions"])
    one = (await cluster.client.get(f"/api/v1/sessions/{session.id}")).json()["session"]
    assert one["id"] == session.id
    assert set(one) >= {"tokens", "cost_usd", "pending", "compaction_count", "consecutive_errors", "last_activity"}
    missing = await cluster.client.get("/api/v1/sessions/ses-nope")
    assert missing.status_code == 404


async def test_session_events_tail_type_filter_and_follow(cluster: Cluster) -> None:
    session = await _live_session(cluster)

    async def enough() -> bool:
        r = await cluster.client.get(f"/api/v1/sessions/{session.id}/events", params={"limit": 5})
        return len(r.json()["events"]) == 5

    await wait_until(enough, within=20, what="5 events for one session")
    tail = (await cluster.client.get(f"/api/v1/sessions/{session.id}/events", params={"limit": 5})).json()["events"]
    ids = [e["id"] for e in tail]
    assert ids == sorted(ids)  # oldest first
    assert all(e["session_id"] == session.id for e in tail)
    created = (
        await cluster.client.get(f"/api/v1/sessions/{session.id}/events", params={"type": "session.created"})
    ).json()["events"]
    assert [e["type"] for e in created] == ["session.created"]
    prefix = (await cluster.client.get(f"/api/v1/sessions/{session.id}/events", params={"type": "session.*"})).json()
    assert all(e["type"].startswith("session.") for e in prefix["events"])
    after = (
        await cluster.client.get(f"/api/v1/sessions/{session.id}/events", params={"after": ids[0], "limit": 2})
    ).json()["events"]
    assert [e["id"] for e in after] == ids[1:3]


async def test_command_waits_for_the_outcome(cluster: Cluster) -> None:
    session = await _live_session(cluster)
    response = await cluster.client.post("/api/v1/commands", json={"type": "kill_session", "target": session.id})
    assert response.status_code == 200, response.text
    command = response.json()["command"]
    assert command["status"] == "succeeded"
    assert command["actor"] == "api"
    assert command["source"] == "http"
    assert command["correlation_id"]
    assert command["finished_at"] >= command["created_at"]
    await wait_until(lambda: cluster.supervisor.tracker.real_status(session.id) == "completed", what="killed")
    stored = (await cluster.client.get(f"/api/v1/commands/{command['id']}")).json()["command"]
    assert stored == command


async def test_wait_zero_answers_202_then_poll(cluster: Cluster) -> None:
    session = await _live_session(cluster)
    response = await cluster.client.post(
        "/api/v1/commands", params={"wait": 0}, json={"type": "abort_session", "target": session.id}
    )
    assert response.status_code == 202
    command_id = response.json()["command"]["id"]
    final = await cluster.client.get(f"/api/v1/commands/{command_id}", params={"wait": 10})
    assert final.status_code == 200
    assert final.json()["command"]["status"] == "succeeded"


async def test_agent_failure_is_502_with_its_message(cluster: Cluster) -> None:
    session = await _live_session(cluster)
    response = await cluster.client.post(
        "/api/v1/commands",
        json={"type": "reply_permission", "target": session.id, "args": {"request_id": "per_nope", "reply": "once"}},
    )
    assert response.status_code == 502
    body = response.json()
    assert body["command"]["status"] == "failed"
    assert "no pending permission request 'per_nope'" in body["error"]["message"]


async def test_unknown_target_is_404(cluster: Cluster) -> None:
    response = await cluster.client.post("/api/v1/commands", json={"type": "kill_session", "target": "ghost"})
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "unknown_target", "message": "no session or project named 'ghost'"}


async def test_project_target_resolves_to_its_session(cluster: Cluster) -> None:
    session = await _live_session(cluster)
    response = await cluster.client.post(
        "/api/v1/commands", json={"type": "prompt_session", "target": session.project, "args": {"prompt": "go on"}}
    )
    assert response.status_code == 200, response.text
    resolved = response.json()["command"]["result"]["session_id"]
    resolved_session = cluster.supervisor.tracker.get(resolved)
    assert resolved_session is not None
    assert resolved_session.project == session.project


async def test_idempotency_key_runs_a_command_once(cluster: Cluster) -> None:
    body = {"type": "start_session", "target": "proj-1-1", "idempotency_key": "start-once-1"}
    first = await cluster.client.post("/api/v1/commands", json=body)
    second = await cluster.client.post("/api/v1/commands", json=body)
    assert first.status_code == second.status_code == 200
    assert first.json()["command"] == second.json()["command"]
    new_sessions = cluster.supervisor.tracker.sessions(project="proj-1-1")
    created = first.json()["command"]["result"]["session_id"]
    assert sum(1 for s in new_sessions if s.id == created) == 1
    conflict = await cluster.client.post("/api/v1/commands", json={**body, "target": "proj-1-2"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


async def test_offline_target_fails_at_once(cluster: Cluster) -> None:
    session = await _live_session(cluster, "node-2")
    entry = cluster.supervisor.registry.get("node-2")
    assert entry is not None
    cluster.supervisor.registry.expire("node-2", "test: node lost")
    response = await cluster.client.post("/api/v1/commands", json={"type": "abort_session", "target": session.id})
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == {"code": "target_offline", "message": "node 'node-2' is offline"}
    assert body["command"]["status"] == "failed"
    listed = (await cluster.client.get(f"/api/v1/sessions/{session.id}")).json()["session"]
    assert listed["status"] == "unreachable"


async def test_nodes_list_and_get(cluster: Cluster) -> None:
    nodes = (await cluster.client.get("/api/v1/nodes")).json()["nodes"]
    assert [n["id"] for n in nodes] == ["node-1", "node-2"]
    node = (await cluster.client.get("/api/v1/nodes/node-1")).json()["node"]
    assert node["status"] == "online"
    assert [p["name"] for p in node["projects"]] == ["proj-1-1", "proj-1-2"]
    assert node["sessions"] == 3
    assert node["health"] == {"backend": "ok"}
    assert (await cluster.client.get("/api/v1/nodes/ghost")).status_code == 404


async def test_global_events_list_includes_node_online(cluster: Cluster) -> None:
    events = (await cluster.client.get("/api/v1/events", params={"type": "node.online"})).json()["events"]
    assert sorted(e["data"]["node_id"] for e in events) == ["node-1", "node-2"]
    assert all(e["node_id"] == "supervisor" for e in events)


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/commands/cmd-unknown", "/api/v1/sessions/{sid}/events"])
async def test_a_failing_store_read_is_503_and_the_api_recovers(cluster: Cluster, path: str) -> None:
    """Guards: a StoreError in an API read surfaced as a generic 500 internal error."""
    with trio.fail_after(20):
        session = await _live_session(cluster)
        url = path.format(sid=session.id)
        async with reads_failing(cluster.supervisor.store):
            failed = await cluster.client.get(url)
        # The failure was the store's, not the API's: the same read works again.
        recovered = await cluster.client.get(url)
    assert failed.status_code == 503
    assert failed.json() == {
        "error": {"code": "storage_unavailable", "message": "the supervisor's database is unavailable; retry later"}
    }
    assert recovered.status_code == (404 if "cmd-unknown" in url else 200)


async def test_a_started_session_is_readable_as_soon_as_the_command_succeeds(cluster: Cluster) -> None:
    """Guards: the command's result overtook its events, so the new session id was briefly a 404."""
    for attempt in range(5):
        response = await cluster.client.post(
            "/api/v1/commands",
            json={"type": "start_session", "target": "proj-2-1", "args": {"prompt": f"go {attempt}"}},
        )
        assert response.status_code == 200, response.text
        new_id = response.json()["command"]["result"]["session_id"]
        got = await cluster.client.get(f"/api/v1/sessions/{new_id}")  # no waiting in between
        assert got.status_code == 200
        assert got.json()["session"]["project"] == "proj-2-1"
