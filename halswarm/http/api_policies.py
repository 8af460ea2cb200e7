"""``/api/v1/policies``: the auto-intervention policies, their live state, runtime enable/disable.

- ``GET /api/v1/policies`` answers ``{"policies": [PolicyInfo...]}`` in priority order.
- ``GET /api/v1/policies/{name}`` answers ``{"policy": PolicyInfo}``.
- ``POST /api/v1/policies/{name}/enable`` and ``/disable`` switch a policy from the next
  tick on and answer ``{"policy": PolicyInfo}``; each is an audit row with the caller as
  actor (``api`` for the shared token, ``token:<name>`` for a named one; role admin) and
  the request's correlation id. 404 for an unknown policy, 409 when kill_on_cost has no limit to act on.

The shapes are :mod:`halswarm.policy.views`, which halctl reads too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.http.auth import current_principal, requires
from halswarm.http.responses import ApiError, json_response
from halswarm.obs.logging import current_correlation_id
from halswarm.policy.engine import PolicyNotConfiguredError, UnknownPolicyError

if TYPE_CHECKING:
    from quart import Quart, Response

    from halswarm.http.context import ApiContext
    from halswarm.policy.views import PolicyInfo

__all__ = ["register_policies"]


def register_policies(app: Quart, api: ApiContext) -> None:
    """Add the policy routes to *app*."""

    def one(name: str) -> PolicyInfo:
        try:
            return api.policies.info(name)
        except UnknownPolicyError as exc:
            raise ApiError(404, "not_found", str(exc)) from None

    async def switch(name: str, enabled: bool) -> Response:
        one(name)  # 404 before anything is written
        try:
            info = await api.policies.set_enabled(
                name,
                enabled,
                actor=current_principal().actor,
                source="http",
                correlation_id=current_correlation_id(),
            )
        except PolicyNotConfiguredError as exc:
            raise ApiError(409, "policy_not_configured", str(exc)) from None
        return json_response({"policy": info})

    @app.get("/api/v1/policies")
    @requires("viewer")
    async def list_policies() -> Response:
        return json_response({"policies": api.policies.infos()})

    @app.get("/api/v1/policies/<name>")
    @requires("viewer")
    async def get_policy(name: str) -> Response:
        return json_response({"policy": one(name)})

    @app.post("/api/v1/policies/<name>/enable")
    @requires("admin")
    async def enable_policy(name: str) -> Response:
        return await switch(name, True)

    @app.post("/api/v1/policies/<name>/disable")
    @requires("admin")
    async def disable_policy(name: str) -> Response:
        return await switch(name, False)
