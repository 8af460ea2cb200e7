"""One handler for both transports: an interaction in, a :class:`Reply` out.

``reply = await handle(interaction, ctx)``; the transport then

1. sends ``reply.response`` within Discord's **3-second** deadline — as the body of its
   HTTP answer (interactions endpoint) or by ``POST /interactions/{id}/{token}/callback``
   (gateway);
2. if ``reply.followup`` is set, awaits it (in a background task, under a deadline well
   inside the token's 15 minutes) and sends the message it returns with
   ``PATCH /webhooks/{application_id}/{token}/messages/@original``
   (:func:`~halswarm.channels.discord.rest.edit_original`).

**Deferral rule.** Anything that goes to an agent is deferred, always: a command is
delivered over the hub and answered by a node, which can take far longer than 3 s.
Slash commands get a public "thinking..." (type 5) and the outcome replaces it; button
clicks get a silent deferred update (type 6) and the outcome edits the alert. Reads
(/status, /nodes, /logs, /cost) and autocomplete are answered at once from the
supervisor's memory and store. Should a read ever be slow, the transport's guard takes
over (see the transport notes in ``docs/discord.md``).

**Authorization** (:class:`Access`). Mutating commands and buttons need the user id in
``allowed_users`` or one of the member's role ids in ``allowed_roles``. Both empty means
**nobody**: a bot added to a large server must not let every member kill sessions
because a config key was forgotten. Reads need the same unless ``read_access="everyone"``.
A refusal is a private (ephemeral) message plus an audit row through
:meth:`DiscordBackend.audit`; accepted commands are audited by the dispatcher with
``discord:<user id>`` as actor. Autocomplete for a user who may not read suggests nothing.

Idempotency: each command is submitted with the key ``discord:<interaction id>``, so an
interaction delivered twice (a gateway replay after RESUME, a transport retry) runs once.

**Declared installs** (issue #9): the "Approve install" / "Decline" buttons of an
``env.provision.manual_required`` alert, and ``/approve``/``/deny`` with an
``install:<ref>`` choice, go through :meth:`DiscordBackend.approve_install` /
:meth:`DiscordBackend.decline_install` (the supervisor's one approval path, shared with
the HTTP API), never through ``submit``. What a button names is looked up before the
answer (:func:`~halswarm.channels.discord.installs.resolve_install`): a stale one (the
manifest changed, the node is offline, the install is no longer declared) is answered
privately at once and nothing runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import attrs

from halswarm.channels.discord.backend import AuditNote, BackendError, DiscordBackend
from halswarm.channels.discord.commands import AGENT_COMMANDS, LOGS_DEFAULT, LOGS_MAX, READ_COMMANDS
from halswarm.channels.discord.customid import INSTALL_ACTIONS, INSTALL_CHOICE_PREFIX, ButtonRef, parse_custom_id
from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.installs import (
    install_choice,
    install_declined,
    install_declined_reply,
    resolve_install,
)
from halswarm.channels.discord.interactions import ApplicationCommand, Autocomplete, ComponentClick, Ping
from halswarm.channels.discord.render import (
    click_failure,
    click_outcome,
    command_outcome,
    error_message,
    refusal_message,
)
from halswarm.channels.discord.responses import (
    Choice,
    Response,
    autocomplete_result,
    channel_message,
    defer_message,
    defer_update,
    pong,
)
from halswarm.channels.discord.tables import cost_message, logs_message, nodes_message, status_message
from halswarm.commands import CommandRequest
from halswarm.cost.model import COST_PERIODS, CostPeriod
from halswarm.models import TERMINAL_COMMAND_STATUSES
from halswarm.timeutil import Clock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from halswarm.channels.discord.interactions import Actor, Interaction, OptionValue
    from halswarm.channels.discord.messages import Message
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Command

__all__ = ["Access", "Followup", "HandlerContext", "HandlerOptions", "Reply", "handle"]

Followup: TypeAlias = "Callable[[], Awaitable[Message]]"

_CHOICES_MAX: Final = 25
_WAIT_MAX: Final = 12 * 60.0  # the token lives 15 minutes; leave time for the edit


@attrs.frozen
class Access:
    """Who may do what (see the module docstring for the rules and the safe default)."""

    allowed_users: frozenset[str] = frozenset()
    allowed_roles: frozenset[str] = frozenset()
    read_access: Literal["allowed", "everyone"] = "allowed"

    def may_act(self, actor: Actor) -> bool:
        """True when *actor* may run commands that change something."""
        return actor.user.id in self.allowed_users or not self.allowed_roles.isdisjoint(actor.roles)

    def may_read(self, actor: Actor) -> bool:
        """True when *actor* may run the read-only commands."""
        return self.read_access == "everyone" or self.may_act(actor)


@attrs.frozen
class HandlerOptions:
    """Tuning of the handler."""

    #: How long a follow-up waits for a command's outcome before saying it still runs.
    #: Keep it well inside the 15 minutes an interaction token lives.
    command_wait_s: float = attrs.field(
        default=120.0, validator=[attrs.validators.gt(0.0), attrs.validators.le(_WAIT_MAX)]
    )
    #: Answer reads privately (only the asker sees them) rather than in the channel.
    ephemeral_reads: bool = True


@attrs.frozen
class HandlerContext:
    """What :func:`handle` works with."""

    backend: DiscordBackend
    access: Access
    now: Clock
    options: HandlerOptions = HandlerOptions()


@attrs.frozen
class Reply:
    """The initial response (due within 3 s) and, for deferred work, what fills it in later."""

    response: Response
    followup: Followup | None = None


async def handle(interaction: Interaction, ctx: HandlerContext) -> Reply:
    """Answer one verified, parsed interaction.

    Returns:
        The reply; see the module docstring for what the transport does with it.

    Raises:
        Nothing of its own: bad options and backend refusals become messages. An
        unexpected exception from the backend propagates (the transport logs it and
        answers with :func:`~halswarm.channels.discord.render.error_message`).
    """
    match interaction:
        case Ping():
            return Reply(pong())
        case Autocomplete():
            return Reply(await _autocomplete(interaction, ctx))
        case ApplicationCommand():
            return await _command(interaction, ctx)
        case ComponentClick():
            return await _click(interaction, ctx)


# ---- slash commands ------------------------------------------------------------------------


def _text(values: dict[str, OptionValue], name: str) -> str:
    value = values.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError([f"option {name}: required"])
    return value.strip()


def _optional_text(values: dict[str, OptionValue], name: str) -> str | None:
    value = values.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _period(values: dict[str, OptionValue]) -> CostPeriod:
    value = values.get("period", "today")
    for period in COST_PERIODS:
        if period == value:
            return period
    raise PayloadError([f"option period: must be one of {', '.join(COST_PERIODS)}"])


def _count(values: dict[str, OptionValue]) -> int:
    value = values.get("count", LOGS_DEFAULT)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(["option count: must be a whole number"])
    return max(1, min(LOGS_MAX, value))


async def _refuse(
    ctx: HandlerContext,
    interaction: ApplicationCommand | ComponentClick,
    action: str,
    target: str,
    extra: JSONObject | None = None,
) -> Reply:
    actor = interaction.actor
    detail: JSONObject = {
        "user": actor.user.username or actor.user.display,
        "guild_id": interaction.guild_id,
        "channel_id": interaction.channel_id,
        **(extra or {}),
    }
    await ctx.backend.audit(AuditNote(actor.audit_name, action, target, "refused", detail))
    what = f"/{action.removeprefix('discord.')}" if not action.startswith("discord.button.") else "this button"
    return Reply(channel_message(refusal_message(actor, what)))


async def _read(name: str, values: dict[str, OptionValue], ctx: HandlerContext) -> Message:
    backend = ctx.backend
    match name:
        case "status":
            project = _optional_text(values, "project")
            return status_message(await backend.sessions(project), now=ctx.now(), project=project)
        case "nodes":
            return nodes_message(await backend.nodes(), now=ctx.now())
        case "logs":
            target = _text(values, "target")
            return logs_message(target, await backend.events(target, _count(values)))
        case "cost":
            return cost_message(await backend.cost(_period(values)))
    raise PayloadError([f"/{name}: not a read command"])  # pragma: no cover - callers check


async def _request(name: str, values: dict[str, OptionValue], ctx: HandlerContext) -> CommandRequest:
    """The command an agent command stands for (may look up a permission request)."""
    match name:
        case "resume":
            return CommandRequest("resume_session", _text(values, "project"))
        case "inject":
            return CommandRequest("prompt_session", _text(values, "project"), {"prompt": _text(values, "message")})
        case "restart":
            return CommandRequest("restart_session", _text(values, "target"))
        case "kill":
            return CommandRequest("kill_session", _text(values, "target"))
        case "start":
            prompt = _optional_text(values, "prompt")
            return CommandRequest("start_session", _text(values, "project"), {"prompt": prompt} if prompt else {})
        case "approve":
            reply = "always" if values.get("always") is True else "once"
            return await _permission_reply(ctx, _text(values, "request"), reply, None)
        case "deny":
            return await _permission_reply(ctx, _text(values, "request"), "reject", _optional_text(values, "reason"))
    raise PayloadError([f"/{name}: not an agent command"])  # pragma: no cover - callers check


async def _permission_reply(ctx: HandlerContext, request_id: str, reply: str, message: str | None) -> CommandRequest:
    found = await ctx.backend.pending(request_id)
    if found is None:
        raise BackendError(f"no session is waiting on permission request {request_id!r} (answered already?)")
    args: JSONObject = {"request_id": found.request.id, "reply": reply}
    if message:
        args["message"] = message
    return CommandRequest("reply_permission", found.session.id, args)


async def _finished(ctx: HandlerContext, command: Command) -> Command:
    """*command* (just accepted) once it has finished, or as it stands after ``command_wait_s``."""
    if command.status in TERMINAL_COMMAND_STATUSES:
        return command
    return await ctx.backend.wait(command.id, ctx.options.command_wait_s) or command


async def _command(interaction: ApplicationCommand, ctx: HandlerContext) -> Reply:
    name = interaction.command.name
    values = interaction.command.values()
    actor = interaction.actor
    target = str(next(iter(values.values()), "")) if values else ""
    if name in READ_COMMANDS:
        if not ctx.access.may_read(actor):
            return await _refuse(ctx, interaction, f"discord.{name}", target)
        try:
            message = await _read(name, values, ctx)
        except (BackendError, PayloadError) as exc:
            return Reply(channel_message(error_message(_reason(exc))))
        return Reply(channel_message(attrs.evolve(message, ephemeral=ctx.options.ephemeral_reads)))
    if name in AGENT_COMMANDS:
        if not ctx.access.may_act(actor):
            return await _refuse(ctx, interaction, f"discord.{name}", target)
        idempotency_key = f"discord:{interaction.id}"
        request_value = values.get("request")
        if isinstance(request_value, str) and request_value.strip().startswith(INSTALL_CHOICE_PREFIX):
            return await _install_command(interaction, ctx, request_value.strip(), values)

        async def followup() -> Message:
            try:
                request = attrs.evolve(await _request(name, values, ctx), idempotency_key=idempotency_key)
                command = await _finished(ctx, await ctx.backend.submit(request, actor))
            except (BackendError, PayloadError) as exc:
                return error_message(_reason(exc), ephemeral=False)
            return command_outcome(command, actor)

        return Reply(defer_message(), followup)
    return Reply(channel_message(error_message(f"/{name} is not a halswarm command (stale registration?)")))


def _reason(exc: BackendError | PayloadError) -> str:
    return exc.message if isinstance(exc, BackendError) else "; ".join(exc.problems)


# ---- buttons -------------------------------------------------------------------------------


async def _click_request(ref: ButtonRef, ctx: HandlerContext) -> CommandRequest:
    match ref.action:
        case "resume":
            return CommandRequest("resume_session", ref.ref)
        case "restart":
            return CommandRequest("restart_session", ref.ref)
        case "kill":
            return CommandRequest("kill_session", ref.ref)
        case "approve":
            return await _permission_reply(ctx, ref.ref, "once", None)
        case "reject":
            return await _permission_reply(ctx, ref.ref, "reject", None)
        case "install" | "decline":  # pragma: no cover - _click sends these to _install_click
            raise BackendError("an install button is not a command")


async def _click(interaction: ComponentClick, ctx: HandlerContext) -> Reply:
    try:
        ref = parse_custom_id(interaction.custom_id)
    except PayloadError:
        return Reply(channel_message(error_message("This button is not one of halswarm's (or from an old version).")))
    actor = interaction.actor
    if ref.action in INSTALL_ACTIONS:
        return await _install_click(interaction, ref, ctx)
    if not ctx.access.may_act(actor):
        return await _refuse(ctx, interaction, f"discord.button.{ref.action}", ref.ref)
    idempotency_key = f"discord:{interaction.id}"

    async def followup() -> Message:
        try:
            request = attrs.evolve(await _click_request(ref, ctx), idempotency_key=idempotency_key)
            command = await _finished(ctx, await ctx.backend.submit(request, actor))
        except BackendError as exc:
            return click_failure(exc.message, actor)
        return click_outcome(command, actor)

    return Reply(defer_update(), followup)


# ---- declared installs (issue #9) -------------------------------------------------------------
# Approving goes through the supervisor's one approval path (backend.approve_install), never
# through submit. A button or choice that went stale (manifest changed, node offline, install
# gone) is answered privately at once, and nothing runs.


async def _install_click(interaction: ComponentClick, ref: ButtonRef, ctx: HandlerContext) -> Reply:
    actor = interaction.actor
    approving = ref.action == "install"
    item, problem = await resolve_install(ctx.backend, ref.ref, needs_node=approving)
    if not ctx.access.may_act(actor):
        target = f"{item.node_id}/{item.project}" if item is not None else ref.ref
        extra: JSONObject | None = {"install": item.install} if item is not None else None
        return await _refuse(ctx, interaction, f"discord.button.{ref.action}", target, extra)
    if item is None or problem is not None:
        return Reply(channel_message(error_message(problem or "This install cannot be found.")))
    key = f"discord:{interaction.id}"

    async def followup() -> Message:
        try:
            if approving:
                return click_outcome(await _finished(ctx, await ctx.backend.approve_install(item, actor, key)), actor)
            await ctx.backend.decline_install(item, actor, None)
        except BackendError as exc:
            return click_failure(exc.message, actor)
        return install_declined(item, actor)

    return Reply(defer_update(), followup)


async def _install_command(
    interaction: ApplicationCommand, ctx: HandlerContext, value: str, values: dict[str, OptionValue]
) -> Reply:
    """``/approve install:<ref>`` or ``/deny install:<ref> [reason]`` (the caller checked access)."""
    actor = interaction.actor
    approving = interaction.command.name == "approve"
    if approving and values.get("always") is True:
        return Reply(channel_message(error_message("`always` applies to permission requests, not to installs.")))
    item, problem = await resolve_install(ctx.backend, value.removeprefix(INSTALL_CHOICE_PREFIX), needs_node=approving)
    if item is None or problem is not None:
        return Reply(channel_message(error_message(problem or "This install cannot be found.")))
    key = f"discord:{interaction.id}"
    reason = _optional_text(values, "reason")

    async def followup() -> Message:
        try:
            if approving:
                return command_outcome(await _finished(ctx, await ctx.backend.approve_install(item, actor, key)), actor)
            await ctx.backend.decline_install(item, actor, reason)
        except BackendError as exc:
            return error_message(exc.message, ephemeral=False)
        return install_declined_reply(item, actor, reason)

    return Reply(defer_message(), followup)


# ---- autocomplete --------------------------------------------------------------------------


def _matches(choices: list[Choice], typed: str) -> list[Choice]:
    """Choices containing *typed* (case-insensitive), prefix matches first, at most 25."""
    needle = typed.strip().lower()
    hits = [c for c in choices if needle in c.name.lower() or needle in c.value.lower()]
    hits.sort(key=lambda c: (not c.value.lower().startswith(needle), c.value))
    return hits[:_CHOICES_MAX]


async def _projects(ctx: HandlerContext) -> list[Choice]:
    names = {p.name for n in await ctx.backend.nodes() for p in n.projects}
    names |= {s.project for s in await ctx.backend.sessions(None)}
    return [Choice(name, name) for name in sorted(names) if name]


async def _autocomplete(interaction: Autocomplete, ctx: HandlerContext) -> Response:
    if not ctx.access.may_read(interaction.actor):
        return autocomplete_result([])
    focused = interaction.command.focused()
    typed = str(focused.value) if focused is not None and focused.value is not None else ""
    name = focused.name if focused is not None else ""
    choices: list[Choice] = []
    try:
        if name == "project":
            choices = await _projects(ctx)
        elif name == "target":
            sessions = await ctx.backend.sessions(None)
            live = [s for s in sessions if s.status not in ("completed",)]
            choices = await _projects(ctx)
            choices += [Choice(f"{s.id} ({s.project}, {s.status})", s.id) for s in live]
        elif name == "request":
            sessions = await ctx.backend.sessions(None)
            choices = [
                Choice(f"{p.id}: {p.permission} ({s.project})", p.id) for s in sessions for p in s.pending.permissions
            ]
            choices += [install_choice(item) for item in await ctx.backend.pending_installs()]
    except BackendError:
        choices = []
    return autocomplete_result(_matches(choices, typed))
