"""What the HTTP routes need from the running supervisor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from halswarm.channels.discord.service import DiscordService
from halswarm.cost.reporter import CostReporter
from halswarm.jsontypes import JSONObject
from halswarm.obs.metrics import Metrics
from halswarm.policy.dependency_engine import DependencyEngine
from halswarm.policy.engine import PolicyEngine
from halswarm.store import Store
from halswarm.supervisor.dispatcher import Dispatcher
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.tracker import SessionTracker

__all__ = ["ApiContext", "Readiness"]

Readiness = Callable[[], Awaitable[dict[str, str]]]
"""Returns component -> "ok" or a reason it is not."""


@attrs.frozen
class ApiContext:
    """Handles on the supervisor's components, for route handlers."""

    token: str
    store: Store
    tracker: SessionTracker
    registry: NodeRegistry
    dispatcher: Dispatcher
    metrics: Metrics
    readiness: Readiness
    queue_stats: Callable[[], JSONObject]
    cost: CostReporter
    policies: PolicyEngine
    projects: DependencyEngine
    #: The Discord channel, when ``channels.discord`` is configured (``POST /discord/interactions``).
    discord: DiscordService | None = None
