"""``/api/v1/nodes``: every known node, online or not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.http.auth import requires
from halswarm.http.responses import ApiError, json_response

if TYPE_CHECKING:
    from quart import Quart, Response

    from halswarm.http.context import ApiContext

__all__ = ["register_nodes"]


def register_nodes(app: Quart, api: ApiContext) -> None:
    """Add the node routes to *app*."""

    @app.get("/api/v1/nodes")
    @requires("viewer")
    async def list_nodes() -> Response:
        nodes = [api.registry.to_node(e, api.tracker.count_for_node(e.record.id)) for e in api.registry]
        nodes.sort(key=lambda n: n.id)
        return json_response({"nodes": nodes})

    @app.get("/api/v1/nodes/<node_id>")
    @requires("viewer")
    async def get_node(node_id: str) -> Response:
        entry = api.registry.get(node_id)
        if entry is None:
            raise ApiError(404, "not_found", f"no node {node_id!r}")
        return json_response({"node": api.registry.to_node(entry, api.tracker.count_for_node(node_id))})
