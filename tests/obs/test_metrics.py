"""``/metrics`` as a Prometheus server and an operator see it (issue 8).

A running supervisor with traffic (an agent, events, a command) is scraped: the
exposition is negotiated (text 0.0.4 by default, OpenMetrics on request), accepted by
``promtool check metrics``, carries the issue's series (ingest lag, store write latency,
per-node outbox backlog, start time), and names every metric the Grafana dashboard in
``examples/`` queries.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from halswarm.models import Resources
from halswarm.obs.metrics import LiveState, Metrics
from halswarm.proto.messages import Heartbeat, Hello
from halswarm.supervisor.registry import NodeRegistry
from halswarm.testing import agent_config, api_client, open_sim_agent, open_supervisor, supervisor_config, wait_until
from tests.required import unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from halswarm.proto.errors import CloseCode
    from halswarm.proto.messages import CommandMsg
    from halswarm.supervisor.app import SupervisorHandle

ROOT: Final = Path(__file__).resolve().parents[2]
DASHBOARD: Final = ROOT / "examples" / "grafana-dashboard.json"
TEXT_0_0_4: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"
METRIC_NAME: Final = re.compile(r"\bhal_o_swarm_[a-z0-9_]+")


@attrs.frozen
class Scrapes:
    text: httpx.Response
    text_without_accept: httpx.Response
    openmetrics: httpx.Response


async def scrape_with_traffic(tmp_path: Path) -> Scrapes:
    """Run a supervisor with one simulated agent, a command and a refused request; scrape."""
    async with open_supervisor(supervisor_config(tmp_path / "s.db")) as sup:
        cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-m")
        async with open_sim_agent(cfg, sessions=2, rate=50.0), api_client(sup) as client:
            await wait_until(lambda: sup.registry.online_count() == 1, what="agent online")
            reply = await client.post(
                "/api/v1/commands",
                params={"wait": 10},
                json={"type": "start_session", "target": "sim-project-1", "args": {"prompt": "hi"}},
            )
            assert reply.status_code == 200, reply.text
            async with api_client(sup, token="wrong-token-" + "x" * 20) as intruder:
                assert (await intruder.get("/api/v1/nodes")).status_code == 401
            await wait_until(lambda: events_stored(sup) > 0, what="events stored")
            await wait_until(lambda: backlog_reported(sup), what="a heartbeat with the outbox backlog")
            bare = client.build_request("GET", "/metrics")
            del bare.headers["Accept"]
            return Scrapes(
                text=await client.get("/metrics"),
                text_without_accept=await client.send(bare),
                openmetrics=await client.get("/metrics", headers={"Accept": "application/openmetrics-text"}),
            )


def events_stored(sup: SupervisorHandle) -> float:
    families = {f.name: f for f in text_string_to_metric_families(sup.metrics.render().decode())}
    return sum(s.value for s in families["hal_o_swarm_events"].samples if s.name.endswith("_total"))


def backlog_reported(sup: SupervisorHandle) -> bool:
    entry = sup.registry.get("node-m")
    return entry is not None and entry.outbox_backlog is not None


@pytest.fixture
async def scrapes(tmp_path: Path) -> AsyncGenerator[Scrapes, None]:
    with trio.fail_after(30):
        yield await scrape_with_traffic(tmp_path)


def exposed_names(text: str) -> set[str]:
    """Every series name a PromQL query could use against this exposition."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        match family.type:
            case "counter":
                names.add(f"{family.name}_total")
            case "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            case _:
                names.add(family.name)
    return names


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_metrics_are_text_0_0_4_unless_openmetrics_is_asked_for(scrapes: Scrapes) -> None:
    """Guards: a blank or wrong content type (Prometheus 3 rejects the scrape)."""
    assert scrapes.text_without_accept.headers["content-type"] == TEXT_0_0_4
    assert scrapes.text.headers["content-type"] == TEXT_0_0_4
    assert scrapes.openmetrics.headers["content-type"].startswith(OPENMETRICS)
    assert scrapes.openmetrics.text.rstrip().endswith("# EOF")
    assert "# EOF" not in scrapes.text.text
    assert "Accept" in scrapes.text.headers.get("vary", "")


async def test_the_issue_8_series_carry_the_traffic(scrapes: Scrapes) -> None:
    values = samples(scrapes.text.text)
    assert values["hal_o_swarm_ingest_lag_seconds_count"][()] > 0
    ops = {dict(labels)["op"]: n for labels, n in values["hal_o_swarm_store_write_seconds_count"].items()}
    assert ops["ingest"] > 0
    assert ops["command_insert"] == 1
    assert ops["command_update"] == 1
    assert (("node_id", "node-m"),) in values["hal_o_swarm_node_outbox_backlog"]
    assert values["hal_o_swarm_start_time_seconds"][()] > 1.7e9
    assert values["hal_o_swarm_commands_total"][("status", "succeeded"), ("type", "start_session")] == 1
    assert values["hal_o_swarm_auth_failures_total"][("listener", "http"),] >= 1
    assert values["hal_o_swarm_nodes_online"][()] == 1


def promtool() -> str | None:
    """The promtool binary: $PROMTOOL_BIN, the Makefile's .tools/promtool, or PATH."""
    for candidate in (os.environ.get("PROMTOOL_BIN"), str(ROOT / ".tools" / "promtool")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("promtool")


async def test_promtool_accepts_the_exposition(scrapes: Scrapes) -> None:
    """Guards: a metric name, type or help line Prometheus tooling rejects (issue 8's done-when)."""
    binary = promtool()
    if binary is None:
        message = "promtool not found: run `make promtool` (Debian's prometheus package) or set PROMTOOL_BIN"
        unavailable(message)
    # promtool 2.x checks only the text format.
    done = await trio.run_process(
        [binary, "check", "metrics"], stdin=scrapes.text.content, capture_stdout=True, capture_stderr=True, check=False
    )
    report = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, report


async def test_every_metric_on_the_dashboard_is_exposed(scrapes: Scrapes) -> None:
    """Guards: a renamed metric leaving a dashboard panel silently empty."""
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert len(used) >= 12
    missing = used - exposed_names(scrapes.text.text)
    assert not missing, f"dashboard queries metrics /metrics does not expose: {sorted(missing)}"


# ---- the registry's figures (unit level) ----------------------------------------------


class _Link:
    async def send_command(self, command: CommandMsg) -> None:
        raise NotImplementedError

    def close_soon(self, code: CloseCode, reason: str) -> None:
        pass


def backlog_of(registry: NodeRegistry) -> dict[str, int]:
    return dict(registry.fleet_figures().outbox_backlog)


async def test_outbox_backlog_series_exist_only_for_online_nodes_that_report_one() -> None:
    """Bounded cardinality: a node that left takes its series with it."""
    registry = NodeRegistry(on_reachability=lambda _node, _up: None)
    hello = Hello(node_id="n1", instance_key="k", hostname="h", version="v")
    link = _Link()
    registry.attach(hello, link, now=0.0, wall="t")
    assert backlog_of(registry) == {}  # an old agent reports nothing: no made-up zero
    registry.heartbeat("n1", Heartbeat(ts="t", resources=Resources(), outbox_backlog=42), "t")
    assert backlog_of(registry) == {"n1": 42}
    registry.heartbeat("n1", Heartbeat(ts="t"), "t")  # a heartbeat without it keeps the last figure
    assert backlog_of(registry) == {"n1": 42}
    registry.detach("n1", link, clean=True)
    assert backlog_of(registry) == {}


async def test_reconnects_and_unclean_disconnects_are_counted() -> None:
    registry = NodeRegistry(on_reachability=lambda _node, _up: None)
    hello = Hello(node_id="n1", instance_key="k", hostname="h", version="v")
    first, second, third = _Link(), _Link(), _Link()
    registry.attach(hello, first, now=0.0, wall="t")
    registry.detach("n1", first, clean=False)  # the network dropped it
    registry.attach(hello, second, now=1.0, wall="t")
    registry.detach("n1", second, clean=True)
    registry.attach(hello, third, now=2.0, wall="t")
    figures = registry.fleet_figures()
    assert (figures.reconnects, figures.unclean_disconnects) == (2, 1)
    metrics = Metrics()
    metrics.attach_live_state(LiveState(lambda: 1, lambda: 1, dict, fleet=registry.fleet_figures))
    assert metrics.registry.get_sample_value("hal_o_swarm_node_reconnects_total") == 2
    assert metrics.registry.get_sample_value("hal_o_swarm_node_unclean_disconnects_total") == 1
    assert metrics.registry.get_sample_value("hal_o_swarm_node_outbox_backlog", {"node_id": "n1"}) is None


def test_store_write_ops_outside_the_known_set_share_one_label() -> None:
    """Bounded label set: a typo in a caller cannot mint new series."""
    metrics = Metrics()
    metrics.observe_store_write("ingest", 0.01)
    metrics.observe_store_write("something-new", 0.01)
    assert metrics.registry.get_sample_value("hal_o_swarm_store_write_seconds_count", {"op": "ingest"}) == 1
    assert metrics.registry.get_sample_value("hal_o_swarm_store_write_seconds_count", {"op": "other"}) == 1
