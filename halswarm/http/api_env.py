"""``/api/v1/env/*`` and ``/api/v1/agent-md/*``: the environment manifest, check reports,
drift, provisioning and approved installs (issue #9).

Commands (check, provision, install, AGENT.md sync) go through the dispatcher like any
``POST /api/v1/commands``: persisted, audited with the caller as actor, delivered to the
node's agent; they answer like it (200 done, 202 still running after ``wait`` seconds,
502 failed on the agent, 504 no answer, 409 node offline), except the AGENT.md sync: it
sends one command per node and answers 200 with each node's command or refusal, after
``wait`` seconds in all at most. An install runs only through
:meth:`~halswarm.supervisor.installs.InstallApprovals.approve` (shared with Discord), which
writes its own ``env.install.approve`` audit row before submitting it.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import trio
from quart import Quart, Response, request

from halswarm.commands import CommandRequest
from halswarm.convert import ConversionError, loads_object, structure_strict
from halswarm.envcheck.checks import rendered_agent_file
from halswarm.envcheck.manifest import ManifestError
from halswarm.envcheck.template import TemplateError, sha256_text
from halswarm.envcheck.views import (
    AgentMdDiff,
    AgentMdInfo,
    AgentMdNode,
    AgentMdSyncAnswer,
    AgentMdSyncRefusal,
    AgentMdSyncRequest,
    ApproveRequest,
    DriftEntry,
    EnvStatus,
)
from halswarm.http.api_commands import answer_when_done, command_error_response, submit_as_caller, wait_param
from halswarm.http.auth import current_principal, requires
from halswarm.http.responses import ApiError, error_response, json_response, query_str
from halswarm.obs.logging import current_correlation_id
from halswarm.supervisor.dispatcher import CommandError
from halswarm.supervisor.installs import InstallApprovals, InstallRefusedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import attrs

    from halswarm.http.context import ApiContext
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Command
    from halswarm.supervisor.env import EnvService

__all__ = ["register_env", "wait_for_all"]


def _env(api: ApiContext) -> EnvService:
    if api.env is None:
        raise ApiError(404, "not_found", "environment checks are not enabled on this supervisor")
    return api.env


def _body(data: bytes | str, cls: type[attrs.AttrsInstance]) -> object:
    try:
        return structure_strict(loads_object(data, what="request body"), cls)
    except ConversionError as exc:
        raise ApiError(400, "invalid_body", "; ".join(exc.problems)) from None


def _installs(api: ApiContext) -> InstallApprovals:
    if api.installs is None:
        raise ApiError(404, "not_found", "environment checks are not enabled on this supervisor")
    return api.installs


def _known_node(api: ApiContext, node: str) -> None:
    if api.registry.get(node) is None:
        raise ApiError(404, "not_found", f"no node {node!r}")


async def _run(api: ApiContext, command_type: str, node: str, args: JSONObject) -> Response:
    # The args are checked by the dispatcher (parse_args) like any command's.
    command = await submit_as_caller(api, CommandRequest(command_type, node, args))  # type: ignore[arg-type]
    if isinstance(command, Response):
        return command
    return await answer_when_done(api, command)


def _bool(name: str) -> bool:
    value = (query_str(request.args, name) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", f"{name} must be true or false")
    return value in ("true", "1")


def _unified(ours: str, theirs: str, fromfile: str, tofile: str) -> str:
    lines = difflib.unified_diff(
        ours.splitlines(keepends=True), theirs.splitlines(keepends=True), fromfile=fromfile, tofile=tofile
    )
    return "".join(lines)


def register_env(app: Quart, api: ApiContext) -> None:
    """Add the environment and AGENT.md routes to *app*."""

    @app.get("/api/v1/env/manifest")
    @requires("viewer")
    async def get_manifest() -> Response:
        # Env var values may be secrets: only admins (who can set them) see them.
        admin = current_principal().role == "admin"
        return json_response(_env(api).info(with_values=admin))

    @app.put("/api/v1/env/manifest")
    @requires("admin")
    async def put_manifest() -> Response:
        env = _env(api)
        try:
            raw = loads_object(await request.get_data(), what="request body")
        except ConversionError as exc:
            raise ApiError(400, "invalid_body", "; ".join(exc.problems)) from None
        try:
            info = await env.put_manifest(
                raw, actor=current_principal().actor, source="http", correlation_id=current_correlation_id() or ""
            )
        except ManifestError as exc:
            return error_response(400, "invalid_manifest", "; ".join(exc.problems), {"problems": exc.problems})
        return json_response(info)

    @app.get("/api/v1/env/status")
    @requires("viewer")
    async def env_status() -> Response:
        env = _env(api)
        reports = env.status(query_str(request.args, "node"), query_str(request.args, "project"))
        return json_response(EnvStatus(env.hash, reports))

    @app.get("/api/v1/env/status/<node>")
    @requires("viewer")
    async def env_status_node(node: str) -> Response:
        env = _env(api)
        _known_node(api, node)
        return json_response(EnvStatus(env.hash, env.status(node, query_str(request.args, "project"))))

    @app.get("/api/v1/env/drift")
    @requires("viewer")
    async def env_drift() -> Response:
        env = _env(api)
        drift = [
            DriftEntry(r.node_id, r.project, d.check, d.kind, d.expected, d.actual, r.checked_at)
            for r in env.status(query_str(request.args, "node"), query_str(request.args, "project"))
            for d in r.drift
        ]
        return json_response({"drift": drift})

    @app.post("/api/v1/env/check/<node>")
    @requires("operator")
    async def env_check(node: str) -> Response:
        _env(api)
        _known_node(api, node)
        return await _run(api, "env_check", node, {"project": query_str(request.args, "project")})

    @app.post("/api/v1/env/provision/<node>")
    @requires("operator")
    async def env_provision(node: str) -> Response:
        _env(api)
        _known_node(api, node)
        args: JSONObject = {"dry_run": _bool("dry_run"), "project": query_str(request.args, "project")}
        return await _run(api, "env_provision", node, args)

    @app.post("/api/v1/env/approve/<node>")
    @requires("operator")
    async def env_approve(node: str) -> Response:
        _env(api)
        installs = _installs(api)
        body = _body(await request.get_data(), ApproveRequest)
        assert isinstance(body, ApproveRequest)
        # The one approval path (shared with Discord): audited before anything can run.
        try:
            command = await installs.approve(
                node,
                body.project,
                body.install,
                actor=current_principal().actor,
                source="http",
                correlation_id=current_correlation_id(),
            )
        except InstallRefusedError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        except CommandError as exc:
            return command_error_response(exc)
        return await answer_when_done(api, command)

    @app.get("/api/v1/agent-md/<project>")
    @requires("viewer")
    async def agent_md(project: str) -> Response:
        return json_response(_agent_md(_env(api), project))

    @app.get("/api/v1/agent-md/<project>/diff")
    @requires("viewer")
    async def agent_md_diff(project: str) -> Response:
        env = _env(api)
        info = _agent_md(env, project)
        diffs: list[AgentMdDiff] = []
        for report in env.status(None, project):
            got = report.agent_file
            if got is None:
                continue
            matches = got.sha256 is not None and got.sha256 == info.sha256
            text = ""
            if not matches:
                theirs = (got.content or "") if got.sha256 is not None else ""
                tofile = f"{report.node_id}/{info.file}" if got.sha256 is not None else "/dev/null"
                # difflib is quadratic at worst: off the trio thread.
                text = await trio.to_thread.run_sync(
                    _unified, info.rendered or "", theirs, f"template/{info.file}", tofile
                )
            diffs.append(AgentMdDiff(report.node_id, matches, text, got.truncated))
        return json_response({"project": project, "diffs": diffs})

    @app.post("/api/v1/agent-md/sync")
    @requires("operator")
    async def agent_md_sync() -> Response:
        _env(api)
        body = _body(await request.get_data(), AgentMdSyncRequest)
        assert isinstance(body, AgentMdSyncRequest)
        if body.node is not None:
            _known_node(api, body.node)
            nodes = [body.node]
        else:
            nodes = [n.record.id for n in api.registry.nodes_hosting(body.project)]
            if not nodes:
                raise ApiError(404, "not_found", f"no node hosts a project named {body.project!r}")
        args: JSONObject = {"project": body.project, "dry_run": body.dry_run, "only": ["agent_config"]}
        # One deadline for the whole request: halctl stops reading after wait + a margin.
        deadline = trio.current_time() + wait_param()
        commands: list[Command] = []
        refused: list[AgentMdSyncRefusal] = []
        # Submit to every node before answering: a refusal for one node must not hide the
        # commands already sent to the others (they rewrite AGENT.md either way).
        for node in nodes:
            try:
                commands.append(
                    await api.dispatcher.submit(
                        CommandRequest("env_provision", node, args),
                        actor=current_principal().actor,
                        source="http",
                        correlation_id=current_correlation_id(),
                    )
                )
            except CommandError as exc:
                if exc.command is not None:
                    commands.append(exc.command)  # offline: stored as failed, with the reason
                else:
                    refused.append(AgentMdSyncRefusal(node, body.project, exc.code, exc.message))
        finals = await wait_for_all(api.dispatcher.wait, commands, deadline)
        return json_response(AgentMdSyncAnswer(finals, refused))


async def wait_for_all(
    wait: Callable[[str, float], Awaitable[Command | None]], commands: Sequence[Command], deadline: float
) -> list[Command]:
    """Each of *commands* once it finished or the *deadline* (trio time) passed.

    The deadline is shared: each wait gets only the time left, so a node that never
    answers cannot stretch the request to one full wait per node.

    Args:
        wait: :meth:`~halswarm.supervisor.dispatcher.Dispatcher.wait`.
    """
    return [await wait(c.id, max(0.0, deadline - trio.current_time())) or c for c in commands]


def _agent_md(env: EnvService, project: str) -> AgentMdInfo:
    manifest = env.manifest
    if manifest is None:
        raise ApiError(404, "not_found", "the supervisor holds no environment manifest")
    known = {p for _, p in env.reports} | set(manifest.projects)
    if project not in known:
        raise ApiError(404, "not_found", f"no project {project!r} in the manifest or the reports")
    spec = manifest.spec_for(project)
    rendered: str | None
    error: str | None = None
    try:
        rendered = rendered_agent_file(project, spec)
    except TemplateError as exc:
        rendered, error = None, str(exc)
    sha = sha256_text(rendered) if rendered is not None else None
    nodes = [
        AgentMdNode(
            r.node_id,
            r.agent_file.path if r.agent_file else None,
            r.agent_file.sha256 if r.agent_file else None,
            r.agent_file is not None and r.agent_file.sha256 is not None and r.agent_file.sha256 == sha,
            r.checked_at,
        )
        for r in env.status(None, project)
    ]
    return AgentMdInfo(project, spec.agent.file, rendered, sha, error, nodes)
