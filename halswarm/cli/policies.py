"""``halctl policies list|enable NAME|disable NAME``: the auto-intervention policies.

``list`` shows every policy in priority order: whether it runs (and whether that comes
from a runtime override or the config file), dry run, its retry budget (the fullest
open window), when a window resets and its last action. ``enable``/``disable`` switch a
policy from the supervisor's next tick on; the change is audited (``halctl audit
--action 'policy.*'``). ``-o json`` prints the API's own shapes
(:class:`halswarm.policy.views.PolicyInfo`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import asyncclick as click
from rich.text import Text

from halswarm.cli.audit import fitted_table
from halswarm.cli.context import app_of, output_option
from halswarm.cli.render import ago, relative, short_id

if TYPE_CHECKING:
    from datetime import datetime

    from rich.table import Table

    from halswarm.policy.views import LastAction, PolicyInfo

__all__ = ["in_time", "policies", "policies_table", "policy_line"]

_DROP_RESET_BELOW: Final = 90
_DROP_RETRIES_BELOW: Final = 70


def in_time(ts: str | None, now: datetime) -> str:
    """``"in 12m"``, ``"in 3h"``... for a future RFC 3339 time; ``"-"`` when none."""
    return relative(ts, now, future=True)


def _state(policy: PolicyInfo) -> Text:
    text = Text("enabled", style="green") if policy.enabled else Text("disabled", style="dim")
    if policy.enabled and policy.dry_run:
        text.append(", dry run", style="yellow")
    if policy.override is not None:
        text.append(" (runtime)", style="bold")
    return text


def _retries(policy: PolicyInfo) -> str:
    if policy.max_retries is None or policy.retry_scope is None:
        return "-"
    if not policy.windows:
        return f"0/{policy.max_retries} per {policy.retry_scope}"
    fullest = max(policy.windows, key=lambda w: w.used)
    more = f" +{len(policy.windows) - 1}" if len(policy.windows) > 1 else ""
    return f"{fullest.used}/{policy.max_retries} {short_id(fullest.scope)}{more}"


def _last(last: LastAction | None, now: datetime) -> str:
    if last is None:
        return "-"
    text = f"{ago(last.time, now)} {last.action} {short_id(last.target)}"
    if last.dry_run:
        text += " (dry run)"
    if last.error:
        text += f" refused: {last.error}"
    return f"{text}: {last.reason}"


def policies_table(found: list[PolicyInfo], now: datetime, width: int = 120) -> Table:
    """One row per policy, fitted to *width* columns (the last action is clipped, never wrapped).

    Narrower than 90 columns the next reset goes, narrower than 70 the retries.
    """
    show_retries = width >= _DROP_RETRIES_BELOW
    show_reset = width >= _DROP_RESET_BELOW
    headers = ["POLICY", "STATE"] + (["RETRIES"] if show_retries else []) + (["NEXT RESET"] if show_reset else [])
    headers.append("LAST ACTION")
    rows: list[list[str | Text]] = []
    for policy in found:
        row: list[str | Text] = [policy.name, _state(policy)]
        if show_retries:
            row.append(_retries(policy))
        if show_reset:
            row.append(in_time(policy.next_reset, now))
        row.append(_last(policy.last_action, now))
        rows.append(row)
    table = fitted_table(headers, rows, width=width, flex="LAST ACTION")
    enabled = [p for p in found if p.enabled]
    dry = sum(1 for p in enabled if p.dry_run)
    table.caption = f"{len(found)} policies, {len(enabled)} enabled" + (f" ({dry} in dry run)" if dry else "")
    table.caption_justify = "left"
    return table


def policy_line(policy: PolicyInfo) -> Text:
    """``policy resume_on_idle enabled from the next tick (runtime override by api)``."""
    text = Text(f"policy {policy.name} ")
    text.append("enabled" if policy.enabled else "disabled", style="bold")
    text.append(" from the next tick")
    if policy.enabled and policy.dry_run:
        text.append(", in dry run (decides and reports, sends nothing)")
    if policy.override is not None:
        text.append(f" (runtime override by {policy.override.actor}; the config file says ")
        text.append("enabled" if policy.configured else "disabled")
        text.append(")")
    else:
        text.append(" (as in the config file)")
    for note in policy.notes:
        text.append(f"\nnote: {note}")
    return text


@click.group()
def policies() -> None:
    """Auto-intervention policies: what runs, retry budgets, last actions."""


@output_option
@policies.command("list")
@click.pass_context
async def list_policies(ctx: click.Context) -> None:
    """List every policy in priority order with its state, retries and last action."""
    app = app_of(ctx)
    async with app.open_api() as api:
        found = await api.policies()
    app.show({"policies": found}, policies_table(found, app.io.now(), width=app.io.console.width))


async def _switch(ctx: click.Context, name: str, enabled: bool) -> None:
    app = app_of(ctx)
    async with app.open_api() as api:
        policy = await api.set_policy(name, enabled=enabled)
    app.show({"policy": policy}, policy_line(policy))


@output_option
@policies.command("enable")
@click.argument("name", metavar="NAME")
@click.pass_context
async def enable_policy(ctx: click.Context, name: str) -> None:
    """Enable a policy at runtime (audited; kept across supervisor restarts)."""
    await _switch(ctx, name, True)


@output_option
@policies.command("disable")
@click.argument("name", metavar="NAME")
@click.pass_context
async def disable_policy(ctx: click.Context, name: str) -> None:
    """Disable a policy at runtime (audited; its retry counters are kept)."""
    await _switch(ctx, name, False)
