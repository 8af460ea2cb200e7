"""Human-in-the-loop commands: ``halctl sessions permissions|approve|reject|answer``.

``permissions`` lists every pending permission and question request of the fleet in
one table (``GET /api/v1/sessions``). The other three answer one request by its id (or
a unique prefix of it): they find the session that holds it, then submit
``reply_permission`` or ``answer_question`` to that session and print the outcome like
every session command (see :mod:`halswarm.cli.actions`: ``--wait``,
``--idempotency-key``, exit 1 when the agent reports a failure or no outcome arrives).
An id that no session is waiting on exits 5; answers that do not fit the question
exit 2 before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import asyncclick as click
from rich.text import Text

from halswarm.cli.actions import command_args, command_options, run_command
from halswarm.cli.context import App, app_of, output_option
from halswarm.cli.exits import EXIT_NOT_FOUND, EXIT_USAGE
from halswarm.cli.pending import (
    NOTHING_WAITING,
    AnswerError,
    PendingRequest,
    RequestKind,
    match_requests,
    parse_answers,
    pending_requests,
    pending_table,
    pending_totals,
)
from halswarm.cli.sessions import find_session
from halswarm.commands import AnswerQuestionArgs, ReplyPermissionArgs

if TYPE_CHECKING:
    from halswarm.cli.client import ApiClient

__all__ = ["PENDING_COMMANDS", "answer", "approve", "permissions", "reject"]

Reply = Literal["once", "always", "reject"]

_AMBIGUOUS_SHOWN: Final = 5
_LIST_HINT: Final = "list them with: halctl sessions permissions"


@output_option
@click.command("permissions")
@click.option("--project", help="Only requests of this project's sessions.")
@click.option("--node", help="Only requests of sessions on this node.")
@click.option("--session", "session_ref", metavar="SESSION", help="Only this session's requests (id or unique prefix).")
@click.pass_context
async def permissions(ctx: click.Context, project: str | None, node: str | None, session_ref: str | None) -> None:
    """List every pending permission and question request across the fleet.

    Answer them with ``approve``/``reject`` (permissions) or ``answer`` (questions).
    """
    app = app_of(ctx)
    async with app.open_api() as api:
        found = await api.sessions(project=project, node=node)
        if session_ref is not None:
            session_id = (await find_session(app, api, session_ref)).id
            found = [s for s in found if s.id == session_id]
    requests = pending_requests(found)
    if not requests and not app.json:
        app.print(Text(NOTHING_WAITING))
        return
    app.show(
        {"requests": requests},
        pending_table(requests, app.io.now(), width=app.io.console.width),
        pending_totals(requests),
    )


async def _find_request(app: App, api: ApiClient, ref: str, kind: RequestKind) -> PendingRequest:
    """The pending request *ref* (an id or unique prefix) of kind *kind*, and its session.

    Raises:
        click.exceptions.Exit: 5 when no session waits on it; 2 when the prefix is
            ambiguous or the request is of the other kind.
    """
    matches = match_requests(pending_requests(await api.sessions()), ref)
    if not matches:
        app.fail(EXIT_NOT_FOUND, f"not found: no session is waiting on a request {ref!r}; {_LIST_HINT}")
    if len(matches) > 1:
        ids = [m.id for m in matches]
        shown = ", ".join(ids[:_AMBIGUOUS_SHOWN]) + (", ..." if len(ids) > _AMBIGUOUS_SHOWN else "")
        app.fail(EXIT_USAGE, f"{ref!r} matches {len(ids)} pending requests ({shown}); give more of the id")
    request = matches[0]
    if request.kind != kind:
        if request.kind == "question":
            how = f"answer it with: halctl sessions answer {request.id} --answer LABEL"
        else:
            how = f"reply with: halctl sessions approve {request.id} (or reject)"
        app.fail(EXIT_USAGE, f"{request.id} is a {request.kind} request, not a {kind} request; {how}")
    return request


async def _reply(
    ctx: click.Context,
    ref: str,
    reply: Reply,
    message: str | None,
    *,
    wait: float,
    idempotency_key: str | None,
) -> None:
    """Find the session waiting on permission request *ref* and send it *reply*."""
    app = app_of(ctx)
    async with app.open_api() as api:
        request = await _find_request(app, api, ref, "permission")
    args = command_args(ReplyPermissionArgs(request_id=request.id, reply=reply, message=message or None))
    await run_command(ctx, "reply_permission", request.session_id, args, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("approve")
@click.argument("request_ref", metavar="REQUEST")
@click.option(
    "--always",
    is_flag=True,
    help=(
        "Also allow matching requests from now on: opencode applies it to every session of "
        "the project until its server restarts, not to this session only."
    ),
)
@click.option("--message", metavar="TEXT", help="A note for the agent with the approval.")
@click.pass_context
async def approve(
    ctx: click.Context, request_ref: str, always: bool, message: str | None, wait: float, idempotency_key: str | None
) -> None:
    """Approve a pending permission request (REQUEST: its id or a unique prefix)."""
    reply: Reply = "always" if always else "once"
    await _reply(ctx, request_ref, reply, message, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("reject")
@click.argument("request_ref", metavar="REQUEST")
@click.option(
    "--message",
    metavar="TEXT",
    help="Tell the agent why, or what to do instead; it then goes on (without a message its turn ends).",
)
@click.pass_context
async def reject(
    ctx: click.Context, request_ref: str, message: str | None, wait: float, idempotency_key: str | None
) -> None:
    """Reject a pending permission request (REQUEST: its id or a unique prefix)."""
    await _reply(ctx, request_ref, "reject", message, wait=wait, idempotency_key=idempotency_key)


@command_options
@click.command("answer")
@click.argument("request_ref", metavar="REQUEST")
@click.option(
    "--answer",
    "answer_values",
    multiple=True,
    required=True,
    metavar="LABEL[,LABEL...]",
    help="The chosen option labels of one question, comma separated; one --answer per question, in order.",
)
@click.pass_context
async def answer(
    ctx: click.Context, request_ref: str, answer_values: tuple[str, ...], wait: float, idempotency_key: str | None
) -> None:
    """Answer a pending question request (REQUEST: its id or a unique prefix).

    Labels are checked against the options the question lists before anything is sent.
    """
    app = app_of(ctx)
    async with app.open_api() as api:
        request = await _find_request(app, api, request_ref, "question")
    try:
        answers = parse_answers(answer_values, request.questions)
    except AnswerError as exc:
        app.fail(EXIT_USAGE, f"{request.id}: {exc}")
    args = command_args(AnswerQuestionArgs(request_id=request.id, answers=answers))
    await run_command(ctx, "answer_question", request.session_id, args, wait=wait, idempotency_key=idempotency_key)


#: Added to ``halctl sessions`` by :mod:`halswarm.cli.main`.
PENDING_COMMANDS: Final[tuple[click.Command, ...]] = (permissions, approve, reject, answer)
