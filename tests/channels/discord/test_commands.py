"""The slash command definitions against Discord's documented limits (provider-apis.md §3.2)."""

from __future__ import annotations

import re

import orjson
import pytest

from halswarm.channels.discord.commands import (
    AGENT_COMMANDS,
    COMMAND_NAMES,
    MANAGE_GUILD,
    READ_COMMANDS,
    CommandDefinition,
    OptionChoice,
    OptionDefinition,
    check_definitions,
    command_payloads,
    definitions,
)
from halswarm.channels.discord.interactions import OptionType
from halswarm.channels.discord.rest import overwrite_guild_commands

# The documented name pattern, restricted to what Python's re can say (\p{L}\p{N}: letters, digits).
NAME = re.compile(r"^[-_'a-z0-9]{1,32}$")


def test_the_issue_s_commands_and_nothing_else() -> None:
    names = {d.name for d in definitions()}
    assert names == {
        "status",
        "nodes",
        "logs",
        "resume",
        "inject",
        "restart",
        "kill",
        "start",
        "cost",
        "approve",
        "deny",
    }
    assert names == COMMAND_NAMES
    assert READ_COMMANDS.isdisjoint(AGENT_COMMANDS)


def test_the_definitions_pass_every_documented_limit() -> None:
    assert check_definitions(definitions()) == []
    assert check_definitions(definitions(mutating_permissions=None)) == []


def test_the_payload_follows_the_documented_shape() -> None:
    payload = command_payloads()
    assert len(payload) <= 100
    for command in payload:
        name, description, options = command["name"], command["description"], command["options"]
        assert isinstance(name, str)
        assert NAME.match(name)
        assert isinstance(description, str)
        assert 1 <= len(description) <= 100
        assert command["type"] == 1
        assert isinstance(options, list)
        assert len(options) <= 25
        assert len(orjson.dumps(command)) < 8000
        required_done = False
        for option in options:
            assert isinstance(option, dict)
            option_name, option_description = option["name"], option["description"]
            assert isinstance(option_name, str)
            assert NAME.match(option_name)
            assert isinstance(option_description, str)
            assert 1 <= len(option_description) <= 100
            assert option["type"] in {t.value for t in OptionType}
            assert not ("choices" in option and "autocomplete" in option)
            if option.get("required"):
                assert not required_done, f"/{name}: required option {option_name} after an optional one"
            else:
                required_done = True


def by_name(name: str) -> dict[str, OptionDefinition]:
    command = next(d for d in definitions() if d.name == name)
    return {o.name: o for o in command.options}


@pytest.mark.parametrize(
    ("command", "option", "required", "autocomplete"),
    [
        ("status", "project", False, True),
        ("logs", "target", True, True),
        ("logs", "count", False, False),
        ("resume", "project", True, True),
        ("inject", "project", True, True),
        ("inject", "message", True, False),
        ("restart", "target", True, True),
        ("kill", "target", True, True),
        ("start", "project", True, True),
        ("start", "prompt", False, False),
        ("cost", "period", False, False),
        ("approve", "request", True, True),
        ("deny", "request", True, True),
    ],
)
def test_options(command: str, option: str, required: bool, autocomplete: bool) -> None:
    opt = by_name(command)[option]
    assert opt.required is required
    assert opt.autocomplete is autocomplete


def test_cost_period_offers_the_three_windows() -> None:
    period = by_name("cost")["period"]
    assert [c.value for c in period.choices] == ["today", "week", "month"]
    assert period.to_json()["choices"] == [
        {"name": "today", "value": "today"},
        {"name": "week", "value": "week"},
        {"name": "month", "value": "month"},
    ]


def test_logs_count_is_bounded() -> None:
    count = by_name("logs")["count"].to_json()
    assert count["type"] == 4
    assert (count["min_value"], count["max_value"]) == (1, 25)


def test_mutating_commands_are_hidden_by_default_from_members_without_manage_server() -> None:
    for command in definitions():
        expected = MANAGE_GUILD if command.name in AGENT_COMMANDS else None
        assert command.default_member_permissions == expected
        assert command.to_json().get("default_member_permissions") == expected
    assert MANAGE_GUILD == "32"
    assert all(d.default_member_permissions is None for d in definitions(mutating_permissions=None))


def test_the_bulk_overwrite_request() -> None:
    request = overwrite_guild_commands("456", "2909", command_payloads())
    assert request.method == "PUT"
    assert request.path == "/applications/456/guilds/2909/commands"
    assert request.bot_auth
    assert request.json == command_payloads()


S = OptionType.STRING


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        (CommandDefinition("Status", "x"), "must be 1-32 lowercase"),
        (CommandDefinition("has space", "x"), "must be 1-32 lowercase"),
        (CommandDefinition("x" * 33, "x"), "must be 1-32 lowercase"),
        (CommandDefinition("", "x"), "must be 1-32 lowercase"),
        (CommandDefinition("ok", ""), "description must be 1-100"),
        (CommandDefinition("ok", "d" * 101), "description must be 1-100"),
        (CommandDefinition("ok", "d", tuple(OptionDefinition(S, f"o{i}", "d") for i in range(26))), "more than 25"),
        (
            CommandDefinition("ok", "d", (OptionDefinition(S, "a", "d"), OptionDefinition(S, "b", "d", required=True))),
            "required options must come before",
        ),
        (
            CommandDefinition(
                "ok", "d", (OptionDefinition(S, "a", "d", choices=(OptionChoice("x", "x"),), autocomplete=True),)
            ),
            "autocomplete cannot be combined with choices",
        ),
        (
            CommandDefinition(
                "ok", "d", (OptionDefinition(S, "a", "d", choices=tuple(OptionChoice(f"c{i}", i) for i in range(26))),)
            ),
            "more than 25 choices",
        ),
        (
            CommandDefinition("ok", "d", (OptionDefinition(OptionType.BOOLEAN, "a", "d", autocomplete=True),)),
            "autocomplete needs",
        ),
        (CommandDefinition("ok", "d", (OptionDefinition(S, "a", "d"), OptionDefinition(S, "a", "d"))), "repeat"),
        (
            CommandDefinition(
                "ok",
                "d" * 100,
                tuple(
                    OptionDefinition(
                        S, f"o{i}", "d" * 100, choices=tuple(OptionChoice("c" * 100, "v" * 100) for _ in range(3))
                    )
                    for i in range(20)
                ),
            ),
            "more than 8000 characters",
        ),
    ],
)
def test_check_definitions_catches_each_limit(definition: CommandDefinition, problem: str) -> None:
    problems = check_definitions([definition])
    assert any(problem in p for p in problems), problems


def test_check_definitions_catches_duplicates_and_too_many() -> None:
    twice = [CommandDefinition("a", "d"), CommandDefinition("a", "d")]
    assert any("defined twice" in p for p in check_definitions(twice))
    many = [CommandDefinition(f"c{i}", "d") for i in range(101)]
    assert any("more than 100" in p for p in check_definitions(many))
