"""What the HTTP routes need from the running supervisor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs

from halswarm.auth_throttle import FailureThrottle
from halswarm.channels.discord.service import DiscordService
from halswarm.config.security import ApiToken
from halswarm.cost.reporter import CostReporter
from halswarm.jsontypes import JSONObject
from halswarm.obs.metrics import Metrics
from halswarm.policy.dependency_engine import DependencyEngine
from halswarm.policy.engine import PolicyEngine
from halswarm.store import Store
from halswarm.supervisor.dispatcher import Dispatcher
from halswarm.supervisor.env import EnvService
from halswarm.supervisor.installs import InstallApprovals
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.tracker import SessionTracker
from halswarm.timeutil import Clock, system_now

__all__ = ["ApiContext", "Readiness"]

Readiness = Callable[[], Awaitable[dict[str, str]]]
"""Returns component -> "ok" or a reason it is not."""


@attrs.frozen
class ApiContext:
    """Handles on the supervisor's components, for route handlers."""

    #: The shared ``server.auth_token``: role admin, actor ``api``.
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
    #: Named API tokens with roles (``server.tokens``).
    tokens: Sequence[ApiToken] = ()
    #: Origins allowed on requests that carry an ``Origin`` header (``security.origin_allowlist``).
    origin_allowlist: Sequence[str] = ("*",)
    #: Slows down repeated auth failures per remote address.
    throttle: FailureThrottle = attrs.Factory(FailureThrottle)
    #: Wall clock for audit rows the API writes itself (auth failures).
    now: Clock = system_now
    #: The environment manifest and check reports (issue #9); None: routes answer 404.
    env: EnvService | None = None
    #: Approvals of declared installs (shared with Discord); None: the approve route answers 404.
    installs: InstallApprovals | None = None
