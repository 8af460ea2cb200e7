"""Versions and version constraints for runtimes (issue #9), without ``eval``.

A :class:`Version` is a tuple of non-negative integers compared numerically, with
trailing zeros ignored (``17 == 17.0 == 17.0.0``). A :class:`Constraint` is a
conjunction of clauses separated by spaces or commas, each one of ``>= > <= < == !=
~=`` followed by a version: ``">=20 <23"``, ``">=3.11,<3.13"``, ``"~=3.11"``.
``~=X.Y`` means ``>=X.Y`` and ``==X.*`` (PEP 440's compatible release).

:func:`extract_version` finds the version in a runtime's ``--version`` output (java,
node, python, go, or the first dotted number for anything else).
"""

from __future__ import annotations

import re
from typing import Final, Literal

import attrs

__all__ = [
    "VERSION_ARGS",
    "Clause",
    "Constraint",
    "Operator",
    "Version",
    "VersionError",
    "extract_version",
    "parse_constraint",
    "parse_version",
]

Operator = Literal[">=", ">", "<=", "<", "==", "!=", "~="]

_VERSION_RE: Final = re.compile(r"^v?(\d+(?:\.\d+)*)$")
# One clause: operator, optional blanks, version; clauses are separated by blanks or commas.
_CLAUSE_RE: Final = re.compile(r"(>=|<=|==|!=|~=|>|<)\s*(\d+(?:\.\d+)*)")
_SEPARATOR_RE: Final = re.compile(r"[\s,]*")
_OPERATORS: Final[dict[str, Operator]] = {
    ">=": ">=",
    ">": ">",
    "<=": "<=",
    "<": "<",
    "==": "==",
    "!=": "!=",
    "~=": "~=",
}

#: How to ask each runtime for its version (``--version`` for anything not listed).
VERSION_ARGS: Final[dict[str, tuple[str, ...]]] = {
    "java": ("-version",),  # prints to stderr; `--version` is JDK 9+ only
    "javac": ("-version",),
    "go": ("version",),
}

_RUNTIME_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "java": re.compile(r'version "(\d+(?:\.\d+)*)'),
    "javac": re.compile(r"javac (\d+(?:\.\d+)*)"),
    "node": re.compile(r"\bv(\d+(?:\.\d+)*)"),
    "python": re.compile(r"Python (\d+(?:\.\d+)*)"),
    "python3": re.compile(r"Python (\d+(?:\.\d+)*)"),
    "go": re.compile(r"\bgo(\d+(?:\.\d+)*)"),
}
_GENERIC_DOTTED: Final = re.compile(r"(?<![\w.])(\d+(?:\.\d+)+)")
_GENERIC_NUMBER: Final = re.compile(r"(?<![\w.])(\d+)(?![\w.])")


class VersionError(ValueError):
    """Text is not a version or not a version constraint (the message says which)."""


@attrs.frozen(eq=False, order=False)
class Version:
    """A dotted numeric version. Equality and order ignore trailing zeros."""

    parts: tuple[int, ...]

    @property
    def _key(self) -> tuple[int, ...]:
        parts = list(self.parts)
        while parts and parts[-1] == 0:
            parts.pop()
        return tuple(parts)

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key

    def __le__(self, other: Version) -> bool:
        return self._key <= other._key

    def __gt__(self, other: Version) -> bool:
        return self._key > other._key

    def __ge__(self, other: Version) -> bool:
        return self._key >= other._key


def parse_version(text: str) -> Version:
    """Parse ``"17.0.15"`` (a leading ``v`` is allowed).

    Raises:
        VersionError: *text* is not a dotted number.
    """
    match = _VERSION_RE.match(text.strip())
    if match is None:
        raise VersionError(f"{text!r} is not a version")
    return Version(tuple(int(p) for p in match.group(1).split(".")))


@attrs.frozen
class Clause:
    """One comparison: ``op`` and the version it compares with."""

    op: Operator
    version: Version

    def allows(self, version: Version) -> bool:
        """True when *version* satisfies this clause."""
        bound = self.version
        match self.op:
            case ">=":
                return version >= bound
            case ">":
                return version > bound
            case "<=":
                return version <= bound
            case "<":
                return version < bound
            case "==":
                return version == bound
            case "!=":
                return version != bound
            case "~=":
                # Compatible release: at least the bound, same prefix minus the last part.
                prefix = bound.parts[:-1]
                padded = version.parts + (0,) * max(0, len(prefix) - len(version.parts))
                return version >= bound and padded[: len(prefix)] == prefix

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@attrs.frozen
class Constraint:
    """A conjunction of clauses; :meth:`allows` is true when all of them are."""

    clauses: tuple[Clause, ...]

    def allows(self, version: Version) -> bool:
        """True when *version* satisfies every clause."""
        return all(clause.allows(version) for clause in self.clauses)

    def __str__(self) -> str:
        return " ".join(str(c) for c in self.clauses)


def parse_constraint(text: str) -> Constraint:
    """Parse ``">=20 <23"`` or ``">=3.11,<3.13"`` or ``"~=3.11"``.

    Raises:
        VersionError: ``'"<text>" is not a version constraint'`` (with the reason).
    """
    clauses: list[Clause] = []
    pos = _SEPARATOR_RE.match(text, 0)
    index = pos.end() if pos else 0
    while index < len(text):
        match = _CLAUSE_RE.match(text, index)
        if match is None or (clauses and not _separated(text, index)):
            raise VersionError(f'"{text}" is not a version constraint (expected e.g. ">=17" or ">=20 <23")')
        version = Version(tuple(int(p) for p in match.group(2).split(".")))
        op = _OPERATORS[match.group(1)]
        if op == "~=" and len(version.parts) < 2:
            raise VersionError(f'"{text}" is not a version constraint (~= needs at least two parts, e.g. ~=3.11)')
        clauses.append(Clause(op, version))
        sep = _SEPARATOR_RE.match(text, match.end())
        index = sep.end() if sep else match.end()
    if not clauses:
        raise VersionError(f'"{text}" is not a version constraint (it is empty)')
    return Constraint(tuple(clauses))


def _separated(text: str, index: int) -> bool:
    """True when a clause starting at *index* follows a separator (``>=1<2`` is refused)."""
    return index > 0 and text[index - 1] in " \t,"


def extract_version(runtime: str, output: str) -> Version | None:
    """The version in *runtime*'s ``--version`` output, or None when there is none.

    Args:
        runtime: the runtime's name (``java``, ``node``, ``python``, ``go``...), which
            picks a known pattern; unknown names take the first dotted number (or,
            failing that, the first lone number).
        output: standard output and standard error together.
    """
    pattern = _RUNTIME_PATTERNS.get(runtime)
    if pattern is not None and (match := pattern.search(output)):
        version = Version(tuple(int(p) for p in match.group(1).split(".")))
        if runtime in ("java", "javac") and len(version.parts) >= 2 and version.parts[0] == 1:
            # Java 8 and older say "1.8.0_392": the real major version is the second part.
            version = Version(version.parts[1:])
        return version
    for generic in (_GENERIC_DOTTED, _GENERIC_NUMBER):
        if match := generic.search(output):
            return Version(tuple(int(p) for p in match.group(1).split(".")))
    return None
