"""Interactions: parsing what Discord sends (provider-apis.md §3.1); the answers are in :mod:`.responses`.

Parsing is strict about what halswarm relies on — types, required fields, snowflake ids,
option values matching their declared type — and every problem names its key path
(``data.options[0].value: expected a string``). It is lenient about *unknown* keys: Discord
adds fields to interactions without a version bump (``app_permissions``, ``context``,
``entitlements`` ...), and refusing them would turn every such addition into an outage.
(halswarm's own wire and config use ``forbid_extra_keys``; a vendor's payload cannot.)

MODAL_SUBMIT (type 5) is refused with a clear error: halswarm opens no modals.
"""

from __future__ import annotations

import enum
import re
from typing import Final, TypeAlias

import attrs

from halswarm.channels.discord.errors import PayloadError
from halswarm.convert import ConversionError, loads_object
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object

__all__ = [
    "Actor",
    "ApplicationCommand",
    "Autocomplete",
    "CommandData",
    "CommandOption",
    "ComponentClick",
    "Interaction",
    "InteractionType",
    "OptionType",
    "OptionValue",
    "Ping",
    "User",
    "parse_interaction",
    "parse_interaction_body",
]

_OPTION_DEPTH_MAX: Final = 3  # sub-command group > sub-command > options
_OPTIONS_MAX: Final = 25
_SNOWFLAKE_RE: Final = re.compile(r"[0-9]{1,20}")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_\-.]{1,500}")


class InteractionType(enum.IntEnum):
    """``type`` of an interaction."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    APPLICATION_COMMAND_AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class OptionType(enum.IntEnum):
    """``type`` of an application command option."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


OptionValue: TypeAlias = str | int | float | bool


@attrs.frozen
class User:
    """A Discord user (who clicked or typed)."""

    id: str
    username: str = ""
    global_name: str | None = None

    @property
    def display(self) -> str:
        """The name people see: the global display name, else the username, else the id."""
        return self.global_name or self.username or self.id


@attrs.frozen
class Actor:
    """Who acted, with what authorisation can check: role ids and permissions.

    ``roles`` is empty and ``permissions`` None outside a guild (a DM).
    """

    user: User
    roles: frozenset[str] = frozenset()
    permissions: int | None = None

    @property
    def audit_name(self) -> str:
        """The audit log's actor: ``discord:<user id>`` (ids never change, names do)."""
        return f"discord:{self.user.id}"

    @property
    def mention(self) -> str:
        """``<@id>``: renders as the user's name (messages allow no pings)."""
        return f"<@{self.user.id}>"


@attrs.frozen
class CommandOption:
    """One option of an invocation; sub-commands carry nested ``options`` and no value."""

    name: str
    type: OptionType
    value: OptionValue | None = None
    options: tuple[CommandOption, ...] = ()
    #: The option being typed into (autocomplete only); its value is the partial text.
    focused: bool = False


@attrs.frozen
class CommandData:
    """``data`` of a slash command invocation (or an autocomplete request)."""

    name: str
    options: tuple[CommandOption, ...] = ()
    id: str = ""  # the registered command's id (Discord always sends it; unused here)

    def path(self) -> tuple[str, ...]:
        """The command and its sub-command group/sub-command: ``("session", "inject")``."""
        names = [self.name]
        options = self.options
        while len(options) == 1 and options[0].type in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
            names.append(options[0].name)
            options = options[0].options
        return tuple(names)

    def _leaf_options(self) -> tuple[CommandOption, ...]:
        options = self.options
        while len(options) == 1 and options[0].type in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
            options = options[0].options
        return options

    def values(self) -> dict[str, OptionValue]:
        """The given options of the innermost sub-command, by name (absent ones are missing)."""
        return {o.name: o.value for o in self._leaf_options() if o.value is not None}

    def focused(self) -> CommandOption | None:
        """The option being autocompleted, if any."""
        return next((o for o in self._leaf_options() if o.focused), None)


@attrs.frozen(kw_only=True)
class _Base:
    id: str
    application_id: str
    token: str = attrs.field(repr=False)  # the 15-minute credential for follow-ups
    guild_id: str | None = None
    channel_id: str | None = None


@attrs.frozen(kw_only=True)
class Ping(_Base):
    """Discord checking the endpoint (type 1): answer :func:`pong`."""


@attrs.frozen(kw_only=True)
class ApplicationCommand(_Base):
    """A slash command (type 2)."""

    actor: Actor
    command: CommandData


@attrs.frozen(kw_only=True)
class Autocomplete(_Base):
    """An option being typed into (type 4): answer :func:`autocomplete_result`."""

    actor: Actor
    command: CommandData


@attrs.frozen(kw_only=True)
class ComponentClick(_Base):
    """A button click (type 3) on the message ``message_id``."""

    actor: Actor
    custom_id: str
    component_type: int
    message_id: str
    values: tuple[str, ...] = ()  # select menus only


Interaction: TypeAlias = Ping | ApplicationCommand | Autocomplete | ComponentClick


# ---- parsing -------------------------------------------------------------------------------


class _Reader:
    """Typed field access that collects problems with their key paths."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def obj(self, parent: JSONObject, key: str, path: str, *, required: bool = True) -> JSONObject | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(f"{path}{key}", "required key is missing")
            return None
        if not is_json_object(value):
            self.fail(f"{path}{key}", f"expected an object, got {_kind(value)}")
            return None
        return value

    def text(self, parent: JSONObject, key: str, path: str, *, required: bool = True) -> str | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(f"{path}{key}", "required key is missing")
            return None
        if not isinstance(value, str):
            self.fail(f"{path}{key}", f"expected a string, got {_kind(value)}")
            return None
        return value

    def snowflake(self, parent: JSONObject, key: str, path: str, *, required: bool = True) -> str | None:
        value = self.text(parent, key, path, required=required)
        if value is not None and not _SNOWFLAKE_RE.fullmatch(value):
            self.fail(f"{path}{key}", f"expected a Discord id (digits), got {value[:40]!r}")
            return None
        return value

    def integer(self, parent: JSONObject, key: str, path: str) -> int | None:
        value = parent.get(key)
        if value is None:
            self.fail(f"{path}{key}", "required key is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}{key}", f"expected an integer, got {_kind(value)}")
            return None
        return value

    def items(self, parent: JSONObject, key: str, path: str) -> list[JSONValue]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{path}{key}", f"expected a list, got {_kind(value)}")
            return []
        return value


def _kind(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
    return type(value).__name__


def _actor(r: _Reader, raw: JSONObject) -> Actor | None:
    member = r.obj(raw, "member", "", required=False)
    if member is not None:
        user_raw = r.obj(member, "user", "member.")
        roles = [_str_item(r, item, f"member.roles[{i}]") for i, item in enumerate(r.items(member, "roles", "member."))]
        perms = r.text(member, "permissions", "member.", required=False)
        permissions: int | None = None
        if perms is not None:
            if perms.isdigit():
                permissions = int(perms)
            else:
                r.fail("member.permissions", "expected a permission bit set (digits)")
        user = _user(r, user_raw, "member.user.") if user_raw is not None else None
        return Actor(user, frozenset(x for x in roles if x), permissions) if user is not None else None
    user_raw = r.obj(raw, "user", "", required=False)
    if user_raw is None:
        r.fail("member", "required key is missing (neither member nor user given)")
        return None
    user = _user(r, user_raw, "user.")
    return Actor(user) if user is not None else None


def _str_item(r: _Reader, item: JSONValue, path: str) -> str:
    if not isinstance(item, str) or not _SNOWFLAKE_RE.fullmatch(item):
        r.fail(path, "expected a Discord id (digits)")
        return ""
    return item


def _user(r: _Reader, raw: JSONObject, path: str) -> User | None:
    ident = r.snowflake(raw, "id", path)
    username = r.text(raw, "username", path, required=False) or ""
    global_name = r.text(raw, "global_name", path, required=False)
    return User(ident, username, global_name) if ident is not None else None


_EXPECTED: Final[dict[OptionType, str]] = {
    OptionType.INTEGER: "an integer",
    OptionType.NUMBER: "a number",
    OptionType.BOOLEAN: "true or false",
}


def _value_ok(option_type: OptionType, value: JSONValue, focused: bool) -> bool:
    if focused and isinstance(value, str):
        return True  # autocomplete sends the text typed so far, whatever the option's type
    if isinstance(value, bool):
        return option_type is OptionType.BOOLEAN
    if isinstance(value, int):
        return option_type in (OptionType.INTEGER, OptionType.NUMBER)
    if isinstance(value, float):
        return option_type is OptionType.NUMBER
    # STRING, and the ids of USER, CHANNEL, ROLE, MENTIONABLE, ATTACHMENT
    return isinstance(value, str) and option_type not in _EXPECTED


def _option(r: _Reader, raw: JSONValue, path: str, depth: int) -> CommandOption | None:
    if not is_json_object(raw):
        r.fail(path, f"expected an object, got {_kind(raw)}")
        return None
    name = r.text(raw, "name", f"{path}.")
    type_number = r.integer(raw, "type", f"{path}.")
    focused = raw.get("focused", False)
    if not isinstance(focused, bool):
        r.fail(f"{path}.focused", f"expected true or false, got {_kind(focused)}")
        focused = False
    if name is None or type_number is None:
        return None
    try:
        option_type = OptionType(type_number)
    except ValueError:
        r.fail(f"{path}.type", f"unknown option type {type_number}")
        return None
    if option_type in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
        return CommandOption(name, option_type, options=_options(r, raw, f"{path}.", depth + 1))
    value = raw.get("value")
    if value is None:
        r.fail(f"{path}.value", "required key is missing")
        return None
    if not _value_ok(option_type, value, focused) or not isinstance(value, str | int | float | bool):
        expected = _EXPECTED.get(option_type, "a string")
        r.fail(f"{path}.value", f"expected {expected} for an option of type {option_type.name}, got {_kind(value)}")
        return None
    return CommandOption(name, option_type, value, focused=focused)


def _options(r: _Reader, parent: JSONObject, path: str, depth: int) -> tuple[CommandOption, ...]:
    items = r.items(parent, "options", path)
    if not items:
        return ()
    if depth > _OPTION_DEPTH_MAX:
        r.fail(f"{path}options", f"nested deeper than {_OPTION_DEPTH_MAX} levels")
        return ()
    if len(items) > _OPTIONS_MAX:
        r.fail(f"{path}options", f"more than {_OPTIONS_MAX} options")
        return ()
    parsed = [_option(r, item, f"{path}options[{i}]", depth) for i, item in enumerate(items)]
    return tuple(o for o in parsed if o is not None)


def _command(r: _Reader, raw: JSONObject) -> CommandData | None:
    data = r.obj(raw, "data", "")
    if data is None:
        return None
    ident = r.snowflake(data, "id", "data.", required=False)
    name = r.text(data, "name", "data.")
    command_type = data.get("type", 1)
    if isinstance(command_type, bool) or command_type != 1:
        shown = command_type if isinstance(command_type, int) else _kind(command_type)
        r.fail("data.type", f"only chat-input (slash) commands (1) are handled, got {shown}")
    options = _options(r, data, "data.", 1)
    if name is None:
        return None
    return CommandData(name, options, ident or "")


def parse_interaction(raw: JSONObject) -> Interaction:
    """Turn an interaction payload (already JSON-decoded) into its typed form.

    Raises:
        PayloadError: listing every problem with its key path.
    """
    r = _Reader()
    type_number = r.integer(raw, "type", "")
    ident = r.snowflake(raw, "id", "")
    application_id = r.snowflake(raw, "application_id", "")
    token = r.text(raw, "token", "")
    if token is not None and not _TOKEN_RE.fullmatch(token):
        r.fail("token", "unexpected characters in the interaction token")
        token = None
    guild_id = r.snowflake(raw, "guild_id", "", required=False)
    channel_id = r.snowflake(raw, "channel_id", "", required=False)
    kind: InteractionType | None = None
    if type_number is not None:
        try:
            kind = InteractionType(type_number)
        except ValueError:
            r.fail("type", f"unknown interaction type {type_number}")
    if kind is InteractionType.MODAL_SUBMIT:
        r.fail("type", "MODAL_SUBMIT (5) is not handled: halswarm opens no modals")
    actor = _actor(r, raw) if kind not in (None, InteractionType.PING) else None
    command = (
        _command(r, raw)
        if kind in (InteractionType.APPLICATION_COMMAND, InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE)
        else None
    )
    click = _click(r, raw) if kind is InteractionType.MESSAGE_COMPONENT else None
    if r.problems or ident is None or application_id is None or token is None:
        raise PayloadError(r.problems or ["interaction: incomplete"])
    ids = {"id": ident, "application_id": application_id, "token": token}
    if kind is InteractionType.PING:
        return Ping(**ids, guild_id=guild_id, channel_id=channel_id)
    assert actor is not None  # no problems, so every part parsed
    if kind is InteractionType.MESSAGE_COMPONENT:
        assert click is not None
        custom_id, component_type, message_id, values = click
        return ComponentClick(
            **ids,
            guild_id=guild_id,
            channel_id=channel_id,
            actor=actor,
            custom_id=custom_id,
            component_type=component_type,
            message_id=message_id,
            values=values,
        )
    assert command is not None
    if kind is InteractionType.APPLICATION_COMMAND:
        return ApplicationCommand(**ids, guild_id=guild_id, channel_id=channel_id, actor=actor, command=command)
    if command.focused() is None:
        raise PayloadError(["data.options: an autocomplete request has no focused option"])
    return Autocomplete(**ids, guild_id=guild_id, channel_id=channel_id, actor=actor, command=command)


def _click(r: _Reader, raw: JSONObject) -> tuple[str, int, str, tuple[str, ...]] | None:
    data = r.obj(raw, "data", "")
    message = r.obj(raw, "message", "")
    if data is None:
        return None
    custom_id = r.text(data, "custom_id", "data.")
    if custom_id is not None and not 1 <= len(custom_id) <= 100:
        r.fail("data.custom_id", "must be 1-100 characters")
    component_type = r.integer(data, "component_type", "data.")
    values: list[str] = []
    for i, v in enumerate(r.items(data, "values", "data.")):
        if isinstance(v, str):
            values.append(v)
        else:
            r.fail(f"data.values[{i}]", f"expected a string, got {_kind(v)}")
    message_id = r.snowflake(message, "id", "message.") if message is not None else None
    if custom_id is None or component_type is None or message_id is None:
        return None
    return custom_id, component_type, message_id, tuple(values)


def parse_interaction_body(body: bytes) -> Interaction:
    """Parse the raw body of a (verified) interaction request.

    Raises:
        PayloadError: not JSON, not an object, or not a documented interaction.
    """
    try:
        raw = loads_object(body, "interaction body")
    except ConversionError as exc:
        raise PayloadError(exc.problems) from None
    return parse_interaction(raw)
