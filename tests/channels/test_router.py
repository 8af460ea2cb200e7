"""The router: matching, throttle windows (exact edges), dedup keys, suppressed counts,
edge-triggered conditions, one delivery per target, bounded state.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.fields import MAX_KEY_LENGTH, RouteContext
from halswarm.channels.router import Delivery, Route, RouteError, Router
from halswarm.channels.targets import Target
from halswarm.config.routing import RouteConfig
from tests.channels.support import event

if TYPE_CHECKING:
    from halswarm.models import Event

ALERTS = Target("discord", "alerts")
NO_CONTEXT = RouteContext()


def router(*routes: Route, max_keys: int = 1024) -> Router:
    return Router(routes, max_keys=max_keys)


def route(match: str, target: str = "discord#alerts", **kwargs: float | str | None) -> Route:
    return Route.create(match, target, **kwargs)  # type: ignore[arg-type]


def fired(r: Router, ev: Event, now: float, context: RouteContext = NO_CONTEXT) -> list[int]:
    """The suppressed counts of the deliveries (one per delivery)."""
    return [d.suppressed_count for d in r.route(ev, context, now)]


# ---- matching ------------------------------------------------------------------------------


def test_matching_event_is_delivered_with_its_route_and_key() -> None:
    r = router(route("session.error"))
    ev = event("session.error", session="ses_1", project="api", node="node-a")
    assert r.route(ev, NO_CONTEXT, 0.0) == [Delivery(ALERTS, ev, 0, 0, "session.error|ses_1|node-a|api")]
    assert r.route(event("session.idle"), NO_CONTEXT, 0.0) == []


def test_every_matching_event_fires_without_a_throttle() -> None:
    r = router(route("session.error"))
    assert [fired(r, event("session.error"), 0.0) for _ in range(3)] == [[0], [0], [0]]


def test_unmatched_events_leave_no_state() -> None:
    r = router(route("session.error", throttle=60), route("cost.daily > 20"))
    for i in range(100):
        r.route(event("session.idle", session=f"s{i}"), RouteContext(cost_daily=1), float(i))
    assert r.stats().keys == 0


def test_routes_fan_out_in_order_and_each_target_gets_an_event_once() -> None:
    r = router(
        route("session.*", "discord#alerts"),
        route("session.error", "discord#alerts"),
        route("session.error", "webhook#n8n"),
        route("node.*", "slack#ops"),
    )
    deliveries = r.route(event("session.error"), NO_CONTEXT, 0.0)
    assert [(str(d.target), d.route_index) for d in deliveries] == [("discord#alerts", 0), ("webhook#n8n", 2)]


def test_a_shadowed_route_still_counts_its_window() -> None:
    # Route 1 names the same target as route 0: its firing counts as delivered, so its
    # window starts; the next error within it is suppressed by route 1 as well.
    r = router(route("session.error", throttle=60), route("*.error", throttle=60))
    assert len(r.route(event("session.error"), NO_CONTEXT, 0.0)) == 1
    assert r.route(event("session.error"), NO_CONTEXT, 10.0) == []
    assert [d.suppressed_count for d in r.route(event("session.error"), NO_CONTEXT, 60.0)] == [1]


# ---- throttle windows ------------------------------------------------------------------------


def test_throttle_window_edges_are_exact() -> None:
    r = router(route("session.error", throttle="1m"))
    assert fired(r, event("session.error"), 100.0) == [0]
    assert fired(r, event("session.error"), 100.0) == []  # same instant: inside the window
    assert fired(r, event("session.error"), 159.999) == []
    assert fired(r, event("session.error"), 160.0) == [2]  # window is [100, 160)
    assert fired(r, event("session.error"), 219.999) == []
    assert fired(r, event("session.error"), 220.0) == [1]


def test_window_is_anchored_at_the_delivery_not_sliding() -> None:
    r = router(route("session.error", throttle=60))
    times = [0.0, 30.0, 59.0, 61.0, 90.0, 121.0]
    assert [fired(r, event("session.error"), t) for t in times] == [[0], [], [], [2], [], [1]]


def test_suppressed_count_waits_for_the_next_firing() -> None:
    r = router(route("session.error", throttle=30))
    fired(r, event("session.error"), 0.0)
    for t in range(1, 11):
        assert fired(r, event("session.error"), float(t)) == []
    assert fired(r, event("session.error"), 10_000.0) == [10]
    assert fired(r, event("session.error"), 20_000.0) == [0]  # reset after delivery


def test_zero_throttle_never_suppresses() -> None:
    r = router(route("session.error", throttle=0))
    assert [fired(r, event("session.error"), 5.0) for _ in range(3)] == [[0], [0], [0]]


def test_a_flapping_session_cannot_flood_a_channel() -> None:
    r = router(route("session.error || session.idle", throttle="5m"))
    deliveries = 0
    for second in range(3600):  # an error and an idle every second for an hour
        for type_ in ("session.error", "session.idle"):
            deliveries += len(r.route(event(type_, session="flappy"), NO_CONTEXT, float(second)))
    assert deliveries == 2 * 12  # one per key per 5-minute window


# ---- dedup keys ------------------------------------------------------------------------------


def test_default_key_is_per_type_and_subject() -> None:
    r = router(route("session.*", throttle=60))
    assert fired(r, event("session.error", session="a"), 0.0) == [0]
    assert fired(r, event("session.error", session="b"), 1.0) == [0]  # another session
    assert fired(r, event("session.idle", session="a"), 2.0) == [0]  # another type
    assert fired(r, event("session.error", session="a"), 3.0) == []


def test_default_key_tells_nodes_apart_for_supervisor_events() -> None:
    r = router(route("node.offline", throttle=60))
    offline = [event("node.offline", session=None, project=None, node="supervisor", data={"node_id": n}) for n in "ab"]
    assert fired(r, offline[0], 0.0) == [0]
    assert fired(r, offline[1], 0.0) == [0]
    assert r.route(offline[1], NO_CONTEXT, 0.0) == []  # the same event again


def test_default_key_tells_projects_apart_for_budget_events() -> None:
    r = router(route("cost.budget_*", throttle="1h"))
    fleet = event("cost.budget_exceeded", session=None, project=None, node="supervisor")
    project = event("cost.budget_exceeded", session=None, project="api", node="supervisor")
    assert fired(r, fleet, 0.0) == [0]
    assert fired(r, project, 0.0) == [0]


def test_custom_dedup_key() -> None:
    r = router(route("session.error", throttle=60, dedup_key="{project}"))
    assert fired(r, event("session.error", session="a", project="api"), 0.0) == [0]
    assert fired(r, event("session.error", session="b", project="api"), 1.0) == []
    assert fired(r, event("session.error", session="c", project="web"), 2.0) == [0]
    [delivery] = r.route(event("session.error", session="d", project="api"), NO_CONTEXT, 60.0)
    assert (delivery.key, delivery.suppressed_count) == ("api", 1)


def test_dedup_key_from_data() -> None:
    r = router(route("session.error", throttle=60, dedup_key="{session}:{data.name}"))
    assert fired(r, event("session.error", data={"name": "quota"}), 0.0) == [0]
    assert fired(r, event("session.error", data={"name": "quota"}), 1.0) == []
    assert fired(r, event("session.error", data={"name": "auth"}), 2.0) == [0]
    assert fired(r, event("session.error"), 3.0) == [0]  # null renders as ""


def test_huge_keys_are_digested() -> None:
    r = router(route("session.error", dedup_key="{data.blob}"))
    [delivery] = r.route(event("session.error", data={"blob": "x" * 10_000}), NO_CONTEXT, 0.0)
    assert delivery.key.startswith("sha256:")
    assert len(delivery.key) <= MAX_KEY_LENGTH


# ---- re-routing and time-based conditions ----------------------------------------------------


def test_a_route_fires_once_per_event() -> None:
    r = router(route("session.idle && idle_for > 5m"))
    idle = event("session.idle", id_=42)
    assert fired(r, idle, 0.0, RouteContext(idle_for=0)) == []
    assert fired(r, idle, 290.0, RouteContext(idle_for=290)) == []  # the periodic re-check
    assert fired(r, idle, 301.0, RouteContext(idle_for=301)) == [0]
    assert fired(r, idle, 311.0, RouteContext(idle_for=311)) == []  # fired for this event already
    again = event("session.idle", id_=43)  # the next idle period
    assert fired(r, again, 900.0, RouteContext(idle_for=0)) == []
    assert fired(r, again, 1201.0, RouteContext(idle_for=301)) == [0]


def test_re_routing_is_idempotent_when_sessions_share_a_key() -> None:
    # The tick re-routes the latest event of both sessions; they share the project key.
    r = router(route("session.idle && idle_for > 5m", dedup_key="{project}"))
    idle_a, idle_b = event("session.idle", session="a"), event("session.idle", session="b")
    results = [fired(r, ev, float(t), RouteContext(idle_for=400)) for t in range(3) for ev in (idle_a, idle_b)]
    assert results == [[0], [0], [], [], [], []]


def test_remembered_events_are_bounded() -> None:
    r = router(route("session.error"), max_keys=3)
    events = [event("session.error", session=f"s{i}") for i in range(5)]
    for ev in events:
        assert fired(r, ev, 0.0) == [0]
    assert len(r.states[0].fired) == 3
    assert fired(r, events[4], 1.0) == []  # still remembered
    assert fired(r, events[0], 1.0) == [0]  # forgotten: fires again


def test_re_routing_a_suppressed_event_does_not_count_it_twice() -> None:
    r = router(route("session.error", throttle=60))
    first, second = event("session.error"), event("session.error")
    fired(r, first, 0.0)
    for t in (1.0, 2.0, 3.0):
        assert fired(r, second, t) == []
    assert fired(r, event("session.error"), 60.0) == [1]


# ---- edge-triggered conditions ---------------------------------------------------------------


def test_route_kinds() -> None:
    assert route("session.error").kind == "event"
    assert route('type == "session.error"').kind == "event"
    assert route("data.code == 5").kind == "event"
    assert route("session.idle && idle_for > 5m").kind == "event"
    assert route("cost.daily > 20").kind == "condition"
    assert route('status == "waiting" && project == "api"').kind == "condition"


def test_condition_keys() -> None:
    assert str(route("cost.daily > 20").key) == ""
    assert str(route("cost.project_daily > 5").key) == "{project}"
    assert str(route('status == "waiting"').key) == "{session}"
    assert str(route('node == "a" && cost.daily > 1').key) == "{node}"
    assert str(route("compaction_count >= 2 && cost.project_daily > 1").key) == "{session}|{project}"
    assert str(route("session.error").key) == "{type}|{session}|{node}|{project}"


def cost(daily: float | str, day: str | None = None) -> RouteContext:
    return RouteContext(cost_daily=Decimal(str(daily)), day=day)


def test_threshold_fires_on_the_crossing_only() -> None:
    r = router(route("cost.daily > 20", "slack#ops"))
    steps = [(10, []), (15, []), (21, [0]), (25, []), (30, []), (19, []), (22, [0]), (23, [])]
    for i, (daily, expected) in enumerate(steps):
        ev = event("session.updated", session=f"s{i % 3}", project=f"p{i % 2}")
        assert fired(r, ev, float(i), cost(daily)) == expected, (i, daily)


def test_threshold_re_arms_on_a_new_day() -> None:
    r = router(route("cost.daily > 20"))
    assert fired(r, event("session.updated"), 0.0, cost(25, "2026-08-01")) == [0]
    assert fired(r, event("session.updated"), 1.0, cost(26, "2026-08-01")) == []
    # No event saw today's spend under the limit, but it is another day's crossing.
    assert fired(r, event("session.updated"), 2.0, cost(21, "2026-08-02")) == [0]
    assert fired(r, event("session.updated"), 3.0, cost(22, "2026-08-02")) == []
    # An unknown day neither re-arms nor breaks anything.
    assert fired(r, event("session.updated"), 4.0, cost(22)) == []


def test_threshold_already_exceeded_at_start_fires_once() -> None:
    r = router(route("cost.daily > 20"))
    assert fired(r, event("node.online"), 0.0, cost(50)) == [0]
    assert fired(r, event("node.online"), 1.0, cost(50)) == []


def test_project_threshold_is_per_project() -> None:
    r = router(route("cost.project_daily >= 5"))

    def spend(project: str, amount: float, t: float) -> list[int]:
        context = RouteContext(cost_project_daily=amount)
        return fired(r, event("session.updated", project=project), t, context)

    assert spend("api", 5, 0.0) == [0]
    assert spend("web", 4, 1.0) == []
    assert spend("api", 6, 2.0) == []
    assert spend("web", 5, 3.0) == [0]


def test_status_condition_is_per_session() -> None:
    r = router(route('status == "waiting"'))

    def status(session: str, value: str, t: float) -> list[int]:
        return fired(r, event("session.updated", session=session), t, RouteContext(status=value))

    assert status("a", "waiting", 0.0) == [0]
    assert status("a", "waiting", 1.0) == []
    assert status("b", "waiting", 2.0) == [0]
    assert status("a", "busy", 3.0) == []
    assert status("a", "waiting", 4.0) == [0]


def test_a_flapping_condition_is_throttled_and_counted() -> None:
    r = router(route('status == "waiting"', throttle="5m"))
    results = []
    for t in range(0, 600, 10):  # waiting and busy every 10 s
        value = "waiting" if (t // 10) % 2 == 0 else "busy"
        results.append(fired(r, event("session.updated"), float(t), RouteContext(status=value)))
    delivered = [(t * 10, counts) for t, counts in enumerate(results) if counts]
    # Crossings at 0, 20, 40, ...: the one at 300 carries the 14 suppressed in [0, 300).
    assert delivered == [(0, [0]), (300, [14])]


# ---- bounded state ---------------------------------------------------------------------------


def test_a_flood_of_distinct_keys_is_bounded() -> None:
    r = router(route("session.error", throttle=60), route('status == "waiting"'), max_keys=100)
    for i in range(10_000):
        r.route(event("session.error", session=f"s{i}"), RouteContext(status="waiting"), float(i))
    stats = r.stats()
    assert stats.keys == 200
    assert stats.evicted == 2 * (10_000 - 100)
    assert all(len(state.keys) == 100 for state in r.states)


def test_eviction_is_least_recently_used() -> None:
    r = router(route("session.error", throttle=1000), max_keys=2)
    fired(r, event("session.error", session="a"), 0.0)
    fired(r, event("session.error", session="b"), 1.0)
    assert fired(r, event("session.error", session="a"), 2.0) == []  # a is now the most recent
    fired(r, event("session.error", session="c"), 3.0)  # evicts b
    assert fired(r, event("session.error", session="a"), 4.0) == []  # a kept its window
    assert fired(r, event("session.error", session="b"), 5.0) == [0]  # b starts over
    assert r.stats().evicted == 2


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        Router([], max_keys=0)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.floats(0, 50), st.booleans()), max_size=60),
    st.sampled_from([0, 5, 10, 30]),
)
def test_throttle_matches_a_reference_model(steps: list[tuple[int, float, bool]], window: int) -> None:
    """With room for every key, each key gets at most one delivery per window, counts add up."""
    r = router(route("session.error", throttle=window, dedup_key="{session}"))
    model: dict[str, tuple[float, int]] = {}  # key -> (window end, suppressed)
    now = 0.0
    for session, gap, matches in steps:
        now += gap
        key = f"s{session}"
        got = fired(r, event("session.error" if matches else "session.idle", session=key), now)
        if not matches:
            assert got == []
            continue
        end, suppressed = model.get(key, (float("-inf"), 0))
        if now < end:
            model[key] = (end, suppressed + 1)
            assert got == []
        else:
            model[key] = (now + window, 0)
            assert got == [suppressed]


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.integers(0, 50), max_size=200), st.integers(1, 8))
def test_state_never_exceeds_max_keys(sessions: list[int], max_keys: int) -> None:
    r = router(route("session.*", throttle=10), route('status == "waiting"'), max_keys=max_keys)
    for t, s in enumerate(sessions):
        context = RouteContext(status="waiting" if s % 2 else "busy")
        r.route(event("session.error", session=f"s{s}"), context, float(t))
        assert all(len(state.keys) <= max_keys for state in r.states)


# ---- building routes -------------------------------------------------------------------------


def test_route_from_config() -> None:
    compiled = Route.from_config(RouteConfig("session.idle && idle_for > 5m", "webhook#n8n", "30s", "{project}"))
    assert compiled.target == Target("webhook", "n8n")
    assert compiled.throttle == 30.0
    assert str(compiled.key) == "{project}"
    assert compiled.text == "session.idle && idle_for > 5m"
    assert Route.from_config(RouteConfig("a.b", "slack#x", 90)).throttle == 90.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (RouteConfig("session.idle &&", "discord#alerts"), "routes[1].match: expected an event type pattern"),
        (RouteConfig("a.b", "telegram#x"), "routes[1].target: unknown target kind 'telegram'"),
        (RouteConfig("a.b", "discord#alerts", "5 minutes"), "routes[1].throttle: '5 minutes' is not a duration"),
        (RouteConfig("a.b", "discord#alerts", -1), "routes[1].throttle: must not be negative"),
        (RouteConfig("a.b", "discord#alerts", None, "{nope}"), "routes[1].dedup_key: unknown field 'nope'"),
    ],
)
def test_router_from_config_names_the_bad_route(config: RouteConfig, message: str) -> None:
    with pytest.raises(RouteError) as info:
        Router.from_config([RouteConfig("session.error", "discord#alerts"), config])
    assert str(info.value).startswith(message)


def test_router_from_config() -> None:
    r = Router.from_config([RouteConfig("session.error", "discord#alerts"), RouteConfig("*", "webhook#n8n")])
    assert [str(d.target) for d in r.route(event("session.error"), NO_CONTEXT, 0.0)] == [
        "discord#alerts",
        "webhook#n8n",
    ]


# ---- reload ----------------------------------------------------------------------------------


def test_a_reload_keeps_the_memory_of_unchanged_routes_only() -> None:
    over = route("cost.daily > 20", "slack#ops")
    errors = route("session.error", "webhook#n8n", throttle=60)
    old = router(over, errors)
    over_budget = RouteContext(cost_daily=Decimal(25))
    assert fired(old, event("session.updated"), 0.0, over_budget) == [0]
    assert fired(old, event("session.error"), 0.0, over_budget) == [0]
    # The new file puts a route first, keeps the condition route, changes the error route's throttle.
    new, kept = old.replaced_by([route("node.*", "slack#ops"), over, route("session.error", "webhook#n8n")])
    assert kept == {0: 1}
    # The condition already fired and still holds: no second alert because of the reload.
    assert fired(new, event("session.updated"), 5.0, over_budget) == []
    # The changed route starts afresh (no throttle any more).
    assert fired(new, event("session.error"), 5.0, over_budget) == [0]
    assert fired(new, event("session.error"), 6.0, over_budget) == [0]


def test_a_reload_carries_an_open_throttle_window_over() -> None:
    errors = route("session.error", throttle=60)
    old = router(errors)
    assert fired(old, event("session.error"), 0.0) == [0]
    new, kept = old.replaced_by([errors])
    assert kept == {0: 0}
    assert fired(new, event("session.error"), 30.0) == []  # still inside the window
    assert fired(new, event("session.error"), 60.0) == [1]
    assert old.stats().keys == new.stats().keys


def test_identical_routes_are_each_taken_over_once() -> None:
    twice = route("session.error", "webhook#n8n")
    old = router(twice, twice)
    new, kept = old.replaced_by([twice])
    assert kept == {0: 0}
    assert new.states[0] is old.states[0]
