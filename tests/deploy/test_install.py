"""deploy/install.sh and deploy/uninstall.sh staged into a DESTDIR: the tree they leave,
that a second run changes nothing, that configs are never replaced and that uninstall
keeps configs and data unless --purge (issue 10)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.deploy.tree import (
    CONFIGS,
    INSTALL,
    LINKS,
    ROOT,
    UNINSTALL,
    UNIT_FILES,
    VENV,
    diff,
    install,
    run_script,
    script_env,
    snapshot,
    uninstall,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.deploy.conftest import Staged

pytestmark = pytest.mark.slow

EXAMPLE_TOKEN = json.loads((ROOT / "examples" / "supervisor.config.json").read_text())["server"]["auth_token"]


def _config(root: Path, name: str) -> dict[str, object]:
    value = json.loads((root / "etc" / "hal-o-swarm" / name).read_text())
    assert isinstance(value, dict)
    return value


def _server(config: dict[str, object]) -> dict[str, object]:
    server = config["server"]
    assert isinstance(server, dict)
    return server


def _venv_python(root: Path) -> str:
    return str(root / VENV / "bin" / "python")


def test_staged_tree_layout_and_modes(staged: Staged) -> None:
    """Guards: a config readable by everyone, a state dir open to others, units or links
    missing, or links pointing into the staging directory instead of the final path."""
    tree = staged.tree
    assert tree["etc/hal-o-swarm"][:2] == ("dir", 0o750)
    for config in CONFIGS:
        assert tree[config][:2] == ("file", 0o640), config
    assert tree["var/lib/hal-o-swarm"][:2] == ("dir", 0o750)
    for unit in UNIT_FILES:
        assert tree[unit][:2] == ("file", 0o644), unit
        assert (staged.destdir / unit).read_bytes() == (ROOT / "systemd" / Path(unit).name).read_bytes()
    for link in LINKS:
        assert tree[link][0] == "link"
        assert tree[link][2] == f"/opt/hal-o-swarm/venv/bin/{Path(link).name}"
    for doc in ("DEPLOYMENT.md", "ROLLBACK.md"):
        assert (staged.destdir / "opt/hal-o-swarm/doc" / doc).read_bytes() == (ROOT / "docs" / doc).read_bytes()
    # Packaging: no user or systemctl, but the steps a package must run are printed.
    assert "useradd --system --gid hal-o-swarm" in staged.first.stdout
    assert "systemctl daemon-reload && systemctl enable hal-supervisor.service hal-agent.service" in staged.first.stdout


def test_staged_venv_is_relocated_to_its_final_path(staged: Staged) -> None:
    """Guards: shebangs, pyvenv.cfg or byte code naming the staging directory (the
    programs would not start once the package is installed)."""
    venv = staged.destdir / VENV
    for program in ("hal-supervisor", "hal-agent", "halctl"):
        first_line = (venv / "bin" / program).read_text().splitlines()[0]
        assert first_line == "#!/opt/hal-o-swarm/venv/bin/python", program
    staging = str(staged.destdir).encode()
    mentions = [
        path.relative_to(venv).as_posix()
        for path in venv.rglob("*")
        if path.is_file() and not path.is_symlink() and staging in path.read_bytes()
    ]
    assert mentions == []
    # The staged venv is a working one: halswarm imports from it.
    done = subprocess.run(
        [_venv_python(staged.destdir), "-I", "-c", "import halswarm; print(halswarm.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=script_env(),
    )
    assert done.stdout.strip().startswith(str(venv))


def test_generated_configs_are_valid_with_a_fresh_shared_token(staged: Staged) -> None:
    """Guards: the example's placeholder token shipped, an agent that cannot reach the
    local supervisor, configs the programs reject, or the token printed by the installer."""
    supervisor = _config(staged.destdir, "supervisor.config.json")
    agent = _config(staged.destdir, "agent.config.json")
    token = _server(supervisor)["auth_token"]
    assert isinstance(token, str)
    assert len(token) >= 32
    assert token != EXAMPLE_TOKEN
    assert agent["auth_token"] == token
    assert agent["supervisor_url"] == "ws://127.0.0.1:8420"
    assert agent["data_dir"] == "/var/lib/hal-o-swarm/agent"
    assert agent["projects"] == []
    assert token not in staged.first.output
    venv = staged.destdir / VENV
    for program, name in (("hal-supervisor", "supervisor"), ("hal-agent", "agent")):
        path = staged.destdir / "etc/hal-o-swarm" / f"{name}.config.json"
        done = subprocess.run(
            [_venv_python(staged.destdir), str(venv / "bin" / program), "--config", str(path), "--validate"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=script_env(),
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_second_run_changes_nothing(staged: Staged) -> None:
    """Guards: a second run that reinstalls, rewrites a config or touches a mode."""
    second = install(staged.destdir, "--all")
    assert diff(staged.tree, snapshot(staged.destdir)) == []
    assert "unchanged: /opt/hal-o-swarm/venv has halswarm" in second.stdout
    assert "pip install" not in second.stdout
    assert "unchanged: /etc/hal-o-swarm/supervisor.config.json exists (never replaced)" in second.stdout


def test_an_existing_config_is_never_replaced(staged_copy: Callable[[], Path]) -> None:
    """Guards: an operator's config overwritten by a reinstall or an upgrade; an agent
    config made with another token than the supervisor's."""
    root = staged_copy()
    supervisor = root / "etc/hal-o-swarm/supervisor.config.json"
    marker = {"server": {"auth_token": "operator-marker-token-0123456789"}, "marker": "kept"}
    supervisor.write_text(json.dumps(marker))
    supervisor.chmod(0o600)
    (root / "etc/hal-o-swarm/agent.config.json").unlink()
    before = snapshot(root)
    run = install(root, "--all")
    after = snapshot(root)
    assert json.loads(supervisor.read_text()) == marker
    assert after["etc/hal-o-swarm/supervisor.config.json"] == before["etc/hal-o-swarm/supervisor.config.json"]
    assert _config(root, "agent.config.json")["auth_token"] == "operator-marker-token-0123456789"
    assert diff(before, after) == ["added etc/hal-o-swarm/agent.config.json"]
    assert "agent.config.json: the local supervisor's URL and token" in run.stdout


def test_an_agent_without_a_local_supervisor_gets_a_random_token_and_is_told_to_set_it(
    staged_copy: Callable[[], Path],
) -> None:
    """Guards: an agent-only node left with the example's placeholder token, silently."""
    root = staged_copy()
    for config in CONFIGS:
        (root / config).unlink()
    run = install(root, "--agent")
    agent = _config(root, "agent.config.json")
    assert isinstance(agent["auth_token"], str)
    assert len(agent["auth_token"]) >= 32
    assert agent["auth_token"] != EXAMPLE_TOKEN
    assert agent["supervisor_url"] == "ws://supervisor-host:8420"
    assert not (root / CONFIGS[0]).exists()
    assert "set supervisor_url and the supervisor's token (or a node token) there" in run.stdout
    assert agent["auth_token"] not in run.output


def test_one_role_installs_only_that_role(staged_copy: Callable[[], Path]) -> None:
    """Guards: ``--supervisor`` on the hub's host also setting up an agent (or the reverse)."""
    root = staged_copy()
    units = root / "etc/systemd/system"
    for name in ("hal-supervisor.service", "hal-agent.service"):
        (units / name).unlink()
    for config in CONFIGS:
        (root / config).unlink()
    run = install(root, "--supervisor")
    assert run.returncode == 0, run.output
    assert (units / "hal-supervisor.service").is_file()
    assert not (units / "hal-agent.service").exists()
    assert _server(_config(root, "supervisor.config.json"))["auth_token"] != EXAMPLE_TOKEN
    assert not (root / "etc/hal-o-swarm/agent.config.json").exists()


def test_uninstall_keeps_configs_and_data_and_purge_removes_them(
    staged: Staged, staged_copy: Callable[[], Path]
) -> None:
    """Guards: an uninstall that leaves programs, units or links behind, deletes the
    operator's configs or database, or removes a link that is not ours."""
    root = staged_copy()
    (root / "var/lib/hal-o-swarm/supervisor.db").write_bytes(b"data")
    os.symlink("/usr/bin/true", root / "usr/local/bin/not-ours")
    before = snapshot(root)
    run = uninstall(root)
    after = snapshot(root)
    kept = {
        "etc/hal-o-swarm",
        *CONFIGS,
        "var/lib/hal-o-swarm",
        "var/lib/hal-o-swarm/supervisor.db",
        "usr/local/bin/not-ours",
    }
    # Directories of the system itself stay (a real /usr/local/bin is not ours to remove).
    system_dirs = {
        "etc",
        "etc/systemd",
        "etc/systemd/system",
        "opt",
        "usr",
        "usr/local",
        "usr/local/bin",
        "var",
        "var/lib",
    }
    assert set(after) == kept | system_dirs
    assert {path: before[path] for path in kept} == {path: after[path] for path in kept}
    assert "kept: /etc/hal-o-swarm (configs) /var/lib/hal-o-swarm (data); --purge removes them" in run.stdout
    # Everything the install added is gone, but the configs and data.
    assert set(staged.tree) - set(after) == set(staged.tree) - kept - system_dirs

    uninstall(root, "--purge")
    assert set(snapshot(root)) == system_dirs | {"usr/local/bin/not-ours"}


def test_prefix_moves_the_venv_and_the_units_follow(staged_copy: Callable[[], Path]) -> None:
    """Guards: units or links that still name /opt/hal-o-swarm when the virtualenv lives
    under --prefix (the services would not start)."""
    root = staged_copy()
    (root / "srv").mkdir()
    (root / "opt").rename(root / "srv/opt")  # the same venv, as if installed with --prefix /srv
    for link in LINKS:
        (root / link).unlink()
    install(root, "--all", "--prefix", "/srv")
    unit = (root / "etc/systemd/system/hal-supervisor.service").read_text()
    assert "ExecStart=/srv/opt/hal-o-swarm/venv/bin/hal-supervisor --config" in unit
    assert "/opt/hal-o-swarm" not in unit.replace("/srv/opt/hal-o-swarm", "")
    assert os.readlink(root / "usr/local/bin/halctl") == "/srv/opt/hal-o-swarm/venv/bin/halctl"
    uninstall(root, "--prefix", "/srv")
    assert not (root / "srv/opt/hal-o-swarm").exists()
    assert not (root / "usr/local/bin/halctl").exists()


def test_dry_runs_change_nothing(staged_copy: Callable[[], Path], tmp_path: Path) -> None:
    """Guards: --dry-run that creates, writes or removes anything."""
    empty = tmp_path / "empty"
    run = install(empty, "--all", "--dry-run")
    assert not empty.exists()
    assert "would: create virtualenv /opt/hal-o-swarm/venv" in run.stdout
    assert "would: create /etc/hal-o-swarm/supervisor.config.json from examples/supervisor.config.json" in run.stdout
    root = staged_copy()
    before = snapshot(root)
    run = uninstall(root, "--purge", "--dry-run")
    assert "would: remove /opt/hal-o-swarm/venv" in run.stdout
    assert "would: remove /etc/hal-o-swarm" in run.stdout
    assert diff(before, snapshot(root)) == []


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (INSTALL, [], "say what to install: --all, --supervisor, --agent or --halctl"),
        (INSTALL, ["--all", "--bogus"], "unknown option '--bogus'"),
        (INSTALL, ["--all", "--destdir", "relative/dir"], "--destdir (or DESTDIR) must be an absolute path"),
        (INSTALL, ["--all", "--prefix", "usr"], "--prefix must be an absolute path, got 'usr'"),
        (INSTALL, ["--agent", "--destdir", "/tmp/x", "--start"], "--start cannot be used with --destdir"),
        (INSTALL, ["--all", "--prefix"], "--prefix needs a directory"),
        (INSTALL, ["--all", "--wheelhouse", "/no/such/wheels"], "--wheelhouse: no such directory: /no/such/wheels"),
        (INSTALL, ["--make-wheelhouse", "/tmp/x", "--agent"], "--make-wheelhouse only downloads"),
        (UNINSTALL, ["--everything"], "unknown option '--everything'"),
    ],
)
def test_usage_errors_name_the_problem(script: Path, args: list[str], message: str) -> None:
    """Guards: a typo'd flag ignored (and a real install run with defaults), or an error
    that does not say what is wrong. Usage errors exit 2 and change nothing."""
    run = run_script(script, *args)
    assert run.returncode == 2, run.output
    assert message in run.stderr
    assert "--help" in run.stderr


def test_python_older_than_3_11_or_missing_is_refused(tmp_path: Path) -> None:
    """Guards: a virtualenv built on an interpreter halswarm cannot run on."""
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9.2\n")
    old.chmod(0o755)
    run = run_script(INSTALL, "--all", "--destdir", str(tmp_path / "root"), env=script_env(PYTHON=str(old)))
    assert run.returncode == 1
    assert f"{old} is Python 3.9.2: halswarm needs Python >= 3.11" in run.stderr
    run = run_script(INSTALL, "--halctl", "--destdir", str(tmp_path / "root"), env=script_env(PYTHON="/no/python3"))
    assert run.returncode == 1
    assert "/no/python3 not found: halswarm needs Python >= 3.11" in run.stderr
    assert not (tmp_path / "root").exists()


def test_a_failing_step_exits_1_whatever_its_own_code(tmp_path: Path) -> None:
    """Guards: a failed step (here the virtualenv, exiting 2) read as a usage error (2)."""
    python = tmp_path / "python3"
    python.write_text(
        '#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "venv" ]; then echo "venv: broken" >&2; exit 2; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    run = run_script(INSTALL, "--halctl", "--destdir", str(tmp_path / "root"), env=script_env(PYTHON=str(python)))
    assert run.returncode == 1, run.output
    assert "venv: broken" in run.stderr


def test_a_real_install_needs_root() -> None:
    """Guards: a non-root install that half-works (files written, no user, no chown)."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is missing: cannot run the scripts as a user")
        prefix = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    for script, args in ((INSTALL, ["--all"]), (UNINSTALL, [])):
        run = run_script(script, *args, prefix=prefix)
        assert run.returncode == 1, run.output
        assert "must run as root to change this system" in run.stderr
        assert "--destdir DIR" in run.stderr
