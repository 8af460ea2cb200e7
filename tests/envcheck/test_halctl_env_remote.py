"""halctl's remote env and agent-md commands against a real in-process supervisor and agent
(issue #9): status/drift tables and exit codes, check/provision via --node, approval,
manifest set, AGENT.md diff and sync, roles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import orjson
import trio

from halswarm.supervisor.app import SupervisorHandle
from halswarm.testing import TEST_TOKEN, open_sim_agent, open_supervisor, wait_until
from halswarm.testing.halctl import Result, run_halctl
from tests.envcheck.conftest import env_supervisor_config, snapshot, workspace_agent_config
from tests.envcheck.test_env_wiring import MANIFEST, OPERATOR, ROLE_TOKENS, VIEWER, _with_runtime

if TYPE_CHECKING:
    from tests.envcheck.conftest import Workspace

EXIT_DEGRADED: Final = 6


@attrs.frozen
class _Cli:
    sup: SupervisorHandle
    cwd: Path

    async def __call__(self, *args: str, token: str = TEST_TOKEN) -> Result:
        env = {"HOME": str(self.cwd), "HALCTL_URL": f"http://127.0.0.1:{self.sup.http_port}", "HALCTL_TOKEN": token}
        return await run_halctl(list(args), env=env, cwd=self.cwd)


async def test_remote_env_commands_end_to_end(tmp_path: Path, workspace: Workspace) -> None:
    config = env_supervisor_config(tmp_path, MANIFEST, tokens=ROLE_TOKENS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with trio.fail_after(90):
        async with open_supervisor(config) as sup:
            agent = workspace_agent_config(sup.ws_port, tmp_path / "agent", workspace)
            async with open_sim_agent(agent, sessions=1, rate=0):
                assert sup.env is not None
                env = sup.env
                halctl = _Cli(sup, cwd)
                await wait_until(lambda: ("n1", "app") in env.reports, what="first report")

                # Status: a table row per (node, project) and exit 6 for a degraded project.
                status = await halctl("env", "status")
                assert status.exit_code == EXIT_DEGRADED, status
                row = next(line for line in status.stdout.splitlines() if "n1" in line)
                assert row.split()[:3] == ["n1", "app", "degraded"]
                as_json = await halctl("env", "status", "--node", "n1", "-o", "json")
                assert as_json.exit_code == EXIT_DEGRADED
                reports = as_json.json()["reports"]
                assert isinstance(reports, list)
                assert [r["project"] for r in reports if isinstance(r, dict)] == ["app"]
                unknown = await halctl("env", "status", "--node", "nope")
                assert unknown.exit_code == 5, unknown

                # Drift: one row per item.
                drift = await halctl("env", "drift", "--project", "app")
                assert drift.exit_code == 0, drift
                assert "agent_config:AGENT.md" in drift.stdout
                assert "git:hook.pre-commit" in drift.stdout

                # agent-md diff shows the lines the node is missing.
                diff = await halctl("agent-md", "diff", "app")
                assert diff.exit_code == 0, diff
                assert "n1: AGENT.md differs from the template" in diff.stdout
                assert "-Scope: the app" in diff.stdout
                shown = await halctl("agent-md", "show", "app")
                assert "Scope: the app" in shown.stdout
                assert "differs" in shown.stdout

                # A viewer may look but not provision: the API's 403 message, exit 1.
                refused = await halctl("env", "provision", "--node", "n1", token=VIEWER)
                assert refused.exit_code == 1, refused
                assert "requires role operator; this token has role viewer" in refused.stderr

                # A dry run prints the plan and touches nothing.
                before = snapshot(workspace.directory)
                dry = await halctl("env", "provision", "--node", "n1", "--dry-run", token=OPERATOR)
                assert dry.exit_code == 0, dry
                assert "planned (dry run: nothing changed)" in dry.stdout
                assert "would write agent file" in dry.stdout
                assert snapshot(workspace.directory) == before

                # Provisioning for real makes it ready; a check through the agent agrees.
                done = await halctl("env", "provision", "--node", "n1", "--project", "app", token=OPERATOR)
                assert done.exit_code == 0, done
                assert "now ready" in done.stdout
                assert (workspace.directory / "AGENT.md").read_text() == "# app\nScope: the app\n"
                checked = await halctl("env", "check", "--node", "n1", token=OPERATOR)
                assert checked.exit_code == 0, checked
                assert "n1/app  ready" in checked.stdout
                assert (await halctl("agent-md", "diff", "app")).stdout.strip() == ("n1: AGENT.md matches the template")
                synced = await halctl("agent-md", "sync", "--node", "n1", "--dry-run", token=OPERATOR)
                assert synced.exit_code == 0, synced
                assert "n1/app: AGENT.md already matches" in synced.stdout

                # A bad manifest is refused with its key path (exit 1); nothing changes.
                bad = orjson.loads(orjson.dumps(MANIFEST))
                bad["projects"]["app"]["runtimes"] = {"java": ">=x"}
                (cwd / "bad.json").write_bytes(orjson.dumps(bad))
                held = env.hash
                rejected = await halctl("env", "manifest", "set", "bad.json")
                assert rejected.exit_code == 1, rejected
                assert "projects.app.runtimes.java" in rejected.stderr
                assert env.hash == held

                # A new manifest: the runtime is too old; approve runs the install and prints its output.
                workspace.runtime("fakert", "echo fakert 1.4")
                (cwd / "good.json").write_bytes(orjson.dumps(_with_runtime(workspace.bin_dir)))
                accepted = await halctl("env", "manifest", "set", "good.json")
                assert accepted.exit_code == 0, accepted
                assert "agents notified" in accepted.stdout
                await wait_until(
                    lambda: (
                        env.reports["n1", "app"].manifest_hash == env.hash
                        and env.reports["n1", "app"].state == "degraded"
                    ),
                    what="report against the new manifest",
                )
                plan = await halctl("env", "provision", "--node", "n1", token=OPERATOR)
                assert plan.exit_code == EXIT_DEGRADED, plan
                assert "halctl env approve --node n1 --project app upgrade" in plan.stdout
                approved = await halctl("env", "approve", "--node", "n1", "--project", "app", "upgrade", token=OPERATOR)
                assert approved.exit_code == 0, approved
                assert "install upgrade on n1/app: exit 0; now ready" in approved.stdout
                assert "upgraded" in approved.stdout
                missing = await halctl("env", "approve", "--node", "n1", "--project", "app", "nope", token=OPERATOR)
                assert missing.exit_code == 5, missing
                shown_manifest = await halctl("env", "manifest", "show", "-o", "json")
                assert shown_manifest.json()["hash"] == env.hash


async def test_remote_options_exclude_the_local_ones(tmp_path: Path) -> None:
    result = await run_halctl(["env", "check", "--node", "n1", "--dir", "."], env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.exit_code == 2
    assert "--node asks the supervisor" in result.stderr
