"""Shared fixtures: every I/O test runs under a hang guard."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.testing import Cluster, open_cluster

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A supervisor with two simulated agents (3 sessions each, 20 events/s), all online."""
    with trio.fail_after(60):
        async with open_cluster(tmp_path, agents=2, sessions=3, rate=20.0) as c:
            yield c
