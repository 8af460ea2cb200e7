"""halctl's client sends one X-Correlation-ID per invocation and keeps it on errors (issue 8)."""

from __future__ import annotations

import httpx
import pytest

from halswarm.cli.client import ApiError, open_api


async def test_every_request_carries_the_invocation_id_and_errors_keep_it() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["X-Correlation-ID"])
        return httpx.Response(503, json={"error": {"code": "storage_unavailable", "message": "later"}})

    async with open_api("http://supervisor.test", "t" * 20, transport=httpx.MockTransport(answer)) as api:
        for _ in range(2):
            with pytest.raises(ApiError) as caught:
                await api.nodes()
            assert caught.value.correlation_id == api.correlation_id
    assert len(set(seen)) == 1
    assert seen[0] == api.correlation_id
    assert len(api.correlation_id) == 16
