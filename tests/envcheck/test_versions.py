"""Versions, constraints and ``--version`` parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from halswarm.envcheck.versions import Version, VersionError, extract_version, parse_constraint, parse_version

versions = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5).map(
    lambda parts: Version(tuple(parts))
)


@given(versions)
def test_version_text_round_trips(version: Version) -> None:
    assert parse_version(str(version)) == version
    assert str(parse_version(str(version))) == str(version)


@given(versions, versions)
def test_order_is_numeric_and_total(a: Version, b: Version) -> None:
    assert (a < b) + (a == b) + (a > b) == 1
    assert (a <= b) == (not a > b)
    assert parse_constraint(f">={b}").allows(a) == (a >= b)
    assert parse_constraint(f"<{b}").allows(a) == (a < b)
    assert parse_constraint(f"!={b}").allows(a) == (a != b)


@given(versions, versions, versions)
def test_order_is_transitive(a: Version, b: Version, c: Version) -> None:
    if a <= b and b <= c:
        assert a <= c


@given(versions)
def test_trailing_zeros_do_not_matter(version: Version) -> None:
    padded = Version((*version.parts, 0, 0))
    assert padded == version
    assert hash(padded) == hash(version)


def test_numeric_not_lexicographic() -> None:
    assert parse_version("1.10") > parse_version("1.9")
    assert parse_version("v20.20.2") == Version((20, 20, 2))


@pytest.mark.parametrize(
    ("constraint", "version", "allowed"),
    [
        (">=17", "17.0.15", True),
        (">=17", "11.0.2", False),
        (">=20 <23", "22.9", True),
        (">=20 <23", "23.0", False),
        (">=3.11,<3.13", "3.12.1", True),
        (">=3.11, <3.13", "3.13", False),
        ("~=3.11", "3.14", True),
        ("~=3.11", "4.0", False),
        ("~=3.11", "3.10", False),
        ("~=3.11.2", "3.11.9", True),
        ("~=3.11.2", "3.12", False),
        ("==17", "17.0.0", True),
        ("!=17", "17.0", False),
        ("> 2", "2.0.1", True),
        ("<=2", "2.0.1", False),
    ],
)
def test_constraints(constraint: str, version: str, allowed: bool) -> None:
    assert parse_constraint(constraint).allows(parse_version(version)) is allowed


@pytest.mark.parametrize("text", ["", "17", ">=x", ">=17 <", "=>17", ">=1<2", "~=3", ">=17; rm -rf /", "__import__"])
def test_invalid_constraints_are_refused(text: str) -> None:
    with pytest.raises(VersionError, match="is not a version constraint"):
        parse_constraint(text)


def test_constraint_text_is_canonical() -> None:
    assert str(parse_constraint(" >= 20 ,<23 ")) == ">=20 <23"


@pytest.mark.parametrize(
    ("runtime", "output", "expected"),
    [
        ("java", 'openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', "17.0.15"),
        ("java", 'java version "1.8.0_392"', "8.0"),
        ("node", "v20.20.2\n", "20.20.2"),
        ("python", "Python 3.11.7\n", "3.11.7"),
        ("python3", "Python 3.12.0rc1\n", "3.12.0"),
        ("go", "go version go1.22.1 linux/amd64\n", "1.22.1"),
        ("gradle", "\n------\nGradle 8.7\n------\nKotlin: 1.9.22\n", "8.7"),
        ("git", "git version 2.39.5\n", "2.39.5"),
        ("rustc", "rustc 1.77.0 (aedd173a2 2024-03-17)", "1.77.0"),
        ("thing", "thing build 42", "42"),
        ("thing", "no version here", None),
    ],
)
def test_extract_version(runtime: str, output: str, expected: str | None) -> None:
    found = extract_version(runtime, output)
    assert (str(found) if found is not None else None) == expected
