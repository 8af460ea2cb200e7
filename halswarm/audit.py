"""The audit log as ``GET /api/v1/audit`` answers it: one schema for the API and halctl.

Rows are written by the command dispatcher (every command: accepted, then its outcome),
the policy engine (alerts, suppressed actions, dry runs, refused commands), runtime
policy enable/disable and config reloads (``config.reload``, actor ``signal:SIGHUP``).
Automated rows carry the actor ``policy:<name>``.
"""

from __future__ import annotations

import attrs

from halswarm.jsontypes import JSONObject

__all__ = ["AuditEntry"]


@attrs.frozen
class AuditEntry:
    """One stored audit row; ``id`` increases with every row (page with ``before=<id>``)."""

    id: int
    ts: str
    actor: str
    source: str
    action: str
    target: str
    outcome: str
    correlation_id: str = ""
    detail: JSONObject = attrs.field(factory=dict)
