"""The match language's parser and formatter: the documented examples, precedence, errors, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.expr import (
    FIELDS,
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Bool,
    Compare,
    Dur,
    Expr,
    ExprError,
    Field,
    Not,
    Num,
    Or,
    Pattern,
    Str,
    Value,
    format_expr,
    parse,
)
from halswarm.models import SESSION_STATUSES

IDLE = Pattern("session.idle")


# ---- the documented examples -----------------------------------------------------------------


def test_idle_for_longer_than_five_minutes() -> None:
    assert parse("session.idle && idle_for > 5m") == And((IDLE, Compare(Field("idle_for"), ">", Dur(300.0))))


def test_daily_cost_threshold() -> None:
    assert parse("cost.daily > 20") == Compare(Field("cost.daily"), ">", Num(20.0))


def test_either_type() -> None:
    assert parse("session.error || node.offline") == Or((Pattern("session.error"), Pattern("node.offline")))


def test_wildcard_and_negated_type() -> None:
    assert parse("policy.* && !policy.suppressed") == And((Pattern("policy.*"), Not(Pattern("policy.suppressed"))))


def test_status_equals_string() -> None:
    expected = And((Pattern("session.updated"), Compare(Field("status"), "==", Str("waiting"))))
    assert parse('session.updated && status == "waiting"') == expected


# ---- syntax --------------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    a, b, c = Pattern("a.x"), Pattern("b.x"), Pattern("c.x")
    assert parse("a.x || b.x && c.x") == Or((a, And((b, c))))
    assert parse("a.x && b.x || c.x") == Or((And((a, b)), c))
    assert parse("(a.x || b.x) && c.x") == And((Or((a, b)), c))


def test_not_binds_tightest_and_applies_to_a_whole_comparison() -> None:
    assert parse("!a.x && b.x") == And((Not(Pattern("a.x")), Pattern("b.x")))
    assert parse("!idle_for > 5m") == Not(Compare(Field("idle_for"), ">", Dur(300.0)))
    assert parse("!!a.x") == Not(Not(Pattern("a.x")))
    assert parse("!(a.x || b.x)") == Not(Or((Pattern("a.x"), Pattern("b.x"))))


def test_chains_are_flat_but_parentheses_keep_their_node() -> None:
    a, b, c = Pattern("a.x"), Pattern("b.x"), Pattern("c.x")
    assert parse("a.x && b.x && c.x") == And((a, b, c))
    assert parse("a.x && (b.x && c.x)") == And((a, And((b, c))))
    assert parse("((a.x))") == a


def test_whitespace_is_optional_and_free() -> None:
    assert parse("session.idle&&idle_for>5m") == parse(" session.idle \t&&\n idle_for  >  5m ")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("session.*", "session.*"),
        ("*.error", "*.error"),
        ("cost.budget_*", "cost.budget_*"),
        ("*", "*"),
        ("agent-md.updated", "agent-md.updated"),
        ("env.check.fail", "env.check.fail"),
    ],
)
def test_patterns(text: str, pattern: str) -> None:
    assert parse(text) == Pattern(pattern)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("data.n == 3", Num(3.0)),
        ("data.n == -3", Num(-3.0)),
        ("data.n == 2.50", Num(2.5)),
        ("data.n == 30s", Dur(30.0)),
        ("data.n == 5m", Dur(300.0)),
        ("data.n == 2h", Dur(7200.0)),
        ("data.n == 1d", Dur(86400.0)),
        ("data.n == 1h30m", Dur(5400.0)),
        ("data.n == 1.5m", Dur(90.0)),
        ('data.n == "a b"', Str("a b")),
        ("data.n == 'single'", Str("single")),
        (r'data.n == "q\"\\\n\t\'"', Str("q\"\\\n\t'")),
        ("data.n == true", Bool(True)),
        ("data.n == false", Bool(False)),
    ],
)
def test_literals(text: str, value: Value) -> None:
    assert parse(text) == Compare(Field("data", ("n",)), "==", value)


@pytest.mark.parametrize("op", ["==", "!=", ">", ">=", "<", "<="])
def test_operators(op: str) -> None:
    assert parse(f"consecutive_errors {op} 3") == Compare(Field("consecutive_errors"), op, Num(3.0))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", FIELDS)
def test_every_field(name: str) -> None:
    literal = '"idle"' if name in {"type", "node", "project", "session", "status"} else "1"
    expr = parse(f"{name} == {literal}")
    assert isinstance(expr, Compare)
    assert expr.field == Field(name)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("status == 1", "status is a string"),
        ("project == true", "project is a string"),
        ("type != 5m", "type is a string"),
        ("idle_for > '5m'", "'>' compares numbers"),
        ("idle_for == '5m'", "idle_for is a number"),
        ("cost.daily == true", "cost.daily is a number"),
        ('status == "wating"', "unknown status 'wating' (statuses: starting, busy, idle, retry, waiting, error, "),
    ],
)
def test_comparisons_that_can_never_hold_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert fragment in info.value.message
    assert info.value.position == text.rindex(" ") + 1


def test_data_fields_take_any_literal() -> None:
    for literal in ("1", "5m", '"x"', "true"):
        assert isinstance(parse(f"data.x == {literal}"), Compare)


def test_data_paths() -> None:
    assert parse('data.status.type == "idle"') == Compare(Field("data", ("status", "type")), "==", Str("idle"))
    assert parse("data.files.0 == 1") == Compare(Field("data", ("files", "0")), "==", Num(1.0))
    assert str(Field("data", ("status", "type"))) == "data.status.type"


# ---- errors: message and position -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty expression"),
        ("   ", 0, "empty expression"),
        ("session.idle &&", 15, "found the end"),
        ("session.idle && && a.b", 16, "found '&&'"),
        ("idle_for >", 10, "expected a literal"),
        ("idle_fro > 5", 0, "unknown field 'idle_fro'"),
        ("session.idle && idle_fro > 5m", 16, "unknown field 'idle_fro'"),
        ("idle_for", 0, "needs a comparison"),
        ("cost.daily", 0, "needs a comparison"),
        ("data.reason", 0, "needs a comparison"),
        ("idle", 0, "neither an event type pattern"),
        ("true", 0, "can only follow a comparison"),
        ("20 < cost.daily", 0, "starts with a field"),
        ('status > "idle"', 9, "compares numbers or durations, not a string"),
        ("data.flag >= true", 13, "not true or false"),
        ("(a.b", 4, "expected ')' to close the '(' at position 0"),
        ("(a.b || (c.d)", 13, "close the '(' at position 0"),
        ("a.b)", 3, "unexpected ')'"),
        ("a.b c.d", 4, "unexpected 'c.d'"),
        ("()", 1, "empty parentheses"),
        ("a.b & c.d", 4, "did you mean '&&'"),
        ("a.b | c.d", 4, "did you mean '||'"),
        ('status = "x"', 7, "did you mean '=='"),
        ("a.b # c", 4, "unexpected character '#'"),
        ('status == "idle', 10, "unterminated string"),
        (r'status == "a\qb"', 12, "unknown escape"),
        ("idle_for > 5x", 11, "unknown duration unit 'x'"),
        ("idle_for > 5M", 11, "is not a duration"),
        ("idle_for > -5m", 11, "durations cannot be negative"),
        ("data.n == 1.2.3", 10, "'1.2.3' is not a number"),
        ("data.n == 1.", 10, "'1.' is not a number"),
        ("status == waiting", 10, "quote strings"),
        ("status == idle_for", 10, "a field can only be compared with a literal"),
        ("session.* > 1", 0, "wildcards are only allowed in event type patterns"),
        ("data > 1", 0, "'data' needs a key"),
        ("data.a..b == 1", 0, "bad key ''"),
        ("data.a*b == 1", 0, "bad key 'a*b'"),
        ("session..idle", 0, "empty part between dots"),
        (".session", 0, "unexpected character '.'"),
        ("session.", 0, "empty part between dots"),
        ("idle_for > 5m > 3", 14, "unexpected '>'"),
        ("data.n == " + "9" * 400, 10, "too large"),
        ("idle_for > " + "9" * 400 + "s", 11, "too large"),
    ],
)
def test_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert fragment in info.value.message
    assert info.value.position == position
    assert str(info.value).endswith(f"(at position {position})")


def test_unknown_field_lists_the_fields() -> None:
    with pytest.raises(ExprError) as info:
        parse("idle > 1")
    assert "idle_for" in info.value.message
    assert "cost.project_daily" in info.value.message
    assert "data.<key>" in info.value.message


def test_nesting_is_bounded() -> None:
    ok = "(" * MAX_DEPTH + "a.b" + ")" * MAX_DEPTH
    assert parse(ok) == Pattern("a.b")
    assert parse("!" * MAX_DEPTH + "a.b") is not None
    with pytest.raises(ExprError, match="nested too deeply") as info:
        parse("(" * (MAX_DEPTH + 1) + "a.b" + ")" * (MAX_DEPTH + 1))
    assert info.value.position == MAX_DEPTH
    with pytest.raises(ExprError, match="nested too deeply"):
        parse("!(" * MAX_DEPTH + "a.b" + ")" * MAX_DEPTH)


def test_length_is_bounded() -> None:
    long_chain = " || ".join(["a.b"] * 2000)
    with pytest.raises(ExprError, match="longer than") as info:
        parse(long_chain)
    assert info.value.position == MAX_LENGTH
    fits = " || ".join(["a.b"] * (MAX_LENGTH // 7))
    assert isinstance(parse(fits), Or)


# ---- formatting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("session.idle&&idle_for>5m", "session.idle && idle_for > 5m"),
        ("idle_for > 300s", "idle_for > 5m"),
        ("idle_for > 1h30m", "idle_for > 90m"),
        ("idle_for > 90s", "idle_for > 90s"),
        ("idle_for > 0.5s", "idle_for > 0.5s"),
        ("idle_for > 24h", "idle_for > 1d"),
        ("data.n == 2.50", "data.n == 2.5"),
        ("data.n == 0.00001", "data.n == 0.00001"),
        ("data.n == -0", "data.n == 0"),
        ("data.s == 'it''s'", None),
        ("data.s == 'a\"b'", 'data.s == "a\\"b"'),
        ("((a.b || c.d)) && e.f", "(a.b || c.d) && e.f"),
        ("!(a.b)", "!a.b"),
        ("!(a.b && c.d)", "!(a.b && c.d)"),
        ("a.b || (c.d || e.f)", "a.b || (c.d || e.f)"),
    ],
)
def test_format_is_canonical(text: str, canonical: str | None) -> None:
    try:
        expr = parse(text)
    except ExprError:
        assert canonical is None
        return
    assert format_expr(expr) == canonical
    assert parse(format_expr(expr)) == expr


@pytest.mark.parametrize("number", [1e300, -1e300, 5e-324, 1.7976931348623157e308, 0.1 + 0.2])
def test_extreme_numbers_round_trip(number: float) -> None:
    for expr in (Compare(Field("data", ("n",)), "==", Num(number)), Compare(Field("idle_for"), ">", Dur(abs(number)))):
        assert parse(format_expr(expr)) == expr


# ---- properties ----------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True).filter(lambda s: s not in {"true", "false"})
_patterns = st.one_of(
    st.just("*"),
    st.lists(st.one_of(_names, st.just("*"), _names.map(lambda s: s + "*")), min_size=2, max_size=3).map(".".join),
)
_data_fields = st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,5}", fullmatch=True), min_size=1, max_size=3).map(
    lambda keys: Field("data", tuple(keys))
)
_string_fields = st.sampled_from(["type", "node", "project", "session"]).map(Field)
_number_fields = st.sampled_from(
    ["idle_for", "consecutive_errors", "compaction_count", "cost.daily", "cost.project_daily"]
).map(Field)
# Bounded magnitudes keep a 12-leaf expression under MAX_LENGTH (5e-324 alone is 300+ digits;
# test_extreme_numbers_round_trip covers those).
_finite = st.floats(min_value=-1e12, max_value=1e12).filter(lambda x: x == 0 or abs(x) >= 1e-12)
_numbers = _finite.map(lambda x: Num(x + 0.0))
_durations = _finite.map(lambda x: Dur(abs(x) + 0.0))
_eq_values = st.one_of(_numbers, _durations, st.text(max_size=8).map(Str), st.booleans().map(Bool))
_equality = st.sampled_from(["==", "!="])
_ordering = st.sampled_from([">", ">=", "<", "<="])
_comparisons = st.one_of(
    st.builds(Compare, _data_fields, _equality, _eq_values),
    st.builds(Compare, _data_fields | _number_fields, _ordering | _equality, st.one_of(_numbers, _durations)),
    st.builds(Compare, _string_fields, _equality, st.text(max_size=8).map(Str)),
    st.builds(Compare, st.just(Field("status")), _equality, st.sampled_from(SESSION_STATUSES).map(Str)),
)
_leaves = st.one_of(_patterns.map(Pattern), _comparisons)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    many = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(children.map(Not), many.map(And), many.map(Or))


expressions: st.SearchStrategy[Expr] = st.recursive(_leaves, _extend, max_leaves=12)


@settings(max_examples=500, deadline=None, database=None)
@given(expressions)
def test_round_trip(expr: Expr) -> None:
    text = format_expr(expr)
    assert parse(text) == expr
    assert format_expr(parse(text)) == text


_alphabet = st.sampled_from([*"ab.*_-()!&|=<>\"'\\ 0123456789smhd\tx#é", "&&", "||", "==", "data.", "status"])


@settings(max_examples=1000, deadline=None, database=None)
@given(st.one_of(st.text(max_size=80), st.lists(_alphabet, max_size=40).map("".join)))
def test_parser_raises_only_expr_error(text: str) -> None:
    try:
        expr = parse(text)
    except ExprError as exc:
        position = exc.position
    else:
        assert parse(format_expr(expr)) == expr
        return
    assert 0 <= position <= max(len(text), MAX_LENGTH)
