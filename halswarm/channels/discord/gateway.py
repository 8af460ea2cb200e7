"""The Discord gateway client as a sans-IO state machine: frames in, actions out.

For deployments without a public URL for the interactions endpoint: interactions
arrive as ``INTERACTION_CREATE`` dispatches instead and are answered over REST
(``POST /interactions/{id}/{token}/callback``). The transport (trio-websocket, not in
this module) owns the socket and the timers and does what the actions say:

==================  ==============================================================
action              transport does
==================  ==============================================================
:class:`Connect`    sleep ``delay``, open ``url``, then :meth:`Gateway.opened`
                    (or :meth:`Gateway.closed` with ``None`` if that fails)
:class:`Send`       send ``frame`` as JSON text
:class:`Close`      close the socket with ``code``, then :meth:`Gateway.closed`
:class:`Dispatch`   hand ``data`` to the handler (``INTERACTION_CREATE``) or ignore
:class:`Ready`      log it; mark the Discord channel healthy
:class:`Stop`       give up (config error, e.g. a bad token): log ``reason``
==================  ==============================================================

and calls :meth:`Gateway.receive` per decoded frame, :meth:`Gateway.timer` when
:attr:`Gateway.next_deadline` passes (``trio.move_on_at``), :meth:`Gateway.closed` when
the socket goes away. Time (``now``, monotonic seconds) and randomness (``rng``) are
injected, so every sequence is testable without sockets.

Source: ``provider-apis.md`` covers Discord's REST and interactions contracts but not
the gateway; the opcodes, close codes and timings below follow Discord's public gateway
documentation (developer docs, "Gateway" and "Opcodes and Status Codes"), and the fake
gateway in ``tests/channels/discord/fake_discord.py`` follows this description.

Protocol (gateway v10, JSON): HELLO (op 10) gives ``heartbeat_interval`` (ms). The
first heartbeat (op 1, ``d`` = last sequence or null) goes after ``interval * random()``
so reconnecting clients spread out, then one every interval. Each must be ACKed (op 11)
before the next is due; otherwise the connection is a zombie: close it with a code other
than 1000/1001 (which would end the session) and RESUME. Right after HELLO we IDENTIFY
(op 2: token, intents, properties) or, with a session to continue, RESUME (op 6: token,
session_id, seq) on the ``resume_gateway_url`` READY gave. The server may ask for a
heartbeat at once (op 1), a reconnect (op 7: reconnect and resume), or invalidate the
session (op 9: ``d`` true = may resume, false = identify anew; wait 1-5 s first).

Intents: **0**. Interactions are delivered whatever the intents; halswarm reads no
messages, members or presences, so it asks for nothing (and never a privileged intent).

Close codes 4004 (authentication failed) and 4010-4014 (shard, version, intents) cannot
be fixed by retrying: :class:`Stop`. 4007 (invalid seq) and 4009 (session timed out)
need a new session. Everything else reconnects, resuming when a session exists.

Reconnect backoff: after a session was READY for ``stable_after_s`` the next reconnect
is immediate (op 7 and zombies are routine); each further attempt without reaching a
stable session waits ``backoff.delay(n)`` (exponential, jittered, capped). That also
keeps a crash loop far from the 1000 identifies a day Discord allows.

Invariants:

- at most one socket: :class:`Connect` is only emitted with no socket open;
- ``session_id``, ``resume_url`` and ``seq`` are all set or the next hello identifies;
- heartbeats run only between HELLO and the socket closing;
- nothing is emitted in ``STOPPED``.
"""

from __future__ import annotations

import enum
import urllib.parse
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.errors import GatewayStateError
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object

if TYPE_CHECKING:
    import random

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "FATAL_CLOSE_CODES",
    "GATEWAY_VERSION",
    "INTENTS",
    "NEW_SESSION_CLOSE_CODES",
    "RESUMABLE_CLOSE_CODE",
    "Action",
    "Close",
    "Connect",
    "Dispatch",
    "Gateway",
    "GatewayConfig",
    "GatewayState",
    "Op",
    "Ready",
    "Send",
    "Stop",
    "gateway_ws_url",
]

GATEWAY_VERSION: Final = 10
DEFAULT_GATEWAY_URL: Final = "wss://gateway.discord.gg"
#: No intents: INTERACTION_CREATE needs none.
INTENTS: Final = 0
#: What we close with to keep the session resumable (1000/1001 would end it).
RESUMABLE_CLOSE_CODE: Final = 4000
_SHUTDOWN_CLOSE_CODE: Final = 1000
_DEFAULT_BACKOFF: Final = Backoff(initial=1.0, maximum=60.0)

FATAL_CLOSE_CODES: Final[dict[int, str]] = {
    4004: "authentication failed: check channels.discord.bot_token",
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid gateway API version",
    4013: "invalid intents",
    4014: "disallowed intents: a privileged intent is not enabled in the Developer Portal",
}
NEW_SESSION_CLOSE_CODES: Final[dict[int, str]] = {
    4007: "invalid sequence number on resume",
    4009: "session timed out",
}


class Op(enum.IntEnum):
    """Gateway opcodes halswarm sends or handles."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    RESUME = 6
    RECONNECT = 7
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class GatewayState(enum.Enum):
    """Where the connection stands."""

    IDLE = "idle"  # start() not called yet
    CONNECTING = "connecting"  # Connect emitted, no socket yet
    AWAITING_HELLO = "awaiting_hello"  # socket open, waiting for op 10
    IDENTIFYING = "identifying"  # IDENTIFY sent, waiting for READY
    RESUMING = "resuming"  # RESUME sent, waiting for RESUMED
    READY = "ready"
    CLOSING = "closing"  # Close emitted, waiting for closed()
    STOPPED = "stopped"


_S = GatewayState
_SOCKET_OPEN: Final = frozenset({_S.AWAITING_HELLO, _S.IDENTIFYING, _S.RESUMING, _S.READY})
_HEARTBEATING: Final = frozenset({_S.IDENTIFYING, _S.RESUMING, _S.READY})

# (state, trigger) -> next state. Anything missing is a transport bug (GatewayStateError).
_TRANSITIONS: Final[dict[tuple[GatewayState, str], GatewayState]] = {
    (_S.IDLE, "start"): _S.CONNECTING,
    (_S.CONNECTING, "opened"): _S.AWAITING_HELLO,
    (_S.CONNECTING, "closed"): _S.CONNECTING,  # the connect attempt failed
    (_S.AWAITING_HELLO, "identify"): _S.IDENTIFYING,
    (_S.AWAITING_HELLO, "resume"): _S.RESUMING,
    (_S.IDENTIFYING, "ready"): _S.READY,
    (_S.RESUMING, "ready"): _S.READY,  # Discord may start a new session on a resume
    (_S.RESUMING, "resumed"): _S.READY,
    **{(s, "close"): _S.CLOSING for s in _SOCKET_OPEN},
    **{(s, "closed"): _S.CONNECTING for s in (*_SOCKET_OPEN, _S.CLOSING)},
    **{(s, "fatal"): _S.STOPPED for s in (*_SOCKET_OPEN, _S.CLOSING, _S.CONNECTING)},
    **{(s, "stop"): _S.STOPPED for s in GatewayState},
}


@attrs.frozen
class Send:
    """Send this frame (may hold the bot token: only ``op`` is in the repr)."""

    op: Op
    frame: JSONObject = attrs.field(repr=False)


@attrs.frozen
class Connect:
    """Open a websocket to ``url`` after ``delay`` seconds."""

    url: str
    delay: float
    resume: bool


@attrs.frozen
class Close:
    """Close the socket with ``code``; ``reason`` is for the log."""

    code: int
    reason: str


@attrs.frozen
class Dispatch:
    """A dispatched event (``INTERACTION_CREATE`` and whatever else Discord sends)."""

    name: str
    data: JSONObject = attrs.field(repr=False)


@attrs.frozen
class Ready:
    """The session is up (``resumed``: continued after a reconnect, nothing missed)."""

    session_id: str
    resumed: bool


@attrs.frozen
class Stop:
    """Reconnecting cannot help; the gateway stays down until restarted with a fixed config."""

    reason: str
    code: int | None = None


Action: TypeAlias = Send | Connect | Close | Dispatch | Ready | Stop


def gateway_ws_url(base: str) -> str:
    """*base* with ``v=10&encoding=json`` (replacing any ``v``/``encoding`` it had)."""
    parts = urllib.parse.urlsplit(base)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("v", "encoding")]
    query += [("v", str(GATEWAY_VERSION)), ("encoding", "json")]
    path = parts.path or "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), ""))


@attrs.frozen
class GatewayConfig:
    """Settings of one gateway connection."""

    token: str = attrs.field(repr=False)
    url: str = DEFAULT_GATEWAY_URL  # from GET /gateway/bot, or channels.discord.gateway_url
    intents: int = INTENTS
    os: str = "linux"
    #: Give up on a socket that sends no HELLO within this many seconds.
    hello_timeout_s: float = 20.0
    backoff: Backoff = _DEFAULT_BACKOFF
    #: A session READY this long resets the backoff.
    stable_after_s: float = 60.0
    #: Wait before reconnecting after op 9 (uniform between the two, in seconds).
    invalid_session_delay: tuple[float, float] = (1.0, 5.0)


@attrs.define
class _Plan:
    resume: bool
    min_delay: float


class Gateway:
    """One gateway connection's protocol state (see the module docstring)."""

    def __init__(self, config: GatewayConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self.state = GatewayState.IDLE
        self.session_id: str | None = None
        self.resume_url: str | None = None
        self.seq: int | None = None
        self.latency: float | None = None  # seconds from the last heartbeat to its ACK
        self._interval: float | None = None
        self._next_heartbeat: float | None = None
        self._heartbeat_sent_at: float | None = None
        self._awaiting_ack = False
        self._hello_deadline: float | None = None
        self._ready_at: float | None = None
        self._attempt = 0
        self._plan: _Plan | None = None

    # ---- state ---------------------------------------------------------------------------

    def _move(self, trigger: str) -> None:
        nxt = _TRANSITIONS.get((self.state, trigger))
        if nxt is None:
            raise GatewayStateError(f"gateway: {trigger!r} is not allowed in state {self.state.value}")
        self.state = nxt

    @property
    def resumable(self) -> bool:
        """True when the next connection can RESUME rather than IDENTIFY."""
        return self.session_id is not None and self.resume_url is not None and self.seq is not None

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`timer` must be called next (monotonic seconds); None: no timer."""
        if self.state is GatewayState.AWAITING_HELLO:
            return self._hello_deadline
        if self.state in _HEARTBEATING:
            return self._next_heartbeat
        return None

    # ---- transport events ----------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin: connect to the configured URL at once."""
        self._move("start")
        self._attempt = 1  # a failure of this first attempt already backs off
        return [Connect(gateway_ws_url(self.config.url), 0.0, resume=False)]

    def opened(self, now: float) -> list[Action]:
        """The socket is open; HELLO should follow."""
        self._move("opened")
        self._hello_deadline = now + self.config.hello_timeout_s
        return []

    def closed(self, code: int | None, now: float) -> list[Action]:
        """The socket is gone (*code*: the close code, None when the connection failed or dropped)."""
        if self.state is GatewayState.STOPPED:
            return []
        self._stop_heartbeat()
        if code is not None and code in FATAL_CLOSE_CODES:
            self._move("fatal")
            return [Stop(f"gateway closed {code}: {FATAL_CLOSE_CODES[code]}", code)]
        plan = self._plan or _Plan(resume=True, min_delay=0.0)
        self._plan = None
        if code is not None and code in NEW_SESSION_CLOSE_CODES:
            plan = _Plan(resume=False, min_delay=plan.min_delay)
        if not plan.resume:
            self._forget_session()
        self._move("closed")
        return [self._reconnect(plan, now)]

    def stop(self) -> list[Action]:
        """Shut down: close with 1000 (ends the session), then nothing more."""
        socket_open = self.state in _SOCKET_OPEN
        self._move("stop")
        self._stop_heartbeat()
        if socket_open:
            return [Close(_SHUTDOWN_CLOSE_CODE, "shutting down"), Stop("shutting down")]
        return [Stop("shutting down")]

    def timer(self, now: float) -> list[Action]:
        """The deadline passed: hello timeout, heartbeat due, or zombie connection."""
        if self.state is GatewayState.AWAITING_HELLO:
            if self._hello_deadline is not None and now >= self._hello_deadline:
                return self._close("no HELLO within the hello timeout", resume=True)
            return []
        if self.state not in _HEARTBEATING or self._next_heartbeat is None or now < self._next_heartbeat:
            return []
        if self._awaiting_ack:
            return self._close("zombie connection: the last heartbeat was never acknowledged", resume=True)
        assert self._interval is not None
        self._next_heartbeat = max(self._next_heartbeat + self._interval, now)
        self._awaiting_ack = True
        self._heartbeat_sent_at = now
        return [self._heartbeat()]

    def receive(self, frame: JSONValue, now: float) -> list[Action]:
        """One decoded frame from the socket."""
        if self.state is GatewayState.CLOSING:
            return []  # we are leaving; nothing it says changes that
        if self.state not in _SOCKET_OPEN:
            raise GatewayStateError(f"gateway: a frame arrived in state {self.state.value}")
        if not is_json_object(frame) or isinstance(frame.get("op"), bool) or not isinstance(frame.get("op"), int):
            return self._close("malformed frame (no op)", resume=True)
        op = frame["op"]
        data = frame.get("d")
        match op:
            case Op.HELLO:
                return self._hello(data, now)
            case Op.HEARTBEAT_ACK:
                self._awaiting_ack = False
                if self._heartbeat_sent_at is not None:
                    self.latency = now - self._heartbeat_sent_at
                return []
            case Op.HEARTBEAT:
                return [self._heartbeat()] if self.state in _HEARTBEATING else []
            case Op.DISPATCH:
                return self._dispatch(frame, now)
            case Op.RECONNECT:
                return self._close("server asked to reconnect (op 7)", resume=True)
            case Op.INVALID_SESSION:
                low, high = self.config.invalid_session_delay
                resume = data is True
                why = "resumable" if resume else "not resumable"
                return self._close(
                    f"session invalidated (op 9, {why})", resume=resume, delay=self._rng.uniform(low, high)
                )
        return []  # opcodes for features halswarm does not use

    # ---- frames ---------------------------------------------------------------------------

    def _hello(self, data: JSONValue, now: float) -> list[Action]:
        if self.state is not GatewayState.AWAITING_HELLO:
            return []
        interval_ms = data.get("heartbeat_interval") if is_json_object(data) else None
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int | float) or not interval_ms > 0:
            return self._close("HELLO without a valid heartbeat_interval", resume=True)
        self._interval = interval_ms / 1000.0
        self._next_heartbeat = now + self._interval * self._rng.random()
        self._awaiting_ack = False
        self._hello_deadline = None
        if self.resumable:
            assert self.session_id is not None
            self._move("resume")
            resume: JSONObject = {"token": self.config.token, "session_id": self.session_id, "seq": self.seq}
            return [Send(Op.RESUME, {"op": int(Op.RESUME), "d": resume})]
        self._move("identify")
        identify: JSONObject = {
            "token": self.config.token,
            "intents": self.config.intents,
            "properties": {"os": self.config.os, "browser": "halswarm", "device": "halswarm"},
        }
        return [Send(Op.IDENTIFY, {"op": int(Op.IDENTIFY), "d": identify})]

    def _dispatch(self, frame: JSONObject, now: float) -> list[Action]:
        seq = frame.get("s")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.seq = seq
        name = frame.get("t")
        data = frame.get("d")
        if not isinstance(name, str) or not is_json_object(data):
            return []  # nothing usable; the sequence number still counts
        if name == "READY":
            session_id = data.get("session_id")
            resume_url = data.get("resume_gateway_url")
            if not isinstance(session_id, str) or not isinstance(resume_url, str):
                return self._close("READY without session_id or resume_gateway_url", resume=False)
            self.session_id, self.resume_url = session_id, resume_url
            self._move("ready")
            self._ready_at = now
            return [Ready(session_id, resumed=False)]
        if name == "RESUMED" and self.state is GatewayState.RESUMING:
            self._move("resumed")
            self._ready_at = now
            assert self.session_id is not None
            return [Ready(self.session_id, resumed=True)]
        return [Dispatch(name, data)]

    def _heartbeat(self) -> Send:
        return Send(Op.HEARTBEAT, {"op": int(Op.HEARTBEAT), "d": self.seq})

    # ---- closing and reconnecting ------------------------------------------------------------

    def _close(self, reason: str, *, resume: bool, delay: float = 0.0) -> list[Action]:
        self._move("close")
        self._plan = _Plan(resume=resume, min_delay=delay)
        self._stop_heartbeat()
        return [Close(RESUMABLE_CLOSE_CODE, reason)]

    def _stop_heartbeat(self) -> None:
        self._next_heartbeat = None
        self._awaiting_ack = False
        self._hello_deadline = None

    def _forget_session(self) -> None:
        self.session_id = self.resume_url = None
        self.seq = None

    def _reconnect(self, plan: _Plan, now: float) -> Connect:
        if self._ready_at is not None and now - self._ready_at >= self.config.stable_after_s:
            self._attempt = 0
        self._ready_at = None
        delay = plan.min_delay
        if self._attempt > 0:
            delay = max(delay, self.config.backoff.delay(self._attempt - 1, self._rng))
        self._attempt += 1
        resume = plan.resume and self.resumable
        assert self.resume_url is not None or not resume
        url = self.resume_url if resume and self.resume_url else self.config.url
        return Connect(gateway_ws_url(url), delay, resume=resume)
