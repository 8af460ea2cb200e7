"""Policy persistence and audit queries on a real SQLite file (migration 0003_policy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from halswarm.models import Command
from halswarm.policy.views import PolicyOverride
from halswarm.store import AuditRecord, open_store
from halswarm.store.policy_sql import AuditQuery, UnfinishedCommand

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.models import CommandStatus
    from halswarm.store import Store

NOW = "2026-03-10T12:00:00.000000Z"


def ts(minute: int) -> str:
    return f"2026-03-10T12:{minute:02d}:00.000000Z"


def row(minute: int, actor: str, action: str, target: str = "ses-1", outcome: str = "ok") -> AuditRecord:
    return AuditRecord(ts(minute), actor, "policy" if actor.startswith("policy:") else "http", action, target, outcome)


async def test_policy_rows_and_their_audit_rows_are_written_together(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as store:
            assert await store.load_policy_rows() == {}
            alert = row(1, "policy:error_loop", "policy.alert", outcome="raised")
            await store.save_policy_rows({"error_loop": '{"episodes": {}}', "engine.observed": "{}"}, NOW, [alert])
            await store.save_policy_rows({"error_loop": '{"episodes": {"s": 1}}'}, NOW)
            assert await store.load_policy_rows() == {
                "error_loop": '{"episodes": {"s": 1}}',
                "engine.observed": "{}",
            }
            (entry,) = await store.query_audit(AuditQuery())
            assert (entry.actor, entry.source, entry.action, entry.outcome) == (
                "policy:error_loop",
                "policy",
                "policy.alert",
                "raised",
            )


async def test_overrides_are_set_cleared_and_audited(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as store:
            override = PolicyOverride(True, "api", NOW)
            enable = row(1, "api", "policy.enable", "resume_on_idle")
            await store.set_policy_override("resume_on_idle", override, enable)
            assert await store.load_policy_overrides() == {"resume_on_idle": override}
            off = PolicyOverride(False, "api", ts(2))
            await store.set_policy_override("resume_on_idle", off, row(2, "api", "policy.disable", "resume_on_idle"))
            assert await store.load_policy_overrides() == {"resume_on_idle": off}
            await store.set_policy_override("resume_on_idle", None, row(3, "api", "policy.enable", "resume_on_idle"))
            assert await store.load_policy_overrides() == {}
            assert [e.action for e in await store.query_audit(AuditQuery(target="resume_on_idle"))] == [
                "policy.enable",
                "policy.disable",
                "policy.enable",
            ]


async def test_unfinished_commands(tmp_path: Path) -> None:
    def command(cid: str, status: CommandStatus) -> Command:
        return Command(cid, "resume_session", f"ses-{cid}", status=status, idempotency_key=cid, created_at=NOW)

    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as store:
            statuses: list[tuple[str, CommandStatus]] = [
                ("a", "pending"),
                ("b", "sent"),
                ("c", "succeeded"),
                ("d", "failed"),
            ]
            for cid, status in statuses:
                await store.insert_command(command(cid, status), row(0, "api", "command.resume_session"))
            assert await store.unfinished_commands() == [
                UnfinishedCommand("a", "resume_session", "ses-a"),
                UnfinishedCommand("b", "resume_session", "ses-b"),
            ]


async def filled(store: Store) -> None:
    rows = [
        row(1, "api", "command.resume_session", "ses-1", "accepted"),
        row(2, "policy:resume_on_idle", "command.resume_session", "ses-2", "accepted"),
        row(3, "policy:resume_on_idle", "policy.suppressed", "ses-2", "suppressed"),
        row(4, "policy:kill_on_cost", "command.abort_session", "ses-3", "accepted"),
        row(5, "api", "policy.enable", "kill_on_cost"),
        row(6, "policy:kill_on_cost", "command.abort_session", "ses-3", "succeeded"),
    ]
    await store.save_policy_rows({}, NOW, rows)


async def test_audit_filters_are_newest_first(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as store:
            await filled(store)

            async def ids(**kw: str | int) -> list[int]:
                return [e.id for e in await store.query_audit(AuditQuery(**kw))]  # type: ignore[arg-type]

            assert await ids() == [6, 5, 4, 3, 2, 1]
            assert await ids(actor="api") == [5, 1]
            assert await ids(actor="policy:*") == [6, 4, 3, 2]
            assert await ids(actor="policy:kill_on_cost") == [6, 4]
            assert await ids(action="command.*") == [6, 4, 2, 1]
            assert await ids(action="policy.suppressed") == [3]
            assert await ids(target="ses-3") == [6, 4]
            assert await ids(since=ts(2), until=ts(5)) == [4, 3, 2]
            assert await ids(actor="policy:*", action="command.*", target="ses-2") == [2]
            assert await ids(actor="nobody") == []


async def test_audit_pages_back_by_id(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as store:
            await filled(store)
            first = await store.query_audit(AuditQuery(limit=4))
            assert [e.id for e in first] == [6, 5, 4, 3]
            rest = await store.query_audit(AuditQuery(limit=4, before=first[-1].id))
            assert [e.id for e in rest] == [2, 1]
            assert [e.id for e in await store.query_audit(AuditQuery(after=4))] == [6, 5]
            newest = first[0]
            assert (newest.ts, newest.actor, newest.action, newest.target, newest.outcome, newest.detail) == (
                ts(6),
                "policy:kill_on_cost",
                "command.abort_session",
                "ses-3",
                "succeeded",
                {},
            )
