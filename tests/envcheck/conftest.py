"""Fixtures for envcheck tests: real git repositories and fake runtimes in tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import orjson
import pytest

from halswarm.config.agent import AgentConfig, OpencodeConfig
from halswarm.config.supervisor import EnvConfig, SupervisorConfig
from halswarm.envcheck.manifest import ProjectSpec, parse_manifest
from halswarm.jsontypes import JSONObject, is_json_object
from halswarm.models import Project
from halswarm.testing import agent_config, supervisor_config

if TYPE_CHECKING:
    from collections.abc import Sequence

    from halswarm.config.security import ApiToken

REMOTE = "git@github.com:example/app.git"


@attrs.frozen
class Workspace:
    """A project directory that is a git repository, and the environment checks get."""

    directory: Path
    bin_dir: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        """Run git in the project (setup only, outside trio)."""
        done = subprocess.run(
            ["git", "-C", str(self.directory), *args], env=self.env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def runtime(self, name: str, script: str) -> None:
        """Install a fake runtime ``name`` on the workspace's PATH running the sh *script*."""
        path = self.bin_dir / name
        path.write_text(f"#!/bin/sh\n{script}\n")
        path.chmod(0o755)


def spec_from(raw: object) -> ProjectSpec:
    """Project ``app``'s spec from plain test data (JSON round trip, so any literal will do)."""
    value = orjson.loads(orjson.dumps(raw))
    assert is_json_object(value)
    return parse_manifest({"projects": {"app": value}}).projects["app"]


def base_env(bin_dir: Path, home: Path) -> dict[str, str]:
    """This process's environment with *bin_dir* first on PATH and no global git config."""
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """``app/``: a git repo on branch main with remote origin and one commit."""
    bin_dir = tmp_path / "bin"
    home = tmp_path / "home"
    directory = tmp_path / "app"
    for d in (bin_dir, home, directory):
        d.mkdir()
    ws = Workspace(directory, bin_dir, base_env(bin_dir, home))
    ws.git("init", "-q", "-b", "main")
    ws.git("remote", "add", "origin", REMOTE)
    ws.git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "init")
    return ws


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and directory under *root* with its mode and contents."""
    tree: dict[str, tuple[int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        tree[str(path.relative_to(root))] = (mode, path.read_bytes() if path.is_file() else b"")
    return tree


def env_supervisor_config(tmp_path: Path, manifest: JSONObject, *, tokens: Sequence[ApiToken] = ()) -> SupervisorConfig:
    """A supervisor on ``tmp_path/sup.db`` holding *manifest* (``tmp_path/env-manifest.json``)."""
    manifest_path = tmp_path / "env-manifest.json"
    manifest_path.write_bytes(orjson.dumps(manifest))
    base = supervisor_config(tmp_path / "sup.db")
    server = attrs.evolve(base.server, tokens=list(tokens)) if tokens else base.server
    return attrs.evolve(base, server=server, env=EnvConfig(manifest_path=str(manifest_path)))


def workspace_agent_config(
    ws_port: int, data_dir: Path, workspace: Workspace, *, node_id: str = "n1", interval: float = 0
) -> AgentConfig:
    """An agent hosting project ``app`` (the workspace), checking every *interval* s (0: on demand)."""
    config = agent_config(ws_port, data_dir, node_id=node_id, projects=[Project("app", str(workspace.directory))])
    return attrs.evolve(config, env_check_interval_sec=interval, opencode=OpencodeConfig(env=workspace.env))
