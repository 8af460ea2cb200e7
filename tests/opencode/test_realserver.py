"""The real-server helpers end to end: a password-protected opencode answers through the stub."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import httpx
import orjson
import psutil
import pytest
import trio

from tests.opencode.realserver import OPENCODE_VERSION, make_project, opencode_binary, opencode_env, run_opencode
from tests.opencode.stub_llm import open_stub_llm

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
async def test_prompt_round_trip_and_teardown(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_stub_llm() as stub:
            project = make_project(tmp_path, "app", stub.base_url)
            params = {"directory": str(project)}
            async with (
                run_opencode(project, opencode_env(tmp_path / "oc"), password="pw-test") as server,
                server.client(timeout=60) as client,
            ):
                assert server.version == OPENCODE_VERSION
                async with httpx.AsyncClient(base_url=server.url, trust_env=False) as anonymous:
                    assert (await anonymous.get("/global/health")).status_code == 401
                session = (await client.post("/session", params=params, json={})).json()
                prompt = {"parts": [{"type": "text", "text": "hello"}]}
                reply = (await client.post(f"/session/{session['id']}/message", params=params, json=prompt)).json()
                pid = server.pid
    assert reply["info"]["cost"] == 0.000405
    assert reply["info"]["tokens"]["input"] == 100
    assert {r.kind for r in stub.requests} == {"title", "main"}
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_binary_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("OPENCODE_BIN", str(tmp_path / "no-opencode"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="opencode binary not found"):
        opencode_binary()


def test_make_project_is_a_committed_git_repo_pointing_at_the_stub(tmp_path: Path) -> None:
    project = make_project(tmp_path, "app", "http://127.0.0.1:9/v1")
    config = orjson.loads((project / "opencode.json").read_bytes())
    assert config["provider"]["stub"]["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert set(config["provider"]["stub"]["models"]) == {"stub-model", "stub-tiny"}
    assert config["permission"] == {"bash": "ask"}
    log = subprocess.run(["git", "log", "--oneline"], cwd=project, capture_output=True, text=True, check=True)
    assert len(log.stdout.splitlines()) == 1
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True, check=True)
    assert status.stdout == ""
