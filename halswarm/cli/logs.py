"""``halctl sessions logs``: a session's stored events, optionally followed.

Follow mode polls ``GET /sessions/{id}/events?after=<last id>`` every ``--interval``
seconds (each request bounded by the client's timeouts and a page size; a full page is
fetched again at once) until Ctrl-C, which ends it with exit code 0. With
``--output json`` the events are printed as ``{"events": [...]}``, or in follow mode as
one JSON object per line.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Final

import asyncclick as click
import trio

from halswarm.cli.client import ClientError
from halswarm.cli.context import App, app_of, output_option
from halswarm.cli.render import event_line
from halswarm.cli.sessions import with_session_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from halswarm.cli.client import ApiClient
    from halswarm.models import Event

__all__ = ["FOLLOW_PAGE", "follow_events", "logs"]

#: Events asked for per poll in follow mode (the API's maximum is 1000).
FOLLOW_PAGE: Final = 500
_MAX_LIMIT: Final = 1000


def _emit(app: App, events: list[Event], *, stream: bool) -> None:
    if app.json and not stream:
        app.print_json({"events": events})
        return
    for event in events:
        if app.json:
            app.print_json(event, indent=False)
        else:
            app.io.console.print(event_line(event), soft_wrap=True)


async def follow_events(
    app: App,
    api: ApiClient,
    session_id: str,
    *,
    after: int,
    event_type: str | None,
    since: str | None,
    interval: float,
    max_polls: int | None,
) -> None:
    """Print events newer than *after* as they arrive.

    Args:
        after: the id of the last event already shown (0: none).
        interval: seconds between polls (none after a full page: there is more).
        max_polls: stop after this many requests (None: until cancelled).

    Cancellation: safe at any await; nothing is left half-printed.
    Error handling: client errors propagate (an unreachable supervisor ends the follow).
    """
    polls = 0
    delay = interval
    while max_polls is None or polls < max_polls:
        await trio.sleep(delay)
        batch = await api.events(session_id, limit=FOLLOW_PAGE, event_type=event_type, since=since, after=after)
        polls += 1
        _emit(app, batch, stream=True)
        if batch:
            after = batch[-1].id
        delay = 0.0 if len(batch) == FOLLOW_PAGE else interval


async def _stop_on_signal(signals: AsyncIterator[int], cancel_scope: trio.CancelScope) -> None:
    async for _ in signals:
        cancel_scope.cancel()
        return


@output_option
@click.command("logs")
@click.argument("session_ref", metavar="SESSION")
@click.option(
    "-n", "--limit", type=click.IntRange(1, _MAX_LIMIT), default=100, show_default=True, help="Newest events to show."
)
@click.option(
    "--type",
    "event_type",
    metavar="TYPE",
    help="Only events of this type; a trailing * matches a prefix (e.g. 'session.*').",
)
@click.option("--since", metavar="TIME", help="Only events at or after this RFC 3339 time.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C (which exits 0).")
@click.option(
    "--interval",
    type=click.FloatRange(0.01, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.option("--max-polls", type=click.IntRange(min=0), default=None, hidden=True)  # for tests
@click.pass_context
async def logs(
    ctx: click.Context,
    session_ref: str,
    limit: int,
    event_type: str | None,
    since: str | None,
    follow: bool,
    interval: float,
    max_polls: int | None,
) -> None:
    """Show a session's newest events, oldest first; --follow keeps polling."""
    app = app_of(ctx)
    async with app.open_api() as api:
        if not follow:
            session_id, events = await _initial(app, api, session_ref, limit, event_type, since)
            _emit(app, events, stream=False)
            return
        # Ctrl-C is a signal turned into cancellation (house-style rule 18), so follow
        # mode ends cleanly with exit code 0 instead of click's "Aborted!".
        # A Ctrl-C during the first fetch waits in the receiver and stops the loop at once.
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            session_id, events = await _initial(app, api, session_ref, limit, event_type, since)
            _emit(app, events, stream=True)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
                    await follow_events(
                        app,
                        api,
                        session_id,
                        after=events[-1].id if events else 0,
                        event_type=event_type,
                        since=since,
                        interval=interval,
                        max_polls=max_polls,
                    )
                    nursery.cancel_scope.cancel()
            except* ClientError as group:
                # Only the nursery body raises these (the signal watcher never does), so
                # the group holds exactly one; the root command maps it to an exit code.
                raise group.exceptions[0] from None


async def _initial(
    app: App, api: ApiClient, ref: str, limit: int, event_type: str | None, since: str | None
) -> tuple[str, list[Event]]:
    """The resolved session id and its newest *limit* events."""

    async def newest(session_id: str) -> tuple[str, list[Event]]:
        return session_id, await api.events(session_id, limit=limit, event_type=event_type, since=since)

    return await with_session_prefix(app, api, ref, newest)
