"""The tokenizer of the match language (:mod:`halswarm.channels.expr`) and its error type.

Raises only :class:`ExprError`, with the 0-based position of the offending character.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import attrs

from halswarm.channels.durations import DurationError, parse_duration

__all__ = ["ExprError", "Token", "TokenKind", "tokenize"]

_NAME_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_*")
_NAME_CHARS: Final = _NAME_START | frozenset("0123456789.-")
_DIGITS: Final = frozenset("0123456789")
_NUMBER_CHARS: Final = _DIGITS | frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.")
_PLAIN_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_ESCAPES: Final = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}
_WHITESPACE: Final = frozenset(" \t\r\n")


class ExprError(ValueError):
    """A match expression that cannot be parsed.

    Attributes:
        message: what is wrong, in words.
        position: 0-based offset in the text where the problem is.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


TokenKind = Literal["name", "number", "duration", "string", "op", "and", "or", "not", "(", ")", "end"]


@attrs.frozen
class Token:
    """One token: its kind, its text, where it starts, and the value of a literal."""

    kind: TokenKind
    text: str
    pos: int
    value: float | str = ""


def _scan_string(text: str, start: int) -> tuple[Token, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return Token("string", text[start : i + 1], start, "".join(out)), i + 1
        if char == "\\":
            if i + 1 >= len(text):
                break
            escaped = _ESCAPES.get(text[i + 1])
            if escaped is None:
                raise ExprError(f"unknown escape {text[i : i + 2]!r} in a string (use \\\\, \\\", \\', \\n or \\t)", i)
            out.append(escaped)
            i += 2
            continue
        out.append(char)
        i += 1
    raise ExprError("unterminated string", start)


def _scan_number(text: str, start: int) -> tuple[Token, int]:
    i = start + 1 if text[start] == "-" else start
    while i < len(text) and text[i] in _NUMBER_CHARS:
        i += 1
    word = text[start:i]
    if _PLAIN_NUMBER.fullmatch(word):
        value = float(word)
        if value in {float("inf"), float("-inf")}:
            raise ExprError(f"number {word[:20]}... is too large", start)
        return Token("number", word, start, value), i
    if word.startswith("-"):
        raise ExprError(f"{word!r} is not a number (durations cannot be negative)", start)
    if not any(c.isalpha() for c in word):
        raise ExprError(f"{word!r} is not a number", start)
    try:
        seconds = parse_duration(word)
    except DurationError as exc:
        raise ExprError(str(exc), start) from None
    return Token("duration", word, start, seconds), i


_PUNCTUATION: Final[dict[str, TokenKind]] = {
    "&&": "and",
    "||": "or",
    "==": "op",
    "!=": "op",
    ">=": "op",
    "<=": "op",
    ">": "op",
    "<": "op",
    "!": "not",
    "(": "(",
    ")": ")",
}


def tokenize(text: str) -> list[Token]:
    """The tokens of *text*, ending with an ``end`` token.

    Raises:
        ExprError: an unknown character, a bad number or duration, or a bad string.
    """
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in _WHITESPACE:
            i += 1
        elif char in _NAME_START:
            start = i
            while i < len(text) and text[i] in _NAME_CHARS:
                i += 1
            tokens.append(Token("name", text[start:i], start))
        elif char in _DIGITS or (char == "-" and text[i + 1 : i + 2] in _DIGITS):
            token, i = _scan_number(text, i)
            tokens.append(token)
        elif char in "\"'":
            token, i = _scan_string(text, i)
            tokens.append(token)
        else:
            for punct in (text[i : i + 2], char):
                kind = _PUNCTUATION.get(punct)
                if kind is not None:
                    tokens.append(Token(kind, punct, i))
                    i += len(punct)
                    break
            else:
                hint = {"&": " (did you mean '&&'?)", "|": " (did you mean '||'?)", "=": " (did you mean '=='?)"}
                raise ExprError(f"unexpected character {char!r}{hint.get(char, '')}", i)
    tokens.append(Token("end", "", len(text)))
    return tokens
