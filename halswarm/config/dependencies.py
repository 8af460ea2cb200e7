"""Project dependencies (``dependencies`` and ``dependency_start`` in the supervisor config; issue #6).

``dependencies`` maps a project to the projects it depends on::

    "dependencies": {"api": ["schema"], "web": ["api", "design"]},
    "dependency_start": {"enabled": true, "prompt": "..."}

When a project is marked complete, each dependant whose dependencies are now all
complete is started once, with ``dependency_start.prompt``. The graph must be a DAG:
cycles (``dependencies: cycle api -> web -> api``) and self-dependencies are rejected at
load. Projects no node hosts are allowed (their node may join later); the supervisor
warns about them (:func:`halswarm.policy.dependencies.unknown_projects`).

The graph and its decisions live in :mod:`halswarm.policy.dependencies`.
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.policy.dependencies import find_cycles, format_cycle

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "DEFAULT_DEPENDENCY_START_PROMPT",
    "PROMPT_PLACEHOLDERS",
    "DependencyStartConfig",
    "check_dependencies",
]

#: The placeholders a start prompt may use: the started project, and its dependencies
#: (all complete) joined with ", ".
PROMPT_PLACEHOLDERS: Final[tuple[str, ...]] = ("project", "dependencies")

DEFAULT_DEPENDENCY_START_PROMPT: Final = (
    "The projects {project} depends on are now complete: {dependencies}. "
    "Review what they delivered that {project} relies on, then continue with the next "
    "steps of {project}'s plan."
)

# The project name rule of the agent config (halswarm.config.agent): a name outside it
# can never be hosted, so here it can only be a typo.
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NAME_RULE: Final = "use letters, digits, '.', '_' or '-' (at most 128 characters)"


@attrs.frozen
class DependencyStartConfig:
    """How dependants are started when their last dependency completes.

    ``enabled`` false: completions are still recorded, nothing is started automatically.
    ``prompt`` is the start prompt; ``{project}`` and ``{dependencies}`` are filled in,
    ``{{`` and ``}}`` give literal braces.
    """

    enabled: bool = True
    prompt: str = DEFAULT_DEPENDENCY_START_PROMPT

    def render(self, project: str, dependencies: Iterable[str]) -> str:
        """The start prompt for *project*, naming its completed *dependencies*.

        Cannot fail for a prompt that passed :func:`check_dependencies`.
        """
        return self.prompt.format(project=project, dependencies=", ".join(dependencies))


def _prompt_problems(key: str, prompt: str) -> list[str]:
    if not prompt.strip():
        return [f"{key}: must not be empty (leave it out for the default)"]
    try:
        fields = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        return [f"{key}: {exc} (write {{{{ and }}}} for literal braces)"]
    allowed = ", ".join(f"{{{name}}}" for name in PROMPT_PLACEHOLDERS)
    problems: list[str] = []
    for _literal, field, spec, conversion in fields:
        # Bare placeholders only: a format spec, a conversion or an attribute lookup
        # could fail (or reach into str methods) at the moment a project is started.
        if field is not None and (field not in PROMPT_PLACEHOLDERS or spec or conversion):
            shown = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            problems.append(f"{key}: unsupported placeholder {{{shown}}}; use {allowed} ({{{{ and }}}} for braces)")
    return problems


def _name_problems(dependencies: Mapping[str, Sequence[str]]) -> list[str]:
    problems: list[str] = []
    for project, deps in dependencies.items():
        if not _NAME_RE.match(project):
            problems.append(f"dependencies: project name {project!r}: {_NAME_RULE}")
        seen: set[str] = set()
        for i, dep in enumerate(deps):
            key = f"dependencies[{project!r}][{i}]"
            if not _NAME_RE.match(dep):
                problems.append(f"{key}: {_NAME_RULE}, got {dep!r}")
            elif dep == project:
                problems.append(f"{key}: {project} cannot depend on itself")
            elif dep in seen:
                problems.append(f"{key}: {dep} is listed twice")
            seen.add(dep)
    return problems


def check_dependencies(dependencies: Mapping[str, Sequence[str]], start: DependencyStartConfig) -> list[str]:
    """Semantic checks of ``dependencies`` and ``dependency_start``: every problem, each naming its key.

    Types and unknown keys are checked when the file is structured; this adds project
    names, self-dependencies, duplicates, cycles (each named by its path, e.g.
    ``dependencies: cycle api -> web -> api``) and the prompt's placeholders. Projects
    no node hosts are not an error.

    Args:
        dependencies: config ``dependencies`` (project -> the projects it depends on).
        start: config ``dependency_start``.

    Returns:
        Problem lines; empty when both are valid.
    """
    problems = _name_problems(dependencies)
    # Self-dependencies are reported above with their key; leave them out of the cycles.
    without_self = {project: [dep for dep in deps if dep != project] for project, deps in dependencies.items()}
    problems += [f"dependencies: cycle {format_cycle(cycle)}" for cycle in find_cycles(without_self)]
    problems += _prompt_problems("dependency_start.prompt", start.prompt)
    return problems
