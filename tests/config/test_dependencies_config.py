"""dependencies and dependency_start: defaults, cycles and bad names rejected at load, prompt placeholders."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from halswarm.config import ConfigError, SupervisorConfig, parse_supervisor_config
from halswarm.config._load import parse_config
from halswarm.config.dependencies import (
    DEFAULT_DEPENDENCY_START_PROMPT,
    DependencyStartConfig,
    check_dependencies,
)

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

TOKEN = "your-shared-secret-token-here"


@attrs.frozen
class Section:
    """The two keys exactly as SupervisorConfig declares them (structured by the same strict converter)."""

    dependencies: dict[str, list[str]] = attrs.Factory(dict)
    dependency_start: DependencyStartConfig = attrs.Factory(DependencyStartConfig)


def check(section: Section) -> list[str]:
    return check_dependencies(section.dependencies, section.dependency_start)


def parse(raw: JSONObject) -> Section:
    return parse_config(raw, Section, source="<config>", env={}, check=check)


def problems_of(raw: JSONObject) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return info.value.problems


def test_defaults() -> None:
    section = parse({})
    assert section == Section({}, DependencyStartConfig(enabled=True, prompt=DEFAULT_DEPENDENCY_START_PROMPT))
    assert check(section) == []


def test_every_key() -> None:
    section = parse(
        {
            "dependencies": {"api": ["schema"], "web": ["api", "design"], "schema": []},
            "dependency_start": {"enabled": False, "prompt": "Go on with {project}; {dependencies} are done. {{ok}}"},
        }
    )
    assert section.dependencies == {"api": ["schema"], "web": ["api", "design"], "schema": []}
    assert not section.dependency_start.enabled
    assert section.dependency_start.render("web", ["api", "design"]) == "Go on with web; api, design are done. {ok}"


def test_the_default_prompt_names_the_project_and_its_dependencies() -> None:
    text = DependencyStartConfig().render("web", ["api", "design"])
    assert "web" in text
    assert "api, design" in text
    assert "{" not in text


def test_projects_no_node_hosts_are_allowed() -> None:
    # Nothing here knows the fleet: unknown projects are a warning at startup, not an error.
    assert parse({"dependencies": {"later": ["not-yet-joined"]}}).dependencies == {"later": ["not-yet-joined"]}


@pytest.mark.parametrize(
    ("dependencies", "problems"),
    [
        pytest.param({"api": ["web"], "web": ["api"]}, ["dependencies: cycle api -> web -> api"], id="two"),
        pytest.param(
            {"web": ["api"], "api": ["schema"], "schema": ["web"]},
            ["dependencies: cycle api -> schema -> web -> api"],
            id="three",
        ),
        pytest.param(
            {"a": ["b"], "b": ["a"], "x": ["y"], "y": ["x"]},
            ["dependencies: cycle a -> b -> a", "dependencies: cycle x -> y -> x"],
            id="each-cycle",
        ),
        pytest.param({"api": ["schema", "api"]}, ["dependencies['api'][1]: api cannot depend on itself"], id="self"),
        pytest.param(
            {"api": ["api"], "web": ["api", "web"]},
            [
                "dependencies['api'][0]: api cannot depend on itself",
                "dependencies['web'][1]: web cannot depend on itself",
            ],
            id="self-is-not-also-a-cycle",
        ),
        pytest.param(
            {"web": ["api", "design", "api"]}, ["dependencies['web'][2]: api is listed twice"], id="duplicate"
        ),
        pytest.param(
            {"web": [""]},
            ["dependencies['web'][0]: use letters, digits, '.', '_' or '-' (at most 128 characters), got ''"],
            id="empty-dependency",
        ),
        pytest.param(
            {"": ["api"]},
            ["dependencies: project name '': use letters, digits, '.', '_' or '-' (at most 128 characters)"],
            id="empty-project",
        ),
        pytest.param(
            {"web": ["api "]},
            ["dependencies['web'][0]: use letters, digits, '.', '_' or '-' (at most 128 characters), got 'api '"],
            id="typo",
        ),
    ],
)
def test_rejected_graphs(dependencies: JSONObject, problems: list[str]) -> None:
    assert problems_of({"dependencies": dependencies}) == problems


def test_a_diamond_is_fine() -> None:
    diamond: JSONObject = {"api": ["schema"], "web": ["api", "design"], "mobile": ["api", "design"]}
    assert parse({"dependencies": diamond}).dependencies == diamond


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({"dependencies": 5}, ["dependencies: expected a mapping"]),
        ({"dependencies": {"web": "api"}}, ["dependencies['web']: expected a list, got str"]),
        ({"dependencies": {"web": [1]}}, ["dependencies['web'][0]: expected a string, got int"]),
        ({"dependency_start": {"enabled": "yes"}}, ["dependency_start.enabled: expected true or false, got str"]),
        ({"dependency_start": {"prompts": "x"}}, ["dependency_start: unknown key(s): prompts"]),
    ],
)
def test_types_and_unknown_keys(raw: JSONObject, problems: list[str]) -> None:
    assert problems_of(raw) == problems


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        ("  ", "must not be empty (leave it out for the default)"),
        ("Start {projct}", "unsupported placeholder {projct}; use {project}, {dependencies} ({{ and }} for braces)"),
        ("Start {project.upper}", "unsupported placeholder {project.upper}; use {project}, {dependencies}"),
        ("Start {project!r}", "unsupported placeholder {project!r}; use {project}, {dependencies}"),
        ("After {dependencies:>40}", "unsupported placeholder {dependencies:>40}; use {project}, {dependencies}"),
        ("Start {0}", "unsupported placeholder {0}; use {project}, {dependencies}"),
        ("Start {}", "unsupported placeholder {}; use {project}, {dependencies}"),
        ("Start {project", "expected '}' before end of string (write {{ and }} for literal braces)"),
        ("Start }", "Single '}' encountered in format string (write {{ and }} for literal braces)"),
    ],
)
def test_bad_prompts(prompt: str, problem: str) -> None:
    [line] = problems_of({"dependency_start": {"prompt": prompt}})
    assert line.startswith(f"dependency_start.prompt: {problem}")


def test_every_problem_at_once() -> None:
    problems = problems_of(
        {
            "dependencies": {"a": ["b", "a"], "b": ["a"]},
            "dependency_start": {"prompt": "{x}"},
        }
    )
    assert problems == [
        "dependencies['a'][1]: a cannot depend on itself",
        "dependencies: cycle a -> b -> a",
        "dependency_start.prompt: unsupported placeholder {x}; use {project}, {dependencies} ({{ and }} for braces)",
    ]


# ---- through the real supervisor config (once halswarm/config/supervisor.py declares the keys) ----

wired = pytest.mark.skipif(
    "dependencies" not in attrs.fields_dict(SupervisorConfig),
    reason="SupervisorConfig does not declare dependencies yet",
)


@wired
def test_supervisor_config_accepts_a_dag() -> None:
    config = parse_supervisor_config(
        {"server": {"auth_token": TOKEN}, "dependencies": {"web": ["api"]}, "dependency_start": {"enabled": False}},
        env={},
    )
    fields = attrs.asdict(config, recurse=False)
    assert fields["dependencies"] == {"web": ["api"]}
    assert fields["dependency_start"] == DependencyStartConfig(enabled=False)
    assert (
        attrs.asdict(parse_supervisor_config({"server": {"auth_token": TOKEN}}, env={}), recurse=False)[
            "dependency_start"
        ]
        == DependencyStartConfig()
    )


@wired
def test_supervisor_config_rejects_a_cycle_at_load() -> None:
    with pytest.raises(ConfigError) as info:
        parse_supervisor_config(
            {"server": {"auth_token": TOKEN}, "dependencies": {"api": ["web"], "web": ["api"]}}, env={}
        )
    assert info.value.problems == ["dependencies: cycle api -> web -> api"]
    assert str(info.value) == "<config>: dependencies: cycle api -> web -> api"
