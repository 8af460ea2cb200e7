"""Discord message bodies: embeds, buttons and their documented limits (provider-apis.md §3.3).

Any breach of a limit is a 400 from Discord, and alert text comes from agents (task
titles, error messages) of any length, so :meth:`Message.to_json` enforces every limit
itself: texts are cut with an ellipsis, extra fields, embeds, rows and buttons are
dropped, and the text of all embeds together is shrunk to :data:`EMBEDS_TOTAL_MAX`.
Identifiers cannot be cut without breaking them: a ``custom_id`` over 100 characters, or
one used twice in a message, is a bug and raises ``ValueError``.

Lengths are counted in UTF-16 code units, which is never less than the number of code
points, so a text that fits by that measure fits whichever way Discord counts.

Every body carries ``allowed_mentions: {"parse": []}``: agent output such as
``@everyone`` must never ping a channel, and ``<@id>`` renders without notifying.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = [
    "BUTTONS_PER_ROW_MAX",
    "BUTTON_LABEL_MAX",
    "CONTENT_MAX",
    "CUSTOM_ID_MAX",
    "EMBEDS_MAX",
    "EMBEDS_TOTAL_MAX",
    "EMBED_DESCRIPTION_MAX",
    "EMBED_FIELDS_MAX",
    "EMBED_FIELD_NAME_MAX",
    "EMBED_FIELD_VALUE_MAX",
    "EMBED_FOOTER_MAX",
    "EMBED_TITLE_MAX",
    "EPHEMERAL",
    "ROWS_MAX",
    "ActionRow",
    "Button",
    "ButtonStyle",
    "Embed",
    "EmbedField",
    "Message",
    "text_length",
    "truncate",
]

CONTENT_MAX: Final = 2000
EMBEDS_MAX: Final = 10
EMBED_TITLE_MAX: Final = 256
EMBED_DESCRIPTION_MAX: Final = 4096
EMBED_FIELDS_MAX: Final = 25
EMBED_FIELD_NAME_MAX: Final = 256
EMBED_FIELD_VALUE_MAX: Final = 1024
EMBED_FOOTER_MAX: Final = 2048
#: All text of all embeds of one message together.
EMBEDS_TOTAL_MAX: Final = 6000
ROWS_MAX: Final = 5
BUTTONS_PER_ROW_MAX: Final = 5
BUTTON_LABEL_MAX: Final = 80
CUSTOM_ID_MAX: Final = 100
#: Message flag: only the invoking user sees it (``1 << 6``).
EPHEMERAL: Final = 64

_ELLIPSIS: Final = "…"


def text_length(text: str) -> int:
    """Length in UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """*text* cut to at most *limit* UTF-16 units, ending in ``…`` when cut.

    Never splits a character; *limit* must be at least 1.
    """
    if text_length(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    while cut and text_length(cut) > limit - 1:
        cut = cut[:-1]
    return cut + _ELLIPSIS


class ButtonStyle(enum.IntEnum):
    """Button styles that send an interaction (link buttons are not used)."""

    PRIMARY = 1
    SECONDARY = 2
    SUCCESS = 3
    DANGER = 4


@attrs.frozen
class Button:
    """A button; a click arrives as a MESSAGE_COMPONENT interaction carrying ``custom_id``."""

    label: str
    custom_id: str
    style: ButtonStyle = ButtonStyle.SECONDARY
    disabled: bool = False

    def to_json(self) -> JSONObject:
        """The component object.

        Raises:
            ValueError: ``custom_id`` is empty or longer than 100 characters (a bug).
        """
        if not 1 <= text_length(self.custom_id) <= CUSTOM_ID_MAX:
            raise ValueError(f"custom_id must be 1-{CUSTOM_ID_MAX} characters, got {len(self.custom_id)}")
        return {
            "type": 2,
            "style": int(self.style),
            "label": truncate(self.label, BUTTON_LABEL_MAX),
            "custom_id": self.custom_id,
            "disabled": self.disabled,
        }


@attrs.frozen
class ActionRow:
    """Up to five buttons side by side."""

    buttons: tuple[Button, ...]

    def to_json(self) -> JSONObject:
        """The action row object (extra buttons dropped)."""
        return {"type": 1, "components": [b.to_json() for b in self.buttons[:BUTTONS_PER_ROW_MAX]]}


@attrs.frozen
class EmbedField:
    """One name/value pair of an embed."""

    name: str
    value: str
    inline: bool = False


@attrs.frozen
class Embed:
    """A rich embed; empty texts are left out of the JSON."""

    title: str = ""
    description: str = ""
    color: int | None = None
    fields: tuple[EmbedField, ...] = ()
    footer: str = ""
    timestamp: str | None = None  # ISO 8601

    def _fitted(self) -> Embed:
        fields = tuple(
            EmbedField(
                truncate(f.name or "-", EMBED_FIELD_NAME_MAX), truncate(f.value or "-", EMBED_FIELD_VALUE_MAX), f.inline
            )
            for f in self.fields[:EMBED_FIELDS_MAX]
        )
        return attrs.evolve(
            self,
            title=truncate(self.title, EMBED_TITLE_MAX),
            description=truncate(self.description, EMBED_DESCRIPTION_MAX),
            fields=fields,
            footer=truncate(self.footer, EMBED_FOOTER_MAX),
        )

    def text_total(self) -> int:
        """The characters this embed counts towards :data:`EMBEDS_TOTAL_MAX`."""
        texts = [self.title, self.description, self.footer]
        texts += [t for f in self.fields for t in (f.name, f.value)]
        return sum(text_length(t) for t in texts)

    def to_json(self) -> JSONObject:
        """The embed object, each text cut to its own limit."""
        fitted = self._fitted()
        out: JSONObject = {}
        if fitted.title:
            out["title"] = fitted.title
        if fitted.description:
            out["description"] = fitted.description
        if fitted.color is not None:
            out["color"] = fitted.color
        if fitted.fields:
            out["fields"] = [{"name": f.name, "value": f.value, "inline": f.inline} for f in fitted.fields]
        if fitted.footer:
            out["footer"] = {"text": fitted.footer}
        if fitted.timestamp:
            out["timestamp"] = fitted.timestamp
        return out


def _shrink_to_total(embeds: list[Embed], limit: int) -> list[Embed]:
    """Cut the embeds' texts until all of them together fit *limit*.

    Cuts descriptions first (from the last embed), then field values, field names,
    footers and titles; each text keeps at least its ellipsis, so this always ends
    (10 embeds of 54 texts each can never need more than 540 characters).
    """
    excess = sum(e.text_total() for e in embeds) - limit
    if excess <= 0:
        return embeds
    out = list(embeds)

    def cut(text: str) -> str:
        nonlocal excess
        length = text_length(text)
        if excess <= 0 or length <= 1:
            return text
        shorter = truncate(text, max(1, length - excess))
        excess -= length - text_length(shorter)
        return shorter

    for index in reversed(range(len(out))):
        out[index] = attrs.evolve(out[index], description=cut(out[index].description))
    for index in reversed(range(len(out))):
        embed = out[index]
        values = [attrs.evolve(f, value=cut(f.value)) for f in reversed(embed.fields)]
        out[index] = attrs.evolve(embed, fields=tuple(reversed(values)))
    for index in reversed(range(len(out))):
        embed = out[index]
        names = [attrs.evolve(f, name=cut(f.name)) for f in reversed(embed.fields)]
        out[index] = attrs.evolve(embed, fields=tuple(reversed(names)), footer=cut(embed.footer))
    for index in reversed(range(len(out))):
        out[index] = attrs.evolve(out[index], title=cut(out[index].title))
    return out


@attrs.frozen
class Message:
    """A message body for channel messages, interaction replies and edits.

    ``None`` means "leave out": an edit (PATCH) keeps what the message had. An empty
    tuple is sent as ``[]`` and clears (e.g. ``components=()`` removes the buttons of an
    alert once one was used).
    """

    content: str | None = None
    embeds: tuple[Embed, ...] | None = None
    components: tuple[ActionRow, ...] | None = None
    ephemeral: bool = False

    def to_json(self) -> JSONObject:
        """The JSON body, with every documented limit enforced (see the module docstring).

        Raises:
            ValueError: a ``custom_id`` is empty, over 100 characters or repeated (a bug).
        """
        out: JSONObject = {"allowed_mentions": {"parse": []}}
        if self.content is not None:
            out["content"] = truncate(self.content, CONTENT_MAX)
        if self.embeds is not None:
            fitted = [e._fitted() for e in self.embeds[:EMBEDS_MAX]]
            embeds: list[JSONValue] = [e.to_json() for e in _shrink_to_total(fitted, EMBEDS_TOTAL_MAX)]
            out["embeds"] = embeds
        if self.components is not None:
            kept = self.components[:ROWS_MAX]
            ids = [b.custom_id for r in kept for b in r.buttons[:BUTTONS_PER_ROW_MAX]]
            if len(ids) != len(set(ids)):
                raise ValueError("custom_id values must be unique within a message")
            rows: list[JSONValue] = [r.to_json() for r in kept]
            out["components"] = rows
        if self.ephemeral:
            out["flags"] = EPHEMERAL
        return out
