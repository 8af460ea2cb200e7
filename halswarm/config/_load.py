"""Shared config loading: read JSON, apply environment secrets, structure, collect problems."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar

from halswarm.convert import ConversionError, loads_object, structure_strict
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = ["ConfigError", "EnvBinding", "load_config_file", "parse_config"]

T = TypeVar("T")

EnvBinding = tuple[str, tuple[str, ...]]
"""An environment variable and the key path it fills, e.g. ("HALSWARM_AUTH_TOKEN", ("server", "auth_token"))."""


class ConfigError(Exception):
    """A config file is unusable. ``problems`` has one line per problem, each naming its key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def _parent_of(raw: JSONObject, path: tuple[str, ...]) -> JSONObject | None:
    """The object that holds ``path[-1]``, creating a missing top-level section only.

    Deeper sections (``channels.discord``, ``cost.providers.openai``) must already be in
    the file: a secret in the environment must not switch a feature on by itself.
    None when a value of another type is in the way: it is left in place so that
    validation reports it (``"server": 5`` must not silently become all defaults just
    because HALSWARM_AUTH_TOKEN is set).
    """
    node = raw
    for depth, key in enumerate(path[:-1]):
        child: JSONValue = node.get(key)
        if child is None and depth > 0:
            return None
        if child is None:
            created: JSONObject = {}
            node[key] = created
            node = created
        elif is_json_object(child):
            node = child
        else:
            return None
    return node


def _apply_env(raw: JSONObject, bindings: tuple[EnvBinding, ...], env: Mapping[str, str]) -> list[str]:
    """Fill secrets from the environment; a set variable wins over the file."""
    used: list[str] = []
    for var, path in bindings:
        value = env.get(var)
        if not value:
            continue
        parent = _parent_of(raw, path)
        if parent is None:
            continue
        parent[path[-1]] = value
        used.append(var)
    return used


def parse_config(
    raw: JSONObject,
    cls: type[T],
    *,
    source: str,
    env_bindings: tuple[EnvBinding, ...] = (),
    env: Mapping[str, str] | None = None,
    check: Callable[[T], list[str]] | None = None,
) -> T:
    """Build a config object from parsed JSON, reporting every problem at once.

    Args:
        raw: the parsed JSON object (modified: environment secrets are filled in).
        cls: the attrs config class.
        source: where it came from, for messages.
        env_bindings: environment variables that supply secrets.
        env: the environment (default ``os.environ``).
        check: semantic checks run after structuring; returns problem lines.

    Raises:
        ConfigError: with one line per problem, each starting with its key path.
    """
    _apply_env(raw, env_bindings, os.environ if env is None else env)
    try:
        config = structure_strict(raw, cls)
    except ConversionError as exc:
        raise ConfigError(source, exc.problems) from None
    problems = check(config) if check else []
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config_file(
    path: Path,
    cls: type[T],
    *,
    env_bindings: tuple[EnvBinding, ...] = (),
    env: Mapping[str, str] | None = None,
    check: Callable[[T], list[str]] | None = None,
) -> T:
    """Read and validate a JSON config file.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON, or invalid.
    """
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(source, [f"cannot read config file: {exc.strerror or exc}"]) from None
    try:
        raw = loads_object(text, what="config file")
    except ConversionError as exc:
        raise ConfigError(source, exc.problems) from None
    return parse_config(raw, cls, source=source, env_bindings=env_bindings, env=env, check=check)
