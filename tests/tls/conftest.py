"""Fixtures for the TLS tests: a throwaway PKI per test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.tls.certs import TestPki, make_pki

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    """A fresh CA and server certificate in ``tmp_path/pki``."""
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)
