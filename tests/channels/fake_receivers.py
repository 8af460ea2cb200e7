"""A fake webhook receiver and Slack endpoint on ``127.0.0.1:0`` (quart-trio on hypercorn), recording requests.

Every path answers; per path the test scripts the statuses of the next requests
(``answers``; afterwards 200) and a delay (``delays``). A 200 answers the body ``ok``,
which is what Slack's incoming webhooks answer (provider-apis.md §4) and what generic
webhooks may answer too.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs
import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from halswarm.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.jsontypes import JSONObject

__all__ = ["FakeReceiver", "Received", "open_fake_receiver"]

_SHUTDOWN_GRACE: Final = 0.2  # idle keep-alive connections hold hypercorn this long


@attrs.frozen
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    #: ``trio.current_time()`` when it arrived.
    at: float

    def json(self) -> JSONObject:
        """The body as a JSON object."""
        value = orjson.loads(self.body)
        assert isinstance(value, dict)
        return value

    def signed_by(self, secret: str, *, now: float) -> bool:
        """The halswarm signature headers verify with *secret*."""
        return verify_signature(
            secret,
            self.body,
            self.headers.get(TIMESTAMP_HEADER.lower(), ""),
            self.headers.get(SIGNATURE_HEADER.lower(), ""),
            now=now,
        )


@attrs.define
class FakeReceiver:
    """What the fake answers and what it received."""

    base_url: str = ""
    requests: list[Received] = attrs.Factory(list)
    #: Path -> statuses of the next requests, in order (then 200).
    answers: dict[str, list[int]] = attrs.Factory(dict)
    #: Path -> seconds to wait before answering (every request).
    delays: dict[str, float] = attrs.Factory(dict)
    #: Set on exit: delayed answers stop waiting.
    release: trio.Event = attrs.Factory(trio.Event)

    def url(self, path: str) -> str:
        """The absolute URL of *path* (``/hooks/n8n``)."""
        return self.base_url + path

    def to(self, path: str) -> list[Received]:
        """The requests received on *path*."""
        return [r for r in self.requests if r.path == path]

    async def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        self.requests.append(Received(path, headers, body, trio.current_time()))
        delay = self.delays.get(path)
        if delay:
            with trio.move_on_after(delay):
                await self.release.wait()
        script = self.answers.get(path)
        status = script.pop(0) if script else 200
        return status, "ok" if status == 200 else f"status {status}"


def _create_app(fake: FakeReceiver) -> QuartTrio:
    app = QuartTrio("halswarm-fake-receiver")
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    async def receive(path: str = "") -> Response:
        body = await request.get_data()
        assert isinstance(body, bytes)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, text = await fake.handle(request.path, headers, body)
        return Response(text, status=status, content_type="text/plain")

    app.add_url_rule("/<path:path>", "any", receive, methods=["POST"])
    return app


@asynccontextmanager
async def open_fake_receiver() -> AsyncGenerator[FakeReceiver, None]:
    """Serve a :class:`FakeReceiver` on ``127.0.0.1:0`` for the duration of the block.

    Resource handling: hypercorn runs in a nursery owned by this context manager; on exit
    delayed answers are released, then hypercorn shuts down within a short grace.
    """
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = _SHUTDOWN_GRACE
    config.accesslog = None
    config.errorlog = None
    fake = FakeReceiver()
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, _create_app(fake), config, shutdown_trigger=shutdown.wait)
        )
        fake.base_url = f"http://127.0.0.1:{urlsplit(binds[0]).port}"
        try:
            yield fake
        finally:
            fake.release.set()
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _SHUTDOWN_GRACE + 1.0
