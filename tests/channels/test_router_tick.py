"""The re-check tick never re-sends an old event: "fires at most once per event" holds past the
router's ``max_keys`` (the service remembers what fired next to each session's latest event),
and the tick only re-routes routes that read time-dependent values.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import trio
import trio.testing

from halswarm.channels.fields import RouteContext
from halswarm.channels.router import DEFAULT_MAX_KEYS, Route, Router
from halswarm.channels.router_service import RouterTuning
from halswarm.config.routing import RouteConfig
from halswarm.models import Session
from halswarm.timeutil import format_ts
from tests.channels.support import event
from tests.channels.test_router_service import ERROR_DATA, at, commit, open_service, wire

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

#: More sessions (and events) than a route's memory of event ids holds.
MANY: Final = DEFAULT_MAX_KEYS + 76
#: Room for every delivery at once: these tests are about re-sends, not about dropping.
TUNING: Final = RouterTuning(tick_seconds=10.0, delivery_queue_size=4 * MANY)


def sessions_of(bodies: list[JSONObject]) -> Counter[str]:
    return Counter(str(at(body, "event", "session_id")) for body in bodies)


async def test_errors_of_more_sessions_than_max_keys_are_delivered_once_across_ticks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    routes = [RouteConfig("session.error", "webhook#n8n")]
    async with open_service(routes, tuning=TUNING) as rig:
        ids = [f"ses-{i}" for i in range(MANY)]
        for sid in ids:
            rig.tracker.apply(1, Session(sid, "node-1", "alpha", status="error"))
        rig.service.committed(commit(*(wire("session.error", sid, ERROR_DATA) for sid in ids)))
        await trio.sleep(45)  # four ticks
        assert rig.service.ticks >= 4
        await trio.testing.wait_all_tasks_blocked()
        counts = sessions_of(rig.hooks.to("n8n.test"))
        assert len(counts) == MANY
        assert set(counts.values()) == {1}


async def test_a_busy_session_does_not_re_fire_a_quiet_sessions_old_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    routes = [RouteConfig("*", "webhook#n8n")]
    async with open_service(routes, tuning=TUNING) as rig:
        rig.tracker.apply(1, Session("ses-quiet", "node-1", "alpha", status="error"))
        rig.tracker.apply(1, Session("ses-busy", "node-1", "alpha", status="busy"))
        rig.service.committed(commit(wire("session.error", "ses-quiet", ERROR_DATA)))
        await trio.sleep(1)
        for _ in range(MANY // 100 + 1):  # more later events than max_keys, between two ticks
            rig.service.committed(commit(*(wire("session.updated", "ses-busy") for _ in range(100))))
        await trio.sleep(40)  # several ticks
        assert rig.service.ticks >= 4
        await trio.testing.wait_all_tasks_blocked()
        bodies = rig.hooks.to("n8n.test")
        quiet = [at(b, "event", "type") for b in bodies if at(b, "event", "session_id") == "ses-quiet"]
        assert quiet == ["session.error"]
        assert len(bodies) == 1 + (MANY // 100 + 1) * 100


async def test_idle_for_still_fires_once_per_session_through_the_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    routes = [
        RouteConfig("session.error", "webhook#n8n"),
        RouteConfig("session.idle && idle_for > 5m", "webhook#n8n"),
    ]
    async with open_service(routes, tuning=TUNING) as rig:
        idle_at = format_ts(rig.clock())
        ids = [f"ses-{i}" for i in range(MANY)]
        for sid in ids:
            rig.tracker.apply(1, Session(sid, "node-1", "alpha", status="idle", last_activity=idle_at))
        rig.service.committed(commit(*(wire("session.idle", sid) for sid in ids)))
        await trio.sleep(25)  # two ticks, idle for 0 s on the wall clock
        assert rig.hooks.requests == []
        rig.clock.advance(301)
        await trio.sleep(10)
        await trio.testing.wait_all_tasks_blocked()
        assert len(rig.hooks.to("n8n.test")) == MANY
        await trio.sleep(50)  # five more ticks, same events
        await trio.testing.wait_all_tasks_blocked()
        bodies = rig.hooks.to("n8n.test")
        assert {at(b, "event", "type") for b in bodies} == {"session.idle"}
        assert set(sessions_of(bodies).values()) == {1}
        assert len(bodies) == MANY


# ---- the router's part ---------------------------------------------------------------------


def test_time_dependent_routes_are_those_reading_idle_for_or_cost() -> None:
    r = Router(
        [
            Route.create("session.error", "discord#alerts"),
            Route.create("session.idle && idle_for > 5m", "discord#alerts"),
            Route.create("cost.daily > 20", "discord#alerts"),
            Route.create("cost.project_daily > 5", "discord#alerts"),
            Route.create('status == "waiting"', "discord#alerts"),
        ]
    )
    assert r.time_dependent == frozenset({1, 2, 3})


def test_a_fired_set_replaces_the_bounded_memory_of_event_ids() -> None:
    r = Router([Route.create("session.error", "discord#alerts")], max_keys=2)
    errors = [(event("session.error", session=f"s{i}"), set[int]()) for i in range(5)]
    for ev, fired in errors:
        assert len(r.route(ev, RouteContext(), 0.0, fired=fired)) == 1
        assert fired == {0}
    for ev, fired in errors:  # far more than max_keys later: still fired once
        assert r.route(ev, RouteContext(), 1.0, fired=fired) == []


def test_only_limits_the_routes_evaluated() -> None:
    r = Router([Route.create("session.error", "discord#alerts"), Route.create("*", "webhook#n8n")])
    ev = event("session.error")
    assert [d.route_index for d in r.route(ev, RouteContext(), 0.0, only={1}, fired=set())] == [1]
