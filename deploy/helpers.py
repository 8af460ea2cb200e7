"""The parts of deploy/install.sh that are easier in Python than in shell.

Runs on the interpreter the installer was given (Python >= 3.11, standard library
only: halswarm is not installed yet when it runs). Every subcommand prints its
result on stdout and exits 0, or prints a message on stderr and exits 1.

    python3 deploy/helpers.py fingerprint SRC
    python3 deploy/helpers.py stage SRC DEST
    python3 deploy/helpers.py build-requires SRC
    python3 deploy/helpers.py supervisor-config EXAMPLE OUT
    python3 deploy/helpers.py agent-config EXAMPLE OUT STATE_DIR [SUPERVISOR_CONFIG]
    python3 deploy/helpers.py relocate VENV STAGED_PATH FINAL_PATH
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Final

#: What goes into the package (pyproject.toml's metadata and packages) and so into the fingerprint.
_SOURCE_FILES: Final = ("pyproject.toml", "constraints.txt", "README.md", "LICENSE")
_PACKAGE: Final = "halswarm"


def _package_files(src: Path) -> list[Path]:
    files = [src / name for name in _SOURCE_FILES if (src / name).is_file()]
    files.extend(
        path
        for path in (src / _PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return sorted(files, key=lambda p: p.relative_to(src).as_posix())


def fingerprint(src: Path) -> str:
    """``halswarm VERSION source HASH python X.Y.Z``: equal only for the same source tree
    installed with the same interpreter, so a second run can skip pip."""
    version = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
    digest = hashlib.sha256()
    for path in _package_files(src):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"halswarm {version} source {digest.hexdigest()[:16]} python {python}"


def stage(src: Path, dest: Path) -> None:
    """Copy what pip needs to build halswarm into *dest*, so the build's ``build/`` and
    ``*.egg-info`` land there and not in the (maybe user-owned) source tree."""
    for path in _package_files(src):
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def build_requires(src: Path) -> list[str]:
    """pyproject.toml's build requirements (what pip installs to build halswarm's wheel)."""
    requires = tomllib.loads((src / "pyproject.toml").read_text())["build-system"]["requires"]
    return [str(r) for r in requires]


def _load(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{path}: not a JSON object")
    return value


def _write_new(path: Path, value: dict[str, object]) -> None:
    # O_EXCL: never replace a file, even one that appeared since the caller looked.
    # 0600 until the installer sets the group and 0640.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(value, indent=2) + "\n")


def _section(config: dict[str, object], key: str) -> dict[str, object]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def supervisor_config(example: Path, out: Path) -> None:
    """The example supervisor config with a new random token."""
    config = _load(example)
    server = _section(config, "server")
    server["auth_token"] = secrets.token_urlsafe(32)
    config["server"] = server
    _write_new(out, config)


def agent_config(example: Path, out: Path, state_dir: str, supervisor: Path | None) -> str:
    """The example agent config: the supervisor's URL and token when it runs on this
    machine (else a random token to replace), its outbox in the state directory, the node
    id from the hostname and no projects yet (the example's do not exist here).

    Returns:
        ``local`` when it points at the local supervisor, ``remote`` otherwise.
    """
    config = _load(example)
    config.pop("node_id", None)
    config["projects"] = []
    config["data_dir"] = f"{state_dir.rstrip('/')}/agent"
    where = "remote"
    token = secrets.token_urlsafe(32)
    if supervisor is not None and supervisor.is_file():
        running = _load(supervisor)
        server = _section(running, "server")
        tls = _section(_section(running, "security"), "tls")
        if isinstance(server.get("auth_token"), str) and server["auth_token"]:
            token = str(server["auth_token"])
            scheme = "wss" if tls.get("enabled") is True else "ws"
            config["supervisor_url"] = f"{scheme}://127.0.0.1:{server.get('port', 8420)}"
            where = "local"
    config["auth_token"] = token
    _write_new(out, config)
    return where


def relocate(venv: Path, staged: str, final: str) -> list[str]:
    """Rewrite the staging path to the final one in the venv's scripts and pyvenv.cfg
    (a venv built under DESTDIR names its own location in shebangs and activate scripts).

    Returns:
        The files rewritten, relative to *venv*.
    """
    changed: list[str] = []
    candidates = [venv / "pyvenv.cfg", *sorted((venv / "bin").iterdir())]
    old, new = staged.encode(), final.encode()
    for path in candidates:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data and b"\0" not in data:
            path.write_bytes(data.replace(old, new))
            changed.append(path.relative_to(venv).as_posix())
    return changed


def main(argv: list[str]) -> int:
    """Run one subcommand (see the module docstring)."""
    match argv:
        case ["fingerprint", src]:
            print(fingerprint(Path(src)))
        case ["stage", src, dest]:
            stage(Path(src), Path(dest))
        case ["build-requires", src]:
            print("\n".join(build_requires(Path(src))))
        case ["supervisor-config", example, out]:
            supervisor_config(Path(example), Path(out))
        case ["agent-config", example, out, state_dir, *rest] if len(rest) <= 1:
            print(agent_config(Path(example), Path(out), state_dir, Path(rest[0]) if rest else None))
        case ["relocate", venv, staged, final]:
            print("\n".join(relocate(Path(venv), staged, final)))
        case _:
            print(f"helpers.py: unknown command: {' '.join(argv)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
