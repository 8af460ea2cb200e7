"""Exceptions of the Discord package: every boundary raises only these (house style rule 4)."""

from __future__ import annotations

__all__ = ["DiscordConfigError", "DiscordError", "GatewayStateError", "PayloadError"]


class DiscordError(Exception):
    """Base class of every error raised by :mod:`halswarm.channels.discord`."""


class PayloadError(DiscordError, ValueError):
    """Data from Discord (an interaction, a frame, a ``custom_id``) is not the documented shape.

    ``problems`` names each one as ``key.path: problem``; safe to log (no token, no key).
    An HTTP transport answers 400 with it.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DiscordConfigError(DiscordError, ValueError):
    """A Discord setting cannot work (e.g. the public key is not 64 hex digits)."""


class GatewayStateError(DiscordError, RuntimeError):
    """The gateway state machine was fed an input its state does not allow (a transport bug)."""
