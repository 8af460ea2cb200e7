"""The hub over real loopback sockets: auth before upgrade, clear close codes for bad
frames, node identity rules, and no collateral damage to other agents. Issue #8: per-node
tokens (close 4401), the Origin allowlist (403), and throttled, audited auth failures
(delays checked on MockClock against a hub with a recording store)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, cast

import attrs
import orjson
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

from halswarm.agent.connector import open_ws
from halswarm.auth_failures import FailureAudit
from halswarm.auth_throttle import FailureThrottle
from halswarm.config.supervisor import SecurityConfig, ServerConfig
from halswarm.models import Session
from halswarm.obs.metrics import Metrics
from halswarm.proto import Ack, CloseCode, Hello, SessionSnapshot, Welcome, decode, encode
from halswarm.store.policy_sql import AuditQuery
from halswarm.supervisor.hub import Hub
from halswarm.supervisor.pipeline import SUPERVISOR_NODE_ID, Pipeline
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.tracker import SessionTracker
from halswarm.testing import TEST_TOKEN, api_client, open_supervisor, supervisor_config, wait_until
from halswarm.timeutil import system_now
from tests.sqlite_faults import disk_full

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    from trio_websocket import WebSocketRequest

    from halswarm.store import AuditRecord, Store
    from halswarm.supervisor.app import SupervisorHandle

TS = "2026-01-01T00:00:00.000000Z"


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[SupervisorHandle]:
    config = supervisor_config(tmp_path / "s.db", max_frame_bytes=65536, window=1, heartbeat_interval_sec=0.2)
    with trio.fail_after(30):
        async with open_supervisor(config) as handle:
            yield handle


@asynccontextmanager
async def raw_ws(
    handle: SupervisorHandle, token: str | None = TEST_TOKEN, path: str = "/ws", origin: str | None = None
) -> AsyncGenerator[WebSocketConnection, None]:
    headers = [(b"Authorization", f"Bearer {token}".encode())] if token is not None else []
    if origin is not None:
        headers.append((b"Origin", origin.encode()))
    async with open_ws(
        f"ws://127.0.0.1:{handle.ws_port}{path}", headers, connect_timeout=5, close_timeout=2, max_message_size=1 << 20
    ) as ws:
        yield ws


def hello(node_id: str = "node-x", key: str = "key-x", sessions: list[SessionSnapshot] | None = None) -> str:
    return encode(Hello(node_id=node_id, instance_key=key, hostname="h", version="t", sessions=sessions or []))


async def handshake(ws: WebSocketConnection, node_id: str = "node-x", key: str = "key-x") -> Welcome:
    await ws.send_message(hello(node_id, key))
    welcome = decode(await ws.get_message())
    assert isinstance(welcome, Welcome)
    return welcome


async def close_code(ws: WebSocketConnection) -> tuple[int, str]:
    """Read until the hub closes the connection; return its close code and reason."""
    with trio.fail_after(5):
        while True:
            try:
                await ws.get_message()
            except ConnectionClosed as exc:
                reason = exc.reason
                break
    assert reason is not None
    return reason.code, reason.reason or ""


def events_frame(seqs: range) -> str:
    events = [{"seq": s, "ts": TS, "type": "x.test", "data": {}} for s in seqs]
    return orjson.dumps({"v": 1, "type": "events", "events": events}).decode()


@pytest.mark.parametrize("token", ["wrong-token-0000000000", None])
async def test_bad_token_is_401_before_upgrade(supervisor: SupervisorHandle, token: str | None) -> None:
    with pytest.RaisesGroup(ConnectionRejected, allow_unwrapped=True, flatten_subgroups=True) as caught:
        async with raw_ws(supervisor, token=token):
            pass
    rejected = caught.value if isinstance(caught.value, ConnectionRejected) else caught.value.exceptions[0]
    assert isinstance(rejected, ConnectionRejected)
    assert rejected.status_code == 401
    assert orjson.loads(rejected.body or b"{}")["error"]["code"] == "unauthorized"
    assert supervisor.registry.get("node-x") is None
    assert 'hal_o_swarm_auth_failures_total{listener="ws"} 1.0' in supervisor.metrics.render().decode()


async def test_unknown_path_is_404(supervisor: SupervisorHandle) -> None:
    with pytest.RaisesGroup(ConnectionRejected, allow_unwrapped=True, flatten_subgroups=True):
        async with raw_ws(supervisor, path="/nope"):
            pass


@pytest.mark.parametrize(
    ("first_frame", "code", "words"),
    [
        ("not json", CloseCode.MALFORMED, "not valid JSON"),
        ('{"v": 1, "type": "heartbeat", "ts": "' + TS + '"}', CloseCode.MALFORMED, "first frame must be hello"),
        ('{"v": 2, "type": "hello"}', CloseCode.UNSUPPORTED_VERSION, "unsupported protocol version"),
        ('{"v": 1, "type": "hello", "node_id": 7}', CloseCode.MALFORMED, "node_id"),
        ('{"v": 1, "type": "warp"}', CloseCode.MALFORMED, "unknown frame type"),
    ],
)
async def test_bad_first_frame_closes_with_clear_code(
    supervisor: SupervisorHandle, first_frame: str, code: CloseCode, words: str
) -> None:
    async with raw_ws(supervisor) as ws:
        await ws.send_message(first_frame)
        got_code, reason = await close_code(ws)
    assert got_code == code
    assert words in reason


async def test_malformed_frame_after_handshake_only_closes_that_agent(supervisor: SupervisorHandle) -> None:
    async with raw_ws(supervisor) as good, raw_ws(supervisor) as bad:
        await handshake(good, "node-good", "k1")
        await handshake(bad, "node-bad", "k2")
        await bad.send_message('{"v":1,"type":"events","events":[{"seq":1,"ts":"yesterday","type":"x"}]}')
        got_code, reason = await close_code(bad)
        assert got_code == CloseCode.MALFORMED
        assert "ts must be an RFC 3339" in reason
        # The good agent keeps working: its events are stored and acknowledged.
        await good.send_message(events_frame(range(1, 4)))
        ack = decode(await good.get_message())
        while not hasattr(ack, "seq"):  # skip heartbeats
            ack = decode(await good.get_message())
        assert getattr(ack, "seq", None) == 3
    assert supervisor.pipeline.last_seq("node-good") == 3
    assert supervisor.pipeline.last_seq("node-bad") == 0


async def test_oversized_frame_closes_with_1009(supervisor: SupervisorHandle) -> None:
    async with raw_ws(supervisor) as ws:
        await handshake(ws)
        await ws.send_message("x" * 100_000)  # max_frame_bytes is 65536 here
        got_code, _ = await close_code(ws)
    assert got_code == CloseCode.MESSAGE_TOO_BIG


async def test_exceeding_the_window_is_refused(supervisor: SupervisorHandle) -> None:
    # window=1: a second batch before the first ack breaks flow control.
    async with raw_ws(supervisor) as ws:
        await handshake(ws)
        await ws.send_message(events_frame(range(1, 2)) + "")
        await ws.send_message(events_frame(range(2, 3)))
        with trio.fail_after(5):
            while True:
                try:
                    await ws.get_message()
                except ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason else None
                    break
    # The hub reads the second batch before the first one's commit (a thread hop) is acked.
    assert code == CloseCode.WINDOW_EXCEEDED


async def test_non_increasing_seqs_are_refused(supervisor: SupervisorHandle) -> None:
    async with raw_ws(supervisor) as ws:
        await handshake(ws)
        await ws.send_message(events_frame(range(5, 3, -1)))
        got_code, reason = await close_code(ws)
    assert got_code == CloseCode.MALFORMED
    assert "does not follow" in reason


async def test_another_instance_cannot_take_a_live_node_id(supervisor: SupervisorHandle) -> None:
    async with raw_ws(supervisor) as first, raw_ws(supervisor) as intruder:
        await handshake(first, "node-same", "instance-1")
        await intruder.send_message(hello("node-same", "instance-2"))
        got_code, reason = await close_code(intruder)
        assert got_code == CloseCode.NODE_ID_CONFLICT
        assert "in use by another agent instance" in reason
        entry = supervisor.registry.get("node-same")
        assert entry is not None
        assert entry.online
        assert entry.record.instance_key == "instance-1"
        # The first connection still works.
        await first.send_message(events_frame(range(1, 2)))
        await wait_until(lambda: supervisor.pipeline.last_seq("node-same") == 1, what="event stored")


async def test_same_instance_reconnecting_replaces_its_stale_connection(supervisor: SupervisorHandle) -> None:
    async with raw_ws(supervisor) as stale, raw_ws(supervisor) as fresh:
        await handshake(stale, "node-r", "instance-r")
        await handshake(fresh, "node-r", "instance-r")
        got_code, _ = await close_code(stale)
        assert got_code == CloseCode.REPLACED
        entry = supervisor.registry.get("node-r")
        assert entry is not None
        assert entry.online
        assert entry.link is not None


async def test_reserved_node_id_is_refused(supervisor: SupervisorHandle) -> None:
    async with raw_ws(supervisor) as ws:
        await ws.send_message(hello("supervisor", "k"))
        got_code, reason = await close_code(ws)
    assert got_code == CloseCode.MALFORMED
    assert "reserved" in reason


async def test_silent_agent_goes_offline_and_its_sessions_unreachable_until_it_returns(
    supervisor: SupervisorHandle,
) -> None:
    session = Session(id="ses-live", node_id="node-s", project="p", status="busy")
    async with raw_ws(supervisor) as ws:
        await ws.send_message(hello("node-s", "ks", [SessionSnapshot(1, session)]))
        decode(await ws.get_message())
        await wait_until(lambda: supervisor.tracker.get("ses-live") is not None, what="session tracked")
        # Say nothing more: after 0.2 s x 3 the node is offline and the hub closes us.
        got_code, _ = await close_code(ws)
        assert got_code == CloseCode.HEARTBEAT_TIMEOUT
    entry = supervisor.registry.get("node-s")
    assert entry is not None
    assert entry.status() == "offline"
    view = supervisor.tracker.get("ses-live")
    assert view is not None
    assert view.status == "unreachable"

    async with raw_ws(supervisor) as ws:
        await handshake(ws, "node-s", "ks")
        assert entry.status() == "online"
        view = supervisor.tracker.get("ses-live")
        assert view is not None
        assert view.status == "busy"


async def test_a_storage_failure_closes_only_that_connection_with_1011(tmp_path: Path) -> None:
    """Guards: a StoreError while recording an agent's hello crashed the whole supervisor."""
    config = supervisor_config(tmp_path / "s.db", max_frame_bytes=65536)  # default heartbeats: no expiry here
    with trio.fail_after(30):
        async with open_supervisor(config) as sup, raw_ws(sup) as good:
            await handshake(good, "node-good", "k1")
            # Let the node.online event commit first, so only the hello below meets the full disk.
            await wait_until(lambda: sup.pipeline.last_seq(SUPERVISOR_NODE_ID) == 1, what="node.online stored")
            async with disk_full(sup.store._writer, sup.store._write_gate), raw_ws(sup) as unlucky:
                # A hostname too big for the pages left: recording this node needs a new page.
                await unlucky.send_message(
                    encode(Hello(node_id="node-big", instance_key="k2", hostname="h" * 20_000, version="t"))
                )
                got_code, reason = await close_code(unlucky)
                assert got_code == CloseCode.INTERNAL_ERROR
                assert reason == "supervisor storage unavailable; retry later"
                assert not sup.store.healthy
            # The supervisor kept running: the other agent is still online and, with room
            # on the disk again, its events are stored and acknowledged.
            entry = sup.registry.get("node-good")
            assert entry is not None
            assert entry.status() == "online"
            await good.send_message(events_frame(range(1, 4)))
            ack = decode(await good.get_message())
            while not isinstance(ack, Ack):  # skip heartbeats
                ack = decode(await good.get_message())
            assert ack.seq == 3
            assert sup.pipeline.last_seq("node-good") == 3


async def test_a_connection_replaced_before_its_welcome_is_closed_not_left_open(
    supervisor: SupervisorHandle,
) -> None:
    """Guards: a connection replaced while its hello was being recorded was welcomed anyway and lived on as a zombie."""
    gate = supervisor.store._write_gate
    with trio.fail_after(20):
        async with raw_ws(supervisor) as stale, raw_ws(supervisor) as fresh:
            # The store's writer is busy (we hold it): the stale connection's hello cannot be
            # recorded, so its welcome waits.
            await gate.acquire()
            try:
                await stale.send_message(hello("node-z", "instance-z"))
                await wait_until(lambda: _link_of(supervisor, "node-z") is not None, what="stale attached")
                stale_link = _link_of(supervisor, "node-z")
                # The same instance reconnects before that welcome went out.
                await fresh.send_message(hello("node-z", "instance-z"))
                await wait_until(lambda: _link_of(supervisor, "node-z") is not stale_link, what="fresh attached")
            finally:
                gate.release()
            welcome = decode(await fresh.get_message())
            assert isinstance(welcome, Welcome)
            # The stale connection gets no welcome, only its close.
            received: list[str] = []
            with trio.fail_after(5):
                while True:
                    try:
                        message = await stale.get_message()
                    except ConnectionClosed as exc:
                        reason = exc.reason
                        break
                    received.append(str(message))
            assert received == []
            assert reason is not None
            assert reason.code == CloseCode.REPLACED


def _link_of(handle: SupervisorHandle, node_id: str) -> object:
    entry = handle.registry.get(node_id)
    return entry.link if entry is not None else None


# ---- issue #8: per-node tokens, origins, throttled and audited failures ----------------

NODE_A_TOKEN: Final = "node-a-token-000000000"
NODE_B_TOKEN: Final = "node-b-token-000000000"


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[SupervisorHandle]:
    """node-a and node-b have their own tokens; browsers only from ops.example.com."""
    config = supervisor_config(
        tmp_path / "s.db",
        node_tokens={"node-a": NODE_A_TOKEN, "node-b": NODE_B_TOKEN},
        security=SecurityConfig(origin_allowlist=["https://ops.example.com"]),
    )
    with trio.fail_after(30):
        async with open_supervisor(config) as handle:
            yield handle


async def auth_audit_rows(handle: SupervisorHandle) -> list[tuple[str, str, str]]:
    rows = await handle.store.query_audit(AuditQuery(action="auth.failure"))
    return [(row.actor, row.outcome, str(row.detail.get("reason"))) for row in rows]


async def test_a_node_token_connects_its_own_node(guarded: SupervisorHandle) -> None:
    async with raw_ws(guarded, token=NODE_A_TOKEN) as ws:
        await handshake(ws, "node-a", "key-a")
    # A node without its own token still uses the shared one.
    async with raw_ws(guarded) as ws:
        await handshake(ws, "node-c", "key-c")


@pytest.mark.parametrize(
    ("token", "node_id", "words"),
    [
        (TEST_TOKEN, "node-a", "node node-a has its own token (server.node_tokens); the shared token is refused"),
        (NODE_B_TOKEN, "node-a", "this token is not node node-a's own token"),
        (NODE_A_TOKEN, "node-c", "this token belongs to another node (server.node_tokens), not to node-c"),
    ],
)
async def test_a_token_not_valid_for_the_hello_node_is_refused_with_4401(
    guarded: SupervisorHandle, token: str, node_id: str, words: str
) -> None:
    async with raw_ws(guarded, token=token) as ws:
        await ws.send_message(hello(node_id, "key"))
        code, reason = await close_code(ws)
    assert code == CloseCode.AUTH_REFUSED
    assert words in reason
    assert guarded.registry.get(node_id) is None
    assert 'hal_o_swarm_auth_failures_total{listener="ws"} 1.0' in guarded.metrics.render().decode()
    assert await auth_audit_rows(guarded) == [(f"node:{node_id}", "refused", reason)]


async def test_an_upgrade_from_a_foreign_origin_is_403(guarded: SupervisorHandle) -> None:
    with pytest.RaisesGroup(ConnectionRejected, allow_unwrapped=True, flatten_subgroups=True) as caught:
        async with raw_ws(guarded, origin="https://evil.example.com"):
            pass
    rejected = caught.value if isinstance(caught.value, ConnectionRejected) else caught.value.exceptions[0]
    assert isinstance(rejected, ConnectionRejected)
    assert rejected.status_code == 403
    assert orjson.loads(rejected.body or b"{}")["error"]["code"] == "forbidden"
    # An allowed origin and no origin at all (agents) both pass.
    async with raw_ws(guarded, origin="https://ops.example.com") as ws:
        await handshake(ws, "node-c", "key-c")
    async with raw_ws(guarded) as ws:
        await handshake(ws, "node-d", "key-d")


async def test_bad_tokens_write_one_audit_row_per_address_per_minute(supervisor: SupervisorHandle) -> None:
    for _ in range(3):
        with pytest.RaisesGroup(ConnectionRejected, allow_unwrapped=True, flatten_subgroups=True):
            async with raw_ws(supervisor, token="wrong-token-0000000000"):
                pass
    rows = await supervisor.store.query_audit(AuditQuery(action="auth.failure"))
    assert len(rows) == 1
    assert (rows[0].actor, rows[0].source, rows[0].outcome) == ("unknown", "ws", "refused")
    assert rows[0].detail == {"address": "127.0.0.1", "reason": "missing or invalid bearer token", "count": 1}
    assert "wrong-token" not in str(rows[0])
    assert 'hal_o_swarm_auth_failures_total{listener="ws"} 3.0' in supervisor.metrics.render().decode()


class RecordingStore:
    """Just enough of :class:`Store` for :meth:`Hub.auth_failed`; can be made to break."""

    def __init__(self) -> None:
        self.audits: list[AuditRecord] = []
        self.broken = False

    async def insert_audit(self, audit: AuditRecord) -> None:
        if self.broken:
            raise RuntimeError("a bug below the hub")
        self.audits.append(audit)


@attrs.define
class FakeRequest:
    """An upgrade request as trio-websocket hands it to the hub, recording the answer."""

    headers: list[tuple[bytes, bytes]]
    path: str = "/ws"
    remote: str = "10.0.0.7"
    rejected: list[int] = attrs.Factory(list)

    async def reject(self, status: int, *, extra_headers: object = None, body: bytes = b"") -> None:
        del extra_headers, body
        self.rejected.append(status)


async def test_an_unexpected_error_before_the_upgrade_ends_only_that_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = RecordingStore()
    hub = offline_hub(store)
    store.broken = True
    request = FakeRequest([(b"authorization", b"Bearer wrong-token")])
    # Would otherwise propagate to the hub's nursery and stop the supervisor.
    await hub.handle_request(cast("WebSocketRequest", request))
    assert request.rejected == [500]
    store.broken = False
    again = FakeRequest([(b"authorization", b"Bearer wrong-token")])
    await hub.handle_request(cast("WebSocketRequest", again))
    assert again.rejected == [401]


async def test_a_flood_of_bad_tokens_keeps_the_delay_capped(autojump_clock: trio.testing.MockClock) -> None:
    store = RecordingStore()
    hub = offline_hub(store)
    for _ in range(2000):  # 2 ** 1029 overflowed a float before the exponent was capped
        await hub.auth_failed("10.0.0.9", "missing or invalid bearer token", actor="unknown")
    start = trio.current_time()
    request = FakeRequest([(b"authorization", b"Bearer wrong-token")], remote="10.0.0.9")
    await hub.handle_request(cast("WebSocketRequest", request))
    assert request.rejected == [401]
    assert trio.current_time() - start == 4.0  # the throttle's maximum


def offline_hub(store: RecordingStore) -> Hub:
    """A hub that is never run: only its auth-failure path is exercised."""
    tracker = SessionTracker()
    return Hub(
        ServerConfig(auth_token=TEST_TOKEN),
        registry=NodeRegistry(on_reachability=tracker.set_node_reachable),
        tracker=tracker,
        pipeline=cast("Pipeline", None),
        store=cast("Store", store),
        metrics=Metrics(),
        now=system_now,
        on_result=lambda _node, _result: None,
        on_node_offline=lambda _node, _reason: None,
        shutdown=trio.Event(),
        throttle=FailureThrottle(free=2, base_delay=1.0, max_delay=4.0, window=600.0),
        failure_audit=FailureAudit(interval=60.0),
    )


async def test_repeated_failures_are_answered_ever_later(autojump_clock: trio.testing.MockClock) -> None:
    store = RecordingStore()
    hub = offline_hub(store)
    delays: list[float] = []
    for _ in range(6):
        start = trio.current_time()
        await hub.auth_failed("10.0.0.9", "missing or invalid bearer token", actor="unknown")
        delays.append(trio.current_time() - start)
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]
    # Another address is not slowed down by this one.
    start = trio.current_time()
    await hub.auth_failed("10.0.0.10", "missing or invalid bearer token", actor="unknown")
    assert trio.current_time() == start
    # 11 s have passed: one row for 10.0.0.9 so far, one for 10.0.0.10.
    assert [(a.detail["address"], a.detail["count"]) for a in store.audits] == [("10.0.0.9", 1), ("10.0.0.10", 1)]
    await trio.sleep(60)
    await hub.auth_failed("10.0.0.9", "missing or invalid bearer token", actor="unknown")
    # The new row stands for the five failures since the first row and this one.
    assert store.audits[-1].detail == {"address": "10.0.0.9", "reason": "missing or invalid bearer token", "count": 6}
    assert hub.metrics.registry.get_sample_value("hal_o_swarm_auth_failures_total", {"listener": "ws"}) == 8.0


async def test_environment_commands_are_refused_for_an_agent_without_the_capability(
    supervisor: SupervisorHandle,
) -> None:
    """An older agent would close its link on an unknown command and get it again on
    every reconnect; the dispatcher refuses it up front instead."""
    async with raw_ws(supervisor) as ws:
        await handshake(ws, "node-old", "key-old")  # a hello without capabilities
        async with api_client(supervisor) as client:
            response = await client.post("/api/v1/env/check/node-old")
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "not_supported"
