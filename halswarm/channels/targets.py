"""Where a route delivers: ``discord#<channel>``, ``webhook#<name>`` or ``slack#<name>``.

The name after ``#`` refers to the config: a key of ``channels.discord.channels`` (name ->
Discord channel id), of ``channels.webhooks`` or of ``channels.slack``. Whether that
name is defined is checked with the config (:func:`halswarm.config.routing.check_routing`).
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

import attrs

__all__ = ["NAME_RULE", "TARGET_KINDS", "Target", "TargetError", "TargetKind", "is_valid_name"]

TargetKind = Literal["discord", "webhook", "slack"]
TARGET_KINDS: Final[tuple[TargetKind, ...]] = get_args(TargetKind)

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", re.ASCII)
#: The rule for the names of channels, webhooks and Slack webhooks, in words.
NAME_RULE: Final = "use letters, digits, '.', '_' or '-', starting with a letter or digit (at most 100 characters)"


def is_valid_name(name: str) -> bool:
    """True when *name* may follow ``#`` in a target (and name a webhook or channel)."""
    return _NAME_RE.fullmatch(name) is not None


class TargetError(ValueError):
    """Text that is not a target; the message says why and what is allowed."""


@attrs.frozen
class Target:
    """A parsed route target: a kind of channel and the configured name within it."""

    kind: TargetKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}#{self.name}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``<kind>#<name>``.

        Raises:
            TargetError: no ``#``, an unknown kind, or a name outside :data:`NAME_RULE`.
        """
        kinds = ", ".join(f"{kind}#<name>" for kind in TARGET_KINDS)
        kind, sep, name = text.partition("#")
        if not sep:
            raise TargetError(f"{text!r} is not a target (use {kinds})")
        for known in TARGET_KINDS:
            if kind == known:
                if not is_valid_name(name):
                    raise TargetError(f"bad name {name!r} in {text!r}: {NAME_RULE}")
                return cls(known, name)
        raise TargetError(f"unknown target kind {kind!r} in {text!r} (use {kinds})")
