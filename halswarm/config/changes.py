"""What changed between two supervisor configs, and which of it a reload can apply.

A reload (SIGHUP, :mod:`halswarm.supervisor.reload`) applies :data:`RELOADABLE` keys at
runtime; every other changed key is reported by its path and waits for a restart.
Paths name attrs fields with dots and map entries with brackets
(``channels.webhooks['n8n'].url``); lists are compared whole (``routes``). Values are
never part of the result: many are secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeVar

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from halswarm.config.supervisor import SupervisorConfig

__all__ = ["RELOADABLE", "changed_keys", "is_reloadable", "with_reloadable"]

#: Key paths (and everything under them) a reload applies without a restart: each names
#: attrs fields, dot-separated, which :func:`with_reloadable` takes from the new config.
RELOADABLE: Final = ("routes", "channels.webhooks", "channels.slack", "policies")

_T = TypeVar("_T", bound=attrs.AttrsInstance)


def changed_keys(old: object, new: object) -> list[str]:
    """The key paths whose values differ between *old* and *new* (attrs configs), sorted.

    Nested attrs sections and maps are compared entry by entry; anything else
    (lists, scalars, a section present in one and absent in the other) by value.
    """
    found: list[str] = []
    _diff(old, new, "", found)
    return sorted(found)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _diff(old: object, new: object, path: str, found: list[str]) -> None:
    if old == new:
        return
    cls = type(old)
    if attrs.has(cls) and cls is type(new):
        for field in attrs.fields(cls):
            _diff(getattr(old, field.name), getattr(new, field.name), _join(path, field.name), found)
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted({*old, *new}, key=str):
            where = f"{path}[{str(key)!r}]"
            if key not in old or key not in new:
                found.append(where)
            else:
                _diff(old[key], new[key], where, found)
        return
    found.append(path or "(top level)")


def is_reloadable(path: str) -> bool:
    """True when a change at *path* takes effect on reload (see :data:`RELOADABLE`)."""
    return any(path == key or path.startswith((f"{key}.", f"{key}[")) for key in RELOADABLE)


def with_reloadable(running: SupervisorConfig, new: SupervisorConfig) -> SupervisorConfig:
    """*running* with the :data:`RELOADABLE` parts taken from *new*: the config after a reload."""
    result = running
    for key in RELOADABLE:
        result = _take(result, new, key.split("."))
    return result


def _take(running: _T, new: _T, fields: Sequence[str]) -> _T:
    """*running* with the field at the path *fields* taken from *new* (sections above it copied)."""
    name, *rest = fields
    value = getattr(new, name)
    if rest:
        value = _take(getattr(running, name), value, rest)
    # The bound makes *running* an attrs instance; mypy's attrs plugin accepts only a named class.
    return attrs.evolve(running, **{name: value})  # type: ignore[misc]
