"""Route targets and durations: parsing, errors, canonical forms."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.durations import DurationError, format_duration, parse_duration, seconds_of
from halswarm.channels.targets import Target, TargetError


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("discord#alerts", Target("discord", "alerts")),
        ("discord#dev-log", Target("discord", "dev-log")),
        ("webhook#n8n", Target("webhook", "n8n")),
        ("slack#ops.team_1", Target("slack", "ops.team_1")),
    ],
)
def test_targets(text: str, target: Target) -> None:
    assert Target.parse(text) == target
    assert str(target) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("alerts", "is not a target"),
        ("telegram#ops", "unknown target kind 'telegram'"),
        ("Discord#alerts", "unknown target kind 'Discord'"),
        ("#alerts", "unknown target kind ''"),
        ("discord#", "bad name ''"),
        ("discord#a b", "bad name 'a b'"),
        ("discord#-x", "bad name '-x'"),
        ("discord#a#b", "bad name 'a#b'"),
        ("discord#" + "a" * 101, "at most 100 characters"),
    ],
)
def test_bad_targets(text: str, fragment: str) -> None:
    with pytest.raises(TargetError) as info:
        Target.parse(text)
    assert fragment in str(info.value)
    assert "discord#<name>, webhook#<name>, slack#<name>" in str(info.value) or "bad name" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("1h30m", 5400.0), ("0.5s", 0.5), ("0s", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "5", "m", "5 m", "-5m", "5M", "5x", "1e3s", "5m30", " 5m", "1.s", "9" * 400 + "d"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_seconds_of_config_values() -> None:
    assert seconds_of(None) == 0.0
    assert seconds_of(45) == 45.0
    assert seconds_of(2.5) == 2.5
    assert seconds_of("5m") == 300.0
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(DurationError):
            seconds_of(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (90, "90s"), (3600, "1h"), (86400, "1d"), (0.5, "0.5s"), (0, "0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=300, deadline=None, database=None)
@given(st.floats(min_value=0, max_value=1e15, allow_nan=False))
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
