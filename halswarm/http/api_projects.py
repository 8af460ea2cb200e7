"""``/api/v1/projects``: every known project, its dependencies and completion (issue #6).

- ``GET /api/v1/projects`` answers ``{"projects": [ProjectInfo...]}`` sorted by name:
  projects hosted by a node (online or not), named by config ``dependencies``, or
  completed before.
- ``GET /api/v1/projects/{name}`` answers ``{"project": ProjectInfo}``.
- ``POST /api/v1/projects/{name}/complete`` (optional body ``{"detail": "..."}``) marks
  the project complete and starts the dependants whose dependencies are now all
  complete; it answers :class:`~halswarm.projects.CompleteAnswer` with 200, also for a
  project complete already (``already_complete: true``, nothing started). Audited with
  the caller as actor (role operator) and the request's correlation id. 404 for a project no
  node hosts that the dependencies do not name.

The shapes are :mod:`halswarm.projects`, which halctl reads too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart, Response, request

from halswarm.convert import ConversionError, loads_object, structure_strict
from halswarm.http.auth import current_principal, requires
from halswarm.http.responses import ApiError, json_response
from halswarm.obs.logging import current_correlation_id
from halswarm.policy.dependency_engine import UnknownProjectError
from halswarm.projects import CompleteRequest

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["register_projects"]


def register_projects(app: Quart, api: ApiContext) -> None:
    """Add the project routes to *app*."""

    @app.get("/api/v1/projects")
    @requires("viewer")
    async def list_projects() -> Response:
        return json_response({"projects": api.projects.projects()})

    @app.get("/api/v1/projects/<name>")
    @requires("viewer")
    async def get_project(name: str) -> Response:
        try:
            return json_response({"project": api.projects.project(name)})
        except UnknownProjectError as exc:
            raise ApiError(404, "not_found", str(exc)) from None

    @app.post("/api/v1/projects/<name>/complete")
    @requires("operator")
    async def complete_project(name: str) -> Response:
        data = await request.get_data()
        try:
            body = structure_strict(loads_object(data, what="request body"), CompleteRequest) if data.strip() else None
        except ConversionError as exc:
            raise ApiError(400, "invalid_body", "; ".join(exc.problems)) from None
        try:
            answer = await api.projects.complete(
                name,
                actor=current_principal().actor,
                source="http",
                detail=body.detail if body is not None else None,
                correlation_id=current_correlation_id(),
            )
        except UnknownProjectError as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        return json_response(answer)
