"""``/api/v1/commands``: submit commands and read their outcome.

Status codes tell the outcome, so scripts need not parse bodies to know it: 200
succeeded, 202 still running when ``wait`` ran out, 502 the agent reported a failure,
504 no answer before the deadline, 409 target offline or idempotency conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quart import Quart, Response, request

from halswarm.commands import CommandRequest
from halswarm.convert import ConversionError, loads_object, structure_strict
from halswarm.http.auth import current_principal, requires
from halswarm.http.responses import ApiError, error_response, json_response, query_float
from halswarm.obs.logging import current_correlation_id
from halswarm.supervisor.dispatcher import CommandError

if TYPE_CHECKING:
    from halswarm.http.context import ApiContext
    from halswarm.models import Command

__all__ = [
    "answer_when_done",
    "command_error_response",
    "command_response",
    "register_commands",
    "submit_as_caller",
    "wait_param",
]

_DEFAULT_WAIT: Final = 30.0
_MAX_WAIT: Final = 300.0


def command_response(command: Command) -> Response:
    """The command with the status code its outcome deserves."""
    if command.status == "succeeded":
        return json_response({"command": command})
    if command.status == "failed":
        return error_response(502, "command_failed", command.error or "command failed", {"command": command})
    if command.status == "timed_out":
        return error_response(504, "command_timed_out", command.error or "no answer", {"command": command})
    return json_response({"command": command}, status=202)


def wait_param() -> float:
    """The request's ``wait`` (seconds to wait for an outcome; default 30, at most 300)."""
    return query_float(request.args, "wait", default=_DEFAULT_WAIT, low=0, high=_MAX_WAIT)


async def submit_as_caller(api: ApiContext, command_request: CommandRequest) -> Command | Response:
    """Submit *command_request* as the authenticated caller, with the request's
    correlation id; a refusal comes back as its error response."""
    try:
        return await api.dispatcher.submit(
            command_request,
            actor=current_principal().actor,
            source="http",
            correlation_id=current_correlation_id(),
        )
    except CommandError as exc:
        return command_error_response(exc)


def command_error_response(exc: CommandError) -> Response:
    """The error response for a refused command (with the command, when one was stored)."""
    extra = {"command": exc.command} if exc.command is not None else None
    return error_response(exc.status, exc.code, exc.message, extra)


async def answer_when_done(api: ApiContext, command: Command) -> Response:
    """Wait up to the request's ``wait`` for *command*'s outcome, then answer with it."""
    final = await api.dispatcher.wait(command.id, wait_param())
    return command_response(final or command)


def register_commands(app: Quart, api: ApiContext) -> None:
    """Add the command routes to *app*."""

    @app.post("/api/v1/commands")
    @requires("operator")
    async def submit_command() -> Response:
        try:
            body = loads_object(await request.get_data(), what="request body")
            command_request = structure_strict(body, CommandRequest)
        except ConversionError as exc:
            raise ApiError(400, "invalid_body", "; ".join(exc.problems)) from None
        if command_request.type == "env_install":
            # Installs run only through their approval route, which checks the manifest
            # declares them and audits who approved what.
            raise ApiError(403, "approval_required", "env_install runs only through POST /api/v1/env/approve/{node}")
        command = await submit_as_caller(api, command_request)
        if isinstance(command, Response):
            return command
        return await answer_when_done(api, command)

    @app.get("/api/v1/commands/<command_id>")
    @requires("viewer")
    async def get_command(command_id: str) -> Response:
        wait = query_float(request.args, "wait", default=0, low=0, high=_MAX_WAIT)
        command = await api.dispatcher.wait(command_id, wait)
        if command is None:
            raise ApiError(404, "not_found", f"no command {command_id!r}")
        return command_response(command)
