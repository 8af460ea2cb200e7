"""``halctl env check|provision``: check and provision project environments (issue #9).

With ``--node N`` both go through the supervisor to that node's agent
(:mod:`halswarm.cli.env_remote`, which also holds ``env status|drift|approve|manifest``).
Without it they run on the node itself with no supervisor: they read the manifest
(``--manifest``, else ``$HALSWARM_ENV_MANIFEST``, else ``./env-manifest.json``) and find
project directories in the agent config (``--agent-config``, else
``$HALSWARM_AGENT_CONFIG``, else the agent's default path) or take ``--dir DIR`` for one
directory. Checks see the environment a spawned opencode would get, built as the agent
builds it (:mod:`halswarm.envcheck.environment`) from halctl's own environment: the
manifest's declared values for every project of the agent config (for ``--dir``: that
project's), then the agent config's ``opencode.env``.

Exit codes (beyond halctl's usual ones): 0 every project ready (for ``provision``: ready
after provisioning; a dry run exits 0 once the plan is printed); 6 a project is degraded;
7 a project is missing (directory absent, not a git repository, or a required runtime
not installed); the worse one wins. 2: invalid manifest or agent config; 5: ``--project``
names a project the agent config does not list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import asyncclick as click
import attrs
import trio

from halswarm.cli.context import App, app_of, output_option
from halswarm.cli.env_remote import approve, drift, manifest, remote_check, remote_provision, status, wait_option
from halswarm.cli.env_render import outcome_lines, report_lines
from halswarm.cli.exits import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, exit_code_for
from halswarm.config import ConfigError, load_agent_config
from halswarm.config.agent import DEFAULT_AGENT_CONFIG
from halswarm.convert import unstructure
from halswarm.envcheck.checks import ProjectReport, check_project
from halswarm.envcheck.environment import OpencodeEnvironment, manifest_environment
from halswarm.envcheck.manifest import Manifest, ManifestError, load_manifest, manifest_hash
from halswarm.envcheck.provision import ProvisionResult, provision_project
from halswarm.envcheck.views import ProvisionOutcome
from halswarm.jsontypes import is_json_object

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = ["env", "exit_code_for", "report_lines"]

MANIFEST_ENV: Final = "HALSWARM_ENV_MANIFEST"
AGENT_CONFIG_ENV: Final = "HALSWARM_AGENT_CONFIG"
DEFAULT_MANIFEST: Final = "env-manifest.json"


@attrs.frozen
class _Target:
    name: str
    directory: Path


@attrs.frozen
class _Targets:
    """The projects to check and the environment opencode would get for them."""

    targets: list[_Target]
    #: Every project the one opencode server serves (the manifest's layer comes from all).
    served: list[str]
    layers: OpencodeEnvironment

    def environment(self, manifest: Manifest) -> dict[str, str]:
        """What the checks run with (the agent's checker builds the same)."""
        return self.layers.build(manifest_environment(manifest, self.served))


def _path(io_cwd: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else io_cwd / path


async def _load(app: App, manifest_opt: str | None) -> Manifest:
    path = _path(app.io.cwd, manifest_opt or app.io.env.get(MANIFEST_ENV) or DEFAULT_MANIFEST)
    try:
        return await trio.to_thread.run_sync(load_manifest, path)
    except ManifestError as exc:
        app.fail(EXIT_USAGE, f"invalid manifest {path}: " + "; ".join(exc.problems))


async def _targets(
    app: App, manifest: Manifest, project: str | None, directory: str | None, agent_config: str | None
) -> _Targets:
    if directory is not None:
        if project is None and len(manifest.projects) != 1:
            # A directory alone names no project unless the manifest has only one.
            app.fail(EXIT_USAGE, "--dir needs --project (the manifest lists more than one project)")
        name = project or next(iter(manifest.projects))
        # No agent config: no opencode.env, secrets or state directory to add.
        target = _Target(name, _path(app.io.cwd, directory))
        return _Targets([target], [name], OpencodeEnvironment(process_env=app.io.env))
    config_path = _path(app.io.cwd, agent_config or app.io.env.get(AGENT_CONFIG_ENV) or DEFAULT_AGENT_CONFIG)
    exists = await trio.to_thread.run_sync(config_path.is_file)
    if not exists:
        app.fail(EXIT_USAGE, f"no agent config at {config_path}: give --agent-config FILE or --dir DIR")
    try:
        config = await trio.to_thread.run_sync(lambda: load_agent_config(config_path, env=app.io.env))
    except ConfigError as exc:
        app.fail(EXIT_USAGE, str(exc))
    projects = [p for p in config.projects if project is None or p.name == project]
    if not projects:
        what = f"project {project!r} is not in" if project else "no projects in"
        app.fail(EXIT_NOT_FOUND, f"{what} the agent config {config_path}")
    layers = OpencodeEnvironment.for_agent(
        config, data_dir=config.resolved_data_dir(app.io.env), process_env=app.io.env
    )
    return _Targets(
        [_Target(p.name, _path(app.io.cwd, p.directory)) for p in projects],
        [p.name for p in config.projects],
        layers,
    )


@click.group("env")
def env() -> None:
    """Project environments against the manifest: on this node, or through the supervisor (--node)."""


def _common(command: click.Command) -> click.Command:
    for option in (
        click.option("--project", "project", metavar="P", help="Only this project."),
        click.option("--manifest", "manifest_path", metavar="FILE", help=f"Manifest [default: ./{DEFAULT_MANIFEST}]."),
        click.option("--dir", "directory", metavar="DIR", help="Check this directory instead of the agent config's."),
        click.option("--agent-config", "agent_config", metavar="FILE", help="Agent config listing the projects."),
        click.option("--node", metavar="N", help="Ask node N's agent through the supervisor instead of running here."),
    ):
        command = option(command)
    return command


def _remote_only(
    app: App, node: str | None, manifest_path: str | None, directory: str | None, config: str | None
) -> bool:
    """True for ``--node``; the local-only options make no sense with it."""
    if node is None:
        return False
    if manifest_path is not None or directory is not None or config is not None:
        app.fail(EXIT_USAGE, "--node asks the supervisor: --manifest, --dir and --agent-config are for local runs")
    return True


@output_option
@wait_option
@_common
@env.command("check")
@click.pass_context
async def check(
    ctx: click.Context,
    project: str | None,
    manifest_path: str | None,
    directory: str | None,
    agent_config: str | None,
    node: str | None,
    wait: float,
) -> None:
    """Check each project against the manifest: exit 0 ready, 6 degraded, 7 missing."""
    app = app_of(ctx)
    if _remote_only(app, node, manifest_path, directory, agent_config):
        assert node is not None
        await remote_check(app, node, project, wait)
        return
    manifest = await _load(app, manifest_path)
    digest = manifest_hash(manifest)
    reports: list[ProjectReport] = []
    found = await _targets(app, manifest, project, directory, agent_config)
    environment = found.environment(manifest)
    for target in found.targets:
        spec = manifest.spec_for(target.name)
        reports.append(await check_project(target.name, spec, target.directory, env=environment, manifest_hash=digest))
    if app.json:
        app.print_json({"manifest_hash": digest, "projects": unstructure(reports)})
    else:
        for report in reports:
            app.print_lines(report_lines(report, app.io.console.width))
    code = exit_code_for([r.state for r in reports])
    if code != EXIT_OK:
        raise click.exceptions.Exit(code)


def _result_json(result: ProvisionResult) -> JSONObject:
    body = unstructure(result)
    plan = body.get("plan") if is_json_object(body) else None
    if not is_json_object(body) or not is_json_object(plan):
        raise TypeError("a provision result unstructures to an object")
    # Values may be secrets: show which variables opencode gets, not their values.
    names: list[JSONValue] = [*sorted(result.plan.env)]
    plan["env"] = names
    return body


def _result_lines(result: ProvisionResult, width: int) -> list[object]:
    """As a node's answer prints (:func:`outcome_lines`), then the check after applying."""
    out: list[object] = [*outcome_lines(ProvisionOutcome.from_result(result))]
    if result.after is not None:
        out += report_lines(result.after, width)
    return out


@output_option
@wait_option
@_common
@env.command("provision")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.pass_context
async def provision(
    ctx: click.Context,
    project: str | None,
    manifest_path: str | None,
    directory: str | None,
    agent_config: str | None,
    node: str | None,
    dry_run: bool,
    wait: float,
) -> None:
    """Apply the safe fixes (AGENT.md, .context/, docs, git hooks); list the ones needing approval.

    Exit 0 when every project is ready afterwards (or the dry-run plan was printed),
    6 degraded, 7 missing.
    """
    app = app_of(ctx)
    if _remote_only(app, node, manifest_path, directory, agent_config):
        assert node is not None
        await remote_provision(app, node, project, dry_run, wait)
        return
    manifest = await _load(app, manifest_path)
    digest = manifest_hash(manifest)
    results: list[ProvisionResult] = []
    found = await _targets(app, manifest, project, directory, agent_config)
    environment = found.environment(manifest)
    for target in found.targets:
        spec = manifest.spec_for(target.name)
        results.append(
            await provision_project(
                target.name,
                spec,
                target.directory,
                env=environment,
                dry_run=dry_run,
                manifest_hash=digest,
            )
        )
    if app.json:
        app.print_json({"manifest_hash": digest, "projects": [_result_json(r) for r in results]})
    else:
        for result in results:
            app.print_lines(_result_lines(result, app.io.console.width))
    if dry_run:
        return
    code = exit_code_for([r.after.state for r in results if r.after is not None])
    if code != EXIT_OK:
        raise click.exceptions.Exit(code)


for _command in (status, drift, approve, manifest):
    env.add_command(_command)
