"""Alerts and command outcomes as Discord messages (product spec §4.1, provider-apis.md §3.3).

An alert is an embed titled with a status emoji, the project and the state, with
fields for node, current task, tokens (used / limit and percentage when the limit is
known), compactions, duration and cost, the session id in the footer, and buttons
Resume / Restart / Kill; a session waiting on permission requests also gets Approve /
Reject buttons per request. Button ids are :mod:`~halswarm.channels.discord.customid`
strings, so a click names its action and target.

Everything here is pure: the wall clock comes in as ``now``. Limits are enforced by
:meth:`Message.to_json`, so agent text of any length is safe to pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from halswarm.channels.discord.customid import encode_custom_id
from halswarm.channels.discord.messages import (
    ROWS_MAX,
    ActionRow,
    Button,
    ButtonStyle,
    Embed,
    EmbedField,
    Message,
)
from halswarm.timeutil import format_ts, parse_ts

if TYPE_CHECKING:
    from datetime import datetime

    from halswarm.channels.discord.interactions import Actor
    from halswarm.models import Command, PermissionRequest, Session

__all__ = [
    "COLOR_ERROR",
    "COLOR_INFO",
    "COLOR_OK",
    "STATUS_COLORS",
    "STATUS_EMOJI",
    "click_failure",
    "click_outcome",
    "command_outcome",
    "error_message",
    "format_duration",
    "permission_alert",
    "refusal_message",
    "session_alert",
    "session_buttons",
    "status_label",
]

STATUS_EMOJI: Final[dict[str, str]] = {
    "starting": "🔵",
    "busy": "🟢",
    "idle": "🟡",
    "retry": "🟠",
    "waiting": "🙋",
    "error": "🔴",
    "completed": "✅",
    "unreachable": "⚫",
}
STATUS_COLORS: Final[dict[str, int]] = {
    "starting": 0x5865F2,
    "busy": 0x2ECC71,
    "idle": 0xFFCC00,  # the reference's idle alert colour (16763904)
    "retry": 0xE67E22,
    "waiting": 0xE67E22,
    "error": 0xE74C3C,
    "completed": 0x3498DB,
    "unreachable": 0x95A5A6,
}
COLOR_OK: Final = 0x2ECC71
COLOR_ERROR: Final = 0xE74C3C
COLOR_INFO: Final = 0x3399FF  # 3381759, the reference's "Prompt sent" colour

_PERMISSION_ROWS_MAX: Final = ROWS_MAX - 1  # the first row holds Resume / Restart / Kill

_VERBS: Final[dict[str, str]] = {
    "start_session": "Start",
    "prompt_session": "Inject",
    "resume_session": "Resume",
    "restart_session": "Restart",
    "abort_session": "Abort",
    "kill_session": "Kill",
    "reply_permission": "Permission reply",
    "answer_question": "Answer",
    "env_install": "Install",
}


def status_label(status: str) -> str:
    """``🟢 busy``."""
    return f"{STATUS_EMOJI.get(status, '❔')} {status}"


def format_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 05m``, ``2d 4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _since(ts: str | None, now: datetime) -> str:
    if not ts:
        return "-"
    try:
        return format_duration((now - parse_ts(ts)).total_seconds())
    except ValueError:
        return "-"


def _tokens(session: Session, context_limit: int | None) -> str:
    used = session.tokens.total()
    if context_limit:
        return f"{used:,} / {context_limit:,} ({used * 100 // context_limit}%)"
    return f"{used:,}"


def session_buttons(session_id: str) -> ActionRow:
    """Resume / Restart / Kill for one session."""
    return ActionRow(
        (
            Button("Resume", encode_custom_id("resume", session_id), ButtonStyle.PRIMARY),
            Button("Restart", encode_custom_id("restart", session_id), ButtonStyle.SECONDARY),
            Button("Kill", encode_custom_id("kill", session_id), ButtonStyle.DANGER),
        )
    )


def _permission_row(request: PermissionRequest) -> ActionRow:
    what = request.permission or "request"
    return ActionRow(
        (
            Button(f"Approve {what}", encode_custom_id("approve", request.id), ButtonStyle.SUCCESS),
            Button(f"Reject {what}", encode_custom_id("reject", request.id), ButtonStyle.DANGER),
        )
    )


def session_alert(
    session: Session,
    *,
    now: datetime,
    headline: str = "",
    context_limit: int | None = None,
    buttons: bool = True,
) -> Message:
    """The alert for one session (``session.idle``, ``session.error`` ...).

    Args:
        session: the session's tracked state.
        now: the wall clock (duration and the embed's timestamp).
        headline: one sentence on what happened ("Idle for 12 min after finishing a turn.").
        context_limit: the model's context window in tokens, when known (adds the percentage).
        buttons: add Resume / Restart / Kill (and Approve / Reject per pending permission).
    """
    fields = [
        EmbedField("Node", session.node_id or "-", inline=True),
        EmbedField("Tokens", _tokens(session, context_limit), inline=True),
        EmbedField("Compactions", str(session.compaction_count), inline=True),
        EmbedField("Duration", _since(session.started_at, now), inline=True),
        EmbedField("Cost", f"${session.cost_usd:,.2f}", inline=True),
        EmbedField("Current task", session.current_task or "-", inline=False),
    ]
    embed = Embed(
        title=f"{STATUS_EMOJI.get(session.status, '❔')} {session.project}: {session.status}",
        description=headline,
        color=STATUS_COLORS.get(session.status),
        fields=tuple(fields),
        footer=session.id,
        timestamp=format_ts(now),
    )
    rows: tuple[ActionRow, ...] | None = None
    if buttons:
        permission_rows = [_permission_row(p) for p in session.pending.permissions[:_PERMISSION_ROWS_MAX]]
        rows = (session_buttons(session.id), *permission_rows)
    return Message(embeds=(embed,), components=rows)


def permission_alert(session: Session, request: PermissionRequest, *, now: datetime) -> Message:
    """A session asking to run a tool: what it asks, with Approve / Reject buttons."""
    patterns = "\n".join(f"`{p}`" for p in request.patterns) or "-"
    embed = Embed(
        title=f"🙋 {session.project}: permission asked",
        description=request.title or request.permission,
        color=STATUS_COLORS["waiting"],
        fields=(
            EmbedField("Permission", request.permission or "-", inline=True),
            EmbedField("Node", session.node_id or "-", inline=True),
            EmbedField("Request", request.id, inline=True),
            EmbedField("Patterns", patterns),
        ),
        footer=session.id,
        timestamp=format_ts(now),
    )
    return Message(embeds=(embed,), components=(_permission_row(request),))


def _result_text(command: Command, key: str) -> str:
    value = (command.result or {}).get(key)
    return value if isinstance(value, str) else "?"


def _arg_text(command: Command, key: str) -> str:
    value = command.args.get(key)
    return value if isinstance(value, str) else "?"


def _succeeded(command: Command) -> str:
    session = _result_text(command, "session_id")
    match command.type:
        case "start_session":
            return f"new session `{session}`"
        case "prompt_session":
            return f"prompt sent to `{session}`"
        case "resume_session":
            return f"`{session}` resumed"
        case "restart_session":
            return f"new session `{session}` (was `{_result_text(command, 'predecessor_id')}`)"
        case "abort_session" | "kill_session":
            return f"`{session}` stopped"
        case "reply_permission":
            reply = _arg_text(command, "reply")
            verdict = "rejected" if reply == "reject" else f"approved ({reply})"
            return f"permission `{_arg_text(command, 'request_id')}` {verdict}"
    return "done"


def _install_outcome(command: Command) -> tuple[str, str, int]:
    """(emoji, detail, colour) of an ``env_install`` the agent answered: its exit code decides."""
    result = command.result or {}
    what = f"`{_arg_text(command, 'install')}` on {command.target}/{_arg_text(command, 'project')}"
    if result.get("timed_out") is True:
        return "⌛", f"{what} timed out and was killed", COLOR_ERROR
    code = result.get("exit_code")
    if result.get("ok") is True:
        state = result.get("state_after")
        return "✅", f"{what} exited 0" + (f"; the project is now {state}" if isinstance(state, str) else ""), COLOR_OK
    error = result.get("error")
    detail = f"{what} exited {code}" if isinstance(code, int) else f"{what} did not run"
    return "❌", detail + (f" ({error})" if isinstance(error, str) and error else ""), COLOR_ERROR


def _outcome(command: Command) -> tuple[str, str, int]:
    """(emoji, detail, colour) of a command's current state."""
    match command.status:
        case "succeeded" if command.type == "env_install":
            return _install_outcome(command)
        case "succeeded":
            return "✅", _succeeded(command), COLOR_OK
        case "failed":
            return "❌", command.error or "the agent reported a failure", COLOR_ERROR
        case "timed_out":
            return "⌛", command.error or "no answer from the node", COLOR_ERROR
    return "⏳", f"still {command.status} — command `{command.id}`", COLOR_INFO


def _status_word(command: Command) -> str:
    """The command's status, or for an install that ran, whether it worked (``ok``, ``failed``, ``timed out``)."""
    if command.type == "env_install" and command.status == "succeeded":
        result = command.result or {}
        if result.get("timed_out") is True:
            return "timed out"
        return "ok" if result.get("ok") is True else "failed"
    return command.status


def _done(command: Command) -> bool:
    """Succeeded, and for an install: exited 0 (a failed install keeps its buttons for another try)."""
    return command.status == "succeeded" and _status_word(command) in ("succeeded", "ok")


def command_outcome(command: Command, actor: Actor) -> Message:
    """The reply to a slash command that went to an agent (edits the deferred reply)."""
    emoji, detail, color = _outcome(command)
    verb = _VERBS.get(command.type, command.type)
    embed = Embed(
        title=f"{emoji} {verb} {command.target}: {_status_word(command)}",
        description=detail,
        color=color,
        footer=f"by {actor.user.display} · command {command.id}",
    )
    return Message(embeds=(embed,))


def click_outcome(command: Command, actor: Actor) -> Message:
    """The edit of an alert after one of its buttons ran *command*.

    Only the content line changes (the embed stays). A command that succeeded removes
    the buttons (the session was replaced, the request answered, the install done); one
    that failed (an install that exited non-zero or timed out too) leaves them for another try.
    """
    emoji, detail, _ = _outcome(command)
    verb = _VERBS.get(command.type, command.type)
    content = f"{emoji} {verb} by {actor.mention}: {_status_word(command)} — {detail}"
    return Message(content=content, components=() if _done(command) else None)


def click_failure(text: str, actor: Actor) -> Message:
    """The alert's content line when a click could not even be submitted (buttons stay)."""
    return Message(content=f"❌ {actor.mention}: {text}")


def refusal_message(actor: Actor, what: str) -> Message:
    """Private answer to someone who may not run *what* (e.g. ``/kill``)."""
    text = (
        f"⛔ {actor.user.display}, you are not allowed to run {what}. "
        "Ask an admin to add your user or role to channels.discord.allowed_users / allowed_roles."
    )
    return Message(content=text, ephemeral=True)


def error_message(text: str, *, ephemeral: bool = True) -> Message:
    """A failure in words for the user (``text`` must hold no secret)."""
    return Message(embeds=(Embed(title="❌ Failed", description=text, color=COLOR_ERROR),), ephemeral=ephemeral)
