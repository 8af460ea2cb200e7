"""Rendering of env answers: the coloured diff, the status table, local and remote provisioning alike."""

from __future__ import annotations

import datetime as dt
import io

import orjson
import pytest
from rich.console import Console

from halswarm.cli.client import ApiClient
from halswarm.cli.env_render import diff_text, outcome_lines, status_table
from halswarm.convert import unstructure
from halswarm.envcheck.checks import CheckItem, DriftItem
from halswarm.envcheck.report import EnvReport
from halswarm.envcheck.views import ProvisionOutcome
from tests.envcheck.test_views import result

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


@pytest.mark.parametrize("dry_run", [False, True], ids=["applied", "dry-run"])
def test_local_and_remote_provisioning_print_alike(dry_run: bool) -> None:
    # halctl's own run, and the same outcome as a node's agent sends it over the wire.
    outcome = ProvisionOutcome.from_result(result("app", [], dry_run=dry_run))
    wire = orjson.loads(orjson.dumps({"projects": [unstructure(outcome)]}))
    (received,) = ApiClient.structure(wire, "projects", list[ProvisionOutcome])
    local = [line.plain for line in outcome_lines(outcome)]
    remote = [line.plain for line in outcome_lines(received, node="n1")]
    done = (
        ["app  1 safe action(s) planned (dry run: nothing changed)", "  would write agent file: /p/app/AGENT.md"]
        if dry_run
        else [
            "app  1 safe action(s) applied; now missing",
            "  did write agent file: /p/app/AGENT.md",
            "  failed: /p/app/docs/X.md: Permission denied",
        ]
    )
    manual = "  risky: runtime:java (expected >=17, found absent); needs approval"
    assert local == [
        *done,
        "  opencode environment gets: STAGE, TOKEN (never written to disk)",
        f"{manual} to run jdk: apt-get install -y jdk",
    ]
    # The node's prefix, and approval through the supervisor: nothing else differs.
    assert remote == [f"n1/{local[0]}", *local[1:-1], f"{manual}: halctl env approve --node n1 --project app jdk"]
