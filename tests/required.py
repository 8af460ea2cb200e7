"""A check this machine cannot run: skipped on a developer's machine, failed in CI.

CI (``CI=true``, set by ``.ci/run``) must run every check; a skip there would hide that a
check never ran.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["unavailable"]


def unavailable(reason: str) -> NoReturn:
    """Skip with *reason*, or fail with it under ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run this check)")
    pytest.skip(reason)
