"""Evaluating a parsed match expression against an event (:mod:`halswarm.channels.expr` parses).

Null semantics: a field nobody supplied is None, and every comparison with it is false
(``!=`` too). A value of another type than the literal is unequal to it: ``==`` false,
``!=`` true, ordering false. Money may be a :class:`~decimal.Decimal`: a literal ``20.1``
then means the decimal 20.1. :func:`evaluate` never raises.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Final, TypeAlias, TypeVar

from halswarm.channels.expr import And, Bool, Compare, CompareOp, Dur, Expr, Field, Not, Num, Or, Pattern, Str, Value

__all__ = ["Lookup", "evaluate", "fields_read", "has_pattern", "matches_type"]

_ORDERING: Final = frozenset({">", ">=", "<", "<="})

#: How :func:`evaluate` reads a field: its value, or None when the event or the context lacks it.
Lookup: TypeAlias = Callable[[Field], object]


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def matches_type(pattern: str, event_type: str) -> bool:
    """True when *event_type* matches *pattern*; ``*`` matches any run of characters, dots included."""
    if "*" not in pattern:
        return pattern == event_type
    return _pattern_regex(pattern).fullmatch(event_type) is not None


_Number = TypeVar("_Number", float, Decimal)  # money compares exactly, as Decimal


def _order(op: CompareOp, actual: _Number, expected: _Number) -> bool:
    match op:
        case "==":
            return actual == expected
        case "!=":
            return actual != expected
        case ">":
            return actual > expected
        case ">=":
            return actual >= expected
        case "<":
            return actual < expected
        case "<=":
            return actual <= expected


def _compare(actual: object, op: CompareOp, literal: Value) -> bool:
    if actual is None:
        return False  # null: every comparison is false, != included
    match literal:
        case Str(expected_text):
            if op in _ORDERING:  # parse() refuses these; a hand-built AST gets false
                return False
            if not isinstance(actual, str):
                return op == "!="
            return (actual == expected_text) == (op == "==")
        case Bool(expected_flag):
            if op in _ORDERING:
                return False
            if not isinstance(actual, bool):
                return op == "!="
            return (actual == expected_flag) == (op == "==")
        case Num(number) | Dur(number):
            if isinstance(actual, bool) or not isinstance(actual, int | float | Decimal):
                return op == "!="
            if isinstance(actual, Decimal):
                if actual.is_nan():  # Decimal NaNs raise on ordering
                    return op == "!="
                # 20.1 means the decimal 20.1, not the float nearest to it.
                return _order(op, actual, Decimal(repr(number)))
            return _order(op, actual, number)


def evaluate(expr: Expr, event_type: str, lookup: Lookup) -> bool:
    """Whether an event matches.

    Args:
        expr: a parsed expression.
        event_type: the event's type, for the patterns.
        lookup: the value of a field for this event (None when unknown: null).

    Returns:
        True when the expression holds. Never raises for any field values.
    """
    match expr:
        case Pattern(text):
            return matches_type(text, event_type)
        case Compare(field, op, value):
            return _compare(lookup(field), op, value)
        case Not(operand):
            return not evaluate(operand, event_type, lookup)
        case And(operands):
            return all(evaluate(op, event_type, lookup) for op in operands)
        case Or(operands):
            return any(evaluate(op, event_type, lookup) for op in operands)


def _walk(expr: Expr) -> list[Expr]:
    match expr:
        case Not(operand):
            return [expr, *_walk(operand)]
        case And(operands) | Or(operands):
            return [expr, *(node for op in operands for node in _walk(op))]
        case _:
            return [expr]


def has_pattern(expr: Expr) -> bool:
    """True when the expression names an event type (has a :class:`Pattern`)."""
    return any(isinstance(node, Pattern) for node in _walk(expr))


def fields_read(expr: Expr) -> frozenset[str]:
    """The names of the fields the expression compares (``data`` for any ``data.<key>``)."""
    return frozenset(node.field.name for node in _walk(expr) if isinstance(node, Compare))
