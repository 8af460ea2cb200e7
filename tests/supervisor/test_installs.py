"""Approving declared installs against a real supervisor and an agent played by the test:
one run of an install per node at a time (what the dispatcher is delivering decides), a
retried approval gets the run under way, and a finished install may run again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import orjson
import pytest
import trio

from halswarm.config.supervisor import EnvConfig
from halswarm.proto import CommandResult, encode
from halswarm.store.policy_sql import AuditQuery
from halswarm.supervisor.installs import InstallRefusedError
from halswarm.testing import open_supervisor, supervisor_config
from tests.supervisor.test_dispatcher import NODE, PROJECT, next_command, raw_agent

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject

MANIFEST: Final[JSONObject] = {
    "version": 1,
    "projects": {
        PROJECT: {
            "runtimes": {"fakert": ">=2", "otherrt": ">=1"},
            "install": {
                "upgrade": {"command": ["true"], "timeout_sec": 30, "fixes": "runtime:fakert"},
                "other": {"command": ["true"], "timeout_sec": 30, "fixes": "runtime:otherrt"},
            },
        }
    },
}


def outcome(install: str) -> JSONObject:
    """What an agent answers for a successful ``env_install``."""
    return {
        "project": PROJECT,
        "install": install,
        "command": ["true"],
        "exit_code": 0,
        "ok": True,
        "timed_out": False,
        "truncated": False,
        "error": None,
        "stdout": "",
        "stderr": "",
    }


async def test_an_install_runs_once_at_a_time_on_a_node_and_again_after_it_finished(tmp_path: Path) -> None:
    """Guards: a second approval ran an install already running, or one that had finished
    stayed refused as running, or another install of the project was held up by it."""
    manifest_path = tmp_path / "env-manifest.json"
    manifest_path.write_bytes(orjson.dumps(MANIFEST))
    config = attrs.evolve(supervisor_config(tmp_path / "s.db"), env=EnvConfig(manifest_path=str(manifest_path)))
    with trio.fail_after(30):
        async with open_supervisor(config) as sup, raw_agent(sup) as agent:
            assert sup.installs is not None
            installs = sup.installs
            first = await installs.approve(
                NODE, PROJECT, "upgrade", actor="token:ops", source="http", idempotency_key="first"
            )
            assert (await next_command(agent)).command_id == first.id

            with pytest.raises(InstallRefusedError) as refused:
                await installs.approve(NODE, PROJECT, "upgrade", actor="discord:1", source="discord")
            assert (refused.value.code, refused.value.message) == (
                "install_running",
                f"install 'upgrade' is already running on {NODE} (approved by token:ops, command {first.id})",
            )
            # The same request again (a client retrying) is the run under way, not a refusal.
            retried = await installs.approve(
                NODE, PROJECT, "upgrade", actor="token:ops", source="http", idempotency_key="first"
            )
            assert retried.id == first.id

            # Another install of the project is another run.
            other = await installs.approve(NODE, PROJECT, "other", actor="token:ops", source="http")
            assert (await next_command(agent)).command_id == other.id

            await agent.send_message(encode(CommandResult(first.id, ok=True, result=outcome("upgrade"))))
            done = await sup.dispatcher.wait(first.id, 10)
            assert done is not None
            assert done.status == "succeeded"
            again = await installs.approve(NODE, PROJECT, "upgrade", actor="discord:1", source="discord")
            assert again.id != first.id
            assert (await next_command(agent)).command_id == again.id
            approvals = await sup.store.query_audit(AuditQuery(action="env.install.approve"))  # newest first
            assert [(row.actor, row.detail["install"]) for row in approvals] == [
                ("discord:1", "upgrade"),
                ("token:ops", "other"),
                ("token:ops", "upgrade"),
            ]
