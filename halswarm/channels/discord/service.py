"""The Discord channel as a supervisor component: commands, interactions, alerts.

:class:`DiscordService` is started in the supervisor's core nursery when
``channels.discord`` is configured. Its ``run()`` owns the REST client and the nursery
where interaction work runs (house style rules 6-8), and

- registers the guild's slash commands by bulk overwrite (retrying with backoff: a
  Discord outage never stops the supervisor);
- with ``transport = "gateway"``, runs the :class:`~.gateway_runner.GatewayRunner`;
  with ``"interactions"`` nothing more: ``POST /discord/interactions``
  (:mod:`halswarm.http.discord`) calls :meth:`DiscordService.answer`.

**Answering an interaction** (both transports, ``docs/discord.md`` §6):
:func:`~halswarm.channels.discord.handler.handle` runs as a background job; the initial
response is whatever it returns within :attr:`DiscordTimeouts.answer_guard_s` (~2.5 s
of Discord's 3), else a deferral (a private "thinking..." for commands, a silent
deferred update for clicks, no choices for autocomplete) and the late answer is sent
with ``PATCH .../messages/@original``. A ``reply.followup`` is then awaited under
:attr:`DiscordTimeouts.followup_s` (inside the token's 15 minutes) and its message
edits the original response; a follow-up that fails edits it with an error message.
Over the gateway the initial response is sent with the callback POST before any edit.

**Alerts**: :meth:`DiscordService.post_alert` / :meth:`DiscordService.edit_alert` for
the event router (messages from :mod:`~halswarm.channels.discord.render`), and
:meth:`DiscordService.post_event`, the router's ``PostDiscord``: it renders a routed
event with :func:`event_alert` and posts it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.agent.backoff import Backoff
from halswarm.channels.discord.client import DiscordRestClient, DiscordRestError, RestTimeouts, open_rest_client
from halswarm.channels.discord.commands import command_payloads
from halswarm.channels.discord.errors import DiscordConfigError, PayloadError
from halswarm.channels.discord.gateway import GatewayConfig, GatewayState
from halswarm.channels.discord.gateway_runner import GatewayRunner
from halswarm.channels.discord.handler import Access, HandlerContext, HandlerOptions, Reply, handle
from halswarm.channels.discord.installs import MANUAL_REQUIRED_EVENT, install_alert
from halswarm.channels.discord.interactions import Autocomplete, ComponentClick, Ping, parse_interaction
from halswarm.channels.discord.messages import Embed, EmbedField, Message, truncate
from halswarm.channels.discord.render import error_message, permission_alert, session_alert
from halswarm.channels.discord.responses import (
    CallbackType,
    Response,
    autocomplete_result,
    channel_message,
    defer_message,
    defer_update,
    pong,
)
from halswarm.channels.discord.signature import InteractionVerifier, Verdict
from halswarm.obs.logging import ctx
from halswarm.obs.metrics import DiscordFigures

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from halswarm.channels.discord.backend import DiscordBackend
    from halswarm.channels.discord.interactions import Interaction
    from halswarm.config.supervisor import DiscordChannel
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Event, Session
    from halswarm.obs.metrics import Metrics
    from halswarm.timeutil import Clock

__all__ = ["DiscordService", "DiscordTimeouts", "event_alert"]

log = logging.getLogger(__name__)

_REGISTER_BACKOFF: Final = Backoff(initial=1.0, maximum=300.0)
_REST_TIMEOUTS: Final = RestTimeouts()
_HANDLER_OPTIONS: Final = HandlerOptions()
_EVENT_FIELDS_MAX: Final = 6
_EVENT_VALUE_MAX: Final = 200


@attrs.frozen
class DiscordTimeouts:
    """Deadlines of the Discord channel."""

    #: Answer an interaction with what the handler has by then, else a deferral (Discord allows 3 s).
    answer_guard_s: float = 2.5
    #: A follow-up (command outcome) and its edit must finish within this (tokens live 15 min).
    followup_s: float = 13 * 60.0
    #: HTTP transport: the initial response travels back as the HTTP answer, which Discord
    #: must have before the response can be edited; edits wait this long after it.
    edit_after_s: float = 0.25
    #: Posting or editing one alert.
    alert_s: float = 30.0
    #: The first edit or follow-up of an interaction can race Discord's processing of
    #: the initial response (an "Unknown Webhook" 404): it is tried once more after this.
    unknown_original_retry_s: float = 1.0
    #: Interactions being answered at once; more are told the supervisor is busy.
    max_jobs: int = 64
    #: Between attempts to register the slash commands.
    register_backoff: Backoff = _REGISTER_BACKOFF
    rest: RestTimeouts = _REST_TIMEOUTS


@attrs.define
class _Work:
    """One interaction's answer, shared by the caller and the background job."""

    done: trio.Event = attrs.Factory(trio.Event)  # the handler returned or failed
    decided: trio.Event = attrs.Factory(trio.Event)  # the initial response is chosen
    reply: Reply | None = None
    failed: bool = False
    late: bool = False
    response: Response | None = None  # None once decided: the request was abandoned
    webhook_calls: int = 0  # edits and follow-ups sent so far (the first may race, see _webhook)


def _headline(event: Event) -> str:
    detail = next((event.data[k] for k in ("error", "message", "reason") if isinstance(event.data.get(k), str)), "")
    return f"`{event.type}`" + (f": {detail}" if detail else "")


def event_alert(event: Event, session: Session | None, *, now: datetime, manifest_hash: str | None = None) -> Message:
    """The alert for a routed event: the session's alert (with buttons) when it is tracked.

    ``permission.asked`` for a request the session still waits on gets Approve / Reject;
    ``env.provision.manual_required`` gets Approve install / Decline per declared install
    (*manifest_hash*: the supervisor's, for events that carry none).
    """
    if event.type == MANUAL_REQUIRED_EVENT:
        return install_alert(event, manifest_hash=manifest_hash)
    if session is not None:
        if event.type == "permission.asked":
            asked = event.data.get("id") or event.data.get("request_id")
            for request in session.pending.permissions:
                if request.id == asked:
                    return permission_alert(session, request, now=now)
        return session_alert(session, now=now, headline=truncate(_headline(event), _EVENT_VALUE_MAX))
    fields = tuple(
        EmbedField(key, truncate(value if isinstance(value, str) else json.dumps(value), _EVENT_VALUE_MAX), inline=True)
        for key, value in list(event.data.items())[:_EVENT_FIELDS_MAX]
    )
    title = f"📣 {event.project}: {event.type}" if event.project else f"📣 {event.type}"
    embed = Embed(title=title, description=_headline(event), fields=fields, footer=event.node_id, timestamp=event.ts)
    return Message(embeds=(embed,))


def _fallback(interaction: Interaction) -> Response:
    match interaction:
        case ComponentClick():
            return defer_update()
        case Autocomplete():
            return autocomplete_result([])
        case _:
            return defer_message(ephemeral=True)


def _busy(interaction: Interaction) -> Response:
    match interaction:
        case Ping():
            return pong()
        case Autocomplete():
            return autocomplete_result([])
        case _:
            return channel_message(error_message("The supervisor is busy answering Discord; try again in a moment."))


def _kind(interaction: Interaction) -> str:
    match interaction:
        case Ping():
            return "ping"
        case Autocomplete():
            return "autocomplete"
        case ComponentClick():
            return "click"
        case _:
            return "command"


_FAILED_TEXT: Final = "Something went wrong; see the supervisor log."
_FOLLOWUP_FAILED_TEXT: Final = "The command failed inside the supervisor; see its log."


class DiscordService:
    """The Discord channel of one supervisor (see the module docstring)."""

    def __init__(
        self,
        config: DiscordChannel,
        backend: DiscordBackend,
        *,
        now: Clock,
        timeouts: DiscordTimeouts = DiscordTimeouts(),
        options: HandlerOptions = _HANDLER_OPTIONS,
        rng: random.Random | None = None,
        sessions: Callable[[str], Session | None] | None = None,
        metrics: Metrics | None = None,
        manifest_hash: Callable[[], str | None] | None = None,
    ) -> None:
        self.config = config
        self._metrics = metrics
        self._sessions = sessions
        # The environment manifest's hash, for install alerts from agents that send none.
        self._manifest_hash = manifest_hash
        self.timeouts = timeouts
        self.now = now
        self._rng = rng or random.Random()
        self.verifier: InteractionVerifier | None = None
        self._verifier_problem = "channels.discord.public_key is not configured"
        if config.public_key:
            try:
                self.verifier = InteractionVerifier.from_hex(config.public_key)
            except DiscordConfigError as exc:  # every interaction request will be refused, with this reason
                self._verifier_problem = f"channels.discord.public_key: {exc}"
                log.error("Discord: %s", self._verifier_problem)
        access = Access(frozenset(config.allowed_users), frozenset(config.allowed_roles), config.read_access)
        self.handler_ctx = HandlerContext(backend, access, now, options)
        self.rest: DiscordRestClient | None = None
        self._nursery: trio.Nursery | None = None
        #: Set once the guild's commands are registered.
        self.commands_registered = trio.Event()
        self.gateway: GatewayRunner | None = None
        #: Interaction requests refused for a bad signature (also a metric in the HTTP layer).
        self.signature_failures = 0
        #: Interactions being answered now (bounded by ``timeouts.max_jobs``).
        self.jobs = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[DiscordService] = trio.TASK_STATUS_IGNORED) -> None:
        """Register commands, run the transport and interaction jobs until cancelled."""
        async with (
            open_rest_client(
                base_url=self.config.api_base_url, bot_token=self.config.bot_token, timeouts=self.timeouts.rest
            ) as client,
            trio.open_nursery() as nursery,
        ):
            self.rest = client
            self._nursery = nursery
            try:
                nursery.start_soon(self._register_commands, client)
                if self.config.transport == "gateway":
                    self.gateway = GatewayRunner(
                        GatewayConfig(token=self.config.bot_token, url=self.config.gateway_url),
                        on_dispatch=self._on_dispatch,
                        rng=self._rng,
                    )
                    nursery.start_soon(self.gateway.run)
                log.info("Discord channel started", extra=ctx(transport=self.config.transport))
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self.rest = None
                self._nursery = None

    async def _register_commands(self, client: DiscordRestClient) -> None:
        payloads = command_payloads()
        attempt = 0
        while True:
            try:
                await client.overwrite_guild_commands(self.config.application_id, self.config.guild_id, payloads)
            except ValueError as exc:  # not a Discord id: retrying cannot help
                log.error("cannot register the Discord commands: channels.discord: %s", exc)
                return
            except DiscordRestError as exc:
                delay = self.timeouts.register_backoff.delay(attempt, self._rng)
                log.warning("could not register the Discord commands (retrying in %.1fs): %s", delay, exc)
                attempt += 1
                await trio.sleep(delay)
            else:
                log.info("Discord commands registered", extra=ctx(count=len(payloads)))
                self.commands_registered.set()
                return

    # ---- health ----------------------------------------------------------------------------

    def health(self) -> str:
        """``ok``, or ``degraded: <why>`` (never failing: Discord down must not take the supervisor out of service)."""
        if self.rest is None:
            return "degraded: the Discord service is not running"
        if not self.commands_registered.is_set():
            return "degraded: slash commands not registered yet (is Discord reachable?)"
        gateway = self.gateway
        if gateway is not None:
            if gateway.stopped is not None:
                return f"degraded: gateway stopped: {gateway.stopped.reason}"
            if gateway.machine.state is not GatewayState.READY:
                return f"degraded: gateway {gateway.machine.state.value}"
        return "ok"

    def figures(self) -> DiscordFigures:
        """Counters and state for the metrics endpoint."""
        rest_client = self.rest
        return DiscordFigures(
            up=self.health() == "ok",
            gateway_connects=self.gateway.connects if self.gateway is not None else 0,
            rate_limited=rest_client.rate_limited if rest_client is not None else 0,
        )

    # ---- interactions ----------------------------------------------------------------------

    def verify(self, signature: str | None, timestamp: str | None, body: bytes) -> Verdict:
        """Check an HTTP interaction's signature (the reason is safe to log)."""
        if self.verifier is None:
            verdict = Verdict(False, self._verifier_problem)
        else:
            verdict = self.verifier.verify(signature, timestamp, body, now=self.now().timestamp())
        if not verdict.ok:
            self.signature_failures += 1
        return verdict

    async def answer(
        self, interaction: Interaction, send_initial: Callable[[Response], Awaitable[None]] | None = None
    ) -> Response:
        """The initial response to *interaction*, within the guard; the rest continues in the background.

        *send_initial* (gateway) is awaited with the response before any edit of it.

        Raises:
            DiscordConfigError: the service is not running.
        """
        nursery = self._nursery
        if nursery is None:
            raise DiscordConfigError("the Discord service is not running")
        if self.jobs >= self.timeouts.max_jobs:
            log.warning("Discord interaction refused: %d already being answered", self.jobs)
            self._count(interaction, "busy")
            return _busy(interaction)
        work = _Work()
        self.jobs += 1
        nursery.start_soon(self._work, interaction, work, send_initial)
        try:
            with trio.move_on_after(self.timeouts.answer_guard_s):
                await work.done.wait()
            if work.reply is not None:
                response = work.reply.response
                self._count(interaction, "immediate")
            elif work.failed:
                response = channel_message(error_message(_FAILED_TEXT))
                self._count(interaction, "failed")
            else:
                work.late = True
                response = _fallback(interaction)
                self._count(interaction, "deferred")
                log.warning("Discord interaction: answer deferred (the handler is slow)")
            work.response = response
            return response
        finally:
            # Also when the caller is cancelled (the HTTP client went away): the job
            # must not wait for a decision that will never come.
            work.decided.set()

    def _count(self, interaction: Interaction, answer: str) -> None:
        if self._metrics is not None:
            self._metrics.discord_interactions.labels(_kind(interaction), answer).inc()

    async def _work(
        self, interaction: Interaction, work: _Work, send_initial: Callable[[Response], Awaitable[None]] | None
    ) -> None:
        try:
            with trio.fail_after(self.timeouts.followup_s):
                await self._work_inner(interaction, work, send_initial)
        except DiscordRestError as exc:
            if exc.token_expired:
                log.info("Discord interaction token expired; follow-up dropped", extra=ctx(route=exc.route_name))
            else:
                log.warning("Discord follow-up not delivered: %s", exc)
        except trio.TooSlowError:
            log.warning("Discord follow-up gave up after %.0fs", self.timeouts.followup_s)
        except Exception:
            log.exception("Discord interaction job failed")
        finally:
            self.jobs -= 1

    async def _work_inner(
        self, interaction: Interaction, work: _Work, send_initial: Callable[[Response], Awaitable[None]] | None
    ) -> None:
        try:
            work.reply = await handle(interaction, self.handler_ctx)
        except Exception:
            log.exception("Discord handler failed")
            work.failed = True
        work.done.set()
        await work.decided.wait()
        if work.response is None:
            # Nothing reached Discord, so there is nothing to edit. The command (if any)
            # was never submitted: follow-ups submit it, and they are skipped here.
            log.warning("Discord interaction abandoned before its answer was sent")
            return
        if send_initial is not None:
            await send_initial(work.response)
        else:
            await trio.sleep(self.timeouts.edit_after_s)
        reply = work.reply
        if reply is None:
            if work.late:
                await self._tell(interaction, work, error_message(_FAILED_TEXT))
            return
        if work.late:
            await self._deliver_late(interaction, work, reply.response)
        if reply.followup is None:
            return
        try:
            message = await reply.followup()
        except Exception:
            log.exception("Discord follow-up failed")
            await self._tell(interaction, work, error_message(_FOLLOWUP_FAILED_TEXT))
            return
        await self._webhook(work, lambda c: c.edit_original(interaction.application_id, interaction.token, message))

    async def _deliver_late(self, interaction: Interaction, work: _Work, response: Response) -> None:
        """Send a reply that came after the deferral.

        A new message (type 4) fills in a command's deferred reply; after a click's
        deferred update the original is the *alert* everyone sees, so it goes out as a
        follow-up instead (keeping its ephemeral flag). An update (type 7) edits the original.
        """
        data = response.data
        if not data:
            return
        app, token = interaction.application_id, interaction.token
        if response.type == CallbackType.UPDATE_MESSAGE or (
            response.type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE and not isinstance(interaction, ComponentClick)
        ):
            await self._webhook(work, lambda c: c.edit_original_body(app, token, data))
        elif response.type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            await self._webhook(work, lambda c: c.create_followup_body(app, token, data))

    async def _tell(self, interaction: Interaction, work: _Work, message: Message) -> None:
        """A message for the user who acted: a click gets a private follow-up (its original is the alert)."""
        app, token = interaction.application_id, interaction.token
        if isinstance(interaction, ComponentClick):
            private = attrs.evolve(message, ephemeral=True)
            await self._webhook(work, lambda c: c.create_followup(app, token, private))
        else:
            await self._webhook(work, lambda c: c.edit_original(app, token, message))

    async def _webhook(self, work: _Work, call: Callable[[DiscordRestClient], Awaitable[None]]) -> None:
        """Make an interaction webhook call; the first one is tried again after a 404.

        Discord may not have processed the initial response yet when the first edit
        arrives (seen as "Unknown Webhook"); a later 404 means the token expired.
        """
        first = work.webhook_calls == 0
        work.webhook_calls += 1
        try:
            await call(self._client())
        except DiscordRestError as exc:
            if not (first and exc.status == 404):
                raise
            log.info("Discord: the interaction is not known yet; retrying once", extra=ctx(route=exc.route_name))
            await trio.sleep(self.timeouts.unknown_original_retry_s)
            await call(self._client())

    def _client(self) -> DiscordRestClient:
        if self.rest is None:
            raise DiscordRestError("edit_original", None, "the Discord service stopped")
        return self.rest

    def _on_dispatch(self, name: str, data: JSONObject) -> None:
        """A gateway dispatch: answer ``INTERACTION_CREATE`` in the background."""
        if name != "INTERACTION_CREATE" or self._nursery is None:
            return
        self._nursery.start_soon(self._gateway_interaction, data)

    async def _gateway_interaction(self, data: JSONObject) -> None:
        try:
            interaction = parse_interaction(data)
        except PayloadError as exc:
            log.warning("Discord gateway: unusable interaction: %s", exc)
            return

        async def callback(response: Response) -> None:
            await self._client().interaction_callback(interaction.id, interaction.token, response.to_json())

        with contextlib.suppress(DiscordConfigError):  # stopping
            await self.answer(interaction, callback)

    # ---- alerts ---------------------------------------------------------------------------

    async def post_alert(self, channel_name: str, message: Message) -> str | None:
        """Post *message* in the configured channel *channel_name*; its message id, or None on failure."""
        channel_id = self.config.channels.get(channel_name)
        if channel_id is None:
            log.warning("Discord alert dropped: no channel named %r in channels.discord.channels", channel_name)
            return None
        client = self.rest
        if client is None:
            log.warning("Discord alert dropped: the Discord service is not running")
            return None
        try:
            with trio.fail_after(self.timeouts.alert_s):
                return await client.create_message(channel_id, message)
        except (DiscordRestError, trio.TooSlowError, ValueError) as exc:
            log.warning("Discord alert to %r not delivered: %s", channel_name, exc or "timed out")
            return None

    async def post_event(self, channel_name: str, event: Event) -> bool:
        """Post an alert about a routed *event* (the event router's ``PostDiscord``); True once posted."""
        session = self._sessions(event.session_id) if self._sessions and event.session_id else None
        fallback = self._manifest_hash() if self._manifest_hash is not None else None
        message = event_alert(event, session, now=self.now(), manifest_hash=fallback)
        return await self.post_alert(channel_name, message) is not None

    async def edit_alert(self, channel_name: str, message_id: str, message: Message) -> bool:
        """Replace an alert posted by :meth:`post_alert`; False on failure."""
        channel_id = self.config.channels.get(channel_name)
        client = self.rest
        if channel_id is None or client is None:
            return False
        try:
            with trio.fail_after(self.timeouts.alert_s):
                await client.edit_message(channel_id, message_id, message)
        except (DiscordRestError, trio.TooSlowError, ValueError) as exc:
            log.warning("Discord alert edit in %r failed: %s", channel_name, exc or "timed out")
            return False
        return True
