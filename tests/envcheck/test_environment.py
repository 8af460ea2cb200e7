"""opencode's environment is built in one place: its precedence, and the runner, the agent's
checker and halctl's local check agreeing on it (a variable set in the agent config and in
the manifest is checked as the value opencode really gets)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson
import trio

from halswarm.agent.app import default_env_checker
from halswarm.agent.backend import EventSink
from halswarm.agent.opencode.runner import OpencodeRunner
from halswarm.agent.outbox import open_outbox
from halswarm.config.agent import AgentConfig, OpencodeConfig
from halswarm.convert import converter, structure_strict
from halswarm.envcheck.checks import ProjectReport
from halswarm.envcheck.environment import SERVER_CREDENTIALS, OpencodeEnvironment, manifest_environment
from halswarm.envcheck.manifest import manifest_hash, parse_manifest
from halswarm.models import Project
from halswarm.proto.messages import EnvManifest
from halswarm.testing.halctl import run_halctl
from halswarm.timeutil import system_now

if TYPE_CHECKING:
    import pytest

    from halswarm.envcheck.report import EnvReport
    from halswarm.jsontypes import JSONObject
    from tests.envcheck.conftest import Workspace

TOKEN: Final = "supervisor-token-that-tools-must-not-see"


def test_each_layer_overrides_the_ones_before() -> None:
    process = {
        "PATH": "/usr/bin",
        "SHARED": "process",
        "XDG_DATA_HOME": "/home/u/.local/share",
        "HALSWARM_AUTH_TOKEN": TOKEN,  # private prefix
        "HALCTL_TOKEN": "operator-token-1234",
        "COPIED_SECRET": TOKEN,  # a secret under another name
        "OPENCODE_SERVER_PASSWORD": "stray-password",
        "OPENCODE_SERVER_USERNAME": "stray-user",
    }
    layers = OpencodeEnvironment(
        config_env={"SHARED": "config", "CONFIG_ONLY": "c", "OPENCODE_SERVER_PASSWORD": "from-config"},
        hidden=frozenset({TOKEN}),
        state_dir=Path("/data/opencode"),
        process_env=process,
    )
    manifest = {"SHARED": "manifest", "MANIFEST_ONLY": "m", "XDG_CACHE_HOME": "/manifest/cache"}
    env = layers.build(manifest, server={"OPENCODE_SERVER_PASSWORD": "runner-password"})
    assert env == {
        "PATH": "/usr/bin",  # 1. process
        "XDG_DATA_HOME": "/data/opencode/data",  # 2. state dirs over the process's
        "XDG_STATE_HOME": "/data/opencode/state",
        "XDG_CACHE_HOME": "/manifest/cache",  # 3. the manifest over the state dirs
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "MANIFEST_ONLY": "m",
        "SHARED": "config",  # 4. opencode.env over the manifest
        "CONFIG_ONLY": "c",
        "OPENCODE_SERVER_PASSWORD": "runner-password",  # 5. only the runner's credentials
    }
    # Checks get no credentials at all, not even lower layers' ones.
    assert not set(SERVER_CREDENTIALS) & set(layers.build(manifest))


def test_without_a_state_dir_the_process_keeps_its_own() -> None:
    env = OpencodeEnvironment(process_env={"XDG_DATA_HOME": "/mine"}).build()
    assert env == {"XDG_DATA_HOME": "/mine", "OPENCODE_DISABLE_AUTOUPDATE": "1"}


def test_for_agent_hides_the_agents_secrets_but_not_what_opencode_env_hands_over(tmp_path: Path) -> None:
    config = AgentConfig(
        supervisor_url="ws://127.0.0.1:9",
        auth_token=TOKEN,
        data_dir=str(tmp_path / "agent"),
        opencode=OpencodeConfig(password="opencode-password-123", env={"PROVIDER_KEY": "sk-provider-key-1234"}),
    )
    process = {"A": TOKEN, "B": "opencode-password-123", "C": "sk-provider-key-1234"}
    env = OpencodeEnvironment.for_agent(config, process_env=process).build()
    assert "A" not in env
    assert "B" not in env
    assert env["C"] == "sk-provider-key-1234"
    assert env["PROVIDER_KEY"] == "sk-provider-key-1234"
    assert env["XDG_STATE_HOME"] == str(tmp_path / "agent" / "opencode" / "state")


def test_manifest_layer_first_project_by_name_wins() -> None:
    manifest = parse_manifest(
        {
            "defaults": {"env": {"REGION": {"value": "eu"}}},
            "projects": {
                "web": {"env": {"PORT": {"value": "80"}, "WEB": {"value": "w"}, "SECRET": {}}},
                "api": {"env": {"PORT": {"value": "8080"}}},
            },
        }
    )
    assert manifest_environment(manifest, ["web", "api"]) == {"PORT": "8080", "REGION": "eu", "WEB": "w"}
    # A hosted project the manifest does not list gets the defaults.
    assert manifest_environment(manifest, ["elsewhere"]) == {"REGION": "eu"}
    assert manifest_environment(None, ["web"]) == {}


MANIFEST: Final[JSONObject] = {
    "projects": {
        "app": {
            "env": {
                "SHARED": {"value": "fleet-value"},  # also in the agent config's opencode.env
                "APP_ONLY": {"value": "a"},
                "CONFLICT": {"value": "from-app"},
            }
        },
        "other": {"env": {"CONFLICT": {"value": "from-other"}, "OTHER_ONLY": {"value": "o"}}},
    }
}


def _env_checks(report: EnvReport | ProjectReport) -> dict[str, tuple[str, str, str | None]]:
    return {c.name: (c.status, c.actual, c.fix) for c in report.checks if c.category == "env"}


async def test_runner_checker_and_halctl_agree_on_what_opencode_gets(
    tmp_path: Path, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = {key: workspace.env[key] for key in ("PATH", "HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")}
    for key, value in {**process, "HALSWARM_AUTH_TOKEN": TOKEN, "OPENCODE_SERVER_USERNAME": "stray"}.items():
        monkeypatch.setenv(key, value)
    other = tmp_path / "other"
    other.mkdir()
    config = AgentConfig(
        supervisor_url="ws://127.0.0.1:9",
        auth_token=TOKEN,
        data_dir=str(tmp_path / "agent"),
        projects=[Project("app", str(workspace.directory)), Project("other", str(other))],
        opencode=OpencodeConfig(env={"SHARED": "node-value"}),
    )
    parsed = parse_manifest(MANIFEST)
    body: JSONObject = converter.unstructure(parsed)
    with trio.fail_after(30):
        async with open_outbox(config.resolved_data_dir()) as outbox, trio.open_nursery() as nursery:
            # Wired as run_agent wires them (OpencodeBackend.use_manifest_environment).
            checker = default_env_checker(config, list(config.projects), outbox)
            runner = OpencodeRunner(config, config.resolved_data_dir(), extra_env=checker.opencode_env)
            await nursery.start(checker.run, EventSink(outbox, now=system_now))
            checked = checker.checked.waiter()
            checker.set_manifest(EnvManifest(manifest_hash(parsed), body))
            await checked.wait()
            spawned = runner._environment()
            nursery.cancel_scope.cancel()

    # The checks ran with exactly what the server is spawned with, but for its credentials.
    assert {k: v for k, v in spawned.items() if k not in SERVER_CREDENTIALS} == checker.opencode_environment()
    assert spawned["OPENCODE_SERVER_PASSWORD"] == runner.password
    assert "OPENCODE_SERVER_USERNAME" not in spawned  # a stray one would break the client's auth
    assert TOKEN not in spawned.values()
    # The node's opencode.env wins over the manifest; one server: "app" wins over "other".
    assert (spawned["SHARED"], spawned["CONFLICT"], spawned["OTHER_ONLY"]) == ("node-value", "from-app", "o")
    app, other_report = checker.reports["app"], checker.reports["other"]
    assert _env_checks(app) == {
        "APP_ONLY": ("ok", "set", None),
        "CONFLICT": ("ok", "set", None),
        "SHARED": ("fail", "a different value", "manual"),
    }
    assert _env_checks(other_report) == {
        "CONFLICT": ("fail", "a different value", "manual"),
        "OTHER_ONLY": ("ok", "set", None),
    }

    # halctl's local check on the node builds the same environment from the same files.
    config_file = tmp_path / "agent.json"
    config_file.write_bytes(
        orjson.dumps(
            {
                "supervisor_url": config.supervisor_url,
                "auth_token": TOKEN,
                "data_dir": config.data_dir,
                "projects": [{"name": p.name, "directory": p.directory} for p in config.projects],
                "opencode": {"env": dict(config.opencode.env)},
            }
        )
    )
    manifest_file = tmp_path / "env-manifest.json"
    manifest_file.write_bytes(orjson.dumps(MANIFEST))
    args = ["-o", "json", "env", "check", "--manifest", str(manifest_file), "--agent-config", str(config_file)]
    local = await run_halctl(args, env={**process, "HALSWARM_AUTH_TOKEN": TOKEN}, cwd=tmp_path)
    assert local.exit_code == 7, local.stderr  # "other" is not a git work tree: missing
    projects = local.json()["projects"]
    assert isinstance(projects, list)
    seen = {r.project: _env_checks(r) for r in (structure_strict(p, ProjectReport) for p in projects)}
    assert seen == {"app": _env_checks(app), "other": _env_checks(other_report)}
