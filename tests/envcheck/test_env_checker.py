"""The agent's environment checker over time and across restarts (issue #9).

- the periodic loop on trio's MockClock: checks at the interval and no more often, at once
  on a new manifest (not on a resend), drift and failure events only when they change;
- the last manifest is kept (with its hash) in the agent's data dir: after a restart the
  agent checks with it while the supervisor is unreachable; a damaged one is ignored with
  a warning; "no manifest" is kept too.

The MockClock here does not autojump while the test runs (checks run real git
subprocesses and worker threads): the test moves time with ``clock.jump``. Its
``autojump_threshold`` is only a hang guard: blocked for 10 real seconds, it jumps to the
next deadline, and ``fail_after`` ends a hung test.
"""

from __future__ import annotations

import logging
import stat
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import orjson
import pytest
import trio
import trio.testing

from halswarm.agent.backend import EventSink, OutEvent
from halswarm.agent.envchecker import MANIFEST_KEY, EnvChecker
from halswarm.agent.outbox import open_outbox
from halswarm.convert import converter
from halswarm.envcheck.environment import OpencodeEnvironment
from halswarm.envcheck.manifest import manifest_hash, parse_manifest
from halswarm.models import Project
from halswarm.proto.messages import CommandMsg, EnvManifest
from halswarm.testing import open_sim_agent, open_supervisor, wait_until
from halswarm.testing.processes import free_port
from halswarm.timeutil import system_now
from tests.envcheck.conftest import env_supervisor_config, workspace_agent_config
from tests.envcheck.test_env_wiring import MANIFEST

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from halswarm.agent.outbox import Outbox
    from halswarm.config import AgentConfig
    from halswarm.jsontypes import JSONObject
    from tests.envcheck.conftest import Workspace

INTERVAL: Final = 600.0
REPORT: Final = "env.check.report"
FAIL: Final = "env.check.fail"
DRIFT: Final = "env.drift.detected"


class RecordingSink(EventSink):
    """The real sink (events go to the outbox), noting when each batch was emitted."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox, now=system_now)
        self.runs: list[tuple[float, list[str]]] = []

    async def emit(self, events: list[OutEvent]) -> None:
        self.runs.append((trio.current_time(), [e.type for e in events]))
        await super().emit(events)


def _message(raw: JSONObject) -> EnvManifest:
    """What the supervisor sends: the parsed, self-contained manifest and its hash."""
    parsed = parse_manifest(raw)
    body: JSONObject = converter.unstructure(parsed)
    return EnvManifest(manifest_hash(parsed), body)


@asynccontextmanager
async def _checker(
    workspace: Workspace, outbox: Outbox, interval: float = INTERVAL
) -> AsyncGenerator[tuple[EnvChecker, RecordingSink], None]:
    checker = EnvChecker(
        "n1",
        [Project("app", str(workspace.directory))],
        outbox=outbox,
        now=system_now,
        interval_sec=interval,
        environment=OpencodeEnvironment(process_env=workspace.env),
    )
    sink = RecordingSink(outbox)
    async with trio.open_nursery() as nursery:
        await nursery.start(checker.run, sink)
        try:
            yield checker, sink
        finally:
            nursery.cancel_scope.cancel()


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=10.0)


async def _received(checker: EnvChecker, manifest: JSONObject) -> None:
    """Hand *checker* a manifest from the supervisor; return once it has been checked."""
    checked = checker.checked.waiter()
    checker.set_manifest(_message(manifest))
    await checked.wait()


async def _advance(clock: trio.testing.MockClock, checker: EnvChecker, seconds: float) -> None:
    """Move time by *seconds* and wait for the check that must run then."""
    checked = checker.checked.waiter()
    clock.jump(seconds)
    await checked.wait()


async def _quiet(clock: trio.testing.MockClock, seconds: float) -> None:
    """Move time by *seconds*, during which no check may start."""
    clock.jump(seconds)
    await trio.testing.wait_all_tasks_blocked()


async def test_periodic_checks_on_the_interval_and_at_once_on_a_new_manifest(
    tmp_path: Path, workspace: Workspace, clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(INTERVAL * 10):
        async with open_outbox(tmp_path / "agent") as outbox, _checker(workspace, outbox) as (checker, sink):
            t0 = trio.current_time()
            await _quiet(clock, 100)  # no manifest yet: nothing to check against
            assert sink.runs == []

            await _received(checker, MANIFEST)
            # Degraded (no AGENT.md, hook or .context/): reported, with its failures and drift.
            assert sink.runs == [(t0 + 100, [REPORT, FAIL, DRIFT])]

            await _quiet(clock, INTERVAL - 100 - 1)
            assert len(sink.runs) == 1  # not before the interval
            await _advance(clock, checker, 1)
            # Nothing changed: the report only, no repeated failure or drift event.
            assert sink.runs[-1] == (t0 + INTERVAL, [REPORT])

            # The drift changes (AGENT.md appears, but not as the template says): one
            # drift event; what failed is the same, so no failure event.
            (workspace.directory / "AGENT.md").write_text("written by hand\n")
            await _quiet(clock, INTERVAL - 1)
            await _advance(clock, checker, 1)
            assert sink.runs[-1] == (t0 + 2 * INTERVAL, [REPORT, DRIFT])
            assert len(sink.runs) == 3

            # A resend of the same manifest (a reconnect) checks nothing...
            await _quiet(clock, 100)
            checker.set_manifest(_message(MANIFEST))
            await trio.testing.wait_all_tasks_blocked()
            assert len(sink.runs) == 3
            # ...a changed one is checked at once,
            changed = orjson.loads(orjson.dumps(MANIFEST))
            changed["projects"]["app"]["tools"] = ["git", "sh"]
            await _received(checker, changed)
            assert sink.runs[-1] == (t0 + 2 * INTERVAL + 100, [REPORT])
            assert checker.reports["app"].manifest_hash == _message(changed).manifest_hash
            # ...and the schedule keeps its grid: the next check is at 3 intervals.
            await _quiet(clock, INTERVAL - 100 - 1)
            assert len(sink.runs) == 4
            await _advance(clock, checker, 1)
            assert sink.runs[-1] == (t0 + 3 * INTERVAL, [REPORT])
            assert len(sink.runs) == 5


async def test_interval_zero_checks_only_on_a_new_manifest(
    tmp_path: Path, workspace: Workspace, clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(INTERVAL * 10):
        async with (
            open_outbox(tmp_path / "agent") as outbox,
            _checker(workspace, outbox, interval=0) as (checker, sink),
        ):
            await _received(checker, MANIFEST)
            await _quiet(clock, INTERVAL * 5)
            assert len(sink.runs) == 1


async def test_the_manifest_is_kept_across_agent_restarts_and_checks_go_on_offline(
    tmp_path: Path, workspace: Workspace
) -> None:
    sup_config = env_supervisor_config(tmp_path, MANIFEST)
    data_dir = tmp_path / "agent"

    def agent(ws_port: int, interval: float) -> AgentConfig:
        return workspace_agent_config(ws_port, data_dir, workspace, interval=interval)

    with trio.fail_after(60):
        async with open_supervisor(sup_config) as sup:
            assert sup.env is not None
            supervisor_hash = sup.env.hash
            config = agent(sup.ws_port, 0)
            async with open_sim_agent(config, sessions=1, rate=0) as handle:
                await wait_until(lambda: "app" in handle.env.reports, what="the first check")
        # The supervisor is gone; the agent restarts with a short interval and must keep
        # checking with the manifest it had (nothing listens on this port).
        offline = attrs.evolve(config, supervisor_url=f"ws://127.0.0.1:{free_port()}", env_check_interval_sec=0.2)
        async with open_sim_agent(offline, sessions=1, rate=0) as handle, trio.open_nursery() as nursery:
            assert handle.env.manifest_hash == supervisor_hash  # restored before any check
            checks = 0

            async def count() -> None:
                nonlocal checks
                while True:
                    await handle.env.checked.waiter().wait()
                    checks += 1

            nursery.start_soon(count)
            await wait_until(lambda: checks >= 2, what="two periodic checks while offline")
            assert not handle.status.connected
            report = handle.env.reports["app"]
            assert (report.manifest_hash, report.state) == (supervisor_hash, "degraded")
            nursery.cancel_scope.cancel()
    # The manifest's env values may be secrets: the state directory is the agent's alone.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (b"{half a manifest", "not JSON"),
        (orjson.dumps({**attrs.asdict(_message(MANIFEST)), "manifest_hash": "0" * 64}), "differs from the stored"),
        (orjson.dumps(_message(MANIFEST).manifest), "not a stored manifest with its hash"),
    ],
    ids=["not-json", "wrong-hash", "no-hash"],
)
async def test_a_damaged_stored_manifest_is_ignored_with_a_warning(
    tmp_path: Path, workspace: Workspace, caplog: pytest.LogCaptureFixture, stored: bytes, problem: str
) -> None:
    caplog.set_level(logging.WARNING, logger="halswarm.agent.envchecker")
    with trio.fail_after(20):
        async with open_outbox(tmp_path / "agent") as outbox:
            await outbox.put_kv(MANIFEST_KEY, stored)
            async with _checker(workspace, outbox) as (checker, sink):
                await trio.testing.wait_all_tasks_blocked()
                assert checker.manifest is None  # waits for the supervisor's
                assert sink.runs == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("stored environment manifest ignored:")
    assert problem in warning


async def test_no_manifest_from_the_supervisor_is_kept_too(tmp_path: Path, workspace: Workspace) -> None:
    with trio.fail_after(20):
        async with open_outbox(tmp_path / "agent") as outbox:
            async with _checker(workspace, outbox) as (checker, _sink):
                await _received(checker, MANIFEST)
            async with _checker(workspace, outbox) as (checker, sink):
                assert checker.manifest_hash == _message(MANIFEST).manifest_hash
                await wait_until(lambda: len(sink.runs) == 1, what="the check at start")
                # The supervisor no longer holds one (env.manifest_path removed).
                checker.set_manifest(EnvManifest("", None))

                async def forgotten() -> bool:
                    saved = await outbox.get_kv(MANIFEST_KEY)
                    return saved is not None and orjson.loads(saved)["manifest"] is None

                await wait_until(forgotten, what="the empty manifest stored")
            async with _checker(workspace, outbox) as (checker, sink):
                await trio.testing.wait_all_tasks_blocked()
                assert (checker.manifest, checker.manifest_hash) == (None, "")
                assert sink.runs == []


async def test_provisioning_checks_each_project_before_and_after_only(tmp_path: Path, workspace: Workspace) -> None:
    runs = tmp_path / "fakert.runs"
    # Every check asks the runtime for its version once: its runs count the checks.
    workspace.runtime("fakert", f"echo run >> {runs}\necho fakert 2.1")
    manifest = orjson.loads(orjson.dumps(MANIFEST))
    manifest["projects"]["app"]["runtimes"] = {"fakert": ">=2"}

    def checks() -> int:
        return len(runs.read_text().splitlines())

    with trio.fail_after(30):
        async with (
            open_outbox(tmp_path / "agent") as outbox,
            _checker(workspace, outbox, interval=0) as (checker, sink),
        ):
            await _received(checker, manifest)
            assert (checks(), checker.reports["app"].state) == (1, "degraded")

            dry = await checker.execute(CommandMsg("c1", "k1", "env_provision", "n1", {"dry_run": True}))
            assert checks() == 2  # a dry run only plans: one check
            assert [p["state_after"] for p in _projects(dry)] == [None]

            done = await checker.execute(CommandMsg("c2", "k2", "env_provision", "n1"))
            assert checks() == 4  # one check before applying, one after: no third for the report
            assert [(p["state_before"], p["state_after"]) for p in _projects(done)] == [("degraded", "ready")]
            # The check after applying is what is reported (it clears the failure and drift).
            assert checker.reports["app"].state == "ready"
            assert [types for _, types in sink.runs[-2:]] == [[REPORT], ["env.provision.complete", "agent-md.updated"]]


def _projects(result: JSONObject) -> list[JSONObject]:
    projects = result["projects"]
    assert isinstance(projects, list)
    return [p for p in projects if isinstance(p, dict)]
