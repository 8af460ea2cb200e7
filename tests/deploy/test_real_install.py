"""deploy/install.sh and uninstall.sh on a real root file system, without touching this
machine: they run in a private mount namespace where /etc, /opt, /usr/local, /var and
/run are overlays whose writes land in the test's directory. This is the path an
operator's ``sudo ./deploy/install.sh --all`` takes: system user and group, ownership,
systemctl.

No systemd runs here (nor in CI), so ``systemctl`` is a stand-in script on PATH that
records its calls and keeps each unit's enabled/active state in files; the installer
sees systemd as running because the namespace has /run/systemd/system.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final, Protocol

import pytest

from tests.deploy.tree import INSTALL, INSTALL_TIMEOUT, QUICK_TIMEOUT, UNINSTALL, Run, script_env
from tests.required import unavailable

pytestmark = pytest.mark.slow

OVERLAID: Final = ("etc", "opt", "usr/local", "var", "run")

# $1: the test's directory (overlay upper and work dirs, the systemctl stand-in); the
# rest: the command. Any failed mount stops here, before the command could write to the
# real system.
_ENTER: Final = """set -euo pipefail
base=$1
shift
for d in etc opt usr/local var run; do
    mkdir -p "$base/upper/$d" "$base/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$base/upper/$d,workdir=$base/work/$d" "/$d"
    mountpoint -q "/$d"
done
mkdir -p /run/systemd/system
export PATH="$base/bin:$PATH"
exec "$@"
"""

_SYSTEMCTL: Final = """#!/bin/sh
# Stand-in for systemctl (see the test module's docstring). The unit is the last argument.
base=$(dirname "$(dirname "$0")")
mkdir -p "$base/units"
echo "$*" >>"$base/systemctl.log"
for unit; do :; done
case $1 in
is-enabled) test -e "$base/units/$unit.enabled" ;;
is-active) test -e "$base/units/$unit.active" ;;
enable) touch "$base/units/$unit.enabled" ;;
start | restart) touch "$base/units/$unit.active" ;;
disable) rm -f "$base/units/$unit.enabled" "$base/units/$unit.active" ;;
daemon-reload) ;;
*) echo "systemctl stand-in: unexpected call: $*" >&2; exit 1 ;;
esac
"""


class System(Protocol):
    """Runs a command in the test's namespace."""

    def __call__(self, *command: str, timeout: float = QUICK_TIMEOUT) -> Run: ...


def _namespace_unavailable(base: Path) -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces and overlay mounts)"
    for tool in ("unshare", "mountpoint", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is missing"
    if any(base.resolve().is_relative_to(Path("/") / d) for d in OVERLAID):
        return f"the test directory {base} lies under an overlaid directory"
    done = subprocess.run(
        ["unshare", "--mount", "--fork", "--", "bash", "-c", _ENTER, "enter", str(base), "true"],
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        return f"overlay mounts in a mount namespace are not possible here: {done.stderr.strip()}"
    return None


@pytest.fixture
def system(tmp_path: Path) -> System:
    """Runs a command in the namespace (state kept across calls in *tmp_path*)."""
    base = tmp_path / "ns"
    (base / "bin").mkdir(parents=True)
    systemctl = base / "bin" / "systemctl"
    systemctl.write_text(_SYSTEMCTL)
    systemctl.chmod(0o755)
    if (reason := _namespace_unavailable(base)) is not None:
        unavailable(reason)

    def run(*command: str, timeout: float = QUICK_TIMEOUT) -> Run:
        done = subprocess.run(
            ["unshare", "--mount", "--fork", "--", "bash", "-c", _ENTER, "enter", str(base), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=script_env(),
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


def _calls(base: Path) -> list[str]:
    log = base / "systemctl.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def _ok(run: Run) -> Run:
    assert run.returncode == 0, run.output
    return run


def test_real_install_upgrade_and_uninstall(system: System, tmp_path: Path, wheelhouse: Path) -> None:
    """Guards: files the service user cannot read or write, a unit not enabled or started,
    a daemon-reload or restart when nothing changed, an upgrade that leaves the old code
    running, an uninstall that leaves the units enabled or deletes configs and data."""
    base = tmp_path / "ns"
    # From the wheelhouse, not the index: this test installs twice (the staged install in
    # test_install.py covers the index).
    first = _ok(system(str(INSTALL), "--all", "--wheelhouse", str(wheelhouse), timeout=INSTALL_TIMEOUT))
    assert "create system group hal-o-swarm" in first.stdout
    assert "create system user hal-o-swarm (home /var/lib/hal-o-swarm, no login)" in first.stdout
    for unit in ("hal-supervisor.service", "hal-agent.service"):
        assert f"enable {unit} (starts at boot)" in first.stdout
    assert _calls(base) == [
        "daemon-reload",
        "is-enabled --quiet hal-supervisor.service",
        "enable --quiet hal-supervisor.service",
        "is-active --quiet hal-supervisor.service",
        "is-enabled --quiet hal-agent.service",
        "enable --quiet hal-agent.service",
        "is-active --quiet hal-agent.service",
    ]

    stats = _ok(
        system(
            "stat",
            "-c",
            "%n %a %U %G",
            "/etc/hal-o-swarm",
            "/etc/hal-o-swarm/supervisor.config.json",
            "/etc/hal-o-swarm/agent.config.json",
            "/var/lib/hal-o-swarm",
            "/opt/hal-o-swarm/venv/bin/hal-supervisor",
            "/etc/systemd/system/hal-agent.service",
        )
    )
    assert stats.stdout.splitlines() == [
        "/etc/hal-o-swarm 750 root hal-o-swarm",
        "/etc/hal-o-swarm/supervisor.config.json 640 root hal-o-swarm",
        "/etc/hal-o-swarm/agent.config.json 640 root hal-o-swarm",
        "/var/lib/hal-o-swarm 750 hal-o-swarm hal-o-swarm",
        "/opt/hal-o-swarm/venv/bin/hal-supervisor 755 root root",
        "/etc/systemd/system/hal-agent.service 644 root root",
    ]
    user = _ok(system("getent", "passwd", "hal-o-swarm")).stdout.strip().split(":")
    assert user[5:] == ["/var/lib/hal-o-swarm", "/usr/sbin/nologin"]
    # The service user reads its configs and writes its state directory; others cannot read.
    as_service = ("setpriv", "--reuid=hal-o-swarm", "--regid=hal-o-swarm", "--init-groups", "sh", "-c")
    _ok(system(*as_service, "cat /etc/hal-o-swarm/*.config.json >/dev/null && touch /var/lib/hal-o-swarm/probe"))
    nobody = system(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", "/etc/hal-o-swarm/supervisor.config.json"
    )
    assert nobody.returncode != 0
    # The installed program, through its link in /usr/local/bin, accepts the generated config.
    valid = _ok(
        system("/usr/local/bin/hal-supervisor", "--config", "/etc/hal-o-swarm/supervisor.config.json", "--validate")
    )
    assert "configuration is valid" in valid.stdout

    # Second run with --start: nothing changed, so no daemon-reload; the units start.
    second = _ok(system(str(INSTALL), "--all", "--start"))
    assert "start hal-supervisor.service" in second.stdout
    assert _calls(base) == [
        "is-enabled --quiet hal-supervisor.service",
        "is-active --quiet hal-supervisor.service",
        "start hal-supervisor.service",
        "is-enabled --quiet hal-agent.service",
        "is-active --quiet hal-agent.service",
        "start hal-agent.service",
    ]
    # Third: everything is in place and running; nothing is done.
    _ok(system(str(INSTALL), "--all", "--start"))
    assert [call for call in _calls(base) if not call.startswith("is-")] == []

    # An upgrade: another version is installed (its stamp says so); the running units
    # are restarted onto the new code.
    stamp = base / "upper/opt/hal-o-swarm/venv/.halswarm-installed"
    stamp.write_text("halswarm 0.0.9 source 0000000000000000 python 3.11.0\n")
    upgrade = _ok(system(str(INSTALL), "--all", "--start", "--wheelhouse", str(wheelhouse), timeout=INSTALL_TIMEOUT))
    assert "pip install halswarm into /opt/hal-o-swarm/venv" in upgrade.stdout
    assert [call for call in _calls(base) if not call.startswith("is-")] == [
        "restart hal-supervisor.service",
        "restart hal-agent.service",
    ]

    removed = _ok(system(str(UNINSTALL)))
    assert [call for call in _calls(base) if not call.startswith("is-")] == [
        "disable --now --quiet hal-supervisor.service",
        "disable --now --quiet hal-agent.service",
        "daemon-reload",
    ]
    assert "kept: /etc/hal-o-swarm (configs) /var/lib/hal-o-swarm (data)" in removed.stdout
    left = system("ls", "/opt/hal-o-swarm", "/usr/local/bin/halctl", "/etc/systemd/system/hal-agent.service")
    assert left.returncode != 0
    assert left.stdout == ""
    _ok(system("test", "-f", "/etc/hal-o-swarm/supervisor.config.json", "-a", "-f", "/var/lib/hal-o-swarm/probe"))
    _ok(system("getent", "passwd", "hal-o-swarm"))

    _ok(system(str(UNINSTALL), "--purge"))
    assert system("ls", "-d", "/etc/hal-o-swarm", "/var/lib/hal-o-swarm").stdout == ""
    assert system("getent", "passwd", "hal-o-swarm").returncode == 2
    assert system("getent", "group", "hal-o-swarm").returncode == 2
