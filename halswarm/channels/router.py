"""Event routing: which routes fire for an event, with throttle windows, dedup keys and edge-triggered conditions.

Sans-IO: :meth:`Router.route` takes an event, the caller's derived values and the
caller's clock, and returns the deliveries to make; sending them is the caller's job.
docs/ROUTING.md explains the semantics with examples.

Two kinds of route (:attr:`Route.kind`), decided by the match expression:

- **event** routes name what happened: the match has an event type pattern, or reads
  ``type`` or ``data.*`` (``session.error``, ``session.idle && idle_for > 5m``). Every
  matching event fires.
- **condition** routes only describe a state (``cost.daily > 20``,
  ``status == "waiting"``). They fire on the crossing: when the condition becomes true
  for a dedup key, not again while it stays true; they re-arm when it is evaluated
  false, or when the cost day (:attr:`RouteContext.day`) changes.

Invariants (per route and dedup key):

- An event route fires at most once per event (``event.id``): re-routing an event it
  fired for (delivered or suppressed) is a no-op. Callers re-route each session's
  latest event on a periodic tick so that time-based conditions (``idle_for > 5m``)
  are seen while nothing happens; such a caller passes its own per-event record of
  the routes that fired (``route(..., fired=...)``, kept next to the event, so it is
  never evicted) and only the routes whose match reads a time-dependent value
  (``route(..., only=router.time_dependent)``, see :data:`TIME_FIELDS`).
- After a delivery at ``t`` with throttle ``w``, firings at ``t <= now < t + w`` are
  suppressed and counted; the first firing at ``now >= t + w`` is delivered with that
  count (``suppressed_count``) and starts the next window.
- One call delivers an event to a target at most once: the first matching route in
  config order delivers, later routes naming the same target count as delivered.
- Each route keeps at most ``max_keys`` keys and ``max_keys`` event ids (least recently
  used evicted first; evicted keys are counted), and keys are at most
  :data:`halswarm.channels.fields.MAX_KEY_LENGTH` characters: a flood of distinct keys or
  events cannot grow memory without bound. An evicted key starts over (its suppressed
  count is lost; a condition that holds fires again); an evicted event id may fire again
  if that event is re-routed (callers that re-route pass ``fired`` instead).
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, Final, Literal

import attrs

from halswarm.channels.durations import DurationError, seconds_of
from halswarm.channels.evaluate import evaluate, fields_read, has_pattern
from halswarm.channels.expr import Expr, ExprError, parse
from halswarm.channels.fields import EVENT_KEY, KeyTemplate, RouteContext, condition_key, lookup_for
from halswarm.channels.targets import Target, TargetError
from halswarm.models import Event

if TYPE_CHECKING:
    from collections.abc import Container, Iterable

    from halswarm.config.routing import RouteConfig

__all__ = [
    "DEFAULT_MAX_KEYS",
    "TIME_FIELDS",
    "Delivery",
    "KeyState",
    "Route",
    "RouteError",
    "RouteKind",
    "RouteState",
    "Router",
    "RouterStats",
]

#: Keys each route remembers (throttle windows, condition states) before evicting.
DEFAULT_MAX_KEYS: Final = 1024

#: Fields whose value changes with time alone, without a new event: a route reading one
#: of them must be re-checked periodically (:attr:`Router.time_dependent`).
TIME_FIELDS: Final = frozenset({"idle_for", "cost.daily", "cost.project_daily"})

RouteKind = Literal["event", "condition"]


class RouteError(ValueError):
    """A route that cannot be built; the message names the part (``match: ...``)."""


def _kind_of(expr: Expr) -> RouteKind:
    if has_pattern(expr) or fields_read(expr) & {"type", "data"}:
        return "event"
    return "condition"


@attrs.frozen
class Route:
    """One compiled routing rule."""

    match: Expr
    target: Target
    #: Throttle window in seconds (0: every firing is delivered).
    throttle: float
    #: The dedup key template: what counts as "the same" for throttling and conditions.
    key: KeyTemplate
    kind: RouteKind
    #: The match as written, for logs and messages.
    text: str = ""

    @property
    def time_dependent(self) -> bool:
        """True when the match reads a value that changes without events (:data:`TIME_FIELDS`)."""
        return not fields_read(self.match).isdisjoint(TIME_FIELDS)

    @classmethod
    def create(
        cls, match: str, target: str, *, throttle: float | str | None = None, dedup_key: str | None = None
    ) -> Route:
        """Compile a rule from its config values.

        The default dedup key of an event route is ``{type}|{session}|{node}|{project}``;
        of a condition route, the subjects its fields are about
        (:func:`halswarm.channels.fields.condition_key`).

        Raises:
            RouteError: a part does not parse; the message starts with its key.
        """
        try:
            expr = parse(match)
        except ExprError as exc:
            raise RouteError(f"match: {exc}") from None
        try:
            parsed_target = Target.parse(target)
        except TargetError as exc:
            raise RouteError(f"target: {exc}") from None
        try:
            window = seconds_of(throttle)
        except DurationError as exc:
            raise RouteError(f"throttle: {exc}") from None
        kind = _kind_of(expr)
        if dedup_key is None:
            key = EVENT_KEY if kind == "event" else condition_key(expr)
        else:
            try:
                key = KeyTemplate.parse(dedup_key)
            except ExprError as exc:
                raise RouteError(f"dedup_key: {exc}") from None
        return cls(expr, parsed_target, window, key, kind, match)

    @classmethod
    def from_config(cls, config: RouteConfig) -> Route:
        """Compile one entry of the config's ``routes``.

        Raises:
            RouteError: see :meth:`create` (``check_routing`` reports these at load).
        """
        return cls.create(config.match, config.target, throttle=config.throttle, dedup_key=config.dedup_key)


@attrs.frozen
class Delivery:
    """An event to send to a target, because route ``route_index`` fired."""

    target: Target
    event: Event
    route_index: int
    #: Firings of this route and key suppressed by the throttle since its last delivery.
    suppressed_count: int = 0
    #: The rendered dedup key.
    key: str = ""


@attrs.define
class KeyState:
    """What a route remembers about one dedup key."""

    #: Firings before this time are suppressed (the end of the current throttle window).
    window_end: float = -math.inf
    #: Firings suppressed since the last delivery.
    suppressed: int = 0
    #: Condition routes: the condition held at the last evaluation (no crossing while true).
    active: bool = False
    #: Condition routes: the cost day of the crossing that set ``active``.
    day: str | None = None


@attrs.define
class RouteState:
    """One route's keys and the events it fired for, least recently used first."""

    keys: collections.OrderedDict[str, KeyState] = attrs.Factory(collections.OrderedDict)
    #: Ids of the events an event route fired for (delivered or suppressed), as a set.
    fired: collections.OrderedDict[int, None] = attrs.Factory(collections.OrderedDict)
    #: Keys dropped to stay within ``max_keys``.
    evicted: int = 0


@attrs.frozen
class RouterStats:
    """Size of the router's state, for health output and metrics."""

    keys: int
    evicted: int


class Router:
    """Routes events to targets. Not thread-safe; one task calls :meth:`route`.

    Args:
        routes: the compiled rules, in config order.
        max_keys: dedup keys (and event ids) each route remembers; at least 1.
    """

    def __init__(self, routes: Iterable[Route], *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.routes: tuple[Route, ...] = tuple(routes)
        self.max_keys = max_keys
        self.states: list[RouteState] = [RouteState() for _ in self.routes]
        #: Indexes of the routes whose match reads a time-dependent value: the only ones a
        #: periodic re-check needs to re-route.
        self.time_dependent: frozenset[int] = frozenset(i for i, r in enumerate(self.routes) if r.time_dependent)

    @classmethod
    def from_config(cls, routes: Iterable[RouteConfig], *, max_keys: int = DEFAULT_MAX_KEYS) -> Router:
        """A router over the config's ``routes``.

        Raises:
            RouteError: a route does not compile; the message starts with ``routes[i].``.
        """
        compiled: list[Route] = []
        for index, config in enumerate(routes):
            try:
                compiled.append(Route.from_config(config))
            except RouteError as exc:
                raise RouteError(f"routes[{index}].{exc}") from None
        return cls(compiled, max_keys=max_keys)

    def replaced_by(self, routes: Iterable[Route]) -> tuple[Router, dict[int, int]]:
        """A router over *routes* (a config reload) that keeps this one's memory for unchanged routes.

        A route identical to one of this router's (same match, target, throttle and dedup
        key) takes over that route's throttle windows, condition states and fired event
        ids, so a reload neither repeats a condition alert that already fired nor opens
        a throttled window early. New and changed routes start empty.

        Returns:
            The new router, and old route index -> new route index for every route kept
            (callers that keep ``fired`` sets renumber them with it).
        """
        replacement = Router(routes, max_keys=self.max_keys)
        kept: dict[int, int] = {}
        for new_index, route in enumerate(replacement.routes):
            for old_index, old in enumerate(self.routes):
                if old_index not in kept and old == route:
                    kept[old_index] = new_index
                    replacement.states[new_index] = self.states[old_index]
                    break
        return replacement, kept

    def route(
        self,
        event: Event,
        context: RouteContext,
        now: float,
        *,
        only: Container[int] | None = None,
        fired: set[int] | None = None,
    ) -> list[Delivery]:
        """The deliveries *event* causes, updating throttle and condition state.

        Args:
            event: a stored event (its ``id`` identifies it: re-routing is safe).
            context: the derived values for this event.
            now: the caller's clock in seconds (monotonic; the throttle windows use it).
            only: the indexes of the routes to evaluate (None: all); a periodic re-check
                passes :attr:`time_dependent`.
            fired: the caller's record of the event routes (indexes) that already fired
                for this exact event, updated in place. When given, it replaces the
                router's bounded memory of event ids, so a caller that keeps it next to
                the event never sees an old event fire again. Pass the same set every
                time the same event is routed.

        Returns:
            One delivery per target reached, in route order.
        """
        lookup = lookup_for(event, context)
        deliveries: list[Delivery] = []
        reached: set[Target] = set()
        for index, route in enumerate(self.routes):
            if only is not None and index not in only:
                continue
            matched = evaluate(route.match, event.type, lookup)
            if not matched and route.kind == "event":
                continue  # nothing to remember: unmatched events create no keys
            key = route.key.render(lookup)
            state = self.states[index]
            if route.kind == "event":
                count = self._fire_event(state, key, event, route, now, index, fired)
            else:
                count = self._fire_condition(state, key, matched, context, route, now)
            if count is None or route.target in reached:
                continue
            reached.add(route.target)
            deliveries.append(Delivery(route.target, event, index, count, key))
        return deliveries

    def stats(self) -> RouterStats:
        """Keys held and keys evicted, over all routes."""
        return RouterStats(keys=sum(len(s.keys) for s in self.states), evicted=sum(s.evicted for s in self.states))

    # ---- per key ----------------------------------------------------------------------------

    def _entry(self, state: RouteState, key: str) -> KeyState:
        entry = state.keys.get(key)
        if entry is not None:
            state.keys.move_to_end(key)
            return entry
        entry = state.keys[key] = KeyState()
        if len(state.keys) > self.max_keys:
            state.keys.popitem(last=False)
            state.evicted += 1
        return entry

    def _fire_event(
        self, state: RouteState, key: str, event: Event, route: Route, now: float, index: int, fired: set[int] | None
    ) -> int | None:
        if fired is not None:
            if index in fired:
                return None  # routed again (a periodic re-check): it fired once already
            fired.add(index)
            return _open_window(self._entry(state, key), route, now)
        if event.id in state.fired:
            state.fired.move_to_end(event.id)
            return None  # routed again (a periodic re-check): it fired once already
        state.fired[event.id] = None
        if len(state.fired) > self.max_keys:
            state.fired.popitem(last=False)
        return _open_window(self._entry(state, key), route, now)

    def _fire_condition(
        self, state: RouteState, key: str, matched: bool, context: RouteContext, route: Route, now: float
    ) -> int | None:
        if not matched and key not in state.keys:
            return None
        entry = self._entry(state, key)
        if entry.active and context.day is not None and entry.day is not None and context.day != entry.day:
            entry.active = False  # a new cost day: the threshold may be crossed again
        if not matched:
            entry.active = False
            return None
        if entry.active:
            return None  # still true: no new crossing
        entry.active = True
        entry.day = context.day
        return _open_window(entry, route, now)


def _open_window(entry: KeyState, route: Route, now: float) -> int | None:
    """Deliver (the suppressed count so far) and start a window, or count a suppression."""
    if now < entry.window_end:
        entry.suppressed += 1
        return None
    count, entry.suppressed = entry.suppressed, 0
    entry.window_end = now + route.throttle
    return count
