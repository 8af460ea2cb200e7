"""``halctl nodes list|get`` against a real cluster, as tables and as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.convert import converter
from halswarm.models import Node

if TYPE_CHECKING:
    from halswarm.testing.halctl import Halctl


async def test_nodes_list_table(halctl: Halctl) -> None:
    result = await halctl("nodes", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "NODE" in line)
    for column in ("STATUS", "HOSTNAME", "PROJECTS", "SESSIONS", "CPU / MEM", "HEARTBEAT"):
        assert column in header
    rows = [line.split() for line in lines if line.strip().startswith("node-")]
    assert [row[0] for row in rows] == ["node-1", "node-2"]
    assert all(row[1] == "online" for row in rows)
    # One project per line inside the PROJECTS cell.
    assert [line.split()[-1] for line in lines if "proj-1-" in line and "node-1" not in line] == ["proj-1-2"]
    assert "proj-1-1" in next(line for line in lines if line.strip().startswith("node-1"))
    assert "2 nodes, 2 online" in result.stdout
    assert result.stderr == ""


async def test_nodes_list_json_is_the_api_shape(halctl: Halctl) -> None:
    result = await halctl("--output", "json", "nodes", "list")
    assert result.exit_code == 0, result.stderr
    nodes = converter.structure(result.json()["nodes"], list[Node])
    assert [n.id for n in nodes] == ["node-1", "node-2"]
    assert {p.name for p in nodes[1].projects} == {"proj-2-1", "proj-2-2"}
    # -o after the subcommand works too.
    again = await halctl("nodes", "list", "-o", "json")
    assert [n.id for n in converter.structure(again.json()["nodes"], list[Node])] == ["node-1", "node-2"]


async def test_nodes_get_table_and_json(halctl: Halctl) -> None:
    table = await halctl("nodes", "get", "node-2")
    assert table.exit_code == 0, table.stderr
    for label in ("id", "status", "hostname", "version", "sessions", "cpu", "memory used", "last heartbeat"):
        assert label in table.stdout
    assert "proj-2-1" in table.stdout
    assert "backend" in table.stdout  # health checks
    node = converter.structure((await halctl("-o", "json", "nodes", "get", "node-2")).json()["node"], Node)
    assert node.id == "node-2"
    assert node.status == "online"


async def test_unknown_node_is_exit_5(halctl: Halctl) -> None:
    result = await halctl("nodes", "get", "node-9")
    assert result.exit_code == 5
    assert result.stdout == ""
    assert result.stderr.strip() == "error: not found: no node 'node-9'"
