"""Every document: relative links lead somewhere, and the commands shown are real (issue 10).

Commands, in shell blocks and named in the text, are checked without running them
(:mod:`tests.docs.commandlines`): halctl, hal-supervisor and hal-agent subcommands and
options, make targets, and the routes curl lines call. README.md's commands are also
run, in ``test_readme.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest

from tests.docs.commandlines import PROGRAMS, check_line, make_targets, route_patterns
from tests.docs.markdown import inline_code, read_commands, relative_links

ROOT: Final = Path(__file__).resolve().parents[2]
DOCUMENTS: Final = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def _name(path: Path, root: Path = ROOT) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of the Markdown file at *path*."""
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not fenced:
            text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).lower()
            slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            candidate, n = slug, 1
            while candidate in found:  # repeated headings get -1, -2...
                candidate, n = f"{slug}-{n}", n + 1
            found.add(candidate)
    return found


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links of the document at *path* to files that do not exist, or to missing headings."""
    problems = []
    for line, target in relative_links(path.read_text(encoding="utf-8")):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{_name(path, root)}:{line}: ({target})"
        if not linked.exists():
            problems.append(f"{where}: no file {_name(linked, root)}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{where}: no heading #{anchor} in {_name(linked, root)}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_relative_links_resolve(document: Path) -> None:
    problems = link_problems(document)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_commands_shown_are_real(document: Path) -> None:
    targets, routes = make_targets(), route_patterns()
    problems = [
        f"{command.where}: `{command.key}`: {problem}"
        for command in read_commands(document)
        for problem in check_line(command.text, targets=targets, routes=routes)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_commands_named_in_the_text_are_real(document: Path) -> None:
    """Inline mentions (`halctl cost --by model`, `hal-agent --simulate N`, `make chaos`) name real commands."""
    targets, routes = make_targets(), route_patterns()
    mentions = [
        (line, span)
        for line, span in inline_code(document.read_text(encoding="utf-8"))
        if span.split(" ", 1)[0].rsplit("/", 1)[-1] in {*PROGRAMS, "make", "curl"} and " " in span
    ]
    problems = [
        f"{_name(document)}:{line}: `{span}`: {problem}"
        for line, span in mentions
        for problem in check_line(span, targets=targets, routes=routes)
    ]
    assert not problems, "\n".join(problems)


def test_broken_links_and_anchors_are_reported(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "other.md").write_text("# Other page\n\n## 7. Health and metrics\n")
    page = root / "page.md"
    page.write_text(
        "# Page\n\n## Section two\n\n"
        "[ok](other.md) [ok](other.md#7-health-and-metrics) [ok](#section-two) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) `[in code](nope.md)`\n"
        "```\n[in a block](nope.md)\n```\n"
    )
    assert link_problems(page, root) == [
        "page.md:6: (missing.md): no file missing.md",
        "page.md:6: (other.md#nope): no heading #nope in other.md",
    ]
