"""Rendering of remote env answers: the coloured diff and the status table."""

from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from halswarm.cli.env_render import diff_text, status_table
from halswarm.envcheck.checks import CheckItem, DriftItem
from halswarm.envcheck.report import EnvReport

DIFF = "--- template/AGENT.md\n+++ n1/AGENT.md\n@@ -1 +1 @@\n-# app\n+# old\n"


def test_a_diff_is_coloured_on_a_terminal_and_plain_elsewhere() -> None:
    text = diff_text(DIFF)
    assert text.plain == DIFF.rstrip("\n")
    styles = {text.plain[s.start : s.end].strip(): str(s.style) for s in text.spans}
    assert styles["-# app"] == "red"
    assert styles["+# old"] == "green"
    assert styles["@@ -1 +1 @@"] == "cyan"
    terminal = io.StringIO()
    Console(file=terminal, width=80, color_system="standard", force_terminal=True).print(text)
    assert "\x1b[31m-# app" in terminal.getvalue()


def test_the_status_table_counts_failed_checks_and_drift() -> None:
    failed = CheckItem("runtime", "java", "fail", ">=17", "absent", "risky")
    report = EnvReport(
        "n1", "app", "/p", "missing", "2026-11-24T10:00:00Z", "h", [failed], [DriftItem("x", "missing", "a", "b")]
    )
    out = io.StringIO()
    now = dt.datetime(2026, 11, 24, 10, 5, tzinfo=dt.UTC)
    Console(file=out, width=100, color_system=None).print(status_table([report], now))
    row = next(line for line in out.getvalue().splitlines() if line.startswith("n1"))
    assert row.split() == ["n1", "app", "missing", "1", "1", "5m", "ago"]
    assert "0 ready, 0 degraded, 1 missing" in out.getvalue()
