"""``halctl``: the operator CLI (see :mod:`halswarm.cli.main` for commands and exit codes)."""

from __future__ import annotations

__all__: list[str] = []
