"""``halctl nodes``: the nodes (one hal-agent each) the supervisor knows."""

from __future__ import annotations

import asyncclick as click

from halswarm.cli.context import app_of, output_option
from halswarm.cli.render import node_detail, nodes_table

__all__ = ["nodes"]


@click.group()
def nodes() -> None:
    """Nodes: one hal-agent each, online or not."""


@output_option
@nodes.command("list")
@click.pass_context
async def list_nodes(ctx: click.Context) -> None:
    """List every node with its status, projects, sessions and load."""
    app = app_of(ctx)
    async with app.open_api() as api:
        found = await api.nodes()
    app.show({"nodes": found}, nodes_table(found, app.io.now(), width=app.io.console.width))


@output_option
@nodes.command("get")
@click.argument("node_id", metavar="NODE")
@click.pass_context
async def get_node(ctx: click.Context, node_id: str) -> None:
    """Show every field of one node."""
    app = app_of(ctx)
    async with app.open_api() as api:
        node = await api.node(node_id)
    app.show({"node": node}, node_detail(node, app.io.now()))
