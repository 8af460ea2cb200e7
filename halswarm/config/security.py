"""Security config: API tokens with roles, per-node agent tokens, TLS files, browser origins.

Keys (supervisor config):

- ``server.auth_token`` — the seed's shared secret: full rights on the API and accepted
  from every agent (unless that node has its own token, below).
- ``server.tokens`` — ``[{name, token | token_sha256, role}]``: named API tokens with a
  role, ``viewer`` (reads), ``operator`` (reads and commands) or ``admin`` (everything:
  policies, runtime config). ``token_sha256`` (hex SHA-256 of the token) keeps the token
  itself out of the config file.
- ``server.node_tokens`` — ``{node_id: token}``: a node listed here must present its own
  token; the shared token is no longer accepted for it.
- ``security.tls`` — ``{enabled, cert_path, key_path}`` for both listeners.
- ``security.origin_allowlist`` — origins (``https://ops.example.com``) allowed on
  requests that carry an ``Origin`` header (browsers); ``"*"`` allows any.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "MIN_TOKEN_LEN",
    "ROLES",
    "ApiToken",
    "Role",
    "check_api_tokens",
    "check_node_tokens",
    "check_origins",
    "check_tls_files",
    "origin_allowed",
    "token_sha256",
]

Role = Literal["viewer", "operator", "admin"]
#: Roles from least to most rights; each includes the rights of the ones before it.
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "admin")
MIN_TOKEN_LEN: Final = 16
_HEX: Final = frozenset("0123456789abcdef")


def token_sha256(token: str) -> str:
    """Hex SHA-256 of *token* (what ``token_sha256`` in the config holds)."""
    return hashlib.sha256(token.encode()).hexdigest()


@attrs.frozen
class ApiToken:
    """One named API token (``server.tokens[]``)."""

    name: str
    role: Role
    token: str = attrs.field(default="", repr=False)  # a secret: never in a repr
    #: Hex SHA-256 of the token, instead of the token itself.
    token_sha256: str = ""

    def digest(self) -> str:
        """The token's SHA-256 (from ``token`` or ``token_sha256``), lower-case hex."""
        return token_sha256(self.token) if self.token else self.token_sha256.lower()


def check_api_tokens(tokens: Sequence[ApiToken], auth_token: str) -> list[str]:
    """Problems with ``server.tokens``, each naming its key path."""
    problems: list[str] = []
    names: set[str] = set()
    digests: dict[str, str] = {token_sha256(auth_token): "server.auth_token"} if auth_token else {}
    for i, entry in enumerate(tokens):
        key = f"server.tokens[{i}]"
        if not entry.name.strip():
            problems.append(f"{key}.name: required")
        elif entry.name in names:
            problems.append(f"{key}.name: {entry.name!r} is used twice")
        names.add(entry.name)
        if bool(entry.token) == bool(entry.token_sha256):
            problems.append(f"{key}: set exactly one of token and token_sha256")
            continue
        if entry.token and len(entry.token) < MIN_TOKEN_LEN:
            problems.append(f"{key}.token: must be at least {MIN_TOKEN_LEN} characters")
            continue
        digest = entry.token_sha256.lower()
        if entry.token_sha256 and (len(digest) != 64 or not set(digest) <= _HEX):
            problems.append(f"{key}.token_sha256: must be 64 hex characters (sha256sum of the token)")
            continue
        other = digests.get(entry.digest())
        if other is not None:
            problems.append(f"{key}: the same token as {other} (each token must identify one caller)")
        digests[entry.digest()] = key
    return problems


def check_node_tokens(
    node_tokens: Mapping[str, str], auth_token: str, api_tokens: Sequence[ApiToken] = ()
) -> list[str]:
    """Problems with ``server.node_tokens``: each long enough and used nowhere else.

    A node token equal to the shared token or to another node's would let its holder
    connect as that node; one equal to an API token would mix two kinds of caller.
    """
    problems: list[str] = []
    seen: dict[str, str] = {token_sha256(auth_token): "server.auth_token"} if auth_token else {}
    seen.update((t.digest(), f"server.tokens ({t.name})") for t in api_tokens)
    for node_id, token in node_tokens.items():
        key = f"server.node_tokens.{node_id}"
        if not node_id.strip():
            problems.append("server.node_tokens: a node id is empty")
        elif len(token) < MIN_TOKEN_LEN:
            problems.append(f"{key}: must be at least {MIN_TOKEN_LEN} characters")
        elif (other := seen.get(token_sha256(token))) is not None:
            problems.append(f"{key}: the same token as {other} (each token must identify one caller)")
        else:
            seen[token_sha256(token)] = key
    return problems


def check_tls_files(enabled: bool, cert_path: str | None, key_path: str | None) -> list[str]:
    """Problems with ``security.tls``: with TLS on, both files must exist and be readable."""
    if not enabled:
        return []
    problems: list[str] = []
    for key, path in (("cert_path", cert_path), ("key_path", key_path)):
        if not path:
            problems.append(f"security.tls.{key}: required when security.tls.enabled is true")
        elif not os.path.isfile(path):
            problems.append(f"security.tls.{key}: no such file: {path}")
        elif not os.access(path, os.R_OK):
            problems.append(f"security.tls.{key}: not readable by this user: {path}")
    return problems


def check_origins(origins: Sequence[str]) -> list[str]:
    """Problems with ``security.origin_allowlist``: ``"*"`` or ``scheme://host[:port]`` each."""
    problems: list[str] = []
    for i, origin in enumerate(origins):
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            problems.append(
                f'security.origin_allowlist[{i}]: must be "*" or an origin such as https://ops.example.com, '
                f"got {origin!r}"
            )
        elif parts.query or parts.fragment or parts.username:
            problems.append(f"security.origin_allowlist[{i}]: an origin has no query, fragment or user: {origin!r}")
    return problems


def origin_allowed(origin: str | None, allowlist: Sequence[str]) -> bool:
    """Whether a request with this ``Origin`` header may proceed.

    No header (agents, curl, halctl): always allowed — the check is for browsers, which
    always send one on cross-site requests. ``"*"`` allows any origin; otherwise the
    scheme, host and port must match an entry (case-insensitive, default ports implied).
    """
    if origin is None:
        return True
    if "*" in allowlist:
        return True
    wanted = _normal_origin(origin)
    return wanted is not None and any(_normal_origin(entry) == wanted for entry in allowlist)


def _normal_origin(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)
