"""The match language of event routes: its AST, a recursive-descent parser and a formatter.

A match names event types (with ``*`` wildcards) and compares fields with literals::

    session.idle && idle_for > 5m
    policy.* && !policy.suppressed
    session.updated && status == "waiting"
    cost.daily > 20

Grammar (EBNF; docs/ROUTING.md explains each part)::

    expr       = and , { "||" , and } ;
    and        = unary , { "&&" , unary } ;
    unary      = "!" , unary | primary ;
    primary    = "(" , expr , ")" | comparison | pattern ;
    comparison = field , op , literal ;
    op         = "==" | "!=" | ">" | ">=" | "<" | "<=" ;
    pattern    = name ;     (* containing "." or "*": session.idle, session.*, *.error *)
    field      = "type" | "node" | "project" | "session" | "status" | "idle_for"
               | "consecutive_errors" | "compaction_count" | "cost.daily" | "cost.project_daily"
               | "data" , "." , key , { "." , key } ;
    literal    = number | duration | string | "true" | "false" ;

Nothing is ever passed to ``eval``: the tokenizer (:mod:`halswarm.channels._lexer`)
and this parser turn text into an AST of frozen attrs values, and
:func:`halswarm.channels.evaluate.evaluate` walks it.

Invariants:

- :func:`parse` raises only :class:`ExprError` (with a 0-based position), whatever the text.
- ``parse(format_expr(e)) == e`` for every AST :func:`parse` returns.
- Fields are checked when parsing: an unknown field is an error, never a silent null, and
  so is a comparison of a field with a literal of another type (``status == 1``,
  ``idle_for > "5m"``) or with a status no session has (``status == "wating"``).
- Nesting is bounded (:data:`MAX_DEPTH`, :data:`MAX_LENGTH`), so parsing, formatting and
  evaluating never exhaust the stack.
"""

from __future__ import annotations

import re
from typing import Final, Literal, TypeAlias

import attrs

from halswarm.channels._lexer import ExprError, Token, tokenize
from halswarm.channels.durations import format_duration, format_number
from halswarm.models import SESSION_STATUSES

__all__ = [
    "DERIVED_FIELDS",
    "EVENT_FIELDS",
    "FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "And",
    "Bool",
    "Compare",
    "CompareOp",
    "Dur",
    "Expr",
    "ExprError",
    "Field",
    "Not",
    "Num",
    "Or",
    "Pattern",
    "Str",
    "Value",
    "format_expr",
    "parse",
    "parse_field",
]

#: Fields of the event itself.
EVENT_FIELDS: Final = ("type", "node", "project", "session")
#: Values the router's caller derives for the event (see halswarm.channels.fields.RouteContext).
DERIVED_FIELDS: Final = (
    "status",
    "idle_for",
    "consecutive_errors",
    "compaction_count",
    "cost.daily",
    "cost.project_daily",
)
#: Every field name a comparison may use, besides ``data.<key>[.<key>...]``.
FIELDS: Final = EVENT_FIELDS + DERIVED_FIELDS

#: Longest accepted expression, in characters.
MAX_LENGTH: Final = 4096
#: Deepest accepted nesting of parentheses and ``!``.
MAX_DEPTH: Final = 32

CompareOp = Literal["==", "!=", ">", ">=", "<", "<="]
_OPS: Final[dict[str, CompareOp]] = {"==": "==", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_ORDERING: Final = frozenset({">", ">=", "<", "<="})

_STRING_FIELDS: Final = frozenset({"type", "node", "project", "session", "status"})
_NUMBER_FIELDS: Final = frozenset(
    {"idle_for", "consecutive_errors", "compaction_count", "cost.daily", "cost.project_daily"}
)
_FIELD_LIST: Final = ", ".join((*FIELDS, "data.<key>"))
_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


# ---- AST ------------------------------------------------------------------------------------


@attrs.frozen
class Field:
    """A value a comparison reads: one of :data:`FIELDS`, or ``data`` with a key path."""

    name: str
    #: The keys under ``data`` (``data.status.type`` -> ``("status", "type")``); empty otherwise.
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ".".join((self.name, *self.path))


@attrs.frozen
class Num:
    """A number literal (always held as a float)."""

    value: float


@attrs.frozen
class Dur:
    """A duration literal, in seconds: compares like a number (``5m`` is 300)."""

    value: float


@attrs.frozen
class Str:
    """A quoted string literal."""

    value: str


@attrs.frozen
class Bool:
    """``true`` or ``false``."""

    value: bool


Value: TypeAlias = Num | Dur | Str | Bool


@attrs.frozen
class Pattern:
    """An event type pattern: true when the event's type matches (``*`` matches any run of characters)."""

    text: str


@attrs.frozen
class Compare:
    """``field op literal``."""

    field: Field
    op: CompareOp
    value: Value


@attrs.frozen
class Not:
    """``!operand``."""

    operand: Expr


@attrs.frozen
class And:
    """``a && b && ...``: two operands or more, as written (parentheses keep their own node)."""

    operands: tuple[Expr, ...]


@attrs.frozen
class Or:
    """``a || b || ...``: two operands or more."""

    operands: tuple[Expr, ...]


Expr: TypeAlias = Pattern | Compare | Not | And | Or

# ---- parser ---------------------------------------------------------------------------------


def parse_field(name: str, position: int = 0) -> Field:
    """The field a name refers to (``status``, ``cost.daily``, ``data.status.type``).

    Raises:
        ExprError: not a field (the message lists the fields), at *position*.
    """
    if name in FIELDS:
        return Field(name)
    if name == "data" or name.startswith("data."):
        keys = tuple(name.split(".")[1:])
        if not keys:
            raise ExprError("'data' needs a key: data.<key>, e.g. data.reason", position)
        for key in keys:
            if not _KEY_RE.fullmatch(key):
                raise ExprError(f"bad key {key!r} in {name!r} (keys use letters, digits, '_' or '-')", position)
        return Field("data", keys)
    if "*" in name:
        raise ExprError(f"wildcards are only allowed in event type patterns, not in the field {name!r}", position)
    raise ExprError(f"unknown field {name!r} (fields: {_FIELD_LIST})", position)


def _is_field_name(name: str) -> bool:
    return name in FIELDS or name == "data" or name.startswith("data.")


def _describe(token: Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


class _Parser:
    """Recursive descent over the token list; ``depth`` bounds the recursion."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"nested too deeply (more than {MAX_DEPTH} levels of '(' and '!')", token.pos)

    def parse_all(self) -> Expr:
        if self.peek().kind == "end":
            raise ExprError("empty expression (name an event type, e.g. session.error)", 0)
        expr = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise ExprError(f"unexpected {_describe(token)}: expected '&&', '||' or the end", token.pos)
        return expr

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while self.peek().kind == "or":
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Expr:
        operands = [self.parse_unary()]
        while self.peek().kind == "and":
            self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Expr:
        token = self.peek()
        if token.kind != "not":
            return self.parse_primary()
        self.take()
        self.enter(token)
        operand = self.parse_unary()
        self.depth -= 1
        return Not(operand)

    def parse_primary(self) -> Expr:
        token = self.take()
        if token.kind == "(":
            self.enter(token)
            if self.peek().kind == ")":
                raise ExprError("empty parentheses", self.peek().pos)
            inner = self.parse_or()
            close = self.take()
            if close.kind != ")":
                raise ExprError(
                    f"expected ')' to close the '(' at position {token.pos}, found {_describe(close)}", close.pos
                )
            self.depth -= 1
            return inner
        if token.kind == "name":
            if self.peek().kind == "op":
                return self.parse_comparison(token)
            return _pattern(token)
        if token.kind in {"number", "duration", "string"}:
            raise ExprError(
                f"a comparison starts with a field, not a literal: write e.g. 'cost.daily > 20', found {token.text!r}",
                token.pos,
            )
        expected = "expected an event type pattern, a comparison or '('"
        raise ExprError(f"{expected}, found {_describe(token)}", token.pos)

    def parse_comparison(self, name: Token) -> Compare:
        field = parse_field(name.text, name.pos)
        op_token = self.take()
        op = _OPS[op_token.text]  # the caller saw an "op" token
        value = self.parse_literal(op_token)
        _check_types(field, op, value, self.tokens[self.index - 1].pos)
        return Compare(field, op, value)

    def parse_literal(self, op: Token) -> Value:
        token = self.take()
        if token.kind == "number" and isinstance(token.value, float):
            return Num(token.value)
        if token.kind == "duration" and isinstance(token.value, float):
            return Dur(token.value)
        if token.kind == "string" and isinstance(token.value, str):
            return Str(token.value)
        if token.kind == "name" and token.text in {"true", "false"}:
            return Bool(token.text == "true")
        what = "a literal (a number, a duration such as 5m, a quoted string, true or false)"
        found = _describe(token)
        if token.kind == "name":
            found += " (a field can only be compared with a literal; quote strings)"
        raise ExprError(f"expected {what} after {op.text!r}, found {found}", token.pos)


def _check_types(field: Field, op: CompareOp, value: Value, position: int) -> None:
    """Refuse comparisons that could never be true (or never false): they are typos."""
    if op in _ORDERING and isinstance(value, Str | Bool):
        kind = "a string" if isinstance(value, Str) else "true or false"
        raise ExprError(f"{op!r} compares numbers or durations, not {kind}", position)
    if field.name in _STRING_FIELDS and not isinstance(value, Str):
        raise ExprError(f'{field} is a string: compare it with a quoted string, e.g. {field} == "..."', position)
    if field.name in _NUMBER_FIELDS and not isinstance(value, Num | Dur):
        raise ExprError(f"{field} is a number: compare it with a number or a duration", position)
    if field.name == "status" and isinstance(value, Str) and value.value not in SESSION_STATUSES:
        raise ExprError(f"unknown status {value.value!r} (statuses: {', '.join(SESSION_STATUSES)})", position)


def _pattern(token: Token) -> Pattern:
    text = token.text
    if text in {"true", "false"}:
        raise ExprError(f"{text} can only follow a comparison operator", token.pos)
    if _is_field_name(text):
        parse_field(text, token.pos)  # a bad data key is the better message
        raise ExprError(f"the field {text!r} needs a comparison, e.g. '{text} == ...'", token.pos)
    if "." not in text and "*" not in text:
        raise ExprError(
            f"{text!r} is neither an event type pattern (like session.idle or session.*) nor a comparison",
            token.pos,
        )
    if "" in text.split("."):
        raise ExprError(f"bad event type pattern {text!r}: empty part between dots", token.pos)
    return Pattern(text)


def parse(text: str) -> Expr:
    """Parse a match expression.

    Args:
        text: the expression, e.g. ``session.idle && idle_for > 5m``.

    Returns:
        Its AST.

    Raises:
        ExprError: the text is not an expression; ``position`` points at the problem.
    """
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return _Parser(tokenize(text)).parse_all()


# ---- formatter ------------------------------------------------------------------------------

_PRECEDENCE: Final[dict[type[object], int]] = {Or: 1, And: 2, Not: 3, Compare: 4, Pattern: 4}


def _format_value(value: Value) -> str:
    match value:
        case Bool(flag):
            return "true" if flag else "false"
        case Str(text):
            escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
            return f'"{escaped}"'
        case Dur(seconds):
            return format_duration(seconds)
        case Num(number):
            return format_number(number)


def _format(expr: Expr, parent: int) -> str:
    mine = _PRECEDENCE[type(expr)]
    match expr:
        case Pattern(text):
            out = text
        case Compare(field, op, value):
            out = f"{field} {op} {_format_value(value)}"
        case Not(operand):
            out = "!" + _format(operand, mine)
        case And(operands):
            # Nested nodes of the same kind were parenthesised in the source; keep them so.
            out = " && ".join(_format(op, mine + 1 if isinstance(op, And) else mine) for op in operands)
        case Or(operands):
            out = " || ".join(_format(op, mine + 1 if isinstance(op, Or) else mine) for op in operands)
    return f"({out})" if mine < parent else out


def format_expr(expr: Expr) -> str:
    """The canonical text of an expression: minimal parentheses, ``"..."`` strings, canonical durations.

    ``parse(format_expr(e)) == e``.
    """
    return _format(expr, 0)
