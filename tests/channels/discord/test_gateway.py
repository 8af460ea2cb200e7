"""The gateway state machine, driven frame by frame with injected time and randomness."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.errors import GatewayStateError
from halswarm.channels.discord.gateway import (
    FATAL_CLOSE_CODES,
    Close,
    Connect,
    Dispatch,
    Gateway,
    GatewayConfig,
    GatewayState,
    Op,
    Ready,
    Send,
    Stop,
    gateway_ws_url,
)

if TYPE_CHECKING:
    from halswarm.channels.discord.gateway import Action
    from halswarm.jsontypes import JSONObject, JSONValue

TOKEN = "bot.token.secret"
URL = "wss://gateway.discord.gg/?v=10&encoding=json"
RESUME_URL = "wss://gateway-us-east1-b.discord.gg"
INTERVAL = 41.25


class FixedRandom(random.Random):
    """``random()`` always returns *value*, so jitter and ``uniform`` are predictable."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def new_gateway(value: float = 0.5, **config: float) -> Gateway:
    return Gateway(GatewayConfig(token=TOKEN, **config), FixedRandom(value))  # type: ignore[arg-type]


def state_of(gw: Gateway) -> GatewayState:
    """The state, read through a call (so the type checker does not pin it between steps)."""
    return gw.state


def deadline_of(gw: Gateway) -> float | None:
    """The next deadline, read through a call for the same reason."""
    return gw.next_deadline


def hello(interval_ms: float = 41250) -> JSONObject:
    return {"op": 10, "d": {"heartbeat_interval": interval_ms}, "s": None, "t": None}


def dispatch(name: str, data: JSONObject, seq: int) -> JSONObject:
    return {"op": 0, "t": name, "s": seq, "d": data}


def ready(seq: int = 1) -> JSONObject:
    return dispatch(
        "READY",
        {"v": 10, "session_id": "sess1", "resume_gateway_url": RESUME_URL, "user": {"id": "1"}, "guilds": []},
        seq,
    )


ACK: JSONObject = {"op": 11, "d": None}


def connected(gw: Gateway, now: float = 0.0) -> list[Action]:
    """start -> opened -> HELLO -> (identify) -> READY; returns what the HELLO produced."""
    assert gw.start(now) == [Connect(URL, 0.0, resume=False)]
    assert gw.opened(now) == []
    actions = gw.receive(hello(), now)
    assert gw.receive(ready(), now) == [Ready("sess1", resumed=False)]
    return actions


def sent(actions: list[Action]) -> list[JSONObject]:
    return [a.frame for a in actions if isinstance(a, Send)]


def test_hello_identify_ready() -> None:
    gw = new_gateway()
    assert state_of(gw) is GatewayState.IDLE
    assert gw.start(0.0) == [Connect(URL, 0.0, resume=False)]
    assert state_of(gw) is GatewayState.CONNECTING
    assert deadline_of(gw) is None
    gw.opened(0.0)
    assert deadline_of(gw) == 20.0  # the hello timeout
    actions = gw.receive(hello(), 0.0)
    assert sent(actions) == [
        {
            "op": 2,
            "d": {
                "token": TOKEN,
                "intents": 0,
                "properties": {"os": "linux", "browser": "halswarm", "device": "halswarm"},
            },
        }
    ]
    assert state_of(gw) is GatewayState.IDENTIFYING
    assert deadline_of(gw) == pytest.approx(INTERVAL * 0.5)  # first heartbeat: interval * jitter
    assert gw.receive(ready(), 1.0) == [Ready("sess1", resumed=False)]
    assert state_of(gw) is GatewayState.READY
    assert (gw.session_id, gw.resume_url, gw.seq) == ("sess1", RESUME_URL, 1)


def test_the_token_never_shows_in_reprs() -> None:
    gw = new_gateway()
    actions = connected(gw)
    assert TOKEN not in repr(actions)
    assert TOKEN not in repr(gw.config)


def test_heartbeats_with_acks_follow_the_interval() -> None:
    gw = new_gateway(value=0.25)
    connected(gw)
    first = INTERVAL * 0.25
    assert gw.timer(first - 0.01) == []  # not due yet
    assert sent(gw.timer(first)) == [{"op": 1, "d": 1}]
    assert gw.receive(ACK, first + 0.05) == []
    assert gw.latency == pytest.approx(0.05)
    assert deadline_of(gw) == pytest.approx(first + INTERVAL)
    gw.receive(dispatch("INTERACTION_CREATE", {"id": "9"}, 2), first + 1)
    assert sent(gw.timer(first + INTERVAL)) == [{"op": 1, "d": 2}]  # carries the last sequence
    gw.receive(ACK, first + INTERVAL + 0.1)
    assert sent(gw.timer(first + 2 * INTERVAL)) == [{"op": 1, "d": 2}]
    assert state_of(gw) is GatewayState.READY


def test_a_late_timer_does_not_send_a_burst() -> None:
    gw = new_gateway()
    connected(gw)
    gw.timer(INTERVAL * 0.5)
    gw.receive(ACK, INTERVAL * 0.5)
    late = INTERVAL * 10
    assert len(sent(gw.timer(late))) == 1
    deadline = deadline_of(gw)
    assert deadline is not None
    assert deadline >= late


def test_the_first_heartbeat_before_ready_carries_null() -> None:
    gw = new_gateway()
    gw.start(0.0)
    gw.opened(0.0)
    gw.receive(hello(), 0.0)
    assert sent(gw.timer(INTERVAL)) == [{"op": 1, "d": None}]


def test_interactions_are_dispatched() -> None:
    gw = new_gateway()
    connected(gw)
    data: JSONObject = {"type": 2, "id": "786", "token": "t"}
    assert gw.receive(dispatch("INTERACTION_CREATE", data, 2), 1.0) == [Dispatch("INTERACTION_CREATE", data)]
    assert gw.seq == 2
    assert gw.receive(dispatch("GUILD_CREATE", {"id": "1"}, 3), 1.0) == [Dispatch("GUILD_CREATE", {"id": "1"})]


def test_the_server_may_ask_for_a_heartbeat_at_once() -> None:
    gw = new_gateway()
    connected(gw)
    assert sent(gw.receive({"op": 1, "d": None}, 2.0)) == [{"op": 1, "d": 1}]
    assert deadline_of(gw) == pytest.approx(INTERVAL * 0.5)  # the schedule is unchanged


def resume_handshake(gw: Gateway, connect: Connect, now: float) -> None:
    assert connect == Connect(f"{RESUME_URL}/?v=10&encoding=json", connect.delay, resume=True)
    gw.opened(now)
    assert sent(gw.receive(hello(), now)) == [{"op": 6, "d": {"token": TOKEN, "session_id": "sess1", "seq": gw.seq}}]
    assert state_of(gw) is GatewayState.RESUMING
    assert gw.receive(dispatch("RESUMED", {}, (gw.seq or 0) + 1), now) == [Ready("sess1", resumed=True)]
    assert state_of(gw) is GatewayState.READY


def test_a_missed_ack_is_a_zombie_reconnect_and_resume() -> None:
    gw = new_gateway()
    connected(gw)
    gw.receive(dispatch("INTERACTION_CREATE", {"id": "9"}, 5), 1.0)
    first = INTERVAL * 0.5
    gw.timer(first)  # heartbeat sent, no ACK comes
    actions = gw.timer(first + INTERVAL)
    assert actions == [Close(4000, "zombie connection: the last heartbeat was never acknowledged")]
    (close,) = actions
    assert isinstance(close, Close)
    assert close.code not in (1000, 1001)  # those would end the session
    assert state_of(gw) is GatewayState.CLOSING
    assert deadline_of(gw) is None
    assert gw.receive(dispatch("X", {}, 6), first + INTERVAL) == []  # ignored while closing
    (connect,) = gw.closed(4000, first + INTERVAL + 1)
    assert isinstance(connect, Connect)
    assert connect.delay == 0.0  # the session was stable: reconnect at once
    resume_handshake(gw, connect, first + INTERVAL + 2)
    assert gw.seq == 6


def test_op_7_reconnects_and_resumes() -> None:
    gw = new_gateway()
    connected(gw)
    assert gw.receive({"op": 7, "d": None}, 100.0) == [Close(4000, "server asked to reconnect (op 7)")]
    (connect,) = gw.closed(4000, 100.0)
    assert isinstance(connect, Connect)
    resume_handshake(gw, connect, 100.0)


def test_invalid_session_false_identifies_anew_after_a_delay() -> None:
    gw = new_gateway(value=0.5)
    connected(gw)
    (close,) = gw.receive({"op": 9, "d": False}, 100.0)
    assert isinstance(close, Close)
    assert "not resumable" in close.reason
    (connect,) = gw.closed(4000, 100.0)
    assert connect == Connect(URL, 3.0, resume=False)  # uniform(1, 5) with random() = 0.5
    assert (gw.session_id, gw.resume_url, gw.seq) == (None, None, None)
    gw.opened(103.0)
    (identify,) = sent(gw.receive(hello(), 103.0))
    assert identify["op"] == Op.IDENTIFY


def test_invalid_session_true_resumes_after_a_delay() -> None:
    gw = new_gateway(value=0.0)
    connected(gw)
    gw.receive({"op": 9, "d": True}, 100.0)
    (connect,) = gw.closed(4000, 100.0)
    assert isinstance(connect, Connect)
    assert connect.delay == 1.0
    resume_handshake(gw, connect, 101.0)


def test_invalid_session_while_identifying() -> None:
    gw = new_gateway()
    gw.start(0.0)
    gw.opened(0.0)
    gw.receive(hello(), 0.0)
    gw.receive({"op": 9, "d": False}, 1.0)
    (connect,) = gw.closed(None, 1.0)
    assert isinstance(connect, Connect)
    assert not connect.resume


@pytest.mark.parametrize("code", sorted(FATAL_CLOSE_CODES))
def test_close_codes_that_forbid_reconnecting_stop(code: int) -> None:
    gw = new_gateway()
    connected(gw)
    (stop,) = gw.closed(code, 5.0)
    assert isinstance(stop, Stop)
    assert stop.code == code
    assert state_of(gw) is GatewayState.STOPPED
    assert gw.closed(None, 6.0) == []
    assert deadline_of(gw) is None


def test_authentication_failed_names_the_setting() -> None:
    gw = new_gateway()
    gw.start(0.0)
    gw.opened(0.0)
    gw.receive(hello(), 0.0)
    (stop,) = gw.closed(4004, 0.5)
    assert stop == Stop("gateway closed 4004: authentication failed: check channels.discord.bot_token", 4004)


@pytest.mark.parametrize("code", [4007, 4009])
def test_close_codes_that_need_a_new_session(code: int) -> None:
    gw = new_gateway()
    connected(gw)
    (connect,) = gw.closed(code, 100.0)
    assert connect == Connect(URL, 0.0, resume=False)
    assert gw.session_id is None


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 4000, 4008, 1011])
def test_other_drops_reconnect_and_resume(code: int | None) -> None:
    gw = new_gateway()
    connected(gw)
    (connect,) = gw.closed(code, 100.0)
    assert isinstance(connect, Connect)
    resume_handshake(gw, connect, 100.0)


def test_failed_reconnects_back_off_and_a_stable_session_resets_it() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    gw = Gateway(GatewayConfig(token=TOKEN, backoff=backoff, stable_after_s=60.0), FixedRandom(1.0))
    gw.start(0.0)
    delays = []
    for _ in range(6):
        (connect,) = gw.closed(None, 0.0)  # the connection attempt failed
        assert isinstance(connect, Connect)
        delays.append(connect.delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # with random() = 1: the full backoff
    gw.opened(0.0)
    gw.receive(hello(), 0.0)
    gw.receive(ready(), 0.0)
    (connect,) = gw.closed(1006, 30.0)  # dropped before it was stable: keep backing off
    assert isinstance(connect, Connect)
    assert connect.delay == 8.0
    gw.opened(40.0)
    gw.receive(hello(), 40.0)
    gw.receive(dispatch("RESUMED", {}, 2), 40.0)
    (connect,) = gw.closed(1006, 200.0)  # READY for 160 s: stable
    assert isinstance(connect, Connect)
    assert connect.delay == 0.0


def test_a_socket_without_hello_times_out() -> None:
    gw = new_gateway(hello_timeout_s=5.0)
    gw.start(0.0)
    gw.opened(0.0)
    assert gw.timer(4.9) == []
    assert gw.timer(5.0) == [Close(4000, "no HELLO within the hello timeout")]
    (connect,) = gw.closed(4000, 5.0)
    assert isinstance(connect, Connect)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not an object", "malformed frame"),
        ({"d": None}, "malformed frame"),
        ({"op": "10"}, "malformed frame"),
        ({"op": True}, "malformed frame"),
    ],
)
def test_malformed_frames_reconnect(frame: JSONValue, reason: str) -> None:
    gw = new_gateway()
    connected(gw)
    (close,) = gw.receive(frame, 1.0)
    assert isinstance(close, Close)
    assert close.reason.startswith(reason)


@pytest.mark.parametrize(
    "d", [None, {}, {"heartbeat_interval": 0}, {"heartbeat_interval": "41250"}, {"heartbeat_interval": True}]
)
def test_a_hello_without_a_usable_interval(d: JSONValue) -> None:
    gw = new_gateway()
    gw.start(0.0)
    gw.opened(0.0)
    (close,) = gw.receive({"op": 10, "d": d}, 0.0)
    assert isinstance(close, Close)
    assert "heartbeat_interval" in close.reason


def test_ready_without_a_session_starts_over() -> None:
    gw = new_gateway()
    gw.start(0.0)
    gw.opened(0.0)
    gw.receive(hello(), 0.0)
    (close,) = gw.receive(dispatch("READY", {"user": {}}, 1), 0.0)
    assert isinstance(close, Close)
    (connect,) = gw.closed(4000, 0.0)
    assert connect == Connect(URL, 0.75, resume=False)  # the first attempt failed: backoff(0) = 0.5 + 0.5 * 0.5


def test_unknown_opcodes_are_ignored() -> None:
    gw = new_gateway()
    connected(gw)
    assert gw.receive({"op": 42, "d": {}}, 1.0) == []
    assert state_of(gw) is GatewayState.READY


def test_stop_closes_with_1000_and_stays_down() -> None:
    gw = new_gateway()
    connected(gw)
    assert gw.stop() == [Close(1000, "shutting down"), Stop("shutting down")]
    assert state_of(gw) is GatewayState.STOPPED
    assert gw.closed(1000, 1.0) == []
    idle = new_gateway()
    assert idle.stop() == [Stop("shutting down")]


def test_inputs_a_state_does_not_allow_are_transport_bugs() -> None:
    gw = new_gateway()
    with pytest.raises(GatewayStateError, match="'opened' is not allowed in state idle"):
        gw.opened(0.0)
    with pytest.raises(GatewayStateError, match="a frame arrived in state idle"):
        gw.receive(hello(), 0.0)
    gw.start(0.0)
    with pytest.raises(GatewayStateError):
        gw.start(0.0)
    with pytest.raises(GatewayStateError, match="a frame arrived in state connecting"):
        gw.receive(hello(), 0.0)
    gw.opened(0.0)
    with pytest.raises(GatewayStateError):
        gw.opened(0.0)


def test_a_hello_twice_is_ignored() -> None:
    gw = new_gateway()
    connected(gw)
    assert gw.receive(hello(), 1.0) == []


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("wss://gateway.discord.gg", URL),
        ("wss://gateway.discord.gg/", URL),
        (
            "wss://gw.example/?v=9&encoding=etf&compress=zlib-stream",
            "wss://gw.example/?compress=zlib-stream&v=10&encoding=json",
        ),
        ("ws://127.0.0.1:8765/gw", "ws://127.0.0.1:8765/gw?v=10&encoding=json"),
    ],
)
def test_gateway_ws_url(base: str, url: str) -> None:
    assert gateway_ws_url(base) == url


# ---- invariants under random input ---------------------------------------------------------------

frames = st.one_of(
    st.builds(lambda op, d: {"op": op, "d": d}, st.integers(0, 12), st.none() | st.booleans() | st.integers()),
    st.builds(
        lambda name, s: {"op": 0, "t": name, "s": s, "d": {}},
        st.sampled_from(["READY", "RESUMED", "INTERACTION_CREATE"]),
        st.integers(1, 100),
    ),
    st.just(hello()),
    st.just(ACK),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), frames),
        st.tuples(st.just("timer"), st.floats(0, 100)),
        st.tuples(st.just("closed"), st.sampled_from([None, 1000, 1006, 4000, 4004, 4007, 4009, 4014])),
        st.tuples(st.just("opened"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, database=None)
@given(steps=steps)
def test_invariants_hold_for_any_sequence(steps: list[tuple[str, object]]) -> None:
    gw = new_gateway()
    gw.start(0.0)
    now = 0.0
    socket_open = False
    pending_connect = True
    for kind, value in steps:
        now += 1.0
        if kind == "opened":
            if not pending_connect:
                continue
            actions = gw.opened(now)
            socket_open, pending_connect = True, False
        elif kind == "frame":
            if not socket_open:
                continue
            assert isinstance(value, dict)
            actions = gw.receive(value, now)
        elif kind == "timer":
            assert isinstance(value, float)
            actions = gw.timer(now + value)
        else:
            if not socket_open and not pending_connect:
                continue
            assert value is None or isinstance(value, int)
            actions = gw.closed(value, now)
            socket_open = False
        for action in actions:
            if isinstance(action, Connect):
                assert not socket_open, "a second socket while one is open"
                assert action.delay >= 0
                pending_connect = True
            if isinstance(action, Close):
                assert socket_open
                assert action.code == 4000
            if isinstance(action, Send):
                assert socket_open
        if gw.state is GatewayState.STOPPED:
            assert deadline_of(gw) is None
            pending_connect = False
            socket_open = False
        if gw.resumable:
            assert gw.session_id is not None
            assert gw.resume_url is not None
