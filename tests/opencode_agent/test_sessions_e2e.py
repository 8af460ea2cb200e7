"""End to end with the real opencode: supervisor API -> agent -> opencode serve -> stub LLM."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from tests.opencode_agent.fleet import open_fleet

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

# The stub's plain reply reports 100 prompt / 7 completion tokens; opencode.json prices
# stub-model at 3 USD (input) and 15 USD (output) per million tokens.
PLAIN_COST = 100 * 3 / 1e6 + 7 * 15 / 1e6


async def test_start_session_goes_busy_then_idle_with_tokens_and_cost(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with open_fleet(tmp_path) as fleet:
            session_id = await fleet.started("hello there")
            session = await fleet.wait_session(session_id, "idle after one turn", lambda s: s.status == "idle")
            assert session.project == fleet.projects[0].name
            assert (session.tokens.input, session.tokens.output) == (100, 7)
            assert session.cost_usd == pytest.approx(PLAIN_COST)
            assert session.model == "stub/stub-model"
            assert session.title == "Stub title"
            types = await fleet.event_types(session_id)
            assert types[0] == "session.created"
            assert "message.completed" in types
            assert types.index("session.prompted") < types.index("session.idle")
            assert types.count("session.idle") == 1
