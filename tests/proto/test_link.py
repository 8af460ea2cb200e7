"""Link state machines: an AgentProtocol and a HubProtocol paired, frames shuttled by hand.

Covers handshake order, the send window on both ends, cumulative acks, seq ordering,
lost-state detection, the CLOSED state after a ProtocolError, and resending after a
reconnect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import orjson
import pytest

from halswarm.models import Session
from halswarm.proto import (
    Ack,
    AckReceived,
    AgentProtocol,
    BatchReceived,
    CloseCode,
    CommandMsg,
    CommandReceived,
    CommandResult,
    Heartbeat,
    HeartbeatReceived,
    Hello,
    HelloReceived,
    HubProtocol,
    LinkState,
    ProtocolError,
    ResultReceived,
    Welcome,
    WelcomeReceived,
    WireEvent,
    encode,
    encode_event_body,
)

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

TS = "2026-01-01T00:00:00.000000Z"
WINDOW = 3
HELLO = Hello(node_id="n1", instance_key="key-1", hostname="host", version="0.1.0")
HEARTBEAT = Heartbeat(ts=TS)
COMMAND = CommandMsg("c1", "idem-1", "abort_session", "s1")


def welcome(ack_seq: int = 0, window: int = WINDOW) -> Welcome:
    return Welcome(
        ack_seq=ack_seq,
        heartbeat_interval=30.0,
        window=window,
        max_batch_events=10,
        max_frame_bytes=1 << 20,
        server_version="0.1.0",
    )


def rows(first: int, last: int) -> list[tuple[int, bytes]]:
    """Outbox rows for seqs first..last inclusive."""
    return [(seq, encode_event_body(WireEvent(seq, TS, "session.busy", "s1"))) for seq in range(first, last + 1)]


def raw_events(*seqs: int) -> bytes:
    """A hand-made events frame, bypassing the agent's own window bookkeeping."""
    events: list[JSONObject] = [{"seq": seq, "ts": TS, "type": "x"} for seq in seqs]
    return orjson.dumps({"v": 1, "type": "events", "events": events})


def connect(hello: Hello = HELLO, ack_seq: int = 0, window: int = WINDOW) -> tuple[AgentProtocol, HubProtocol]:
    """Run the handshake between a fresh pair and return both ends, OPEN."""
    agent = AgentProtocol(hello)
    hub = HubProtocol(window=window, max_batch_events=10)
    assert hub.receive(agent.hello_frame()) == [HelloReceived(hello)]
    (received,) = agent.receive(hub.welcome(welcome(ack_seq, window)))
    assert isinstance(received, WelcomeReceived)
    assert agent.state is hub.state is LinkState.OPEN
    return agent, hub


def send(agent: AgentProtocol, hub: HubProtocol, first: int, last: int) -> list[int]:
    """Frame rows first..last on the agent, feed them to the hub, return the seqs it got."""
    (batch,) = hub.receive(agent.events_frame(rows(first, last)))
    assert isinstance(batch, BatchReceived)
    return [event.seq for event in batch.events]


def ack(agent: AgentProtocol, hub: HubProtocol, seq: int) -> AckReceived:
    (received,) = agent.receive(hub.ack(seq))
    assert isinstance(received, AckReceived)
    return received


# ---- handshake ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(raw_events(1), id="events"),
        pytest.param(encode(HEARTBEAT), id="heartbeat"),
        pytest.param(encode(CommandResult("c1", ok=True)), id="result"),
    ],
)
def test_hub_requires_hello_first(first: str | bytes) -> None:
    hub = HubProtocol(window=WINDOW, max_batch_events=10)
    with pytest.raises(ProtocolError, match="first frame must be hello") as info:
        hub.receive(first)
    assert info.value.code is CloseCode.MALFORMED
    assert hub.state is LinkState.CLOSED


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(encode(Ack(0)), id="ack"),
        pytest.param(encode(HEARTBEAT), id="heartbeat"),
        pytest.param(encode(COMMAND), id="command"),
    ],
)
def test_agent_requires_welcome_first(first: str) -> None:
    agent = AgentProtocol(HELLO)
    with pytest.raises(ProtocolError, match="expected welcome first") as info:
        agent.receive(first)
    assert info.value.code is CloseCode.MALFORMED
    assert agent.state is LinkState.CLOSED
    assert not agent.can_send()


def test_hello_twice_is_rejected() -> None:
    agent, hub = connect()
    with pytest.raises(ProtocolError, match="hello sent twice"):
        hub.receive(agent.hello_frame())
    assert hub.state is LinkState.CLOSED


def test_welcome_twice_is_rejected() -> None:
    agent, hub = connect()
    with pytest.raises(ProtocolError, match="unexpected Welcome"):
        agent.receive(encode(welcome()))
    with pytest.raises(RuntimeError):
        hub.welcome(welcome())


@pytest.mark.parametrize("hello", [attrs.evolve(HELLO, node_id=""), attrs.evolve(HELLO, instance_key="")])
def test_hub_rejects_anonymous_hello(hello: Hello) -> None:
    hub = HubProtocol(window=WINDOW, max_batch_events=10)
    with pytest.raises(ProtocolError, match="non-empty node_id and instance_key"):
        hub.receive(encode(hello))


def test_hub_rejects_frames_between_hello_and_welcome() -> None:
    agent = AgentProtocol(HELLO)
    hub = HubProtocol(window=WINDOW, max_batch_events=10)
    hub.receive(agent.hello_frame())
    with pytest.raises(ProtocolError, match="before welcome"):
        hub.receive(encode(HEARTBEAT))


@pytest.mark.parametrize(("window", "batch"), [(0, 10), (1, 0)])
def test_agent_rejects_unusable_welcome(window: int, batch: int) -> None:
    agent = AgentProtocol(HELLO)
    with pytest.raises(ProtocolError, match="below 1"):
        agent.receive(encode(attrs.evolve(welcome(), window=window, max_batch_events=batch)))


@pytest.mark.parametrize("interval", [0.0, -30.0])
def test_agent_rejects_a_welcome_without_a_heartbeat_interval(interval: float) -> None:
    agent = AgentProtocol(HELLO)
    with pytest.raises(ProtocolError, match=r"heartbeat_interval .* must be above 0") as raised:
        agent.receive(encode(attrs.evolve(welcome(), heartbeat_interval=interval)))
    assert raised.value.code is CloseCode.MALFORMED
    assert not agent.can_send()


def test_nothing_is_sent_before_the_handshake() -> None:
    agent = AgentProtocol(HELLO)
    assert not agent.can_send()
    with pytest.raises(RuntimeError, match="not open"):
        agent.events_frame(rows(1, 1))
    with pytest.raises(RuntimeError, match="welcome before hello"):
        HubProtocol(window=WINDOW, max_batch_events=10).welcome(welcome())


@pytest.mark.parametrize("ack_seq", [0, 41])
def test_welcome_sets_acked_and_sent_seq(ack_seq: int) -> None:
    agent, hub = connect(attrs.evolve(HELLO, last_seq=41), ack_seq=ack_seq)
    assert agent.acked_seq == agent.sent_seq == ack_seq
    assert hub.acked_seq == hub.received_seq == ack_seq
    assert send(agent, hub, ack_seq + 1, ack_seq + 2) == [ack_seq + 1, ack_seq + 2]


@pytest.mark.parametrize(
    ("last_seq", "ack_seq", "lost"), [(0, 0, False), (10, 7, False), (10, 10, False), (3, 9, True)]
)
def test_lost_state_when_supervisor_has_seen_more(last_seq: int, ack_seq: int, lost: bool) -> None:
    agent = AgentProtocol(attrs.evolve(HELLO, last_seq=last_seq))
    (received,) = agent.receive(encode(welcome(ack_seq)))
    assert received == WelcomeReceived(welcome(ack_seq), lost_state=lost)


# ---- window and acks ------------------------------------------------------------------


def test_agent_window_fills_and_refuses_more() -> None:
    agent, hub = connect()
    for i in range(WINDOW):
        assert agent.can_send()
        send(agent, hub, 2 * i + 1, 2 * i + 2)
    assert agent.in_flight == WINDOW
    assert not agent.can_send()
    with pytest.raises(RuntimeError, match="window is full"):
        agent.events_frame(rows(7, 7))
    assert agent.sent_seq == 6  # the refused batch was not counted


def test_hub_closes_an_agent_that_exceeds_the_window() -> None:
    _, hub = connect()
    for seq in range(1, WINDOW + 1):
        hub.receive(raw_events(seq))
    with pytest.raises(ProtocolError, match=f"more than {WINDOW} unacknowledged") as info:
        hub.receive(raw_events(WINDOW + 1))
    assert info.value.code is CloseCode.WINDOW_EXCEEDED
    assert hub.state is LinkState.CLOSED


def test_hub_window_frees_on_ack() -> None:
    _, hub = connect()
    for seq in range(1, WINDOW + 1):
        hub.receive(raw_events(seq))
    hub.ack(1)
    assert hub.receive(raw_events(WINDOW + 1)) == [BatchReceived([WireEvent(WINDOW + 1, TS, "x")])]


def test_cumulative_ack_frees_every_batch_up_to_it() -> None:
    agent, hub = connect()
    send(agent, hub, 1, 2)
    send(agent, hub, 3, 5)
    send(agent, hub, 6, 6)
    assert ack(agent, hub, 5) == AckReceived(5, freed=2)
    assert agent.in_flight == 1
    assert agent.acked_seq == 5
    assert agent.can_send()
    assert ack(agent, hub, 6) == AckReceived(6, freed=1)
    assert agent.in_flight == 0


def test_ack_inside_a_batch_keeps_that_batch_in_flight() -> None:
    agent, hub = connect()
    send(agent, hub, 1, 4)
    assert ack(agent, hub, 2) == AckReceived(2, freed=0)
    assert agent.in_flight == 1
    assert ack(agent, hub, 4) == AckReceived(4, freed=1)


def test_repeated_ack_is_harmless() -> None:
    agent, hub = connect()
    send(agent, hub, 1, 1)
    ack(agent, hub, 1)
    assert agent.receive(encode(Ack(1))) == [AckReceived(1, freed=0)]
    assert agent.state is LinkState.OPEN


@pytest.mark.parametrize(("acked", "bad"), [(0, 4), (2, 1), (0, -1)], ids=["beyond-sent", "backwards", "negative"])
def test_agent_rejects_impossible_acks(acked: int, bad: int) -> None:
    agent, hub = connect()
    send(agent, hub, 1, 3)
    if acked:
        ack(agent, hub, acked)
    with pytest.raises(ProtocolError, match=rf"ack {bad} outside \[{acked}, 3\]") as info:
        agent.receive(encode(Ack(bad)))
    assert info.value.code is CloseCode.MALFORMED
    assert agent.state is LinkState.CLOSED


@pytest.mark.parametrize("bad", [-1, 4])
def test_hub_refuses_to_ack_out_of_range(bad: int) -> None:
    agent, hub = connect()
    send(agent, hub, 1, 3)
    with pytest.raises(RuntimeError):
        hub.ack(bad)


# ---- seq ordering and batch shape -------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [((1, 2), (2, 3)), ((1, 5), (4,)), ((1,), (1,))],
    ids=["overlap", "backwards", "repeat"],
)
def test_hub_rejects_non_increasing_seqs_across_batches(first: tuple[int, ...], second: tuple[int, ...]) -> None:
    _, hub = connect()
    hub.receive(raw_events(*first))
    with pytest.raises(ProtocolError, match="does not follow") as info:
        hub.receive(raw_events(*second))
    assert info.value.code is CloseCode.MALFORMED


@pytest.mark.parametrize("seqs", [(2, 2), (3, 1)])
def test_hub_rejects_non_increasing_seqs_within_a_batch(seqs: tuple[int, ...]) -> None:
    _, hub = connect()
    with pytest.raises(ProtocolError, match="does not follow"):
        hub.receive(raw_events(*seqs))


def test_hub_rejects_seqs_at_or_below_welcome_ack() -> None:
    _, hub = connect(attrs.evolve(HELLO, last_seq=10), ack_seq=10)
    with pytest.raises(ProtocolError, match="event seq 10 does not follow 10"):
        hub.receive(raw_events(10))


def test_hub_rejects_empty_and_oversized_batches() -> None:
    _, hub = connect()
    with pytest.raises(ProtocolError, match="empty events batch"):
        hub.receive(raw_events())
    _, hub = connect()
    with pytest.raises(ProtocolError, match="batch of 11 events exceeds the limit of 10"):
        hub.receive(raw_events(*range(1, 12)))


@pytest.mark.parametrize(
    ("batch", "match"),
    [([], "empty batch"), ([(1, b"{}"), (1, b"{}")], "seq 1 does not follow 1")],
)
def test_agent_refuses_to_frame_bad_batches(batch: list[tuple[int, bytes]], match: str) -> None:
    agent, _ = connect()
    with pytest.raises(RuntimeError, match=match):
        agent.events_frame(batch)
    assert agent.in_flight == 0


# ---- other frames, direction checks -----------------------------------------------------


def test_commands_results_and_heartbeats_flow() -> None:
    agent, hub = connect()
    assert agent.receive(hub.command_frame(COMMAND)) == [CommandReceived(COMMAND)]
    assert agent.receive(hub.heartbeat_frame(HEARTBEAT)) == [HeartbeatReceived(HEARTBEAT)]
    result = CommandResult("c1", ok=False, error="no such session")
    assert hub.receive(agent.result_frame(result)) == [ResultReceived(result)]
    assert hub.receive(agent.heartbeat_frame(HEARTBEAT)) == [HeartbeatReceived(HEARTBEAT)]


@pytest.mark.parametrize(
    "frame", [encode(COMMAND), encode(Ack(0)), encode(welcome())], ids=["command", "ack", "welcome"]
)
def test_hub_rejects_supervisor_frames_from_agent(frame: str) -> None:
    _, hub = connect()
    with pytest.raises(ProtocolError, match="from agent"):
        hub.receive(frame)


@pytest.mark.parametrize("frame", [raw_events(1), encode(HELLO), encode(CommandResult("c", ok=True))])
def test_agent_rejects_agent_frames_from_supervisor(frame: str | bytes) -> None:
    agent, _ = connect()
    with pytest.raises(ProtocolError, match="from supervisor"):
        agent.receive(frame)


# ---- CLOSED is final ---------------------------------------------------------------------


def test_agent_is_closed_after_a_protocol_error() -> None:
    agent, hub = connect()
    send(agent, hub, 1, 1)
    with pytest.raises(ProtocolError):
        agent.receive(b"not json")
    assert agent.state is LinkState.CLOSED
    assert not agent.can_send()
    with pytest.raises(ProtocolError, match="link is closed"):
        agent.receive(encode(Ack(1)))  # a valid frame is refused too
    with pytest.raises(RuntimeError):
        agent.events_frame(rows(2, 2))


def test_hub_is_closed_after_a_protocol_error() -> None:
    agent, hub = connect()
    with pytest.raises(ProtocolError):
        hub.receive(b'{"v": 2}')
    assert hub.state is LinkState.CLOSED
    with pytest.raises(ProtocolError, match="link is closed"):
        hub.receive(agent.heartbeat_frame(HEARTBEAT))


def test_hub_refuses_an_event_carrying_another_nodes_session() -> None:
    """Guards: an agent could overwrite another node's session through an event's state."""
    agent, hub = connect()  # HELLO is node n1

    def body(seq: int, node_id: str) -> tuple[int, bytes]:
        state = Session(id=f"s-{node_id}", node_id=node_id, project="p", status="busy")
        return seq, encode_event_body(WireEvent(seq, TS, "session.status", state.id, "p", {}, state))

    (own,) = hub.receive(agent.events_frame([body(1, "n1")]))
    assert isinstance(own, BatchReceived)
    with pytest.raises(ProtocolError) as info:
        hub.receive(agent.events_frame([body(2, "n1"), body(3, "n2")]))
    assert info.value.code is CloseCode.MALFORMED
    assert info.value.reason == "event seq 3 carries a session of node 'n2'"
    assert hub.state is LinkState.CLOSED
    assert hub.received_seq == 1  # nothing of the refused batch was taken


# ---- reconnect ------------------------------------------------------------------------------


def test_resend_after_reconnect_starts_after_welcome_ack() -> None:
    outbox = dict(rows(1, 9))  # the agent's durable outbox: seq -> body
    agent, hub = connect()
    received = send(agent, hub, 1, 3) + send(agent, hub, 4, 6) + send(agent, hub, 7, 9)
    assert received == list(range(1, 10))
    ack(agent, hub, 3)  # only the first batch is stored when the connection drops
    for seq in range(1, agent.acked_seq + 1):
        del outbox[seq]

    # Reconnect: new machines; the supervisor's welcome says what it has stored.
    agent2 = AgentProtocol(attrs.evolve(HELLO, last_seq=max(outbox)))
    hub2 = HubProtocol(window=WINDOW, max_batch_events=10)
    hub2.receive(agent2.hello_frame())
    (got,) = agent2.receive(hub2.welcome(welcome(ack_seq=hub.acked_seq)))
    assert got == WelcomeReceived(welcome(3), lost_state=False)

    pending = sorted(seq for seq in outbox if seq > agent2.acked_seq)
    assert pending[0] == 4
    (batch,) = hub2.receive(agent2.events_frame([(seq, outbox[seq]) for seq in pending]))
    assert isinstance(batch, BatchReceived)
    assert [event.seq for event in batch.events] == list(range(4, 10))
    assert ack(agent2, hub2, 9) == AckReceived(9, freed=1)


def test_agent_cannot_resend_what_welcome_acked() -> None:
    agent, _ = connect(attrs.evolve(HELLO, last_seq=9), ack_seq=5)
    with pytest.raises(RuntimeError, match="seq 5 does not follow 5"):
        agent.events_frame(rows(5, 9))
    assert agent.sent_seq == 5
