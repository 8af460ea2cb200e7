"""Just enough Markdown for the docs checks: fenced shell blocks, inline code, relative links.

Commands come from fenced blocks tagged ``sh``, ``bash``, ``shell`` or ``console``. In a
shell block every line is a command (a trailing ``\\`` continues it, a ``#`` after a blank
or at the start begins a comment); in a ``console`` block only lines starting with ``$ ``
are, and the lines up to the next one are its output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import attrs

__all__ = [
    "Block",
    "Command",
    "fenced_blocks",
    "inline_code",
    "normalise",
    "read_commands",
    "relative_links",
    "shell_commands",
    "strip_comment",
    "synopsis_words",
]

SHELL_LANGUAGES: Final = frozenset({"sh", "bash", "shell"})
CONSOLE_LANGUAGES: Final = frozenset({"console"})

_FENCE: Final = re.compile(r"^ {0,3}(```+|~~~+)\s*([^`\s]*)")
_INLINE: Final = re.compile(r"(`+)([^`\n]+?)\1")
# [text](target) and ![alt](target); the target up to the first blank or closing paren.
_LINK: Final = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_TOKEN: Final = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
_METAVAR: Final = re.compile(r"^[A-Z][A-Z0-9_-]*$")


@attrs.frozen
class Block:
    """A fenced code block: its language tag and lines (the fences excluded)."""

    path: Path
    line: int  # 1-based line of the first content line
    language: str
    lines: list[str]


@attrs.frozen
class Command:
    """A command shown in a document.

    ``text`` is what the document shows (continuations joined, the comment dropped),
    ``key`` the same with blanks collapsed: what the docs checks match on.
    """

    path: Path
    line: int
    text: str
    output: list[str] = attrs.field(factory=list)  # console blocks: the lines shown after it

    @property
    def key(self) -> str:
        """The command with every run of blanks collapsed to one space."""
        return normalise(self.text)

    @property
    def where(self) -> str:
        """``FILE:LINE`` for messages."""
        return f"{self.path.name}:{self.line}"


def normalise(text: str) -> str:
    """*text* with every run of blanks collapsed to one space, stripped."""
    return " ".join(text.split())


def fenced_blocks(path: Path, text: str) -> list[Block]:
    """Every fenced code block of *text* (from *path*), in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith(fence[:3]):
            body.append(lines[j])
            j += 1
        blocks.append(Block(path, i + 2, language, body))
        i = j + 1
    return blocks


def strip_comment(line: str) -> str:
    """*line* without its shell comment (a ``#`` at the start or after a blank, outside quotes)."""
    quote: str | None = None
    previous = " "
    for index, char in enumerate(line):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return line[:index].rstrip()
        previous = char
    return line.rstrip()


def shell_commands(block: Block) -> list[Command]:
    """The commands of a ``sh``/``bash``/``console`` block (none for other languages)."""
    if block.language in SHELL_LANGUAGES:
        return _script_commands(block)
    if block.language in CONSOLE_LANGUAGES:
        return _console_commands(block)
    return []


def _script_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] = []
    start = block.line
    for offset, raw in enumerate(block.lines):
        if not pending:
            start = block.line + offset
        line = strip_comment(raw)
        if not pending and not line.strip():
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line.strip())
        commands.append(Command(block.path, start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        commands.append(Command(block.path, start, " ".join(part for part in pending if part)))
    return commands


def _console_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    for offset, raw in enumerate(block.lines):
        if raw.startswith("$ "):
            commands.append(Command(block.path, block.line + offset, strip_comment(raw[2:]).strip()))
        elif commands:
            commands[-1].output.append(raw)
    return commands


def read_commands(path: Path) -> list[Command]:
    """Every command of every shell or console block of the file at *path*."""
    blocks = fenced_blocks(path, path.read_text(encoding="utf-8"))
    return [command for block in blocks for command in shell_commands(block)]


def _outside_blocks(text: str) -> list[tuple[int, str]]:
    """(1-based line, text) of every line outside fenced blocks."""
    kept: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = _FENCE.match(line)
        if fence is None and opening is not None:
            fence = opening.group(1)[:3]
        elif fence is not None and line.lstrip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append((number, line))
    return kept


def inline_code(text: str) -> list[tuple[int, str]]:
    """(line, content) of every inline code span outside fenced blocks (``\\|`` unescaped)."""
    return [
        (number, match.group(2).strip().replace("\\|", "|"))
        for number, line in _outside_blocks(text)
        for match in _INLINE.finditer(line)
    ]


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link without a scheme: to a file of this repository, or ``#anchor`` of this one."""
    links: list[tuple[int, str]] = []
    for number, line in _outside_blocks(text):
        without_code = _INLINE.sub("", line)
        for match in _LINK.finditer(without_code):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            links.append((number, target))
    return links


def synopsis_words(text: str) -> set[str]:
    """The literal words of a command synopsis: what an invocation of it must contain.

    Dropped: ``<placeholders>``, ``"quoted free text"``, ALL-CAPS metavariables (``P``,
    ``LABEL``), ellipses and the brackets of optional parts; ``a|b`` alternatives and
    ``a,b`` lists count each word. ``'single-quoted'`` text is a literal value.
    """
    words: set[str] = set()
    for token in _TOKEN.findall(text):
        core = token.strip("[]")
        if core.startswith('"'):
            continue
        if core.startswith("'"):
            words.add(core.strip("'"))
            continue
        if core.startswith("<"):
            continue
        for part in re.split(r"[|,]", core.replace("[", "").replace("]", "")):
            if part and not part.endswith("...") and not _METAVAR.match(part) and not part.startswith("<"):
                words.add(part)
    return words
