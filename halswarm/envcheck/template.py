"""AGENT.md templates: ``{{ name }}`` substitution, nothing else (issue #9).

No Jinja and no ``eval``: a template is text with ``{{ name }}`` placeholders, and a
placeholder whose name has no value is an error naming it, so a typo never renders
as an empty string into the instructions an agent reads.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TemplateError", "placeholders", "render_template", "sha256_text"]

_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


class TemplateError(ValueError):
    """A template names variables that have no value; ``unknown`` lists them."""

    def __init__(self, unknown: list[str]) -> None:
        super().__init__(f"unknown template variable(s): {', '.join(unknown)}")
        self.unknown = unknown


def placeholders(template: str) -> list[str]:
    """The distinct variable names *template* uses, in order of first use."""
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def render_template(template: str, variables: Mapping[str, str]) -> str:
    """Replace every ``{{ name }}`` with ``variables[name]``.

    Raises:
        TemplateError: some placeholders have no value (all of them are named).
    """
    unknown = [name for name in placeholders(template) if name not in variables]
    if unknown:
        raise TemplateError(unknown)
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], template)


def sha256_text(text: str) -> str:
    """Hex SHA-256 of *text* encoded as UTF-8 (how AGENT.md and docs are compared)."""
    return hashlib.sha256(text.encode()).hexdigest()
