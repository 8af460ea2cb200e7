"""``halctl policies list|enable|disable`` and ``halctl audit`` against a real cluster, and
their tables at every terminal width."""

from __future__ import annotations

import datetime as dt
import io
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from halswarm.audit import AuditEntry
from halswarm.cli.audit import audit_table, detail_text
from halswarm.cli.policies import in_time, policies_table
from halswarm.convert import converter
from halswarm.policy.views import LastAction, PolicyInfo, PolicyOverride, RetryUse

if TYPE_CHECKING:
    from rich.table import Table

    from halswarm.testing.halctl import Halctl

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


async def test_policies_list_table_and_json(halctl: Halctl) -> None:
    table = await halctl("policies", "list")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "POLICY" in line)
    for column in ("STATE", "RETRIES", "NEXT RESET", "LAST ACTION"):
        assert column in header
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0].islower()}
    assert list(rows)[:6] == [
        "kill_on_cost",
        "restart_on_compaction",
        "error_loop",
        "stuck_busy",
        "resume_on_idle",
        "node_offline",
    ]
    assert "disabled" in rows["resume_on_idle"]
    assert "0/3 per session" in rows["resume_on_idle"]
    assert "enabled" in rows["node_offline"]
    assert "6 policies, 1 enabled" in table.stdout
    as_json = await halctl("-o", "json", "policies", "list")
    policies = converter.structure(as_json.json()["policies"], list[PolicyInfo])
    assert [p.name for p in policies][-1] == "node_offline"


async def test_enable_and_disable(halctl: Halctl) -> None:
    enabled = await halctl("policies", "enable", "resume_on_idle")
    assert enabled.exit_code == 0, enabled.stderr
    assert enabled.stdout.strip() == (
        "policy resume_on_idle enabled from the next tick (runtime override by api; the config file says disabled)"
    )
    listed = await halctl("policies", "list")
    assert "enabled (runtime)" in next(line for line in listed.stdout.splitlines() if "resume_on_idle" in line)
    disabled = await halctl("-o", "json", "policies", "disable", "resume_on_idle")
    policy = converter.structure(disabled.json()["policy"], PolicyInfo)
    assert (policy.enabled, policy.override) == (False, None)
    again = await halctl("policies", "disable", "resume_on_idle")
    assert again.stdout.strip() == "policy resume_on_idle disabled from the next tick (as in the config file)"


async def test_policy_errors_exit_with_their_codes(halctl: Halctl) -> None:
    unknown = await halctl("policies", "enable", "nope")
    assert unknown.exit_code == 5
    assert unknown.stderr.startswith("error: not found: no policy 'nope' (policies: kill_on_cost, ")
    unconfigured = await halctl("policies", "enable", "kill_on_cost")
    assert unconfigured.exit_code == 1
    assert "(policy_not_configured, HTTP 409; correlation id " in unconfigured.stderr
    assert unconfigured.stdout == ""


async def test_audit_table_json_filters_and_paging(halctl: Halctl) -> None:
    for args in (("enable", "resume_on_idle"), ("disable", "resume_on_idle"), ("enable", "stuck_busy")):
        assert (await halctl("policies", *args)).exit_code == 0
    table = await halctl("audit", "--action", "policy.*")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "ACTOR" in line)
    for column in ("ID", "TIME (UTC)", "SOURCE", "ACTION", "TARGET", "OUTCOME", "DETAIL"):
        assert column in header
    rows = [line for line in lines if " api " in line]
    assert [("stuck_busy" in r, "policy.enable" in r) for r in rows] == [(True, True), (False, False), (False, True)]
    assert "3 rows" in table.stdout
    first = await halctl("-o", "json", "audit", "--actor", "api", "--limit", "2", "--since", "1h")
    page = converter.structure(first.json()["audit"], list[AuditEntry])
    assert [(e.action, e.target) for e in page] == [
        ("policy.enable", "stuck_busy"),
        ("policy.disable", "resume_on_idle"),
    ]
    short = await halctl("audit", "--actor", "api", "--limit", "2")
    assert f"--before {page[-1].id}" in short.stdout
    older = await halctl("-o", "json", "audit", "--before", str(page[-1].id), "--target", "resume_on_idle")
    assert [e.action for e in converter.structure(older.json()["audit"], list[AuditEntry])] == ["policy.enable"]
    none = await halctl("audit", "--actor", "policy:*")
    assert none.stdout.strip() == "no audit rows match"


async def test_audit_rejects_a_bad_time_with_a_usage_error(halctl: Halctl) -> None:
    result = await halctl("audit", "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is neither an RFC 3339 time" in result.stderr


# ---- rendering ----------------------------------------------------------------------------


def render(table: Table, width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    return buffer.getvalue().splitlines()


def policy(name: str, **changes: object) -> PolicyInfo:
    base = PolicyInfo(name=name, enabled=True, configured=True, override=None, dry_run=False, config={})
    return converter.structure({**converter.unstructure(base), **changes}, PolicyInfo)


FOUND = [
    policy(
        "resume_on_idle",
        dry_run=True,
        override=converter.unstructure(PolicyOverride(True, "api", "2026-03-10T11:00:00.000000Z")),
        max_retries=3,
        retry_scope="session",
        retries_used=2,  # the fullest window's
        next_reset="2026-03-10T12:30:00.000000Z",
        windows=converter.unstructure(
            [
                RetryUse("ses_0123456789abcdef", 2, "2026-03-10T12:30:00.000000Z"),
                RetryUse("ses_fedcba9876543210", 1, "2026-03-10T12:45:00.000000Z"),
            ]
        ),
        last_action=converter.unstructure(
            LastAction(
                "2026-03-10T11:58:00.000000Z",
                "resume_session",
                "ses_0123456789abcdef",
                "idle for 320 s (threshold 300 s); resume 2 of 3 in this window",
                dry_run=True,
            )
        ),
    ),
    policy("node_offline"),
    policy("stuck_busy", enabled=False, configured=False),
]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160])
def test_policies_table_fits_every_width(width: int) -> None:
    lines = render(policies_table(FOUND, NOW, width=width), width)
    assert all(len(line) <= width for line in lines)
    row = next(line for line in lines if line.startswith("resume_on_idle"))
    assert "enabled, dry run (runtime)" in row
    if width >= 70:
        assert "2/3 ses_01234567 +1" in row
    if width >= 90:
        assert "in 30m" in row
    if width >= 160:
        assert "2m ago resume_session ses_01234567 (dry run): idle for 320 s" in row
    assert "3 policies, 2 enabled (1 in dry run)" in lines[-1]


ENTRIES = [
    AuditEntry(
        42,
        "2026-03-10T11:59:00.000000Z",
        "policy:resume_on_idle",
        "policy",
        "command.resume_session",
        "ses_0123456789abcdef",
        "dry_run",
        "abcdef0123456789",
        {"reason": "idle for 320 s", "args": {}, "idempotency_key": "resume_on_idle:ses_0123:1.0"},
    ),
    AuditEntry(41, "2026-03-10T11:58:00.000000Z", "api", "http", "policy.enable", "resume_on_idle", "ok"),
]


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_audit_table_fits_every_width(width: int) -> None:
    lines = render(audit_table(ENTRIES, width=width), width)
    assert all(len(line) <= width for line in lines)
    row = next(line for line in lines if "policy:resum" in line)
    assert "command.resume_sess" in row
    assert "dry_run" in row
    assert row.startswith("42 ") is (width >= 120)
    assert ("2026-03-10 11:59:00" in row) is (width >= 120)
    if width >= 160:
        assert "idle for 320 s" in row


def test_detail_text_puts_the_reason_first() -> None:
    assert detail_text(ENTRIES[0]) == "idle for 320 s · args={} · idempotency_key=resume_on_idle:ses_0123:1.0"
    assert detail_text(ENTRIES[1]) == ""


def test_in_time() -> None:
    assert in_time(None, NOW) == "-"
    assert in_time("2026-03-10T12:00:30.000000Z", NOW) == "in 30s"
    assert in_time("2026-03-10T15:00:00.000000Z", NOW) == "in 3h"
    assert in_time("2026-03-10T11:00:00.000000Z", NOW) == "now"
