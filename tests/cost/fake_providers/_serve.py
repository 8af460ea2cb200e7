"""Serving a fake: in-process through httpx.MockTransport, or on a loopback port."""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from tests.cost.fake_providers._anthropic import FakeAnthropic
from tests.cost.fake_providers._base import FakeProvider, FakeRequest
from tests.cost.fake_providers._dataset import ANTHROPIC_KEY, OPENAI_KEY, Dataset
from tests.cost.fake_providers._openai import FakeOpenAI

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

__all__ = ["FakeServer", "mock_transport", "open_fake_anthropic", "open_fake_openai", "open_fake_server"]

_SHUTDOWN_GRACE: Final = 2.0

F = TypeVar("F", bound=FakeProvider)


def _request_from_httpx(req: httpx.Request) -> FakeRequest:
    return FakeRequest(
        method=req.method,
        path=req.url.path,
        query=tuple(parse_qsl(req.url.query.decode(), keep_blank_values=True)),
        headers={k.lower(): v for k, v in req.headers.items()},
    )


def mock_transport(fake: FakeProvider) -> httpx.MockTransport:
    """An httpx transport answered by *fake* in-process (no sockets; fine under MockClock)."""

    async def handler(req: httpx.Request) -> httpx.Response:
        answer = await fake.handle(_request_from_httpx(req))
        headers = [("content-type", answer.content_type), *answer.headers]
        return httpx.Response(answer.status, headers=headers, content=answer.body)

    return httpx.MockTransport(handler)


def _create_app(fake: FakeProvider) -> QuartTrio:
    app = QuartTrio("halswarm-fake-provider")
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    async def any_route(path: str = "") -> Response:
        answer = await fake.handle(
            FakeRequest(
                method=request.method,
                path=request.path,
                query=tuple(parse_qsl(request.query_string.decode(), keep_blank_values=True)),
                headers={k.lower(): v for k, v in request.headers.items()},
            )
        )
        response = Response(answer.body, status=answer.status, content_type=answer.content_type)
        for name, value in answer.headers:
            response.headers[name] = value
        return response

    app.add_url_rule("/", "root", any_route, methods=methods)
    app.add_url_rule("/<path:path>", "any", any_route, methods=methods)
    return app


@attrs.frozen
class FakeServer(Generic[F]):
    """A fake served on a loopback port."""

    #: What to configure as the provider's ``base_url`` (OpenAI's includes ``/v1``).
    base_url: str
    #: The fake: dataset, faults, request log.
    fake: F


@asynccontextmanager
async def open_fake_server(fake: F, *, path_prefix: str = "") -> AsyncGenerator[FakeServer[F], None]:
    """Serve *fake* on ``127.0.0.1:0`` for the duration of the block.

    Resource handling: hypercorn runs in a nursery owned by this context manager; on exit
    hangs are released, then hypercorn shuts down gracefully within a short grace, after
    which its nursery is cancelled.
    """
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = _SHUTDOWN_GRACE
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, _create_app(fake), config, shutdown_trigger=shutdown.wait)
        )
        port = urlsplit(binds[0]).port
        try:
            yield FakeServer(base_url=f"http://127.0.0.1:{port}{path_prefix}", fake=fake)
        finally:
            fake.release()
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _SHUTDOWN_GRACE + 1.0


@asynccontextmanager
async def open_fake_anthropic(
    dataset: Dataset, *, api_key: str = ANTHROPIC_KEY, page_size: int = 2
) -> AsyncGenerator[FakeServer[FakeAnthropic], None]:
    """A :class:`FakeAnthropic` on a loopback port; ``base_url`` is the API root."""
    async with open_fake_server(FakeAnthropic(dataset, api_key=api_key, page_size=page_size)) as server:
        yield server


@asynccontextmanager
async def open_fake_openai(
    dataset: Dataset,
    *,
    api_key: str = OPENAI_KEY,
    page_size: int = 2,
    line_items: Literal["documented", "model_prefixed"] = "documented",
    legacy_usage_fields: bool = False,
) -> AsyncGenerator[FakeServer[FakeOpenAI], None]:
    """A :class:`FakeOpenAI` on a loopback port; ``base_url`` ends in ``/v1``."""
    fake = FakeOpenAI(
        dataset,
        api_key=api_key,
        page_size=page_size,
        line_items=line_items,
        legacy_usage_fields=legacy_usage_fields,
    )
    async with open_fake_server(fake, path_prefix="/v1") as server:
        yield server
