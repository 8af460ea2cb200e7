"""Runs the HTTP API on hypercorn's trio worker, stopped gracefully by the shutdown event.

With TLS (``security.tls``) it serves HTTPS: hypercorn builds the context from the same
certificate and key (TLS >= 1.2), after :func:`halswarm.tls.server_ssl_context` has checked
them so a bad file fails at startup with a message naming it.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from halswarm.http.app import create_app
from halswarm.runtime import listen_error
from halswarm.tls import server_ssl_context

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["HttpServer"]

log = logging.getLogger(__name__)

_KEEP_ALIVE: Final = 75.0
#: Hypercorn's default is 60 s: a client that opens TCP and never finishes the TLS
#: handshake should not hold a connection that long (issue #8, hardening).
_TLS_HANDSHAKE_TIMEOUT: Final = 10.0


class HttpServer:
    """Start with ``port = await nursery.start(server.run)``; returns after shutdown."""

    def __init__(
        self,
        api: ApiContext,
        *,
        host: str,
        port: int,
        grace: float,
        shutdown: trio.Event,
        tls_files: tuple[str, str] | None = None,
    ) -> None:
        """*tls_files* is ``(cert_path, key_path)`` to serve HTTPS; ``None`` serves plain HTTP."""
        self.api = api
        self.host = host
        self.port = port
        self.grace = grace
        self.shutdown = shutdown
        self.tls_files = tls_files

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the shutdown event, then finish in-flight requests within the grace.

        Cancellation: hypercorn skips socket shutdown when cancelled, so the normal exit
        is the shutdown trigger (house-style rule 10); cancellation is the fallback.

        Raises:
            TlsConfigError: the TLS certificate or key cannot be loaded.
            OSError: the port cannot be bound.
        """
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.graceful_timeout = self.grace
        # An idle keep-alive connection (and one still sending its request head) is
        # closed after this. No read_timeout: a client waiting for a command's result
        # sends nothing for up to the command's wait, and that is legitimate.
        config.keep_alive_timeout = _KEEP_ALIVE
        config.ssl_handshake_timeout = _TLS_HANDSHAKE_TIMEOUT
        if self.tls_files is not None:
            cert_path, key_path = self.tls_files
            server_ssl_context(cert_path, key_path)  # fails early, naming the bad file
            config.certfile, config.keyfile = cert_path, key_path
        config.accesslog = None
        config.errorlog = logging.getLogger("halswarm.http.server")
        app = create_app(self.api)
        async with trio.open_nursery() as nursery:
            try:
                binds: list[str] = await nursery.start(partial(serve, app, config, shutdown_trigger=self.shutdown.wait))
            except* OSError as group:
                raise listen_error(group, f"{self.host}:{self.port} (HTTP API)") from None
            port = urlsplit(binds[0]).port or self.port
            scheme = "https" if self.tls_files is not None else "http"
            log.info("http api listening", extra={"ctx": {"host": self.host, "port": port, "scheme": scheme}})
            task_status.started(port)
