"""halswarm's slash commands, as registered by bulk overwrite (provider-apis.md §3.2).

``PUT /applications/{application_id}/guilds/{guild_id}/commands`` with
:func:`command_payloads` replaces every guild command of the app at once, applies
instantly and is idempotent, so the supervisor sends it at every start
(:func:`halswarm.channels.discord.rest.overwrite_guild_commands`).

:func:`check_definitions` holds the documented limits (name pattern, description
length, option counts and order, choices, autocomplete) so a bad edit here fails a
unit test instead of a 400 at start.

Mutating commands carry ``default_member_permissions`` (Manage Server by default):
Discord hides them from members without it unless a server admin grants them in
Server Settings > Integrations. That is only a UI layer: halswarm itself checks
``allowed_users``/``allowed_roles`` on every invocation
(:mod:`halswarm.channels.discord.handler`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.channels.discord.interactions import OptionType
from halswarm.channels.discord.messages import text_length
from halswarm.cost.model import COST_PERIODS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = [
    "AGENT_COMMANDS",
    "COMMAND_NAMES",
    "LOGS_DEFAULT",
    "LOGS_MAX",
    "MANAGE_GUILD",
    "READ_COMMANDS",
    "CommandDefinition",
    "OptionChoice",
    "OptionDefinition",
    "check_definitions",
    "command_payloads",
    "definitions",
]

#: The MANAGE_GUILD permission bit (``1 << 5``), as Discord wants it: a decimal string.
MANAGE_GUILD: Final = str(1 << 5)

#: Commands that only read state: answered at once (well inside the 3 s deadline).
READ_COMMANDS: Final = frozenset({"status", "nodes", "logs", "cost"})
#: Commands that go to an agent: always deferred, the outcome edited in later.
AGENT_COMMANDS: Final = frozenset({"resume", "inject", "restart", "kill", "start", "approve", "deny"})
COMMAND_NAMES: Final = READ_COMMANDS | AGENT_COMMANDS

LOGS_DEFAULT: Final = 10
LOGS_MAX: Final = 25
_PROMPT_MAX: Final = 4000  # Discord allows up to 6000 for a string option

# Documented limits.
_NAME_RE: Final = re.compile(r"[-_'\w]{1,32}")  # \w: letters and digits of every script, and _
_DESCRIPTION_MAX: Final = 100
_OPTIONS_MAX: Final = 25
_CHOICES_MAX: Final = 25
_COMMAND_CHARS_MAX: Final = 8000
_COMMANDS_MAX: Final = 100


@attrs.frozen
class OptionChoice:
    """A fixed value offered for an option."""

    name: str
    value: str | int


@attrs.frozen
class OptionDefinition:
    """One option of a slash command."""

    type: OptionType
    name: str
    description: str
    required: bool = False
    choices: tuple[OptionChoice, ...] = ()
    autocomplete: bool = False
    min_value: int | None = None
    max_value: int | None = None
    max_length: int | None = None

    def to_json(self) -> JSONObject:
        """The option object of the registration payload."""
        out: JSONObject = {"type": int(self.type), "name": self.name, "description": self.description}
        if self.required:
            out["required"] = True
        if self.choices:
            choices: list[JSONValue] = [{"name": c.name, "value": c.value} for c in self.choices]
            out["choices"] = choices
        if self.autocomplete:
            out["autocomplete"] = True
        if self.min_value is not None:
            out["min_value"] = self.min_value
        if self.max_value is not None:
            out["max_value"] = self.max_value
        if self.max_length is not None:
            out["max_length"] = self.max_length
        return out


@attrs.frozen
class CommandDefinition:
    """One chat-input (slash) command."""

    name: str
    description: str
    options: tuple[OptionDefinition, ...] = ()
    #: Permission bits (decimal string) a member needs to see it; None: everyone.
    default_member_permissions: str | None = None

    def to_json(self) -> JSONObject:
        """The command object of the registration payload."""
        options: list[JSONValue] = [o.to_json() for o in self.options]
        out: JSONObject = {"name": self.name, "type": 1, "description": self.description, "options": options}
        if self.default_member_permissions is not None:
            out["default_member_permissions"] = self.default_member_permissions
        return out

    def text_total(self) -> int:
        """Characters counting towards the 8000 per command: names, descriptions, choices."""
        texts = [self.name, self.description]
        for option in self.options:
            texts += [option.name, option.description]
            texts += [t for c in option.choices for t in (c.name, str(c.value))]
        return sum(text_length(t) for t in texts)


def _opt(
    type_: OptionType, name: str, description: str, *, required: bool = False, autocomplete: bool = False
) -> OptionDefinition:
    return OptionDefinition(type_, name, description, required=required, autocomplete=autocomplete)


_S = OptionType.STRING


def definitions(*, mutating_permissions: str | None = MANAGE_GUILD) -> tuple[CommandDefinition, ...]:
    """halswarm's commands.

    Args:
        mutating_permissions: ``default_member_permissions`` of the commands that act on
            agents (None: visible to everyone; halswarm still checks who may run them).
    """
    project = _opt(_S, "project", "Project name", required=True, autocomplete=True)
    target = _opt(_S, "target", "Session id or project name", required=True, autocomplete=True)
    request = _opt(
        _S, "request", "Permission request id, or an install awaiting approval", required=True, autocomplete=True
    )
    perms = mutating_permissions
    count = OptionDefinition(
        OptionType.INTEGER,
        "count",
        f"How many events (default {LOGS_DEFAULT}, at most {LOGS_MAX})",
        min_value=1,
        max_value=LOGS_MAX,
    )
    period = OptionDefinition(
        _S, "period", "Time window (default today)", choices=tuple(OptionChoice(p, p) for p in COST_PERIODS)
    )
    return (
        CommandDefinition(
            "status",
            "Sessions across all nodes",
            (_opt(_S, "project", "Only this project's sessions", autocomplete=True),),
        ),
        CommandDefinition("nodes", "Nodes (agents) and their health"),
        CommandDefinition("logs", "Latest events of a session or project", (target, count)),
        CommandDefinition("cost", "LLM spend by provider and model", (period,)),
        CommandDefinition("resume", "Resume a project's session", (project,), perms),
        CommandDefinition(
            "inject",
            "Send a prompt into a project's running session",
            (project, OptionDefinition(_S, "message", "The prompt to send", required=True, max_length=_PROMPT_MAX)),
            perms,
        ),
        CommandDefinition("restart", "Restart a session with a handover", (target,), perms),
        CommandDefinition("kill", "Kill a session", (target,), perms),
        CommandDefinition(
            "start",
            "Start a new session for a project",
            (project, OptionDefinition(_S, "prompt", "First prompt", max_length=_PROMPT_MAX)),
            perms,
        ),
        CommandDefinition(
            "approve",
            "Approve a pending permission request, or a declared install",
            (
                request,
                OptionDefinition(
                    OptionType.BOOLEAN,
                    "always",
                    "Also allow matching requests from now on, in every session of the project",
                ),
            ),
            perms,
        ),
        CommandDefinition(
            "deny",
            "Reject a pending permission request, or decline a declared install",
            (request, OptionDefinition(_S, "reason", "Told to the agent (or kept in the audit log)", max_length=1000)),
            perms,
        ),
    )


def command_payloads(defs: Sequence[CommandDefinition] | None = None) -> list[JSONObject]:
    """The body of the bulk overwrite (default: :func:`definitions`)."""
    return [d.to_json() for d in (definitions() if defs is None else defs)]


def _name_problems(where: str, name: str) -> list[str]:
    if not _NAME_RE.fullmatch(name) or name != name.lower():
        return [f"{where}: name {name!r} must be 1-32 lowercase letters, digits, '-', '_' or \"'\""]
    return []


def _description_problems(where: str, description: str) -> list[str]:
    if not 1 <= text_length(description) <= _DESCRIPTION_MAX:
        return [f"{where}: description must be 1-{_DESCRIPTION_MAX} characters, got {text_length(description)}"]
    return []


def _option_problems(where: str, option: OptionDefinition) -> list[str]:
    problems = _name_problems(where, option.name) + _description_problems(where, option.description)
    if len(option.choices) > _CHOICES_MAX:
        problems.append(f"{where}: more than {_CHOICES_MAX} choices")
    if option.choices and option.autocomplete:
        problems.append(f"{where}: autocomplete cannot be combined with choices")
    if option.autocomplete and option.type not in (OptionType.STRING, OptionType.INTEGER, OptionType.NUMBER):
        problems.append(f"{where}: autocomplete needs a STRING, INTEGER or NUMBER option")
    for choice in option.choices:
        if not 1 <= text_length(choice.name) <= _DESCRIPTION_MAX:
            problems.append(f"{where}: choice name {choice.name!r} must be 1-100 characters")
    if option.type in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
        problems.append(f"{where}: sub-commands are not used by halswarm")
    return problems


def check_definitions(defs: Sequence[CommandDefinition]) -> list[str]:
    """Every way *defs* breaks Discord's documented limits (empty: fine)."""
    problems: list[str] = []
    if len(defs) > _COMMANDS_MAX:
        problems.append(f"more than {_COMMANDS_MAX} chat-input commands")
    seen: set[str] = set()
    for command in defs:
        where = f"/{command.name}"
        if command.name in seen:
            problems.append(f"{where}: defined twice")
        seen.add(command.name)
        problems += _name_problems(where, command.name) + _description_problems(where, command.description)
        if len(command.options) > _OPTIONS_MAX:
            problems.append(f"{where}: more than {_OPTIONS_MAX} options")
        if command.text_total() > _COMMAND_CHARS_MAX:
            problems.append(f"{where}: more than {_COMMAND_CHARS_MAX} characters in total")
        names = [o.name for o in command.options]
        if len(set(names)) != len(names):
            problems.append(f"{where}: option names repeat")
        optional_seen = False
        for option in command.options:
            problems += _option_problems(f"{where} {option.name}", option)
            if option.required and optional_seen:
                problems.append(f"{where} {option.name}: required options must come before optional ones")
            optional_seen = optional_seen or not option.required
    return problems
