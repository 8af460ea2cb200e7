"""Runs the HTTP API on hypercorn's trio worker, stopped gracefully by the shutdown event."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from halswarm.http.app import create_app

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext
from halswarm.runtime import listen_error

__all__ = ["HttpServer"]

log = logging.getLogger(__name__)

_KEEP_ALIVE: Final = 75.0


class HttpServer:
    """Start with ``port = await nursery.start(server.run)``; returns after shutdown."""

    def __init__(self, api: ApiContext, *, host: str, port: int, grace: float, shutdown: trio.Event) -> None:
        self.api = api
        self.host = host
        self.port = port
        self.grace = grace
        self.shutdown = shutdown

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the shutdown event, then finish in-flight requests within the grace.

        Cancellation: hypercorn skips socket shutdown when cancelled, so the normal exit
        is the shutdown trigger (house-style rule 10); cancellation is the fallback.
        """
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.graceful_timeout = self.grace
        config.keep_alive_timeout = _KEEP_ALIVE
        config.accesslog = None
        config.errorlog = logging.getLogger("halswarm.http.server")
        app = create_app(self.api)
        async with trio.open_nursery() as nursery:
            try:
                binds: list[str] = await nursery.start(partial(serve, app, config, shutdown_trigger=self.shutdown.wait))
            except* OSError as group:
                raise listen_error(group, f"{self.host}:{self.port} (HTTP API)") from None
            port = urlsplit(binds[0]).port or self.port
            log.info("http api listening", extra={"ctx": {"host": self.host, "port": port}})
            task_status.started(port)
