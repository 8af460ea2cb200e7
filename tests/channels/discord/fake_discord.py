"""A fake Discord on loopback: REST (quart-trio on hypercorn) and gateway (trio-websocket).

It follows the documented shapes (provider-apis.md §3): bot routes need
``Authorization: Bot <token>``; interaction routes (callback, ``/webhooks/...``) need
none; every answer carries ``X-RateLimit-*`` headers; a 429 can be injected with
``retry_after`` (body and ``Retry-After``) and a 5xx too. The gateway sends HELLO,
ACKs heartbeats, answers IDENTIFY with READY (``session_id``, ``resume_gateway_url``)
and RESUME with RESUMED, dispatches ``INTERACTION_CREATE``, and can drop the connection
or send op 7 / op 9 on demand.

:func:`sign` signs an interaction body with the test key whose public half is
:data:`PUBLIC_KEY_HEX`.
"""

from __future__ import annotations

import itertools
import json
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from halswarm.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator


BOT_TOKEN: Final = "fake-bot-token-0123456789"
PRIVATE_KEY: Final = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
PUBLIC_KEY_HEX: Final = PRIVATE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def sign(body: bytes, timestamp: str, key: Ed25519PrivateKey = PRIVATE_KEY) -> dict[str, str]:
    """The signature headers Discord sends with *body*."""
    return {
        "X-Signature-Ed25519": key.sign(timestamp.encode() + body).hex(),
        "X-Signature-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


@attrs.frozen
class Call:
    """One REST request the fake received."""

    method: str
    path: str
    json: JSONValue
    authorization: str | None
    at: float  # trio.current_time()

    @property
    def obj(self) -> JSONObject:
        """The body, which must be a JSON object."""
        assert isinstance(self.json, dict), self.json
        return self.json


@attrs.frozen
class Injected:
    """An error answer for the next request whose path contains ``path_part``."""

    status: int
    path_part: str
    retry_after: float = 0.0
    is_global: bool = False


@attrs.define
class FakeRest:
    """The REST half: records calls, answers documented shapes."""

    bot_token: str = BOT_TOKEN
    calls: list[Call] = attrs.Factory(list)
    injected: list[Injected] = attrs.Factory(list)
    messages: dict[str, JSONObject] = attrs.Factory(dict)
    gateway_url: str = ""
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1_100_000_000_000_000_000))

    def inject(self, status: int, path_part: str, *, retry_after: float = 0.0, is_global: bool = False) -> None:
        """Answer the next request on a path containing *path_part* with *status*."""
        self.injected.append(Injected(status, path_part, retry_after, is_global))

    def calls_to(self, method: str, path_part: str) -> list[Call]:
        """The recorded calls with *method* whose path contains *path_part*."""
        return [c for c in self.calls if c.method == method and path_part in c.path]

    def new_id(self) -> str:
        return str(next(self._ids))

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-discord")
        headers = {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset-After": "1.0",
            "X-RateLimit-Bucket": "fakebucket",
        }

        def answer(body: JSONValue, status: int = 200) -> Response:
            text = "" if body is None else json.dumps(body)
            return Response(text, status=status, content_type="application/json", headers=headers)

        def bot_only() -> Response | None:
            if request.headers.get("Authorization") != f"Bot {self.bot_token}":
                return answer({"message": "401: Unauthorized", "code": 0}, 401)
            return None

        @app.before_request
        async def record() -> Response | None:
            body = await request.get_json(silent=True)
            self.calls.append(
                Call(request.method, request.path, body, request.headers.get("Authorization"), trio.current_time())
            )
            if request.headers.get("User-Agent", "").startswith("DiscordBot (") is False:
                return answer({"message": "missing User-Agent", "code": 0}, 400)
            for i, inj in enumerate(self.injected):
                if inj.path_part in request.path:
                    del self.injected[i]
                    if inj.status == 429:
                        retry = f"{inj.retry_after:.3f}"
                        return Response(
                            json.dumps(
                                {
                                    "message": "You are being rate limited.",
                                    "retry_after": inj.retry_after,
                                    "global": inj.is_global,
                                }
                            ),
                            status=429,
                            content_type="application/json",
                            headers={
                                "Retry-After": retry,
                                "X-RateLimit-Limit": "5",
                                "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset-After": retry,
                                "X-RateLimit-Bucket": "fakebucket",
                                "X-RateLimit-Scope": "global" if inj.is_global else "user",
                                **({"X-RateLimit-Global": "true"} if inj.is_global else {}),
                            },
                        )
                    return answer({"message": "Internal Server Error", "code": 0}, inj.status)
            return None

        @app.put("/applications/<app_id>/guilds/<guild_id>/commands")
        async def overwrite(app_id: str, guild_id: str) -> Response:
            if refused := bot_only():
                return refused
            commands: list[JSONObject] = await request.get_json()
            out: list[JSONValue] = [
                {**c, "id": self.new_id(), "application_id": app_id, "guild_id": guild_id} for c in commands
            ]
            return answer(out)

        def message(channel_id: str, message_id: str, body: JSONObject) -> JSONObject:
            old = self.messages.get(message_id, {})
            msg: JSONObject = {"content": "", "embeds": [], "components": [], **old, **body}
            msg.update({"id": message_id, "channel_id": channel_id, "type": 0})
            self.messages[message_id] = msg
            return msg

        @app.post("/channels/<channel_id>/messages")
        async def create(channel_id: str) -> Response:
            if refused := bot_only():
                return refused
            return answer(message(channel_id, self.new_id(), await request.get_json()))

        @app.patch("/channels/<channel_id>/messages/<message_id>")
        async def edit(channel_id: str, message_id: str) -> Response:
            if refused := bot_only():
                return refused
            return answer(message(channel_id, message_id, await request.get_json()))

        @app.post("/interactions/<interaction_id>/<token>/callback")
        async def callback(interaction_id: str, token: str) -> Response:
            return Response("", status=204, headers=headers)

        @app.patch("/webhooks/<app_id>/<token>/messages/@original")
        async def edit_original(app_id: str, token: str) -> Response:
            return answer(message("0", f"original-{token}", await request.get_json()))

        @app.post("/webhooks/<app_id>/<token>")
        async def followup(app_id: str, token: str) -> Response:
            return answer(message("0", self.new_id(), await request.get_json()))

        @app.get("/gateway/bot")
        async def gateway_bot() -> Response:
            if refused := bot_only():
                return refused
            return answer(
                {
                    "url": self.gateway_url,
                    "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
                }
            )

        return app


@attrs.define
class GatewayConn:
    """One client connection to the fake gateway."""

    ws: WebSocketConnection
    path: str
    frames: list[JSONObject] = attrs.Factory(list)  # what the client sent
    session_id: str | None = None


@attrs.define
class FakeGateway:
    """The gateway half (see the module docstring)."""

    bot_token: str = BOT_TOKEN
    heartbeat_interval_ms: int = 45_000
    url: str = ""
    conns: list[GatewayConn] = attrs.Factory(list)
    seq: int = 0
    sessions: set[str] = attrs.Factory(set)
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    @property
    def current(self) -> GatewayConn:
        return self.conns[-1]

    def frames(self, op: int) -> list[JSONObject]:
        """Frames with *op* the client sent, over all connections."""
        return [f for c in self.conns for f in c.frames if f.get("op") == op]

    async def _send(self, conn: GatewayConn, frame: JSONObject) -> None:
        await conn.ws.send_message(json.dumps(frame))

    async def dispatch(self, name: str, data: JSONObject) -> None:
        """Send a dispatch (op 0) on the current connection."""
        self.seq += 1
        await self._send(self.current, {"op": 0, "s": self.seq, "t": name, "d": data})

    async def send_op(self, op: int, d: JSONValue = None) -> None:
        """Send op 7 (reconnect), op 9 (invalid session) ... on the current connection."""
        await self._send(self.current, {"op": op, "d": d, "s": None, "t": None})

    async def drop(self, code: int = 4000) -> None:
        """Close the current connection from the server side (Discord's 4000: unknown error)."""
        await self.current.ws.aclose(code, "dropped by the fake")

    async def handler(self, req: WebSocketRequest) -> None:
        ws = await req.accept()
        conn = GatewayConn(ws, req.path)
        self.conns.append(conn)
        try:
            await self._send(
                conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
            )
            while True:
                frame = json.loads(await ws.get_message())
                conn.frames.append(frame)
                await self._handle(conn, frame)
        except ConnectionClosed:
            return

    async def _handle(self, conn: GatewayConn, frame: JSONObject) -> None:
        op, d = frame.get("op"), frame.get("d")
        assert isinstance(d, dict) or op == 1
        if op == 1:
            await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            assert isinstance(d, dict)
            if d.get("token") != self.bot_token:
                await ws_close(conn.ws, 4004)
                return
            conn.session_id = f"session{next(self._ids)}"
            self.sessions.add(conn.session_id)
            self.seq += 1
            ready: JSONObject = {
                "v": 10,
                "session_id": conn.session_id,
                "resume_gateway_url": self.url,
                "user": {"id": "1", "username": "halswarm", "bot": True},
                "guilds": [],
                "application": {"id": "456", "flags": 0},
            }
            await self._send(conn, {"op": 0, "s": self.seq, "t": "READY", "d": ready})
        elif op == 6:
            assert isinstance(d, dict)
            if d.get("token") != self.bot_token or d.get("session_id") not in self.sessions:
                await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
                return
            conn.session_id = str(d["session_id"])
            self.seq += 1
            await self._send(conn, {"op": 0, "s": self.seq, "t": "RESUMED", "d": {}})


async def ws_close(ws: WebSocketConnection, code: int) -> None:
    await ws.aclose(code, "closed by the fake")


@attrs.define
class FakeDiscord:
    """Both halves, with their URLs."""

    rest: FakeRest
    gateway: FakeGateway
    rest_url: str
    gateway_url: str


@asynccontextmanager
async def open_fake_discord(
    *, bot_token: str = BOT_TOKEN, heartbeat_interval_ms: int = 45_000
) -> AsyncGenerator[FakeDiscord, None]:
    """Run the fake on loopback (OS-chosen ports) for the duration of the block."""
    rest = FakeRest(bot_token)
    gateway = FakeGateway(bot_token, heartbeat_interval_ms)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        binds: list[str] = await nursery.start(partial(serve, rest.app(), config, shutdown_trigger=stop.wait))
        port = urlsplit(binds[0]).port
        server = await nursery.start(partial(serve_websocket, gateway.handler, "127.0.0.1", 0, ssl_context=None))
        gateway.url = f"ws://127.0.0.1:{server.port}"
        rest.gateway_url = gateway.url
        try:
            yield FakeDiscord(rest, gateway, f"http://127.0.0.1:{port}", gateway.url)
        finally:
            stop.set()
            nursery.cancel_scope.deadline = trio.current_time() + 2.0
            nursery.cancel_scope.cancel()
