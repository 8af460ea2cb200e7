"""Manifest parsing: defaults merge, key-path errors, file references, content hash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest

from halswarm.envcheck.manifest import ManifestError, load_manifest, manifest_hash, parse_manifest

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject


def _problems(raw: JSONObject) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw)
    return info.value.problems


def test_defaults_merge_and_project_wins() -> None:
    manifest = parse_manifest(
        {
            "defaults": {
                "tools": ["git"],
                "runtimes": {"python": ">=3.10"},
                "agent": {"variables": {"a": "1", "b": "2"}},
            },
            "projects": {"app": {"runtimes": {"java": ">=17"}, "agent": {"variables": {"b": "3"}}}},
        }
    )
    app = manifest.projects["app"]
    assert app.runtimes == {"python": ">=3.10", "java": ">=17"}
    assert app.tools == ["git"]
    assert app.agent.variables == {"a": "1", "b": "3"}
    assert manifest.spec_for("unlisted") == manifest.defaults


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"projects": {"app-backend": {"runtimes": {"java": ">=x"}}}},
            'projects.app-backend.runtimes.java: ">=x" is not a version constraint',
        ),
        ({"projects": {"app": {"bogus": 1}}}, "projects.app: unknown key(s): bogus"),
        ({"projects": {"app": {"env": {"A": {"value": ""}}}}}, "projects.app.env.A.value: must not be empty"),
        ({"projects": {"app": {"env": {"A": {"requird": True}}}}}, "projects.app.env.A: unknown key(s): requird"),
        ({"projects": {"app": {"tools": "git"}}}, "projects.app.tools: expected a list"),
        ({"projects": {"app": {"agent": {"template": "{{ nope }}"}}}}, "projects.app.agent.template: unknown template"),
        ({"projects": {"app": {"agent": {"docs": [{"name": "../x", "content": ""}]}}}}, "docs[0].name: '../x' must"),
        ({"projects": {"app": {"agent": {"docs": [{"name": "x"}]}}}}, "docs[0]: give exactly one of source or content"),
        ({"projects": {"app": {"git": {"hooks": {"Pre Commit": ""}}}}}, "git.hooks.Pre Commit: invalid hook name"),
        (
            {"projects": {"app": {"install": {"jdk": {"command": ["apt"], "fixes": "runtime:java"}}}}},
            "install.jdk.fixes: 'runtime:java' names a runtime the project does not declare",
        ),
        ({"projects": {"app": {"install": {"x": {"command": [], "fixes": "tool:x"}}}}}, "install.x.command: must be"),
        ({"version": 2}, "version: unsupported manifest version 2"),
        ({"extra": 1}, "unknown key(s): extra"),
    ],
)
def test_invalid_manifests_name_the_key_path(raw: JSONObject, problem: str) -> None:
    assert any(problem in line for line in _problems(raw)), _problems(raw)


def test_a_bad_default_is_reported_in_each_project() -> None:
    problems = _problems({"defaults": {"runtimes": {"node": "20"}}, "projects": {"a": {}}})
    assert any(line.startswith('projects.a.runtimes.node: "20" is not a version constraint') for line in problems)


def test_files_are_read_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "AGENT.md").write_text("# {{ project }}\n")
    (tmp_path / "api.md").write_text("API v1\n")
    raw = {
        "projects": {
            "app": {"agent": {"template_file": "tpl/AGENT.md", "docs": [{"name": "docs/API.md", "source": "api.md"}]}}
        }
    }
    path = tmp_path / "env-manifest.json"
    path.write_bytes(orjson.dumps(raw))
    agent = load_manifest(path).projects["app"].agent
    assert (agent.template, agent.template_file) == ("# {{ project }}\n", None)
    assert [(d.name, d.content, d.source) for d in agent.docs] == [("docs/API.md", "API v1\n", None)]
    first = manifest_hash(load_manifest(path))
    (tmp_path / "tpl" / "AGENT.md").write_text("# {{ project }} changed\n")
    assert manifest_hash(load_manifest(path)) != first  # the template's text is part of the hash
    (tmp_path / "api.md").unlink()
    with pytest.raises(
        ManifestError, match=r"projects\.app\.agent\.docs\[0\]\.source: no such file beside the manifest: api\.md"
    ):
        load_manifest(path)


def test_unreadable_or_non_object_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "nope.json")
    path = tmp_path / "m.json"
    path.write_text("[1]")
    with pytest.raises(ManifestError, match="must be a JSON object"):
        load_manifest(path)


def test_hash_is_canonical() -> None:
    a = parse_manifest({"projects": {"x": {"tools": ["git"]}, "y": {}}})
    b = parse_manifest({"projects": {"y": {}, "x": {"tools": ["git"]}}})
    assert manifest_hash(a) == manifest_hash(b)
    assert manifest_hash(a) != manifest_hash(parse_manifest({"projects": {"x": {"tools": ["rg"]}, "y": {}}}))
