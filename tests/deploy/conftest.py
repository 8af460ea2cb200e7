"""One staged install (``install.sh --all --destdir``) shared by the deploy tests: building
the virtualenv is the slow part, so it is done once and tests that change the tree work
on a copy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.deploy.tree import INSTALL, INSTALL_TIMEOUT, Entry, Run, install, run_script, snapshot

if TYPE_CHECKING:
    from collections.abc import Callable


@attrs.frozen
class Staged:
    """The staged tree, what the first install printed and the tree right after it."""

    destdir: Path
    first: Run
    tree: dict[str, Entry]


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    """``install.sh --all`` into an empty DESTDIR, once per test session."""
    destdir = tmp_path_factory.mktemp("staged") / "root"
    first = install(destdir, "--all")
    return Staged(destdir, first, snapshot(destdir))


@pytest.fixture
def staged_copy(staged: Staged, tmp_path: Path) -> Callable[[], Path]:
    """Copies of the staged tree (links kept as links) for tests that change it."""

    def copy() -> Path:
        target = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(staged.destdir, target, symlinks=True)
        return target

    return copy


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``install.sh --make-wheelhouse``: every wheel an install needs, once per session.
    Installs from it (``--wheelhouse``) skip the index: used where a test installs more
    than once; the staged install above takes the default path, from the index."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    run = run_script(INSTALL, "--make-wheelhouse", str(directory), timeout=INSTALL_TIMEOUT)
    assert run.returncode == 0, run.output
    assert any(directory.glob("setuptools-*.whl")), "the build backend must be in the wheelhouse"
    return directory
