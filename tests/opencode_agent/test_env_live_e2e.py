"""A changed manifest env value reaches the real, spawned opencode (issue #9).

opencode reads its environment at start. The check compares the manifest with what the
running server got (read here from ``/proc/<pid>/environ``, independently of the agent):
a changed value is a failed check and drift until provisioning restarts the server, which
it does only while no session is busy; a session waiting for a permission keeps the
restart pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest
import trio

from halswarm.store import EventQuery
from halswarm.testing import wait_until
from tests.opencode_agent.fleet import NODE_ID, open_fleet

if TYPE_CHECKING:
    from halswarm.envcheck.report import EnvReport
    from halswarm.jsontypes import JSONObject, JSONValue
    from tests.opencode_agent.fleet import Fleet

pytestmark = pytest.mark.slow

VAR: Final = "DEPLOY_STAGE"
CHECK: Final = f"env:{VAR}"
STALE: Final = f"opencode was started with an older value of {VAR}; it reads its environment at start"


def _manifest(stage: str) -> JSONObject:
    return {"version": 1, "projects": {"app1": {"env": {VAR: {"value": stage}}}}}


def _environ(pid: int) -> dict[str, str]:
    """The environment the process was started with, as the kernel keeps it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def _running_stage(fleet: Fleet) -> str | None:
    pid = fleet.backend.runner.pid
    assert pid is not None
    return _environ(pid).get(VAR)


async def _put_manifest(fleet: Fleet, stage: str) -> EnvReport:
    """PUT the manifest; the report the agent sends against it."""
    response = await fleet.api.put("/api/v1/env/manifest", json=_manifest(stage))
    assert response.status_code == 200, response.text
    digest = response.json()["hash"]
    env = fleet.supervisor.env
    assert env is not None

    def reported() -> bool:
        report = env.reports.get((NODE_ID, "app1"))
        return report is not None and report.manifest_hash == digest

    await wait_until(reported, within=15, what=f"report against the manifest with {VAR}={stage}")
    return env.reports[NODE_ID, "app1"]


async def _provision(fleet: Fleet, *, dry_run: bool = False) -> JSONObject:
    """The agent's answer for app1."""
    response = await fleet.api.post(
        f"/api/v1/env/provision/{NODE_ID}", params={"wait": "60", "dry_run": "true" if dry_run else "false"}
    )
    assert response.status_code == 200, response.text
    command = response.json()["command"]
    assert command["status"] == "succeeded", command
    (result,) = command["result"]["projects"]
    assert isinstance(result, dict)
    return result


def _restart(result: JSONObject) -> JSONObject:
    restart = result["opencode_restart"]
    assert isinstance(restart, dict)
    return restart


async def _completions(fleet: Fleet) -> list[JSONValue]:
    events = await fleet.supervisor.store.query_events(EventQuery(type="env.provision.complete", limit=100))
    return [e.data.get("applied") for e in events]


async def test_a_changed_env_value_is_drift_until_provisioning_restarts_an_idle_opencode(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_fleet(tmp_path) as fleet:
            runner = fleet.backend.runner
            context = Path(fleet.projects[0].directory) / ".context"
            context.mkdir()
            for name in ("PROGRESS.md", "CURRENT_TASK.md", "DECISIONS.md"):
                (context / name).write_text(f"# {name}\n")
            assert _running_stage(fleet) is None

            # 1. The manifest gives a value the running server was not started with.
            report = await _put_manifest(fleet, "blue")
            assert (report.state, report.failed()) == ("degraded", [CHECK])
            (drift,) = report.drift
            assert drift.check == CHECK
            assert drift.actual == f"opencode was started with no {VAR}; it reads its environment at start"
            assert [c.fix for c in report.checks if c.id == CHECK] == ["safe"]  # provisioning applies it

            # A dry run plans the restart and does not restart.
            pid = runner.pid
            planned = _restart(await _provision(fleet, dry_run=True))
            assert (planned["status"], planned["checks"]) == ("planned", [CHECK])
            dry = await fleet.halctl("env", "provision", "--node", NODE_ID, "--dry-run")
            assert dry.exit_code == 0, dry.stdout + dry.stderr
            assert f"would restart opencode serve to apply {CHECK}" in dry.stdout
            assert runner.pid == pid

            # 2. No session is busy: provisioning restarts opencode with the new value.
            result = await _provision(fleet)
            assert _restart(result)["status"] == "restarted", result
            assert result["state_after"] == "ready"
            assert runner.pid not in (None, pid)
            assert _running_stage(fleet) == "blue"
            assert f"opencode serve restarted to apply {CHECK}" in str(await _completions(fleet))
            assert fleet.supervisor.env is not None
            assert fleet.supervisor.env.reports[NODE_ID, "app1"].state == "ready"

            # 3. A session waits for a permission: a changed value stays pending, the
            # server keeps running with the older one.
            session_id = await fleet.started("run BASH for me")
            waiting = await fleet.wait_session(session_id, "waiting on bash", lambda s: s.status == "waiting")
            report = await _put_manifest(fleet, "green")
            assert (report.state, report.failed()) == ("degraded", [CHECK])
            assert report.drift[0].actual == STALE
            # The operator sees what to do ...
            checked = await fleet.halctl("env", "check", "--node", NODE_ID)
            assert checked.exit_code == 6, checked.stdout + checked.stderr  # degraded
            assert f"fix: halctl env provision --node {NODE_ID} restarts opencode serve" in checked.stdout
            # ... and provisioning does not interrupt the session.
            pid = runner.pid
            result = await _provision(fleet)
            pending = _restart(result)
            assert pending["status"] == "pending"
            assert f"{session_id} (waiting)" in str(pending["detail"])
            assert result["state_after"] == "degraded"
            assert (runner.pid, _running_stage(fleet)) == (pid, "blue")
            provisioned = await fleet.halctl("env", "provision", "--node", NODE_ID)
            assert provisioned.exit_code == 6, provisioned.stdout + provisioned.stderr
            assert f"pending: {CHECK}: opencode serve not restarted" in provisioned.stdout
            assert (runner.pid, (await fleet.session(session_id)).status) == (pid, "waiting")

            # 4. Once the session is idle, provisioning applies it; the session survives.
            (request,) = waiting.pending.permissions
            approved = await fleet.halctl("sessions", "approve", request.id)
            assert approved.exit_code == 0, approved.stdout + approved.stderr
            await fleet.wait_session(session_id, "turn finished", lambda s: s.status == "idle")
            result = await _provision(fleet)
            assert _restart(result)["status"] == "restarted", result
            assert result["state_after"] == "ready"
            assert runner.pid != pid
            assert _running_stage(fleet) == "green"
            session = await fleet.wait_session(session_id, "resynced after the restart", lambda s: s.status == "idle")
            assert session.tokens.input > 0
