"""The environment manifest (``env-manifest.json``): what each project's directory needs (issue #9).

Shape (every key optional unless noted; unknown keys are refused)::

    {
      "version": 1,
      "defaults": {<project spec>},          # merged under every project
      "projects": {"<name>": {<project spec>}}
    }

    <project spec> = {
      "runtimes": {"java": ">=17", "node": ">=20 <23"},
      "tools": ["gradle", "rg"],
      "env": {"JAVA_HOME": {"required": true, "path": true, "value": "/usr/lib/jvm/17"}},
      "agent": {"file": "AGENT.md", "template": "...", "template_file": "...",
                "variables": {"k": "v"}, "context_dir": ".context",
                "docs": [{"name": "docs/API.md", "source": "docs/api.md" | "content": "..."}]},
      "git": {"remote_name": "origin", "remote": "git@host:org/repo.git", "branch": "main",
              "hooks": {"pre-commit": "#!/bin/sh\\n..."}},
      "install": {"jdk17": {"command": ["sudo", "apt-get", "install", "-y", "openjdk-17-jdk"],
                            "timeout_sec": 900, "fixes": "runtime:java"}}
    }

``defaults`` is merged into each project key by key: objects merge recursively and the
project's value wins; strings, numbers and lists are replaced whole. A project the
agent hosts but the manifest does not list gets the defaults alone
(:meth:`Manifest.spec_for`). ``template_file`` and doc ``source`` paths are relative to
the manifest file and are read into the manifest when it is loaded, so the parsed
manifest is self-contained (it can be sent to agents) and its hash changes when they do.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

import attrs
import orjson

from halswarm.convert import ConversionError, converter, loads_object, structure_strict
from halswarm.envcheck.safefiles import UnsafeFileError, read_confined
from halswarm.envcheck.template import TemplateError, render_template
from halswarm.envcheck.versions import VersionError, parse_constraint

if TYPE_CHECKING:
    from halswarm.envcheck.versions import Constraint
    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = [
    "CHECK_CATEGORIES",
    "CONTEXT_FILES",
    "AgentSpec",
    "DocSpec",
    "EnvVarSpec",
    "GitSpec",
    "InstallSpec",
    "Manifest",
    "ManifestError",
    "ProjectSpec",
    "agent_variables",
    "load_manifest",
    "manifest_hash",
    "parse_manifest",
]

#: Check categories; an install command's ``fixes`` names ``<category>:<name>``.
#: Longest declared install (the supervisor gives ``env_install`` one hour in all).
MAX_INSTALL_TIMEOUT_SEC: Final = 3300.0
CHECK_CATEGORIES: Final = ("project", "runtime", "tool", "env", "agent_config", "context", "git", "docs")
#: Files every project's context directory must hold.
CONTEXT_FILES: Final = ("PROGRESS.md", "CURRENT_TASK.md", "DECISIONS.md")

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENV_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOOK_RE: Final = re.compile(r"^[a-z][a-z0-9-]*$")
_KEY_RE: Final = re.compile(r"\['([^']*)'\]")


class ManifestError(ValueError):
    """The manifest is invalid; ``problems`` has one ``key.path: problem`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@attrs.frozen
class EnvVarSpec:
    """One environment variable opencode needs.

    ``value`` (when set) is what the agent puts in opencode's environment; ``path``
    means the value must name an existing file or directory (relative values are
    taken from the project directory).
    """

    required: bool = True
    path: bool = False
    value: str | None = None


@attrs.frozen
class DocSpec:
    """A document the project must contain: ``name`` (path in the project) and its text."""

    name: str
    source: str | None = None
    content: str | None = None


@attrs.frozen
class AgentSpec:
    """The coding agent's instructions file, its context directory and required docs."""

    file: str = "AGENT.md"
    template: str | None = None
    template_file: str | None = None
    variables: dict[str, str] = attrs.field(factory=dict)
    context_dir: str = ".context"
    docs: list[DocSpec] = attrs.field(factory=list)


@attrs.frozen
class GitSpec:
    """What the project's git repository must look like (unset fields are not checked)."""

    remote_name: str = "origin"
    remote: str | None = None
    branch: str | None = None
    hooks: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class InstallSpec:
    """A declared install command for a risky fix: run only after a human approves it."""

    command: list[str]
    fixes: str
    timeout_sec: float = 600.0


@attrs.frozen
class ProjectSpec:
    """Everything one project needs (after ``defaults`` were merged in)."""

    #: Runtime name -> constraint text (validated at parse time; see :meth:`constraint`).
    runtimes: dict[str, str] = attrs.field(factory=dict)
    tools: list[str] = attrs.field(factory=list)
    env: dict[str, EnvVarSpec] = attrs.field(factory=dict)
    agent: AgentSpec = attrs.field(factory=AgentSpec)
    git: GitSpec = attrs.field(factory=GitSpec)
    install: dict[str, InstallSpec] = attrs.field(factory=dict)

    def constraint(self, runtime: str) -> Constraint:
        """The parsed constraint for *runtime* (validated when the manifest was parsed)."""
        return parse_constraint(self.runtimes[runtime])

    def install_for(self, check_id: str) -> tuple[str, InstallSpec] | None:
        """The declared install command (name, spec) that fixes *check_id*, if any."""
        for name, spec in sorted(self.install.items()):
            if spec.fixes == check_id:
                return name, spec
        return None


@attrs.frozen
class Manifest:
    """The parsed manifest: ``defaults`` already merged into each project."""

    version: int = 1
    defaults: ProjectSpec = attrs.field(factory=ProjectSpec)
    projects: dict[str, ProjectSpec] = attrs.field(factory=dict)

    def spec_for(self, project: str) -> ProjectSpec:
        """The project's spec, or the defaults for a project the manifest does not list."""
        return self.projects.get(project, self.defaults)


def agent_variables(project: str, spec: ProjectSpec) -> dict[str, str]:
    """Template variables: ``project`` (the project's name) plus the spec's own, which win."""
    return {"project": project, **spec.agent.variables}


def _merge(base: JSONValue, override: JSONValue) -> JSONValue:
    """Objects merge key by key (override wins); anything else is replaced whole."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


def _dotted(lines: list[str]) -> list[str]:
    """``projects['app'].runtimes['java']: x`` -> ``projects.app.runtimes.java: x``."""
    return [_KEY_RE.sub(lambda m: "." + m.group(1), line) for line in lines]


def parse_manifest(raw: JSONObject, *, base_dir: Path | None = None) -> Manifest:
    """Validate a parsed ``env-manifest.json`` and merge its defaults into each project.

    Args:
        raw: the JSON object.
        base_dir: where relative ``template_file`` and doc ``source`` paths start
            (the manifest's directory); None refuses file references.

    Returns:
        The manifest, self-contained: file references are read in.

    Raises:
        ManifestError: every problem found, each with its key path.
    """
    problems: list[str] = []
    defaults_raw = raw.get("defaults", {})
    projects_raw = raw.get("projects", {})
    merged: JSONObject = dict(raw)
    if isinstance(defaults_raw, dict) and isinstance(projects_raw, dict):
        merged["projects"] = {name: _merge(defaults_raw, spec) for name, spec in projects_raw.items()}
    try:
        manifest = structure_strict(merged, Manifest)
    except ConversionError as exc:
        raise ManifestError(_dotted(exc.problems)) from None
    if manifest.version != 1:
        problems.append(f"version: unsupported manifest version {manifest.version} (expected 1)")
    if base_dir is not None:
        manifest, file_problems = _read_files(manifest, base_dir)
        problems += file_problems
    problems += _spec_problems("defaults", "(any project)", manifest.defaults)
    for name, spec in manifest.projects.items():
        if not _NAME_RE.match(name):
            problems.append(f"projects.{name}: invalid project name")
        problems += _spec_problems(f"projects.{name}", name, spec)
    if problems:
        raise ManifestError(problems)
    return manifest


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file (blocking: call it from a worker thread).

    Raises:
        ManifestError: the file is unreadable, not a JSON object, or invalid.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        raw = loads_object(data, what=str(path))
    except ConversionError as exc:
        raise ManifestError(exc.problems) from None
    return parse_manifest(raw, base_dir=path.parent)


def manifest_hash(manifest: Manifest) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys): changes when anything does."""
    data = orjson.dumps(converter.unstructure(manifest), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def _read_text(base_dir: Path, relative: str, key: str, problems: list[str]) -> str | None:
    # Only files beside the manifest: the text goes to every agent and to API viewers,
    # so "/etc/..." or "../" must not turn the manifest into a way to publish any file.
    found = _relative_path_problem(key, relative)
    if found:
        problems += found
        return None
    try:
        data = read_confined(base_dir, relative)
        if data is None:
            problems.append(f"{key}: no such file beside the manifest: {relative}")
            return None
        return data.decode()
    except UnsafeFileError as exc:
        problems.append(f"{key}: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{key}: cannot read {relative}: {getattr(exc, 'strerror', None) or exc}")
    return None


def _read_spec_files(spec: ProjectSpec, key: str, base_dir: Path, problems: list[str]) -> ProjectSpec:
    agent = spec.agent
    if agent.template_file is not None and agent.template is None:
        text = _read_text(base_dir, agent.template_file, f"{key}.agent.template_file", problems)
        if text is not None:
            agent = attrs.evolve(agent, template=text, template_file=None)
    docs: list[DocSpec] = []
    for i, doc in enumerate(agent.docs):
        if doc.source is not None and doc.content is None:
            text = _read_text(base_dir, doc.source, f"{key}.agent.docs[{i}].source", problems)
            doc = attrs.evolve(doc, content=text, source=None) if text is not None else doc
        docs.append(doc)
    return attrs.evolve(spec, agent=attrs.evolve(agent, docs=docs))


def _read_files(manifest: Manifest, base_dir: Path) -> tuple[Manifest, list[str]]:
    problems: list[str] = []
    defaults = _read_spec_files(manifest.defaults, "defaults", base_dir, problems)
    projects = {
        name: _read_spec_files(spec, f"projects.{name}", base_dir, problems) for name, spec in manifest.projects.items()
    }
    return attrs.evolve(manifest, defaults=defaults, projects=projects), problems


def _relative_path_problem(key: str, value: str) -> list[str]:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        return [f"{key}: {value!r} must be a relative path without '..'"]
    return []


def _bad_program(name: str) -> bool:
    return not name or "/" in name


def _spec_problems(key: str, project: str, spec: ProjectSpec) -> list[str]:
    problems = [f"{key}.tools: {t!r} must be a program name (looked up on PATH)" for t in spec.tools if _bad_program(t)]
    for runtime, text in spec.runtimes.items():
        if _bad_program(runtime):
            problems.append(f"{key}.runtimes.{runtime}: must be a program name (looked up on PATH)")
        try:
            parse_constraint(text)
        except VersionError as exc:
            problems.append(f"{key}.runtimes.{runtime}: {exc}")
    for name, var in spec.env.items():
        if not _ENV_NAME_RE.match(name):
            problems.append(f"{key}.env.{name}: invalid environment variable name")
        if var.value == "":
            # An empty value "fixes" nothing (original implementation, mistake 11).
            problems.append(f"{key}.env.{name}.value: must not be empty (leave it out instead)")
    agent = spec.agent
    problems += _relative_path_problem(f"{key}.agent.file", agent.file)
    problems += _relative_path_problem(f"{key}.agent.context_dir", agent.context_dir)
    if agent.template is not None and agent.template_file is not None:
        problems.append(f"{key}.agent: give template or template_file, not both")
    if agent.template is not None:
        try:
            render_template(agent.template, agent_variables(project, spec))
        except TemplateError as exc:
            if key != "defaults":  # defaults may use variables each project supplies
                problems.append(f"{key}.agent.template: {exc}")
    for i, doc in enumerate(agent.docs):
        problems += _relative_path_problem(f"{key}.agent.docs[{i}].name", doc.name)
        if (doc.source is None) == (doc.content is None):
            problems.append(f"{key}.agent.docs[{i}]: give exactly one of source or content")
    for hook in spec.git.hooks:
        if not _HOOK_RE.match(hook):
            problems.append(f"{key}.git.hooks.{hook}: invalid hook name (e.g. pre-commit)")
    for name, install in spec.install.items():
        where = f"{key}.install.{name}"
        if not install.command or not install.command[0]:
            problems.append(f"{where}.command: must be a non-empty argument list")
        if not 0 < install.timeout_sec <= MAX_INSTALL_TIMEOUT_SEC:
            # The command carrying it is given up after an hour: a longer install would
            # be killed early, not at the timeout the manifest promises.
            problems.append(f"{where}.timeout_sec: must be between 0 and {MAX_INSTALL_TIMEOUT_SEC:g} seconds")
        category, sep, target = install.fixes.partition(":")
        if not sep or category not in CHECK_CATEGORIES or not target:
            problems.append(f"{where}.fixes: {install.fixes!r} must name a check, e.g. runtime:java or tool:gradle")
        elif (category == "runtime" and target not in spec.runtimes) or (
            category == "tool" and target not in spec.tools
        ):
            problems.append(f"{where}.fixes: {install.fixes!r} names a {category} the project does not declare")
    return problems
