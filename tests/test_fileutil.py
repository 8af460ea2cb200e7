"""Atomic file replacement on a real directory: the target is the old file or the new one,
never half of either, and no temp file is left behind whatever fails."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pytest

from halswarm.fileutil import atomic_replace, write_atomically

if TYPE_CHECKING:
    from pathlib import Path


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomically_replaces_the_file_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "env.json"  # missing parents are created
    write_atomically(target, b"first")
    assert (target.read_bytes(), mode_of(target)) == (b"first", 0o644)
    write_atomically(target, b"second", mode=0o755)
    assert (target.read_bytes(), mode_of(target)) == (b"second", 0o755)
    assert entries(target.parent) == ["env.json"]


def test_a_replacement_without_a_mode_stays_private_to_its_owner(tmp_path: Path) -> None:
    """Guards: a database backup (it holds every event) became readable by everyone."""
    target = tmp_path / "backup.db"
    with atomic_replace(target) as temp:
        assert temp.parent == tmp_path
        assert temp.name.startswith(".backup.db.")
        temp.write_bytes(b"copy")
    assert (target.read_bytes(), mode_of(target)) == (b"copy", 0o600)
    assert entries(tmp_path) == ["backup.db"]


def test_a_failure_inside_the_block_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def fail_half_way() -> None:
        with atomic_replace(target, mode=0o644) as temp:
            temp.write_bytes(b"half of the n")
            raise RuntimeError("half way")

    with pytest.raises(RuntimeError, match=r"^half way$"):
        fail_half_way()
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["state.json"]


def test_a_rename_that_fails_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "inside").write_bytes(b"")  # a non-empty directory cannot be replaced by a file

    def replace() -> None:
        with atomic_replace(target) as temp:
            temp.write_bytes(b"new")

    with pytest.raises(IsADirectoryError):
        replace()
    assert entries(tmp_path) == ["occupied"]
    assert entries(target) == ["inside"]


def test_a_directory_that_cannot_hold_the_temp_file_is_an_error_before_anything_runs(tmp_path: Path) -> None:
    ran: list[bool] = []

    def replace() -> None:
        with atomic_replace(tmp_path / "missing" / "file"):
            ran.append(True)

    with pytest.raises(FileNotFoundError):
        replace()
    assert ran == []
    assert entries(tmp_path) == []
