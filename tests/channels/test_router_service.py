"""RouterService: committed events routed to Discord, webhooks and Slack; the re-check tick; bounded queues.

Two layers: the service alone under the autojump clock, its HTTP answered in-process by
an ``httpx.MockTransport`` (no sockets); then a real supervisor and agent on loopback
with a fake webhook receiver, for the issue's "within one tick".
"""

from __future__ import annotations

import itertools
import logging
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import trio
import trio.testing

from halswarm.channels.router_service import RouterService, RouterTuning
from halswarm.config.policies import PoliciesConfig
from halswarm.config.routing import RouteConfig, SlackWebhookConfig, WebhookConfig
from halswarm.config.supervisor import ChannelsConfig
from halswarm.cost.budgets import TodaySpend
from halswarm.jsontypes import JSONObject, JSONValue
from halswarm.models import Session
from halswarm.obs.metrics import Metrics
from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch
from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from halswarm.supervisor.tracker import SessionTracker
from halswarm.testing import supervisor_config, wait_until
from halswarm.timeutil import format_ts
from tests.channels.fake_receivers import open_fake_receiver
from tests.policy.scripted import ManualClock, ScriptedBackend, fleet_ready, open_agent_with

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, Sequence
    from pathlib import Path

    import pytest

    from halswarm.config import SupervisorConfig
    from halswarm.models import Event

SECRET: Final = "route-test-secret-0123456789"
ERROR_DATA: Final[JSONObject] = {"error": {"name": "APIError", "data": {"message": "overloaded"}}}
#: Webhooks ``n8n`` (host n8n.test) and ``slow`` (slow.test) of the in-process rigs.
WEBHOOKS: Final = {
    "n8n": WebhookConfig("http://n8n.test/hook", secret=SECRET),
    "slow": WebhookConfig("http://slow.test/hook", timeout_sec=5.0, max_attempts=1),
}

_seqs = itertools.count(1)


# ---- the service alone (autojump clock, in-process HTTP) --------------------------------------


@attrs.define
class Hooks:
    """An in-process webhook receiver: records each request; hosts in ``slow`` never answer in time."""

    requests: list[tuple[float, str, JSONObject]] = attrs.Factory(list)
    slow: set[str] = attrs.Factory(set)
    #: Every request as it arrives, answered or not.
    arrived: list[tuple[str, JSONObject]] = attrs.Factory(list)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = orjson.loads(request.content)
        assert isinstance(body, dict)
        self.arrived.append((host, body))
        if host in self.slow:
            await trio.sleep(1000)
        self.requests.append((trio.current_time(), host, body))
        return httpx.Response(200, text="ok")

    def to(self, host: str) -> list[JSONObject]:
        return [body for _, h, body in self.requests if h == host]


def at(body: JSONValue, *path: str) -> JSONValue:
    """``body[path[0]][path[1]]...``, asserting each level is an object."""
    for key in path:
        assert isinstance(body, dict)
        body = body[key]
    return body


def wire(type_: str, session: str = "ses-a", data: JSONObject | None = None) -> WireEvent:
    return WireEvent(next(_seqs), "2026-03-10T12:00:00.000000Z", type_, session, "alpha", data or {})


def commit(*events: WireEvent) -> list[IngestBatch]:
    return [IngestBatch("node-1", list(events))]


def deliveries(metrics: Metrics, target: str, outcome: str) -> float:
    return (
        metrics.registry.get_sample_value("hal_o_swarm_route_deliveries_total", {"target": target, "outcome": outcome})
        or 0.0
    )


@attrs.define
class Rig:
    service: RouterService
    hooks: Hooks
    metrics: Metrics
    tracker: SessionTracker
    clock: ManualClock


@asynccontextmanager
async def open_service(
    routes: Sequence[RouteConfig],
    *,
    spend: TodaySpend | None = None,
    spends: list[TodaySpend | None] | None = None,
    posted: list[tuple[str, Event]] | None = None,
    tuning: RouterTuning | None = None,
    slow: Sequence[str] = (),
) -> AsyncGenerator[Rig, None]:
    """A RouterService over webhooks ``n8n`` (host n8n.test) and ``slow`` (slow.test), running in a nursery."""
    hooks = Hooks(slow=set(slow))
    metrics = Metrics()
    tracker = SessionTracker()
    tracker.set_node_reachable("node-1", True)
    clock = ManualClock()
    figures = spends if spends is not None else [spend]

    async def read_spend(day: dt.date) -> TodaySpend | None:
        del day
        return figures[-1]

    async def post(channel_name: str, event: Event) -> bool:
        assert posted is not None
        posted.append((channel_name, event))
        return True

    webhooks = WEBHOOKS
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(hooks.handler)) as client,
        trio.open_nursery() as nursery,
    ):
        service = RouterService(
            routes,
            webhooks=webhooks,
            slack={},
            post_discord=post if posted is not None else None,
            sessions=tracker.get,
            spend=read_spend,
            metrics=metrics,
            now=clock,
            tuning=tuning or RouterTuning(tick_seconds=10.0),
            client=client,
        )
        await nursery.start(service.run)
        try:
            yield Rig(service, hooks, metrics, tracker, clock)
        finally:
            nursery.cancel_scope.cancel()


async def test_a_flapping_session_yields_one_delivery_then_one_with_the_suppressed_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    routes = [RouteConfig("session.error", "webhook#n8n", throttle="1m")]
    async with open_service(routes) as rig:
        for _ in range(3):
            rig.service.committed(commit(wire("session.error", data=ERROR_DATA)))
            await trio.sleep(1)
        assert [b["suppressed_count"] for b in rig.hooks.to("n8n.test")] == [0]
        await trio.sleep(60)  # the window is over; nothing is sent until the next firing
        assert len(rig.hooks.to("n8n.test")) == 1
        rig.service.committed(commit(wire("session.error", data=ERROR_DATA)))
        await trio.testing.wait_all_tasks_blocked()
        assert [b["suppressed_count"] for b in rig.hooks.to("n8n.test")] == [0, 2]
        assert deliveries(rig.metrics, "webhook#n8n", "delivered") == 2


async def test_idle_for_fires_once_through_the_tick_without_new_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    routes = [RouteConfig("session.idle && idle_for > 5m", "webhook#n8n")]
    async with open_service(routes) as rig:
        idle_at = format_ts(rig.clock())
        rig.tracker.apply(1, Session("ses-a", "node-1", "alpha", status="idle", last_activity=idle_at))
        rig.service.committed(commit(wire("session.idle")))
        await trio.sleep(25)  # ticks at 10 and 20: idle for 0 s on the wall clock
        assert rig.hooks.requests == []
        rig.clock.advance(301)
        await trio.sleep(10)
        assert [at(b, "event", "type") for b in rig.hooks.to("n8n.test")] == ["session.idle"]
        await trio.sleep(100)  # ten more ticks, same event: fired once
        assert len(rig.hooks.requests) == 1


async def test_cost_daily_fires_on_the_crossing_seen_by_a_tick(autojump_clock: trio.testing.MockClock) -> None:
    spends: list[TodaySpend | None] = [TodaySpend(Decimal(10))]
    routes = [RouteConfig("cost.daily > 20", "webhook#n8n")]
    async with open_service(routes, spends=spends) as rig:
        rig.tracker.apply(1, Session("ses-a", "node-1", "alpha", status="busy"))
        rig.service.committed(commit(wire("session.updated")))
        await trio.sleep(15)
        assert rig.hooks.requests == []
        spends.append(TodaySpend(Decimal("20.5")))
        await trio.sleep(10)
        assert len(rig.hooks.requests) == 1
        await trio.sleep(50)
        assert len(rig.hooks.requests) == 1  # still over: no new crossing


async def test_a_slow_target_does_not_delay_another(autojump_clock: trio.testing.MockClock) -> None:
    routes = [RouteConfig("session.error", "webhook#slow"), RouteConfig("session.error", "webhook#n8n")]
    async with open_service(routes, slow=["slow.test"]) as rig:
        start = trio.current_time()
        for _ in range(3):
            rig.service.committed(commit(wire("session.error")))
        await trio.testing.wait_all_tasks_blocked()
        assert [at for at, host, _ in rig.hooks.requests if host == "n8n.test"] == [start] * 3
        await trio.sleep(30)  # the slow one times out after 5 s per delivery
    assert deliveries(rig.metrics, "webhook#slow", "failed") == 3
    assert deliveries(rig.metrics, "webhook#n8n", "delivered") == 3


async def test_full_queues_drop_and_count(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    routes = [RouteConfig("session.error", "webhook#slow")]
    tuning = RouterTuning(tick_seconds=10.0, event_queue_size=1, delivery_queue_size=1)
    async with open_service(routes, tuning=tuning, slow=["slow.test"]) as rig:
        # The routing loop has not run yet: the second commit finds the queue full.
        rig.service.committed(commit(wire("session.error")))
        rig.service.committed(commit(wire("session.error"), wire("session.error")))
        assert rig.metrics.registry.get_sample_value("hal_o_swarm_route_events_dropped_total") == 2
        assert rig.service.health() == "degraded: congested, committed events dropped unrouted"
        await trio.testing.wait_all_tasks_blocked()
        # One delivery in flight, one queued; each newer one pushes out the oldest waiting.
        for n in range(3):
            rig.service.committed(commit(wire("session.error", data={"n": n})))
            await trio.testing.wait_all_tasks_blocked()
        assert deliveries(rig.metrics, "webhook#slow", "dropped") == 2
        assert rig.metrics.registry.get_sample_value("hal_o_swarm_route_events_dropped_total") == 2
        assert rig.service.health() == "degraded: queue full (oldest deliveries dropped): webhook#slow"
        assert rig.service.queue_stats() == {"events": 0, "webhook#slow": 1}
        await trio.sleep(30)  # each attempt times out after 5 s
        assert rig.service.health() == "degraded: last delivery failed: webhook#slow"
    # What reached the target: the one in flight, then the newest (not the oldest waiting).
    sent = [at(body, "event", "data") for _, body in rig.hooks.arrived]
    assert sent == [{}, {"n": 2}]
    assert "router congested" in caplog.text
    assert "target queue full: dropping the oldest" in caplog.text


async def test_discord_targets_go_to_the_injected_poster(autojump_clock: trio.testing.MockClock) -> None:
    posted: list[tuple[str, Event]] = []
    routes = [RouteConfig("session.error", "discord#alerts", throttle="5m")]
    async with open_service(routes, posted=posted) as rig:
        rig.service.committed(commit(wire("session.error", data=ERROR_DATA)))
        await trio.testing.wait_all_tasks_blocked()
    assert [(name, event.type, event.data) for name, event in posted] == [("alerts", "session.error", ERROR_DATA)]
    assert deliveries(rig.metrics, "discord#alerts", "delivered") == 1


async def test_discord_without_a_poster_is_counted_unavailable(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    routes = [RouteConfig("session.error", "discord#alerts"), RouteConfig("*", "webhook#n8n")]
    async with open_service(routes) as rig:
        rig.service.committed(commit(wire("session.error")))
        await trio.testing.wait_all_tasks_blocked()
        assert len(rig.hooks.requests) == 1  # other targets are unaffected
    assert deliveries(rig.metrics, "discord#alerts", "unavailable") == 1
    assert "discord not configured" in caplog.text


# ---- reload: RouterService.plan / apply --------------------------------------------------------


async def test_a_reload_adds_routes_and_targets_that_work_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with open_service([]) as rig:
        assert rig.service.router.routes == ()
        rig.service.committed(commit(wire("session.error")))  # no routes: not even queued
        await trio.testing.wait_all_tasks_blocked()
        assert rig.service.routed == 0
        routes = [RouteConfig("session.error", "webhook#n8n"), RouteConfig("session.idle", "slack#team")]
        slack = {"team": SlackWebhookConfig("http://slack.test/services/T/B/X")}
        rig.service.apply(rig.service.plan(routes, webhooks=WEBHOOKS, slack=slack, tick_seconds=10.0))
        assert rig.service.active
        rig.service.committed(commit(wire("session.error"), wire("session.idle")))
        await trio.testing.wait_all_tasks_blocked()
    assert sorted(host for _, host, _ in rig.hooks.requests) == ["n8n.test", "slack.test"]  # each target: own task


async def test_a_reload_drops_a_target_no_longer_named(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_service([RouteConfig("session.error", "webhook#slow")], slow=["slow.test"]) as rig:
        for _ in range(3):  # one in flight (never answered in time), two waiting
            rig.service.committed(commit(wire("session.error")))
        await trio.testing.wait_all_tasks_blocked()
        routes = [RouteConfig("session.error", "webhook#n8n")]
        rig.service.apply(rig.service.plan(routes, webhooks=WEBHOOKS, slack={}, tick_seconds=10.0))
        assert rig.service.queue_stats() == {"events": 0, "webhook#n8n": 0}
        rig.service.committed(commit(wire("session.error")))
        await trio.sleep(30)
    assert len(rig.hooks.to("n8n.test")) == 1
    assert len(rig.hooks.arrived) == 2  # the slow one in flight was abandoned, the waiting ones dropped
    assert deliveries(rig.metrics, "webhook#slow", "failed") == 0
    assert "route target removed by a reload: its waiting deliveries are dropped" in caplog.text


async def test_a_changed_webhook_url_applies_to_the_next_delivery(autojump_clock: trio.testing.MockClock) -> None:
    routes = [RouteConfig("session.error", "webhook#n8n")]
    async with open_service(routes) as rig:
        rig.service.committed(commit(wire("session.error")))
        await trio.testing.wait_all_tasks_blocked()
        moved = {**WEBHOOKS, "n8n": WebhookConfig("http://moved.test/hook", secret=SECRET)}
        rig.service.apply(rig.service.plan(routes, webhooks=moved, slack={}, tick_seconds=10.0))
        rig.service.committed(commit(wire("session.error")))
        await trio.testing.wait_all_tasks_blocked()
    assert [host for _, host, _ in rig.hooks.requests] == ["n8n.test", "moved.test"]


async def test_an_idle_alert_is_not_repeated_when_a_reload_renumbers_its_route(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle = RouteConfig("session.idle && idle_for > 5m", "webhook#n8n")
    async with open_service([idle]) as rig:
        idle_at = format_ts(rig.clock())
        rig.tracker.apply(1, Session("ses-a", "node-1", "alpha", status="idle", last_activity=idle_at))
        rig.service.committed(commit(wire("session.idle")))
        rig.clock.advance(301)
        await trio.sleep(15)
        assert len(rig.hooks.requests) == 1
        # A new route goes first: the idle route becomes routes[1], and remembers it fired.
        routes = [RouteConfig("session.error", "webhook#slow"), idle]
        rig.service.apply(rig.service.plan(routes, webhooks=WEBHOOKS, slack={}, tick_seconds=5.0))
        ticks = rig.service.ticks
        await trio.sleep(100)
        assert rig.service.ticks >= ticks + 15  # the new tick interval is in effect
    assert len(rig.hooks.requests) == 1


# ---- a real supervisor and agent (loopback sockets, real time) ---------------------------------


class Sessions(ScriptedBackend):
    """Scripted sessions that can also fail a turn and go idle."""

    async def error(self, sid: str) -> None:
        """The session's turn fails: ``session.error``, status error."""
        assert self._sink is not None
        self._set(sid, status="error", consecutive_errors=self.states[sid].consecutive_errors + 1)
        await self._sink.emit([self._event("session.error", sid, ERROR_DATA)])

    async def idle(self, sid: str) -> None:
        """The session goes idle: ``session.idle``."""
        assert self._sink is not None
        self._set(sid, status="idle")
        await self._sink.emit([self._event("session.idle", sid)])


TICK: Final = 0.5


def routed_config(tmp_path: Path, routes: list[RouteConfig], hook_url: str) -> SupervisorConfig:
    # Built without the load-time checks: discord#alerts goes to the injected poster,
    # without starting a Discord service (channels.discord is not configured).
    base = supervisor_config(tmp_path / "sup.db")
    return attrs.evolve(
        base,
        routes=routes,
        channels=ChannelsConfig(webhooks={"n8n": WebhookConfig(hook_url, secret=SECRET)}),
        policies=PoliciesConfig(tick_seconds=TICK),
    )


@asynccontextmanager
async def open_routed_fleet(
    config: SupervisorConfig, tmp_path: Path, backend: Sessions, clock: ManualClock, posted: list[tuple[str, Event]]
) -> AsyncGenerator[SupervisorHandle, None]:
    async def post(channel_name: str, event: Event) -> bool:
        posted.append((channel_name, event))
        return True

    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        run = partial(run_supervisor, config, shutdown=shutdown, now=clock, post_discord=post)
        sup: SupervisorHandle = await nursery.start(run)
        try:
            async with open_agent_with(sup.ws_port, tmp_path / "agent", backend, clock):
                await fleet_ready(sup, backend)
                yield sup
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + 15


async def test_a_session_error_reaches_discord_alerts_and_a_webhook_within_one_tick(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = Sessions(clock, [("ses-a", "alpha", "busy")])
    posted: list[tuple[str, Event]] = []
    routes = [
        RouteConfig("session.error", "discord#alerts", throttle="5m"),
        RouteConfig("session.error || session.idle", "webhook#n8n"),
    ]
    with trio.fail_after(30):
        async with open_fake_receiver() as receiver:
            config = routed_config(tmp_path, routes, receiver.url("/hooks/n8n"))
            async with open_routed_fleet(config, tmp_path, backend, clock, posted) as sup:
                assert sup.router is not None
                start = trio.current_time()
                await backend.error("ses-a")
                await wait_until(lambda: bool(posted and receiver.requests), within=TICK, what="both deliveries")
                elapsed = trio.current_time() - start
    assert elapsed <= TICK
    [(channel, event)] = posted
    assert (channel, event.type, event.session_id, event.node_id) == ("alerts", "session.error", "ses-a", "node-1")
    [got] = receiver.requests
    assert got.signed_by(SECRET, now=clock().timestamp())
    body = got.json()
    assert body["route"] == {"index": 1, "match": "session.error || session.idle", "target": "webhook#n8n"}
    assert at(body, "event", "type") == "session.error"
    assert at(body, "event", "data") == ERROR_DATA
    assert (
        sup.metrics.registry.get_sample_value(
            "hal_o_swarm_route_deliveries_total", {"target": "webhook#n8n", "outcome": "delivered"}
        )
        == 1
    )


async def test_an_idle_session_is_reported_once_after_five_minutes_by_the_tick(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = Sessions(clock, [("ses-a", "alpha", "busy")])
    posted: list[tuple[str, Event]] = []
    routes = [RouteConfig("session.idle && idle_for > 5m", "webhook#n8n")]
    with trio.fail_after(30):
        async with open_fake_receiver() as receiver:
            config = routed_config(tmp_path, routes, receiver.url("/hooks/n8n"))
            async with open_routed_fleet(config, tmp_path, backend, clock, posted) as sup:
                router = sup.router
                assert router is not None
                await backend.idle("ses-a")
                await wait_until(lambda: sup.tracker.real_status("ses-a") == "idle", what="the session idle")
                ticks = router.ticks
                await wait_until(lambda: router.ticks >= ticks + 2, what="two ticks")
                assert receiver.requests == []  # idle for 0 s
                clock.advance(301)
                await wait_until(lambda: len(receiver.requests) == 1, within=3 * TICK, what="the idle alert")
                ticks = router.ticks
                await wait_until(lambda: router.ticks >= ticks + 3, what="three more ticks")
    assert len(receiver.requests) == 1
    assert at(receiver.requests[0].json(), "event", "type") == "session.idle"


async def test_without_routes_the_router_idles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # It exists (a config reload may add the first routes) but does no work per event.
    caplog.set_level(logging.INFO)
    clock = ManualClock()
    backend = Sessions(clock, [("ses-a", "alpha", "busy")])
    config = attrs.evolve(supervisor_config(tmp_path / "sup.db"), policies=PoliciesConfig(tick_seconds=TICK))
    with trio.fail_after(30):
        async with open_routed_fleet(config, tmp_path, backend, clock, []) as sup:
            assert not sup.router.active
            await backend.error("ses-a")
            await wait_until(lambda: sup.tracker.real_status("ses-a") == "error", what="the error stored")
            ticks = sup.router.ticks
            await wait_until(lambda: sup.router.ticks >= ticks + 2, what="two ticks")
            assert sup.router.routed == 0
            assert sup.router.queue_stats() == {"events": 0}
    assert "not active in this version" not in caplog.text
    assert "router ready" not in caplog.text
