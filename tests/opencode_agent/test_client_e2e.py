"""The opencode client against the real server: auth, JSON checks, directories."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.agent.opencode.client import (
    OpencodeAuthError,
    OpencodeClient,
    OpencodeError,
    OpencodeNotFoundError,
    split_model,
)
from tests.opencode.realserver import make_project, opencode_env, run_opencode

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


async def test_client_speaks_to_a_password_protected_server(tmp_path: Path) -> None:
    with trio.fail_after(90):
        one = make_project(tmp_path, "one", "http://127.0.0.1:9/v1")
        two = make_project(tmp_path, "two", "http://127.0.0.1:9/v1")
        async with run_opencode(one, opencode_env(tmp_path / "home"), password="pw-for-the-test") as server:
            async with OpencodeClient(server.url, password="pw-for-the-test", timeout=10) as client:
                health = await client.health()
                assert (health.healthy, health.version) == (True, server.version)
                # Every call names its project: a session made for "two" lives in "two".
                created = await client.create_session(str(two), title="in two", model="stub/stub-model")
                assert created["directory"] == str(two)
                assert [s["id"] for s in await client.project_sessions(str(two))] == [created["id"]]
                assert await client.project_sessions(str(one)) == []
                assert any(s["id"] == created["id"] for s in await client.all_sessions())
                assert await client.session_status(str(two)) == {}
                assert await client.permissions(str(two)) == []
                await client.delete(str(created["id"]), str(two))
                with pytest.raises(OpencodeNotFoundError):
                    await client.session(str(created["id"]))
            async with OpencodeClient(server.url, password="not-the-password", timeout=10) as wrong:
                with pytest.raises(OpencodeAuthError, match="refused the credentials"):
                    await wrong.health()
            # The web UI answers unknown paths with 200 text/html: never taken for data.
            async with OpencodeClient(server.url + "/not-the-api", password="pw-for-the-test") as lost:
                with pytest.raises(OpencodeError, match="expected JSON"):
                    await lost.health()


def test_models_need_a_provider() -> None:
    assert split_model("stub/stub-model") == ("stub", "stub-model")
    assert split_model("openrouter/anthropic/claude") == ("openrouter", "anthropic/claude")
    with pytest.raises(ValueError, match="provider/model"):
        split_model("claude")
