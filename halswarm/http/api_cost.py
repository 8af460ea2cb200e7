"""``GET /api/v1/cost``: the cost report (issue 5), the one schema halctl and Discord read.

Query: ``period=today|week|month`` (default ``today``) or ``from=YYYY-MM-DD&to=YYYY-MM-DD``
(UTC days, inclusive, at most 366), and ``group_by=provider|model|project|day`` (default
``project``). The body is the :class:`~halswarm.cost.model.CostReport` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart, Response, request

from halswarm.cost.model import COST_GROUPINGS
from halswarm.cost.report import PeriodError, parse_window
from halswarm.http.auth import requires
from halswarm.http.responses import ApiError, json_response, query_str

if TYPE_CHECKING:
    from halswarm.cost.model import CostGrouping
    from halswarm.http.context import ApiContext

__all__ = ["register_cost"]


def _group_by(raw: str | None) -> CostGrouping:
    name = raw or "project"
    for known in COST_GROUPINGS:
        if name == known:
            return known
    raise ApiError(400, "invalid_parameter", f"group_by must be one of {', '.join(COST_GROUPINGS)}, got {name!r}")


def register_cost(app: Quart, api: ApiContext) -> None:
    """Add the cost route to *app*."""

    @app.get("/api/v1/cost")
    @requires("viewer")
    async def cost_report() -> Response:
        args = request.args
        group_by = _group_by(query_str(args, "group_by"))
        try:
            window = parse_window(
                query_str(args, "period"), query_str(args, "from"), query_str(args, "to"), api.cost.today()
            )
        except PeriodError as exc:
            raise ApiError(400, "invalid_parameter", str(exc)) from None
        return json_response(await api.cost.report(window, group_by))
