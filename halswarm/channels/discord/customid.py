"""``custom_id`` of halswarm's buttons: ``hs1:<action>:<ref>``.

A click comes back with nothing but this string (and who clicked), so it carries the
action and the session or permission request it acts on. ``hs1`` names the format so
a later change can still read buttons on old alerts. Discord limits a ``custom_id`` to
100 characters; :func:`encode_custom_id` refuses anything longer instead of cutting an id.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

import attrs

from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.messages import CUSTOM_ID_MAX

__all__ = ["BUTTON_ACTIONS", "REF_MAX", "ButtonAction", "ButtonRef", "encode_custom_id", "parse_custom_id"]

ButtonAction = Literal["resume", "restart", "kill", "approve", "reject"]
BUTTON_ACTIONS: Final[tuple[ButtonAction, ...]] = get_args(ButtonAction)

_BY_NAME: Final[dict[str, ButtonAction]] = {a: a for a in BUTTON_ACTIONS}
_PREFIX: Final = "hs1"
# Session and request ids are opencode ids (ses_..., per_...): no spaces, no colons needed.
_REF_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+")
#: The longest reference, whatever the action (the longest action name leaves 88).
REF_MAX: Final = CUSTOM_ID_MAX - len(_PREFIX) - len(":restart:")


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
