"""The gateway transport: trio-websocket around the sans-IO :class:`~.gateway.Gateway`.

One reader loop per socket (house style rule 3): do what the machine's actions say,
read a frame under ``move_on_at(next_deadline)`` and feed it (or :meth:`Gateway.timer`
when the deadline passes), and report the socket's end with :meth:`Gateway.closed`.
Reconnect, resume, backoff and invalid-session handling are the machine's decisions
(its ``Connect`` actions carry the delay). Only this loop sends on the socket, so
frames never interleave. The close timeout is short: on shutdown (cancellation) the
socket's reader is cancelled too, so the close handshake can only end by the timeout.

A Discord outage never stops the supervisor: connection failures are logged and fed
to the machine, which backs off; only a :class:`~.gateway.Stop` (e.g. a bad token,
close code 4004) ends :meth:`GatewayRunner.run`, with an error in the log.
"""

from __future__ import annotations

import json
import logging
import math
import random
from typing import TYPE_CHECKING, Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from halswarm.agent.connector import open_ws
from halswarm.channels.discord.gateway import Close, Connect, Dispatch, Gateway, GatewayConfig, Ready, Send, Stop
from halswarm.obs.logging import ctx

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.channels.discord.gateway import Action
    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = ["GatewayRunner"]

log = logging.getLogger(__name__)

_MAX_FRAME: Final = 4 * 1024 * 1024


class GatewayRunner:
    """Keeps one gateway connection up and hands dispatches to *on_dispatch*.

    *on_dispatch* must not block (start background work instead): the reader loop
    also keeps the heartbeats on time.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        on_dispatch: Callable[[str, JSONObject], None],
        rng: random.Random | None = None,
        connect_timeout_s: float = 10.0,
        send_timeout_s: float = 10.0,
        close_timeout_s: float = 1.0,
    ) -> None:
        self.machine = Gateway(config, rng or random.Random())
        self.on_dispatch = on_dispatch
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.close_timeout_s = close_timeout_s
        #: Ready actions seen (``resumed`` tells RESUMED from READY), for health and tests.
        self.readies: list[Ready] = []
        self.connects = 0
        self.stopped: Stop | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and stay connected until cancelled or the machine says Stop.

        Error handling: an unexpected error (a malformed URL, a frame order the state
        machine refuses) ends the gateway with the traceback logged; it never reaches the
        supervisor's nursery (a Discord problem must not stop the supervisor).
        """
        task_status.started()
        try:
            await self._run()
        except Exception:
            log.exception("Discord gateway stopped by an unexpected error; the supervisor keeps running without it")

    async def _run(self) -> None:
        actions = self.machine.start(trio.current_time())
        while True:
            connect: Connect | None = None
            for action in actions:
                if isinstance(action, Connect):
                    connect = action
                elif isinstance(action, Stop):
                    self._stop(action)
            if connect is None:
                return
            if connect.delay > 0:
                log.info("Discord gateway: reconnecting in %.1fs", connect.delay, extra=ctx(resume=connect.resume))
                await trio.sleep(connect.delay)
            actions = await self._connect_once(connect)

    async def _connect_once(self, connect: Connect) -> list[Action]:
        self.connects += 1
        reported: list[list[Action]] = []
        try:
            async with open_ws(
                connect.url,
                [],
                connect_timeout=self.connect_timeout_s,
                close_timeout=self.close_timeout_s,
                max_message_size=_MAX_FRAME,
            ) as ws:
                reported.append(await self._session(ws, self.machine.opened(trio.current_time())))
        except* (HandshakeError, OSError, ConnectionClosed, trio.BrokenResourceError, trio.TooSlowError) as group:
            log.warning("Discord gateway: connection failed or dropped: %r", group.exceptions[0])
        if reported:
            return reported[0]
        return self.machine.closed(None, trio.current_time())

    async def _session(self, ws: WebSocketConnection, actions: list[Action]) -> list[Action]:
        """The reader loop of one socket; returns the machine's actions after :meth:`Gateway.closed`."""
        while True:
            for action in actions:
                match action:
                    case Send():
                        with trio.fail_after(self.send_timeout_s):
                            await ws.send_message(json.dumps(action.frame))
                    case Close():
                        log.info("Discord gateway: closing (%s)", action.reason, extra=ctx(code=action.code))
                        with trio.move_on_after(self.close_timeout_s, shield=True):
                            await ws.aclose(action.code, action.reason)
                        return self.machine.closed(None, trio.current_time())
                    case Dispatch():
                        self.on_dispatch(action.name, action.data)
                    case Ready():
                        self.readies.append(action)
                        log.info("Discord gateway ready", extra=ctx(resumed=action.resumed))
                    case Stop():
                        self._stop(action)
                    case Connect():
                        return [action]  # not expected with a socket open; the outer loop handles it
            deadline = self.machine.next_deadline
            text: str | bytes | None = None
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                try:
                    text = await ws.get_message()
                except ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason is not None else None
                    log.info("Discord gateway: connection closed", extra=ctx(code=code))
                    return self.machine.closed(code, trio.current_time())
            now = trio.current_time()
            actions = self.machine.timer(now) if text is None else self.machine.receive(_decode(text), now)

    def _stop(self, action: Stop) -> None:
        self.stopped = action
        if action.reason != "shutting down":
            log.error("Discord gateway stopped: %s", action.reason, extra=ctx(code=action.code))


def _decode(text: str | bytes) -> JSONValue:
    try:
        value: JSONValue = json.loads(text)
    except ValueError:
        return None  # the machine closes on a frame without an op
    return value
