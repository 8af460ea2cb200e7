"""``custom_id`` of halswarm's buttons: ``hs1:<action>:<ref>``.

A click comes back with nothing but this string (and who clicked), so it carries the
action and the session or permission request it acts on. ``hs1`` names the format so
a later change can still read buttons on old alerts. Discord limits a ``custom_id`` to
100 characters; :func:`encode_custom_id` refuses anything longer instead of cutting an id.

Install buttons (``install``, ``decline``) act on a declared install command of a
project on a node, whose names may each be 128 characters long: their reference is
:func:`install_ref`, ``<key>.<hash>``: 16 hex digits of SHA-256 over (node, project,
install) and the first 12 hex digits of the manifest hash the alert was made against.
The supervisor finds the install again by computing the key of every install its
manifest declares for its known nodes, so the button needs no stored state and still
works after a restart; the hash tells whether the manifest changed since the alert.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal, get_args

import attrs

from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.messages import CUSTOM_ID_MAX

__all__ = [
    "BUTTON_ACTIONS",
    "INSTALL_ACTIONS",
    "INSTALL_CHOICE_PREFIX",
    "REF_MAX",
    "ButtonAction",
    "ButtonRef",
    "InstallRef",
    "encode_custom_id",
    "install_key",
    "install_ref",
    "parse_custom_id",
    "parse_install_ref",
]

ButtonAction = Literal["resume", "restart", "kill", "approve", "reject", "install", "decline"]
BUTTON_ACTIONS: Final[tuple[ButtonAction, ...]] = get_args(ButtonAction)

_BY_NAME: Final[dict[str, ButtonAction]] = {a: a for a in BUTTON_ACTIONS}
_PREFIX: Final = "hs1"
# Session and request ids are opencode ids (ses_..., per_...): no spaces, no colons needed.
_REF_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+")
#: The longest reference, whatever the action (the longest action name leaves 88).
REF_MAX: Final = CUSTOM_ID_MAX - len(max(BUTTON_ACTIONS, key=len)) - len(_PREFIX) - 2
#: The buttons that approve or decline a declared install (their ref is an :func:`install_ref`).
INSTALL_ACTIONS: Final[frozenset[ButtonAction]] = frozenset({"install", "decline"})
#: ``/approve`` and ``/deny`` take ``install:<install_ref>`` where they take a permission request id.
INSTALL_CHOICE_PREFIX: Final = "install:"
_KEY_LEN: Final = 16
_HASH_LEN: Final = 12
_INSTALL_REF_RE: Final = re.compile(rf"([0-9a-f]{{{_KEY_LEN}}})\.([0-9a-f]{{{_HASH_LEN}}})")


@attrs.frozen
class ButtonRef:
    """What a button does: the action and the session id (or permission request id)."""

    action: ButtonAction
    ref: str


def encode_custom_id(action: ButtonAction, ref: str) -> str:
    """``hs1:<action>:<ref>``.

    Raises:
        ValueError: *ref* is empty, longer than :data:`REF_MAX` (so that every action's
            id fits Discord's 100 characters), or has characters outside ``[A-Za-z0-9_.-]``.
    """
    if not _REF_RE.fullmatch(ref):
        raise ValueError(f"a button reference must match [A-Za-z0-9_.-]+, got {ref[:40]!r}")
    if len(ref) > REF_MAX:
        raise ValueError(f"button reference too long ({len(ref)} characters, at most {REF_MAX})")
    return f"{_PREFIX}:{action}:{ref}"


def parse_custom_id(custom_id: str) -> ButtonRef:
    """The action and reference of a clicked button.

    Raises:
        PayloadError: not a halswarm button (another format, an unknown action, a bad reference).
    """
    prefix, _, rest = custom_id.partition(":")
    action, _, ref = rest.partition(":")
    if prefix != _PREFIX:
        raise PayloadError([f"data.custom_id: not a halswarm button ({custom_id[:40]!r})"])
    known = _BY_NAME.get(action)
    if known is None:
        raise PayloadError([f"data.custom_id: unknown button action {action[:20]!r}"])
    if not _REF_RE.fullmatch(ref) or len(ref) > REF_MAX:
        raise PayloadError([f"data.custom_id: bad reference {ref[:40]!r}"])
    return ButtonRef(known, ref)


@attrs.frozen
class InstallRef:
    """What an install button names: the install's :func:`install_key` and a manifest hash prefix."""

    key: str
    manifest_hash: str

    def matches(self, manifest_hash: str) -> bool:
        """True when *manifest_hash* (a full hash) is the one the button was made against."""
        return manifest_hash.startswith(self.manifest_hash)


def install_key(node_id: str, project: str, install: str) -> str:
    """16 hex digits naming (node, project, install); the same on every supervisor run."""
    text = "\x00".join((node_id, project, install))
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_LEN]


def install_ref(node_id: str, project: str, install: str, manifest_hash: str) -> str:
    """``<install_key>.<first 12 hex digits of manifest_hash>`` (29 characters).

    Raises:
        ValueError: *manifest_hash* is not a hex SHA-256 (at least 12 lowercase hex digits).
    """
    prefix = manifest_hash[:_HASH_LEN]
    if not re.fullmatch(rf"[0-9a-f]{{{_HASH_LEN}}}", prefix):
        raise ValueError(f"not a manifest hash: {manifest_hash[:20]!r}")
    return f"{install_key(node_id, project, install)}.{prefix}"


def parse_install_ref(ref: str) -> InstallRef:
    """The key and manifest hash prefix of an install button's reference.

    Raises:
        PayloadError: not ``<16 hex>.<12 hex>``.
    """
    match = _INSTALL_REF_RE.fullmatch(ref)
    if match is None:
        raise PayloadError([f"data.custom_id: not an install reference ({ref[:40]!r})"])
    return InstallRef(match.group(1), match.group(2))
