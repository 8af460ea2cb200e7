"""Where halctl finds the supervisor URL and API token.

Each value is taken from the first of these that sets it:

1. the ``--url`` / ``--token`` / ``--ca-file`` flags;
2. the environment: ``HALCTL_URL``; ``HALCTL_TOKEN``, then ``HALSWARM_AUTH_TOKEN``;
   ``HALSWARM_CA_FILE``;
3. ``./.halswarm/halctl.json`` in the current directory (the local demo writes it);
4. ``$XDG_CONFIG_HOME/halswarm/halctl.json`` (``~/.config/halswarm/halctl.json``).

``--config FILE`` replaces steps 3 and 4 with that one file. A config file is a JSON
object with optional ``url``, ``token`` and ``ca_file`` keys (``ca_file``: PEM file of
the CA that signed an ``https://`` supervisor's certificate; the system's CAs when
unset). The URL defaults to
``http://127.0.0.1:8421``; there is no default token. The token is never printed: it
is left out of reprs, and messages name only where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs

from halswarm.convert import ConversionError, loads_object, structure_strict

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CONFIG_FILE_NAME",
    "DEFAULT_URL",
    "LOCAL_CONFIG",
    "Settings",
    "SettingsError",
    "config_files",
    "resolve_settings",
]

DEFAULT_URL: Final = "http://127.0.0.1:8421"
CONFIG_FILE_NAME: Final = "halctl.json"
#: Relative to the current directory.
LOCAL_CONFIG: Final = Path(".halswarm") / CONFIG_FILE_NAME
URL_ENV: Final = "HALCTL_URL"
TOKEN_ENVS: Final = ("HALCTL_TOKEN", "HALSWARM_AUTH_TOKEN")
CA_FILE_ENV: Final = "HALSWARM_CA_FILE"


class SettingsError(Exception):
    """A config file is unreadable or invalid, or the URL is malformed (a usage error)."""


@attrs.frozen
class FileSettings:
    """The contents of a ``halctl.json`` file."""

    url: str | None = None
    token: str | None = attrs.field(default=None, repr=False)
    ca_file: str | None = None


@attrs.frozen
class Settings:
    """The resolved connection settings, with where each value came from."""

    url: str
    token: str | None = attrs.field(repr=False)
    url_source: str = "default"
    token_source: str | None = None
    #: CA file for ``https://`` (issue #8); None uses the system's CAs.
    ca_file: str | None = None


def config_files(*, config: Path | None, env: Mapping[str, str], cwd: Path) -> list[Path]:
    """The config files to consult, in precedence order.

    Args:
        config: the ``--config`` file, which replaces the usual lookup.
        env: the environment (for ``XDG_CONFIG_HOME`` and ``HOME``).
        cwd: the current directory (for ``./.halswarm/halctl.json``).
    """
    if config is not None:
        return [config]
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says to ignore relative paths.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else _home(env) / ".config"
    return [cwd / LOCAL_CONFIG, base / "halswarm" / CONFIG_FILE_NAME]


def resolve_settings(
    *,
    url: str | None = None,
    token: str | None = None,
    config: Path | None = None,
    env: Mapping[str, str],
    cwd: Path,
    ca_file: str | None = None,
) -> Settings:
    """Resolve URL and token with precedence flags > environment > local file > XDG file.

    Args:
        url: the ``--url`` flag, if given.
        token: the ``--token`` flag, if given.
        ca_file: the ``--ca-file`` flag, if given.
        config: the ``--config`` file, if given (must exist).
        env: the environment variables.
        cwd: the current directory.

    Returns:
        The settings; files are read only while a value is still missing.

    Raises:
        SettingsError: ``--config`` names a missing file, a file is not valid JSON
            or has unknown keys, the URL is not an http(s) URL, or the CA file is missing.
    """
    url_value, url_source = _first((url, "--url"), (env.get(URL_ENV), URL_ENV))
    token_value, token_source = _first((token, "--token"), *((env.get(name), name) for name in TOKEN_ENVS))
    ca_value, _ = _first((ca_file, "--ca-file"), (env.get(CA_FILE_ENV), CA_FILE_ENV))
    if config is not None and not config.is_file():
        raise SettingsError(f"config file {config} does not exist")
    for path in config_files(config=config, env=env, cwd=cwd):
        if url_value is not None and token_value is not None and ca_value is not None:
            break
        loaded = _load_file(path)
        if loaded is None:
            continue
        if url_value is None and loaded.url:
            url_value, url_source = loaded.url, str(path)
        if token_value is None and loaded.token:
            token_value, token_source = loaded.token, str(path)
        if ca_value is None and loaded.ca_file:
            ca_value = loaded.ca_file
    if url_value is None:
        url_value, url_source = DEFAULT_URL, "default"
    if ca_value is not None and not Path(ca_value).expanduser().is_file():
        raise SettingsError(f"CA file {ca_value} does not exist (--ca-file / {CA_FILE_ENV} / ca_file)")
    return Settings(
        url=_check_url(url_value, url_source),
        token=token_value,
        url_source=url_source or "default",
        token_source=token_source if token_value is not None else None,
        ca_file=str(Path(ca_value).expanduser()) if ca_value is not None else None,
    )


def _first(*candidates: tuple[str | None, str]) -> tuple[str | None, str | None]:
    """The first non-empty value with its source name (empty counts as unset)."""
    for value, source in candidates:
        if value:
            return value, source
    return None, None


def _load_file(path: Path) -> FileSettings | None:
    """The file's settings, or None when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return structure_strict(loads_object(data, what="config"), FileSettings)
    except ConversionError as exc:
        raise SettingsError(f"{path}: {'; '.join(exc.problems)}") from None


def _check_url(url: str, source: str | None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = f" (from {source})" if source else ""
        raise SettingsError(f"invalid supervisor URL {url!r}{where}: expected e.g. {DEFAULT_URL}")
    return url.rstrip("/")


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()
