"""Declared installs in Discord (issue #9): the approval alert, its buttons and their answers.

When provisioning leaves a failed check whose fix is a declared install command, the
agent emits ``env.provision.manual_required``; routed to a Discord channel it becomes
:func:`install_alert`: what failed, each install's exact command line and timeout, and
per install an "Approve install <name>" and a "Decline <name>" button
(:func:`~halswarm.channels.discord.customid.install_ref` ids: they stay valid across
supervisor restarts and name the manifest the alert was made against).

:func:`resolve_install` finds what a button (or an ``/approve install:...`` choice)
names and says why it cannot be used any more — the install is no longer declared, the
manifest changed, the node is offline — so the handler can answer the clicker privately
before anything runs. The approval itself is the supervisor's one approval path
(:meth:`DiscordBackend.approve_install`).

Pure apart from :func:`resolve_install`, which only reads through the backend.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Final

from halswarm.channels.discord.customid import (
    INSTALL_CHOICE_PREFIX,
    encode_custom_id,
    install_ref,
    parse_install_ref,
)
from halswarm.channels.discord.errors import PayloadError
from halswarm.channels.discord.messages import ROWS_MAX, ActionRow, Button, ButtonStyle, Embed, EmbedField, Message
from halswarm.channels.discord.render import COLOR_ERROR, STATUS_COLORS
from halswarm.channels.discord.responses import Choice

if TYPE_CHECKING:
    from halswarm.channels.discord.backend import DiscordBackend
    from halswarm.channels.discord.interactions import Actor
    from halswarm.envcheck.views import PendingInstall
    from halswarm.jsontypes import JSONValue
    from halswarm.models import Event

__all__ = [
    "MANUAL_REQUIRED_EVENT",
    "NOT_DECLARED",
    "install_alert",
    "install_choice",
    "install_declined",
    "install_declined_reply",
    "resolve_install",
]

#: The agent's event for failed checks provisioning cannot fix (risky ones name an install).
MANUAL_REQUIRED_EVENT: Final = "env.provision.manual_required"
NOT_DECLARED: Final = (
    "This install is no longer declared in the environment manifest (or its node is unknown "
    "to the supervisor): nothing was run."
)
NOT_AN_INSTALL: Final = "That is not an install awaiting approval (pick one from the suggestions)."
_FIELDS_MAX: Final = 10
_COMMAND_MAX: Final = 600


def _text(value: JSONValue, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _command_line(value: JSONValue) -> str:
    if not isinstance(value, list):
        return "?"
    line = shlex.join(str(part) for part in value)
    # Inside a code span: a backtick in the command would end it early.
    return line.replace("`", "'")[:_COMMAND_MAX]


def _timeout(value: JSONValue) -> str:
    return f"{value:g}s" if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def install_alert(event: Event, *, manifest_hash: str | None) -> Message:
    """The alert for an ``env.provision.manual_required`` event.

    Args:
        event: the routed event (``data``: ``project``, ``manual``, ``manifest_hash``).
        manifest_hash: the supervisor's manifest hash, used when the event names none
            (agents before this version); without either, no buttons.
    """
    project = _text(event.data.get("project"), event.project or "?")
    node = event.node_id
    manual = event.data.get("manual")
    items = [m for m in manual if isinstance(m, dict)] if isinstance(manual, list) else []
    used_hash = _text(event.data.get("manifest_hash")) or manifest_hash or ""
    fields: list[EmbedField] = []
    rows: list[ActionRow] = []
    offered: set[str] = set()
    for item in items[:_FIELDS_MAX]:
        check = _text(item.get("check"), "?")
        expected, actual = _text(item.get("expected")), _text(item.get("actual"))
        found = f"expected {expected or '-'}, found {actual or '-'}"
        install = item.get("install")
        if isinstance(install, str) and install:
            value = f"`{_command_line(item.get('command'))}` (timeout {_timeout(item.get('timeout_sec'))})\n{found}"
            fields.append(EmbedField(f"{check} → install {install}", value))
            if install not in offered and len(rows) < ROWS_MAX and used_hash:
                try:
                    ref = install_ref(node, project, install, used_hash)
                except ValueError:
                    continue  # not a hash: offer no button rather than one that cannot work
                offered.add(install)
                rows.append(
                    ActionRow(
                        (
                            Button(f"Approve install {install}", encode_custom_id("install", ref), ButtonStyle.SUCCESS),
                            Button(f"Decline {install}", encode_custom_id("decline", ref), ButtonStyle.DANGER),
                        )
                    )
                )
        else:
            fields.append(EmbedField(f"{check} (manual)", found))
    description = f"Provisioning on `{node}` left checks only a person can fix. " + (
        "An approval runs the declared command on the node, as it is written in the manifest."
        if rows
        else "Nothing here can be approved from Discord."
    )
    embed = Embed(
        title=f"🛠️ {project}: approval needed",
        description=description,
        color=STATUS_COLORS["waiting"],
        fields=tuple(fields),
        footer=f"{node} · manifest {used_hash[:12] or '-'}",
        timestamp=event.ts,
    )
    return Message(embeds=(embed,), components=tuple(rows) if rows else None)


def install_choice(item: PendingInstall) -> Choice:
    """The ``/approve``/``/deny`` suggestion for *item*: value ``install:<install_ref>``."""
    ref = install_ref(item.node_id, item.project, item.install, item.manifest_hash)
    name = f"install {item.install} on {item.node_id}/{item.project} (fixes {item.fixes})"
    return Choice(name, INSTALL_CHOICE_PREFIX + ref)


def _manifest_changed(item: PendingInstall, was: str) -> str:
    return (
        f"The environment manifest changed since this was offered (`{was}` then, "
        f"`{item.manifest_hash[:12]}` now): nothing was run. Provision again "
        f"(`halctl env provision --node {item.node_id} --project {item.project}`) to see what it asks for now."
    )


async def resolve_install(
    backend: DiscordBackend, ref_text: str, *, needs_node: bool
) -> tuple[PendingInstall | None, str | None]:
    """The install *ref_text* (an :func:`install_ref`) names, and why it cannot be used now.

    Args:
        needs_node: the node must be online (approving; declining needs no node).

    Returns:
        ``(item, None)`` when usable; ``(item or None, reason)`` otherwise: not an install
        reference, no longer declared, manifest changed, node offline.
    """
    try:
        ref = parse_install_ref(ref_text)
    except PayloadError:
        return None, NOT_AN_INSTALL
    item = await backend.find_install(ref.key)
    if item is None:
        return None, NOT_DECLARED
    if not ref.matches(item.manifest_hash):
        return item, _manifest_changed(item, ref.manifest_hash)
    if needs_node:
        node = next((n for n in await backend.nodes() if n.id == item.node_id), None)
        if node is None or node.status == "offline":
            return item, f"Node `{item.node_id}` is offline: nothing was run. Approve again once it is back."
    return item, None


def install_declined(item: PendingInstall, actor: Actor) -> Message:
    """The alert's content line after a Decline click (its buttons are removed)."""
    what = f"install `{item.install}` on {item.node_id}/{item.project}"
    return Message(content=f"🚫 Decline by {actor.mention}: {what} will not run", components=())


def install_declined_reply(item: PendingInstall, actor: Actor, reason: str | None) -> Message:
    """The public reply to ``/deny install:...``."""
    embed = Embed(
        title=f"🚫 Install {item.install} on {item.node_id}/{item.project}: declined",
        description=reason or "",
        color=COLOR_ERROR,
        footer=f"by {actor.user.display}",
    )
    return Message(embeds=(embed,))
