"""Health probes and metrics: ``/healthz``, ``/readyz``, ``/metrics`` (no token needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart, Response, request

from halswarm.http.responses import json_response

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext

__all__ = ["register_probes"]


def register_probes(app: Quart, api: ApiContext) -> None:
    """Add the probe routes to *app*."""

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        components = await api.readiness()
        # A "degraded: ..." component (a cost provider that cannot be polled) is worth
        # showing but must not take a working supervisor out of service.
        failing = [v for v in components.values() if v != "ok" and not v.startswith("degraded")]
        if failing:
            status = "unhealthy"
        elif all(v == "ok" for v in components.values()):
            status = "healthy"
        else:
            status = "degraded"
        body = {
            "status": status,
            "components": components,
            "details": {"pipeline_queue": api.queue_stats()},
        }
        return json_response(body, 503 if failing else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        # Content negotiation (provider-apis.md section 5): OpenMetrics for scrapers that
        # ask for it, the text format 0.0.4 otherwise; never a blank content type.
        body, content_type = api.metrics.exposition(request.headers.get("Accept"))
        response = Response(body, content_type=content_type)
        response.vary.add("Accept")
        return response
