"""Check command lines shown in the docs against the real programs, without running them.

- ``halctl``, ``hal-supervisor``, ``hal-agent`` (also as ``.venv/bin/...``): every
  subcommand exists and every option is one the command at that point accepts (hidden
  options, meant for tests, do not count). Synopsis syntax is understood: ``a|b``
  alternatives are each checked (``env check|provision --dry-run`` is wrong if either
  refuses ``--dry-run``), ``[optional parts]``, ``<placeholders>``, ``...``.
- ``make TARGET``: the Makefile has that target.
- ``curl URL``: the URL's path is a route of the supervisor (``/openapi.json``'s paths plus
  the probes), with ``<placeholders>`` standing for path parameters.

A line may hold several commands (``a | b``, ``a && b``, ``a; b``, ``$(...)``); each is
checked. Other programs (``journalctl``, ``sqlite3``, ``cp``...) are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import asyncclick as click

from halswarm.agent.main import cli as agent_cli
from halswarm.cli.main import cli as halctl_cli
from halswarm.http.openapi import OPENAPI_PATH, openapi_document
from halswarm.supervisor.main import cli as supervisor_cli

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["PROGRAMS", "check_line", "make_targets", "route_patterns", "split_commands"]

ROOT: Final = Path(__file__).resolve().parents[2]

PROGRAMS: Final[dict[str, click.Command]] = {
    "halctl": halctl_cli,
    "hal-supervisor": supervisor_cli,
    "hal-agent": agent_cli,
}
_PROBES: Final = ("/healthz", "/readyz", "/metrics", OPENAPI_PATH, "/discord/interactions")
_HELP: Final = frozenset({"-h", "--help"})
_TOKEN: Final = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
_ASSIGNMENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS: Final = frozenset({"sudo", "exec", "env", "time", "nohup"})
_SUDO_VALUED: Final = frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"})


def split_commands(line: str) -> list[str]:
    """The simple commands of a shell line: split at ``|``, ``||``, ``&&``, ``;``, ``&``
    (with blanks around them, outside quotes), plus the insides of ``$(...)``.

    A ``|`` without blanks (``status|drift``) is synopsis syntax, not a pipe.
    """
    parts: list[str] = []
    for inner in re.findall(r"\$\(([^()]*)\)", line):
        parts += split_commands(inner)
    line = re.sub(r"\$\([^()]*\)", "SUBST", line)
    current: list[str] = []
    for token in _TOKEN.findall(line):
        if token in {"|", "||", "&&", ";", "&"}:
            parts.append(" ".join(current))
            current = []
        elif token.endswith(";") and not token.startswith(("'", '"')):
            current.append(token[:-1])
            parts.append(" ".join(current))
            current = []
        else:
            current.append(token)
    parts.append(" ".join(current))
    return [part for part in parts if part.strip()]


def _program(token: str) -> str:
    return token.rsplit("/", 1)[-1]


def _words(command: str) -> list[str]:
    """The command's tokens from the program on (assignments and wrappers like sudo dropped)."""
    tokens = _TOKEN.findall(command)
    while tokens and (_ASSIGNMENT.match(tokens[0]) or tokens[0] in _WRAPPERS):
        wrapper = tokens.pop(0)
        # The wrapper's own options (sudo -u USER -E), so the program is not taken to be "-u".
        while tokens and tokens[0].startswith("-"):
            option = tokens.pop(0)
            if wrapper == "sudo" and option in _SUDO_VALUED and tokens:
                tokens.pop(0)
    return tokens


def make_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    """Every explicit target of the Makefile (variable targets like ``$(STAMP)`` excluded)."""
    targets: set[str] = set()
    for line in makefile.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\- ]+):(?!=)", line)
        if match:
            targets.update(name for name in match.group(1).split() if not name.startswith("."))
    return targets


def route_patterns() -> list[re.Pattern[str]]:
    """The supervisor's routes as regular expressions over URL paths."""
    paths = openapi_document()["paths"]
    assert isinstance(paths, dict)
    patterns = []
    for path in [*paths, *_PROBES]:
        regex = re.sub(r"\\\{[^}]*\\\}", r"[^/]+", re.escape(path))
        patterns.append(re.compile(f"^{regex}$"))
    return patterns


def _options(command: click.Command) -> dict[str, click.Option]:
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            for name in (*param.opts, *param.secondary_opts):
                found[name] = param
    return found


def _clean(token: str) -> str:
    return token.strip("[]")


def _merge_spaced_alternatives(tokens: list[str]) -> list[str]:
    """``show | set`` (a synopsis with blanks around the bar) -> ``show|set``."""
    merged: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "|" and merged and i + 1 < len(tokens):
            merged[-1] = f"{merged[-1]}|{tokens[i + 1]}"
            i += 2
            continue
        merged.append(tokens[i])
        i += 1
    return merged


def _walk(command: click.Command, path: str, tokens: list[str]) -> Iterator[str]:
    """Problems of *tokens* as arguments of *command* (reached as *path*)."""
    options = _options(command)
    i = 0
    while i < len(tokens):
        token = _clean(tokens[i])
        i += 1
        if not token or token in {"...", "|"} or token.startswith(("'", '"', "<", "$")):
            continue
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            if name in _HELP:
                continue
            option = options.get(name)
            if option is None:
                yield f"{path}: no option {name}"
                continue
            if not option.is_flag and option.nargs != 0 and "=" not in token and i < len(tokens):
                i += 1  # its value
            continue
        if isinstance(command, click.Group):
            for alternative in token.split("|"):
                sub = command.commands.get(alternative)
                if sub is None:
                    yield f"{path}: no command {alternative!r}"
                else:
                    yield from _walk(sub, f"{path} {alternative}", tokens[i:])
            return
        # A positional argument of a leaf command: nothing to check.


def check_line(line: str, *, targets: set[str] | None = None, routes: list[re.Pattern[str]] | None = None) -> list[str]:
    """Problems with the halswarm, make and curl commands on a documented shell line."""
    problems: list[str] = []
    for part in split_commands(line):
        words = _words(part)
        if not words:
            continue
        program = _program(words[0])
        if program in PROGRAMS:
            tokens = _merge_spaced_alternatives(words[1:])
            problems += list(_walk(PROGRAMS[program], program, tokens))
        elif program == "make":
            known = targets if targets is not None else make_targets()
            problems += [
                f"make: no target {word!r}"
                for word in words[1:]
                if not word.startswith("-") and "=" not in word and word not in known
            ]
        elif program == "curl":
            problems += _check_curl(words[1:], routes if routes is not None else route_patterns())
    return problems


def _check_curl(args: list[str], routes: list[re.Pattern[str]]) -> list[str]:
    problems = []
    for arg in args:
        text = arg.strip("'\"")
        if not re.match(r"^(https?://)?(localhost|127\.0\.0\.1|[\w.-]*host[\w.-]*|\$\w+)(:\d+)?/", text):
            continue
        url = text if "://" in text else f"http://{text}"
        path = urlsplit(url).path
        if not any(route.match(path) for route in routes):
            problems.append(f"curl: no route {path}")
    return problems
