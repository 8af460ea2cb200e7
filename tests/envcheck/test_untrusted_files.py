"""A project's files are untrusted: links, FIFOs and paths outside are never read or written.

Coding agents (and anyone who commits to the repository) write the project directory;
what a check reads is sent to the supervisor and shown to API viewers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import orjson
import pytest
import trio

from halswarm.envcheck.checks import check_project
from halswarm.envcheck.manifest import ManifestError, load_manifest
from halswarm.envcheck.provision import provision_project
from halswarm.envcheck.report import agent_file_info
from halswarm.envcheck.safefiles import UnsafeFileError, confined_target, read_confined
from tests.envcheck.conftest import spec_from

if TYPE_CHECKING:
    from pathlib import Path

    from tests.envcheck.conftest import Workspace

TEMPLATE = {"agent": {"template": "# {{ project }}\n"}}


def test_read_confined_refuses_links_fifos_outside_and_big_files(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("ssh key")
    (root / "link.md").symlink_to(tmp_path / "secret.txt")
    os.mkfifo(root / "fifo.md")
    (root / "big.md").write_bytes(b"x" * 11)
    (root / "ok.md").write_text("fine")
    assert read_confined(root, "ok.md") == b"fine"
    assert read_confined(root, "absent.md") is None
    for name, why in [("link.md", "symbolic link"), ("fifo.md", "not a regular file"), ("../secret.txt", "outside")]:
        with pytest.raises(UnsafeFileError, match=why):
            read_confined(root, name)
    with pytest.raises(UnsafeFileError, match="larger than 10 bytes"):
        read_confined(root, "big.md", max_bytes=10)
    (root / "docs").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafeFileError, match="outside"):
        confined_target(root, "docs/API.md")


async def test_a_linked_agent_file_is_neither_read_nor_sent(workspace: Workspace, tmp_path: Path) -> None:
    secret = tmp_path / "agent-config.json"
    secret.write_text('{"auth_token": "do-not-send-me"}')
    (workspace.directory / "AGENT.md").symlink_to(secret)
    spec = spec_from(TEMPLATE)
    with trio.fail_after(20):
        report = await check_project("app", spec, workspace.directory, env=workspace.env)
    (item,) = [c for c in report.checks if c.id == "agent_config:AGENT.md"]
    assert item.status == "fail"
    assert item.actual == "not a file"
    info = await trio.to_thread.run_sync(agent_file_info, "app", spec, workspace.directory)
    assert info.content is None
    assert "do-not-send-me" not in repr(info)


async def test_a_fifo_agent_file_does_not_hang_the_checks(workspace: Workspace) -> None:
    os.mkfifo(workspace.directory / "AGENT.md")
    with trio.fail_after(20):  # reading a FIFO with no writer would block forever
        report = await check_project("app", spec_from(TEMPLATE), workspace.directory, env=workspace.env)
        info = await trio.to_thread.run_sync(agent_file_info, "app", spec_from(TEMPLATE), workspace.directory)
    assert [c.status for c in report.checks if c.id == "agent_config:AGENT.md"] == ["fail"]
    assert info.sha256 is None


async def test_provisioning_never_writes_through_a_link(workspace: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace.directory / "docs").symlink_to(outside, target_is_directory=True)
    spec = spec_from({"agent": {"docs": [{"name": "docs/API.md", "content": "v1\n"}]}})
    with trio.fail_after(30):
        result = await provision_project("app", spec, workspace.directory, env=workspace.env)
    assert not (outside / "API.md").exists()
    assert any("outside the project directory" in e for e in result.errors), result.errors


@pytest.mark.parametrize(
    ("field", "value"),
    [("template_file", "/etc/hostname"), ("template_file", "../outside.md"), ("source", "../outside.md")],
)
def test_manifest_files_must_lie_beside_the_manifest(tmp_path: Path, field: str, value: str) -> None:
    (tmp_path / "outside.md").write_text("not for agents")
    home = tmp_path / "conf"
    home.mkdir()
    agent = {"template_file": value} if field == "template_file" else {"docs": [{"name": "d.md", "source": value}]}
    (home / "env-manifest.json").write_bytes(orjson.dumps({"projects": {"app": {"agent": agent}}}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(home / "env-manifest.json")
    assert "relative path without '..'" in str(caught.value.problems)


def test_an_install_may_not_outlast_its_command(tmp_path: Path) -> None:
    install = {"command": ["true"], "timeout_sec": 7200, "fixes": "runtime:java"}
    raw = {"projects": {"app": {"runtimes": {"java": ">=17"}, "install": {"jdk": install}}}}
    (tmp_path / "m.json").write_bytes(orjson.dumps(raw))
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "m.json")
    assert "projects.app.install.jdk.timeout_sec: must be between 0 and 3300 seconds" in caught.value.problems
