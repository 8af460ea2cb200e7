"""Tables fit the terminal: on 80 columns the session id, status and cost stay whole."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rich.console import Console

from halswarm.cli.render import nodes_table, sessions_table
from halswarm.models import Node, Project, Resources, Session, SessionStatus, Tokens

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CASES: list[tuple[str, SessionStatus]] = [("payments-api", "unreachable"), ("a-very-long-project-name-indeed", "busy")]
SESSIONS = [
    Session(
        id=f"ses_{i:024x}",
        node_id="build-node-with-a-long-name",
        project=project,
        status=status,
        title="Refactor the payment reconciliation job and its tests " * 2,
        tokens=Tokens(123_456, 7_890),
        cost_usd=12.3456,
        last_activity="2026-11-24T11:59:00.000000Z",
    )
    for i, (project, status) in enumerate(CASES)
]


def render(width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(sessions_table(SESSIONS, NOW, width=width))
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 100, 140])
def test_key_columns_are_never_cut(width: int) -> None:
    lines = render(width)
    assert all(len(line) <= width for line in lines)
    rows = [line for line in lines if line.startswith("ses_")]
    assert len(rows) == 2
    for row, session in zip(rows, SESSIONS, strict=True):
        assert session.id[:12] in row
        assert session.status in row
        assert "$12.3456" in row
        assert "131,346" in row  # tokens
        assert "1m ago" in row


def test_narrow_terminals_drop_node_then_title() -> None:
    assert "NODE" not in render(80)[0]
    assert "TITLE" not in render(80)[0]
    assert "NODE" not in render(100)[0]
    assert "TITLE" in render(100)[0]
    assert "NODE" in render(140)[0]
    assert "TITLE" in render(140)[0]
    assert any("…" in line for line in render(100))  # long titles are clipped, not wrapped
    assert len([line for line in render(100) if line.strip()]) == 4  # header, rule, two rows


@pytest.mark.parametrize("width", [80, 120])
def test_nodes_table_fits_and_never_breaks_project_names(width: int) -> None:
    node = Node(
        id="build-node-1",
        hostname="builder.internal.example.com",
        status="degraded",
        projects=[Project(name, "/srv") for name in ("web-frontend", "data-pipeline")],
        sessions=12,
        resources=Resources(cpu_percent=37.0, mem_used_mb=2048.0),
        last_heartbeat="2026-11-24T11:59:30.000000Z",
    )
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(nodes_table([node], NOW, width=width))
    lines = buffer.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    assert "HEARTBEAT" in lines[0]
    assert ("HOSTNAME" in lines[0]) == (width >= 100)
    text = buffer.getvalue()
    assert "web-frontend" in text
    assert "data-pipeline" in text
    assert "degraded" in text
    assert "30s ago" in text
