"""Interaction responses: what the handler answers with (provider-apis.md §3.1).

The initial response must reach Discord within 3 seconds: as the body of the HTTP answer
(interactions endpoint) or by ``POST /interactions/{id}/{token}/callback`` (gateway,
:func:`halswarm.channels.discord.rest.interaction_callback`). Deferred work is filled in
later with :func:`halswarm.channels.discord.rest.edit_original`.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.channels.discord.messages import EPHEMERAL, truncate
from halswarm.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from collections.abc import Sequence

    from halswarm.channels.discord.messages import Message

__all__ = [
    "AUTOCOMPLETE_CHOICES_MAX",
    "CallbackType",
    "Choice",
    "Response",
    "autocomplete_result",
    "channel_message",
    "defer_message",
    "defer_update",
    "pong",
    "update_message",
]

AUTOCOMPLETE_CHOICES_MAX: Final = 25
_CHOICE_TEXT_MAX: Final = 100


class CallbackType(enum.IntEnum):
    """``type`` of an interaction response."""

    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9


@attrs.frozen
class Response:
    """An interaction response: the body of the HTTP answer, or of the callback POST."""

    type: CallbackType
    data: JSONObject | None = None

    def to_json(self) -> JSONObject:
        """``{"type": ..., "data": ...}``."""
        out: JSONObject = {"type": int(self.type)}
        if self.data is not None:
            out["data"] = self.data
        return out


@attrs.frozen
class Choice:
    """An autocomplete suggestion: ``name`` is shown, ``value`` is filled in."""

    name: str
    value: str


def pong() -> Response:
    """The answer to a PING."""
    return Response(CallbackType.PONG)


def channel_message(message: Message) -> Response:
    """Reply with a message now (type 4); ``message.ephemeral`` makes it private."""
    return Response(CallbackType.CHANNEL_MESSAGE_WITH_SOURCE, message.to_json())


def defer_message(*, ephemeral: bool = False) -> Response:
    """ "Thinking..." now (type 5), the message later via ``PATCH .../messages/@original``.

    Visibility is fixed here: the ephemeral flag is the only one allowed with a type 5.
    """
    return Response(CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, {"flags": EPHEMERAL} if ephemeral else None)


def defer_update() -> Response:
    """Acknowledge a click without changing the message yet (type 6); edit it later."""
    return Response(CallbackType.DEFERRED_UPDATE_MESSAGE)


def update_message(message: Message) -> Response:
    """Edit the message whose button was clicked, now (type 7)."""
    data = message.to_json()
    data.pop("flags", None)  # an update cannot change the visibility of the message
    return Response(CallbackType.UPDATE_MESSAGE, data)


def autocomplete_result(choices: Sequence[Choice]) -> Response:
    """Suggestions for the focused option (type 8): the first 25, texts cut to 100."""
    items: list[JSONValue] = [
        {"name": truncate(c.name, _CHOICE_TEXT_MAX) or "-", "value": c.value[:_CHOICE_TEXT_MAX]}
        for c in choices[:AUTOCOMPLETE_CHOICES_MAX]
    ]
    return Response(CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT, {"choices": items})
