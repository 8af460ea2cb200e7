"""Fixtures for halctl tests: the CLI run in-process against a real in-process cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.testing.halctl import Halctl

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.testing import Cluster


@pytest.fixture
def halctl(cluster: Cluster, tmp_path: Path) -> Halctl:
    """halctl against the two-agent cluster, run from an empty directory with its own HOME."""
    cwd = tmp_path / "cwd"
    home = tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return Halctl(cluster, cwd, home)
