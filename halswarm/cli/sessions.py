"""``halctl sessions list|get``, and how a session reference becomes a session id.

Tables show shortened ids; any unique prefix of a session id (``ses_1a2b3c4d``) is
accepted wherever a session id is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeVar

import asyncclick as click

from halswarm.cli.client import NotFoundError
from halswarm.cli.context import App, app_of, output_option
from halswarm.cli.exits import EXIT_USAGE
from halswarm.cli.render import session_detail, sessions_table, sessions_totals
from halswarm.models import SESSION_STATUSES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from halswarm.cli.client import ApiClient
    from halswarm.models import Session

__all__ = ["SESSION_ID_PREFIX", "expand_session_prefix", "find_session", "sessions", "with_session_prefix"]

T = TypeVar("T")

SESSION_ID_PREFIX: Final = "ses_"
_AMBIGUOUS_SHOWN: Final = 5


@click.group()
def sessions() -> None:
    """Agent sessions: list, inspect, read events, and control them.

    A TARGET is a session id (or a unique prefix of one) or a project name; a
    project name means that project's most recently active live session.
    """


async def expand_session_prefix(app: App, api: ApiClient, ref: str) -> str | None:
    """The full id of the one session whose id starts with *ref*.

    Returns:
        The id, or None when *ref* does not look like a session id or nothing matches.

    Raises:
        click.exceptions.Exit: exit code 2 after naming the candidates, when the
            prefix matches several sessions.
    """
    if not ref.startswith(SESSION_ID_PREFIX):
        return None
    matches = sorted(s.id for s in await api.sessions() if s.id.startswith(ref))
    if len(matches) > 1:
        shown = ", ".join(matches[:_AMBIGUOUS_SHOWN]) + (", ..." if len(matches) > _AMBIGUOUS_SHOWN else "")
        app.fail(EXIT_USAGE, f"{ref!r} matches {len(matches)} sessions ({shown}); give more of the id")
    return matches[0] if matches else None


async def with_session_prefix(app: App, api: ApiClient, ref: str, call: Callable[[str], Awaitable[T]]) -> T:
    """``await call(ref)``; if that is not found and *ref* is a unique prefix of a
    session id, ``await call(full_id)`` instead.

    Raises:
        NotFoundError: the first call's, when no session id starts with *ref*.
    """
    try:
        return await call(ref)
    except NotFoundError as exc:
        not_found = exc
    # Outside the except block: an await there could lose the exception if cancelled.
    full = await expand_session_prefix(app, api, ref)
    if full is None:
        raise not_found
    return await call(full)


async def find_session(app: App, api: ApiClient, ref: str) -> Session:
    """The session with id *ref*, or the one whose id starts with *ref*.

    Raises:
        NotFoundError: no session matches.
    """
    return await with_session_prefix(app, api, ref, api.session)


@output_option
@sessions.command("list")
@click.option("--status", type=click.Choice(SESSION_STATUSES), help="Only sessions in this status.")
@click.option("--project", help="Only sessions of this project.")
@click.option("--node", help="Only sessions on this node.")
@click.pass_context
async def list_sessions(ctx: click.Context, status: str | None, project: str | None, node: str | None) -> None:
    """List sessions with status, tokens, cost and last activity, plus totals."""
    app = app_of(ctx)
    async with app.open_api() as api:
        found = await api.sessions(status=status, project=project, node=node)
    app.show(
        {"sessions": found},
        sessions_table(found, app.io.now(), width=app.io.console.width),
        sessions_totals(found),
    )


@output_option
@sessions.command("get")
@click.argument("session_ref", metavar="SESSION")
@click.pass_context
async def get_session(ctx: click.Context, session_ref: str) -> None:
    """Show every field of a session, with pending permissions and questions."""
    app = app_of(ctx)
    async with app.open_api() as api:
        session = await find_session(app, api, session_ref)
    app.show({"session": session}, session_detail(session, app.io.now()))
