"""What the engine writes about each decision: audit rows, event data, last actions (pure).

Events (the supervisor's own, ``node_id`` ``supervisor``):

- ``policy.action`` ``{policy, target, reason, project?, node_id?, correlation_id, action,
  command_id, dry_run, error?}`` for every command (sent, refused or dry run) and every
  dry-run alert; ``action`` is the command type or ``alert``.
- ``policy.alert`` ``{policy, target, reason, project?, node_id?, correlation_id}`` for an
  alert (channels route these; a dry-run alert is a ``policy.action`` instead, so it
  pages nobody).
- ``policy.suppressed`` ``{policy, target, reason, retries_used, next_reset, dry_run,
  correlation_id, project?}``.

Audit rows (actor ``policy:<name>``, source ``policy``): commands that were sent get
theirs from the dispatcher (``command.<type>``: accepted, then the outcome); the engine
writes ``command.<type>`` ``dry_run`` or ``refused`` (not stored by the dispatcher),
``policy.alert`` ``raised`` or ``dry_run``, and ``policy.suppressed`` ``suppressed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from halswarm.policy.model import PolicyAction, Suppressed
from halswarm.policy.summary import epoch_ts
from halswarm.policy.views import LastAction
from halswarm.store import AuditRecord

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject
    from halswarm.policy.model import Action

__all__ = [
    "SOURCE",
    "action_data",
    "alert_data",
    "audit_row",
    "event_session",
    "last_action",
    "refused_row",
    "suppressed_data",
]

#: Source of every command and audit row the engine makes.
SOURCE: Final = "policy"


def _what(action: PolicyAction) -> str:
    return action.command_type if action.command_type is not None else "alert"


def last_action(action: PolicyAction, stamp: str) -> LastAction:
    """The decision as ``GET /api/v1/policies`` shows it (the command id comes later)."""
    return LastAction(
        time=stamp, action=_what(action), target=action.target, reason=action.reason, dry_run=action.dry_run
    )


def _where(action: PolicyAction, data: JSONObject) -> JSONObject:
    for key, value in (("project", action.project), ("node_id", action.node_id)):
        if value is not None:
            data[key] = value
    return data


def audit_row(action: Action, correlation: str, stamp: str) -> AuditRecord | None:
    """The engine's own audit row for a decision (None: a command the dispatcher audits)."""
    if isinstance(action, Suppressed):
        detail: JSONObject = {"reason": action.reason, "retries_used": action.retries_used}
        detail["next_reset"] = epoch_ts(action.next_reset) if action.next_reset is not None else None
        if action.project is not None:
            detail["project"] = action.project
        if action.dry_run:
            detail["dry_run"] = True
        name, outcome = "policy.suppressed", "suppressed"
        return AuditRecord(stamp, action.actor, SOURCE, name, action.target, outcome, correlation, detail)
    if action.kind == "command" and not action.dry_run:
        return None
    detail = _where(action, {"reason": action.reason})
    if action.kind == "command":
        detail["args"] = dict(action.args)
        detail["idempotency_key"] = action.idempotency_key
        name = f"command.{action.command_type}"
    else:
        name = "policy.alert"
    outcome = "dry_run" if action.dry_run else "raised"
    return AuditRecord(stamp, action.actor, SOURCE, name, action.target, outcome, correlation, detail)


def refused_row(action: PolicyAction, correlation: str, stamp: str, code: str, message: str) -> AuditRecord:
    """The audit row of a command the dispatcher refused without storing it."""
    detail: JSONObject = {"reason": action.reason, "error": message, "code": code}
    name = f"command.{action.command_type}"
    return AuditRecord(stamp, action.actor, SOURCE, name, action.target, "refused", correlation, detail)


def event_session(action: PolicyAction) -> str | None:
    """The session an event is about (None: node_offline's target is a node)."""
    return None if action.policy == "node_offline" else action.target


def alert_data(action: PolicyAction, correlation: str) -> JSONObject:
    """``policy.alert`` data."""
    data = _where(action, {"policy": action.policy, "target": action.target, "reason": action.reason})
    data["correlation_id"] = correlation
    return data


def action_data(
    action: PolicyAction, correlation: str, *, command_id: str | None = None, error: str | None = None
) -> JSONObject:
    """``policy.action`` data."""
    data = alert_data(action, correlation)
    data["action"] = _what(action)
    data["command_id"] = command_id
    data["dry_run"] = action.dry_run
    if error is not None:
        data["error"] = error
    return data


def suppressed_data(action: Suppressed, correlation: str) -> JSONObject:
    """``policy.suppressed`` data."""
    data: JSONObject = {
        "policy": action.policy,
        "target": action.target,
        "reason": action.reason,
        "retries_used": action.retries_used,
        "next_reset": epoch_ts(action.next_reset) if action.next_reset is not None else None,
        "dry_run": action.dry_run,
        "correlation_id": correlation,
    }
    if action.project is not None:
        data["project"] = action.project
    return data
