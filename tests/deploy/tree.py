"""Running deploy/install.sh and deploy/uninstall.sh, and comparing the trees they leave."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Final

import attrs

ROOT: Final = Path(__file__).resolve().parents[2]
INSTALL: Final = ROOT / "deploy" / "install.sh"
UNINSTALL: Final = ROOT / "deploy" / "uninstall.sh"
#: A first install builds a virtualenv and pip-installs into it (about 15-20 s here with
#: pip's cache; more on a cold cache).
INSTALL_TIMEOUT: Final = 300.0
QUICK_TIMEOUT: Final = 60.0

#: What install --all leaves under DESTDIR besides the virtualenv.
CONFIGS: Final = ("etc/hal-o-swarm/supervisor.config.json", "etc/hal-o-swarm/agent.config.json")
UNIT_FILES: Final = ("etc/systemd/system/hal-supervisor.service", "etc/systemd/system/hal-agent.service")
LINKS: Final = ("usr/local/bin/hal-supervisor", "usr/local/bin/hal-agent", "usr/local/bin/halctl")
VENV: Final = "opt/hal-o-swarm/venv"


@attrs.frozen
class Run:
    """One run of a script: its exit code and what it printed (stdout, then stderr)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Both streams, for messages."""
        return self.stdout + self.stderr


def script_env(**extra: str) -> dict[str, str]:
    """The environment for the scripts: this interpreter as PYTHON (>= 3.11 by the
    project's own requirement), no DESTDIR or PYTHONPATH inherited from the caller (the
    test run's PYTHONPATH would put the work tree ahead of the installed package)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "PYTHONPATH", "PYTHONHOME")}
    env["PYTHON"] = sys.executable
    env.update(extra)
    return env


def run_script(
    script: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = QUICK_TIMEOUT,
    prefix: tuple[str, ...] = (),
) -> Run:
    """Run *script* with *args* (bounded by *timeout*); never raises on a non-zero exit."""
    done = subprocess.run(
        [*prefix, str(script), *args],
        env=script_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def install(destdir: Path, *args: str, timeout: float = INSTALL_TIMEOUT) -> Run:
    """``install.sh --destdir DESTDIR ARGS``; fails the test on a non-zero exit."""
    run = run_script(INSTALL, "--destdir", str(destdir), *args, timeout=timeout)
    assert run.returncode == 0, run.output
    return run


def uninstall(destdir: Path, *args: str) -> Run:
    """``uninstall.sh --destdir DESTDIR ARGS``; fails the test on a non-zero exit."""
    run = run_script(UNINSTALL, "--destdir", str(destdir), *args)
    assert run.returncode == 0, run.output
    return run


#: One entry of a snapshot: kind (dir, file, link), permission bits, and the content's
#: sha256 (files) or the link's target.
Entry = tuple[str, int, str]


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under *root* (relative, POSIX) with its kind, mode and content."""
    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = path.relative_to(root).as_posix()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", mode, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", mode, "")
            else:
                entries[rel] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return entries


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """Readable differences between two snapshots (empty when equal)."""
    lines = [f"removed {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"added {p}" for p in sorted(after.keys() - before.keys())]
    lines += [
        f"changed {p}: {before[p]} -> {after[p]}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]
    ]
    return lines
