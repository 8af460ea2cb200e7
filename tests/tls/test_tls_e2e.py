"""TLS end to end on loopback with a CA generated at test time (issue #8).

The hub serves WSS and the API HTTPS from ``security.tls``; an agent trusting the CA
delivers its events, one trusting only the system's CAs is refused and says why (and keeps
retrying); httpx and halctl (``--ca-file`` / ``HALSWARM_CA_FILE``) talk HTTPS.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import httpx
import pytest
import trio

from halswarm.config.agent import LinkConfig
from halswarm.config.supervisor import SecurityConfig, TlsConfig
from halswarm.store import EventQuery
from halswarm.testing import (
    TEST_TOKEN,
    agent_config,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)
from halswarm.testing.halctl import run_halctl
from halswarm.testing.harness import api_client

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.config import SupervisorConfig
    from tests.tls.certs import TestPki

FAST: Final = LinkConfig(backoff_initial_sec=0.05, backoff_max_sec=0.3, stable_after_sec=2.0, close_timeout_sec=2.0)


def tls_config(tmp_path: Path, pki: TestPki) -> SupervisorConfig:
    tls = TlsConfig(enabled=True, cert_path=pki.cert_path, key_path=pki.key_path)
    return supervisor_config(tmp_path / "s.db", security=SecurityConfig(tls=tls))


async def test_an_agent_trusting_the_ca_delivers_its_events_over_wss(tmp_path: Path, pki: TestPki) -> None:
    with trio.fail_after(30):
        async with open_supervisor(tls_config(tmp_path, pki)) as sup:
            cfg = agent_config(
                sup.ws_port, tmp_path / "agent", node_id="node-tls", link=FAST, tls=True, tls_ca_file=pki.ca_file
            )
            assert cfg.ws_url().startswith("wss://")
            async with open_sim_agent(cfg, sessions=1, rate=50, max_events=5):
                await wait_until(lambda: sup.pipeline.last_seq("node-tls") == 5, what="events over wss")
            events = await sup.store.query_events(EventQuery(node_id="node-tls"))
            assert [e.seq for e in events] == [1, 2, 3, 4, 5]


async def test_the_api_answers_over_https_with_the_ca(tmp_path: Path, pki: TestPki) -> None:
    with trio.fail_after(30):
        async with open_supervisor(tls_config(tmp_path, pki)) as sup:
            async with api_client(sup, tls_ca_file=pki.ca_file) as client:
                response = await client.get("/api/v1/nodes")
                assert response.status_code == 200
                assert str(response.url).startswith("https://")
            # Plain HTTP on the TLS port gets no API answer.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sup.http_port}", timeout=5) as plain:
                with pytest.raises(httpx.TransportError):
                    await plain.get("/healthz")


async def test_an_agent_without_the_ca_is_refused_and_says_why(
    tmp_path: Path, pki: TestPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="halswarm.agent.link")
    with trio.fail_after(30):
        async with open_supervisor(tls_config(tmp_path, pki)) as sup:
            # The system's CAs: they never signed the throwaway CA's certificate.
            cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-no-ca", link=FAST, tls=True)
            async with open_sim_agent(cfg, sessions=1, rate=0, max_events=3) as agent:
                await wait_until(
                    lambda: sum("certificate verify failed" in r.getMessage() for r in caplog.records) >= 2,
                    what="two refused attempts (retried with backoff)",
                )
                error = agent.status.last_error
                assert error is not None
                assert error.startswith(f"TLS: certificate verify failed for wss://127.0.0.1:{sup.ws_port}/ws")
                assert "set tls_ca_file" in error
                assert agent.status.connections == 0
                assert sup.registry.get("node-no-ca") is None
                assert agent.outbox.pending == 3


async def test_halctl_talks_https_with_a_ca_file(tmp_path: Path, pki: TestPki) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with trio.fail_after(30):
        async with open_supervisor(tls_config(tmp_path, pki)) as sup:
            url = f"https://127.0.0.1:{sup.http_port}"
            env = {"HOME": str(home), "HALCTL_URL": url, "HALCTL_TOKEN": TEST_TOKEN}

            flag = await run_halctl(["--ca-file", pki.ca_file, "health"], env=env, cwd=tmp_path)
            assert flag.exit_code == 0, flag.stderr
            assert f"supervisor at {url}: ok" in flag.stdout

            env_ca = {**env, "HALSWARM_CA_FILE": pki.ca_file}
            from_env = await run_halctl(["-o", "json", "nodes", "list"], cwd=tmp_path, env=env_ca)
            assert from_env.exit_code == 0, from_env.stderr
            assert from_env.json()["nodes"] == []

            untrusted = await run_halctl(["health"], cwd=tmp_path, env={**env, "HALSWARM_CA_FILE": pki.other_ca_file})
            assert untrusted.exit_code != 0
            assert "TLS certificate verify failed (unable to get local issuer certificate)" in untrusted.stderr

            missing = await run_halctl(["--ca-file", str(tmp_path / "nope.pem"), "health"], env=env, cwd=tmp_path)
            assert missing.exit_code != 0
            assert "nope.pem does not exist" in missing.stderr
