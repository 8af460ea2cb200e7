"""Issue #9 end to end: supervisor holds the manifest, the agent checks a real git repository,
reports and emits events; provisioning and an approved install go through the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import orjson
import pytest
import trio

from halswarm.config import ConfigError
from halswarm.config.security import ApiToken
from halswarm.config.supervisor import EnvConfig, parse_supervisor_config
from halswarm.convert import structure_strict
from halswarm.envcheck.views import EnvStatus
from halswarm.store import EventQuery
from halswarm.testing import api_client, open_sim_agent, open_supervisor, supervisor_config, wait_until
from tests.envcheck.conftest import REMOTE, env_supervisor_config, workspace_agent_config

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject
    from halswarm.supervisor.app import SupervisorHandle
    from tests.envcheck.conftest import Workspace

VIEWER: Final = "viewer-token-" + "v" * 16
OPERATOR: Final = "operator-token-" + "o" * 16

MANIFEST: Final[JSONObject] = {
    "version": 1,
    "projects": {
        "app": {
            "tools": ["git"],
            "agent": {"template": "# {{ project }}\nScope: {{ scope }}\n", "variables": {"scope": "the app"}},
            "git": {"remote": REMOTE, "branch": "main", "hooks": {"pre-commit": "#!/bin/sh\nexit 0\n"}},
        }
    },
}
ROLE_TOKENS: Final = (ApiToken("dash", "viewer", token=VIEWER), ApiToken("ops", "operator", token=OPERATOR))


def _with_runtime(bin_dir: Path) -> JSONObject:
    """The manifest plus runtime fakert >=2 and a declared install that upgrades it."""
    script = (
        f"printf '#!/bin/sh\\necho fakert 2.1\\n' > {bin_dir}/fakert && chmod 755 {bin_dir}/fakert && echo upgraded"
    )
    manifest = orjson.loads(orjson.dumps(MANIFEST))
    app = manifest["projects"]["app"]
    app["runtimes"] = {"fakert": ">=2"}
    app["install"] = {"upgrade": {"command": ["sh", "-c", script], "timeout_sec": 30, "fixes": "runtime:fakert"}}
    value: JSONObject = manifest
    return value


async def _events(sup: SupervisorHandle, event_type: str) -> list[JSONObject]:
    return [e.data for e in await sup.store.query_events(EventQuery(type=event_type, limit=1000))]


async def _status(sup: SupervisorHandle) -> EnvStatus:
    async with api_client(sup) as client:
        response = await client.get("/api/v1/env/status", params={"project": "app"})
    assert response.status_code == 200
    return structure_strict(response.json(), EnvStatus)


async def test_drift_provision_approval_end_to_end(tmp_path: Path, workspace: Workspace) -> None:
    config = env_supervisor_config(tmp_path, MANIFEST, tokens=ROLE_TOKENS)
    with trio.fail_after(60):
        async with open_supervisor(config) as sup:
            agent = workspace_agent_config(sup.ws_port, tmp_path / "agent", workspace)
            async with open_sim_agent(agent, sessions=1, rate=0):
                assert sup.env is not None
                env = sup.env

                # 1. Connecting with a drifted project: events, and the status shows it.
                await wait_until(lambda: ("n1", "app") in env.reports, what="first report")

                async def drift_events_stored() -> bool:
                    return bool(await _events(sup, "env.drift.detected")) and bool(await _events(sup, "env.check.fail"))

                await wait_until(drift_events_stored, what="drift events")
                status = await _status(sup)
                (report,) = status.reports
                assert report.state == "degraded"
                drift = {d.check for d in report.drift}
                assert {"agent_config:AGENT.md", "git:hook.pre-commit"} <= drift
                assert any(c.startswith("context:") for c in drift)
                (fail,) = await _events(sup, "env.check.fail")
                assert fail["state"] == "degraded"

                async with api_client(sup) as client:
                    diff = (await client.get("/api/v1/agent-md/app/diff")).json()
                    assert diff["diffs"][0]["matches"] is False

                    # 2. Provisioning through the API makes it ready (a dry run changes nothing).
                    dry = await client.post("/api/v1/env/provision/n1", params={"dry_run": "true"})
                    assert dry.status_code == 200, dry.text
                    assert not (workspace.directory / "AGENT.md").exists()
                    done = await client.post("/api/v1/env/provision/n1")
                    assert done.status_code == 200, done.text
                    (result,) = done.json()["command"]["result"]["projects"]
                    assert result["state_after"] == "ready"
                await wait_until(lambda: env.reports["n1", "app"].state == "ready", what="ready report")
                assert (workspace.directory / "AGENT.md").read_text() == "# app\nScope: the app\n"
                assert (await _events(sup, "env.provision.complete"))[0]["project"] == "app"
                drift_events = len(await _events(sup, "env.drift.detected"))

                # 3. A manifest PUT with a bad key is a 400 naming the key path; roles hold.
                async with api_client(sup) as admin, api_client(sup, token=OPERATOR) as ops:
                    bad = orjson.loads(orjson.dumps(MANIFEST))
                    bad["projects"]["app"]["runtimes"] = {"java": ">=x"}
                    response = await admin.put("/api/v1/env/manifest", content=orjson.dumps(bad))
                    assert response.status_code == 400
                    assert "projects.app.runtimes.java" in response.json()["error"]["message"]
                    refused = await ops.put("/api/v1/env/manifest", content=orjson.dumps(MANIFEST))
                    assert refused.status_code == 403

                    # 4. A new manifest reaches the agent: the runtime is too old; the install
                    # runs only after approval and its output is in the command result.
                    workspace.runtime("fakert", "echo fakert 1.4")  # before the agent can check
                    changed = await admin.put(
                        "/api/v1/env/manifest", content=orjson.dumps(_with_runtime(workspace.bin_dir))
                    )
                    assert changed.status_code == 200, changed.text
                    await wait_until(
                        lambda: (
                            env.reports["n1", "app"].manifest_hash == env.hash
                            and env.reports["n1", "app"].state == "degraded"
                        ),
                        what="report against the new manifest",
                    )
                    failed = env.reports["n1", "app"].failed()
                    assert failed == ["runtime:fakert"]
                    provision = await ops.post("/api/v1/env/provision/n1")
                    (result,) = provision.json()["command"]["result"]["projects"]
                    assert result["manual"][0]["install"] == "upgrade"
                    assert "fakert 2.1" not in (workspace.bin_dir / "fakert").read_text()  # not run

                    # Not through the generic route: only an approval runs an install.
                    install_args = {"project": "app", "install": "upgrade"}
                    bypass = await ops.post(
                        "/api/v1/commands", json={"type": "env_install", "target": "n1", "args": install_args}
                    )
                    assert bypass.status_code == 403, bypass.text
                    assert bypass.json()["error"]["code"] == "approval_required"
                    assert "fakert 2.1" not in (workspace.bin_dir / "fakert").read_text()
                    approved = await ops.post("/api/v1/env/approve/n1", json={"project": "app", "install": "upgrade"})
                    assert approved.status_code == 200, approved.text
                    outcome = approved.json()["command"]["result"]
                    assert outcome["exit_code"] == 0
                    assert outcome["stdout"] == "upgraded\n"
                    assert outcome["state_after"] == "ready"
                    audit = (await admin.get("/api/v1/audit", params={"action": "env.install.approve"})).json()
                    row = audit["audit"][0]
                    assert (row["actor"], row["outcome"]) == ("token:ops", "approved")
                    assert row["detail"]["manifest_hash"] == env.hash
                await wait_until(lambda: env.reports["n1", "app"].state == "ready", what="ready after install")
                # The drift set did not change again: no new drift event.
                assert len(await _events(sup, "env.drift.detected")) == drift_events


async def test_roles_on_the_env_routes(tmp_path: Path) -> None:
    base = supervisor_config(tmp_path / "sup.db")
    server = attrs.evolve(
        base.server,
        tokens=[ApiToken("dash", "viewer", token=VIEWER), ApiToken("ops", "operator", token=OPERATOR)],
    )
    with trio.fail_after(30):
        async with (
            open_supervisor(attrs.evolve(base, server=server)) as sup,
            api_client(sup, token=VIEWER) as viewer,
            api_client(sup, token=OPERATOR) as ops,
            api_client(sup, token=None) as anonymous,
        ):
            assert (await anonymous.get("/api/v1/env/status")).status_code == 401
            assert (await viewer.get("/api/v1/env/status")).status_code == 200
            assert (await viewer.get("/api/v1/env/manifest")).json()["manifest"] is None
            assert (await viewer.post("/api/v1/env/check/n1")).status_code == 403
            assert (await viewer.post("/api/v1/agent-md/sync", json={"project": "app"})).status_code == 403
            assert (await ops.put("/api/v1/env/manifest", json={})).status_code == 403
            assert (await ops.post("/api/v1/env/check/n1")).status_code == 404  # no such node
            approve = await ops.post("/api/v1/env/approve/n1", json={"project": "app", "install": "x"})
            assert approve.status_code == 404


def test_an_invalid_manifest_file_fails_config_validation_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "env-manifest.json"
    path.write_bytes(orjson.dumps({"projects": {"app": {"runtimes": {"java": ">=x"}}}}))
    raw: JSONObject = {"server": {"auth_token": "t" * 20}, "env": {"manifest_path": str(path)}}
    with pytest.raises(ConfigError) as caught:
        parse_supervisor_config(raw)
    (problem,) = caught.value.problems
    assert problem.startswith(f"env.manifest_path: {path}: projects.app.runtimes.java:")


async def test_env_values_are_shown_to_admins_only(tmp_path: Path) -> None:
    manifest = orjson.loads(orjson.dumps(MANIFEST))
    manifest["projects"]["app"]["env"] = {"API_KEY": {"required": True, "value": "s3cret-env-value"}}
    manifest["defaults"] = {"env": {"REGION": {"value": "eu-west-1"}}}
    manifest_path = tmp_path / "env-manifest.json"
    manifest_path.write_bytes(orjson.dumps(manifest))
    base = supervisor_config(tmp_path / "sup.db")
    server = attrs.evolve(base.server, tokens=[ApiToken("dash", "viewer", token=VIEWER)])
    config = attrs.evolve(base, server=server, env=EnvConfig(manifest_path=str(manifest_path)))
    with trio.fail_after(30):
        async with (
            open_supervisor(config) as sup,
            api_client(sup, token=VIEWER) as viewer,
            api_client(sup) as admin,
        ):
            seen = (await viewer.get("/api/v1/env/manifest")).text
            full = (await admin.get("/api/v1/env/manifest")).json()
    assert "s3cret-env-value" not in seen
    assert "eu-west-1" not in seen
    assert '"API_KEY":{"required":true,"value":"[REDACTED]"}' in seen.replace(" ", "")
    assert full["manifest"]["projects"]["app"]["env"]["API_KEY"]["value"] == "s3cret-env-value"
