"""What ``GET /api/v1/policies`` answers: one schema for the API and halctl (issue #6).

The supervisor builds these (:mod:`halswarm.policy.summary`), the API serialises them
and halctl structures the same classes back, so the CLI can never read a field the API
does not send. Times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from typing import Literal

import attrs

from halswarm.jsontypes import JSONObject

__all__ = ["LastAction", "PolicyInfo", "PolicyOverride", "RetryScope", "RetryUse"]

#: What one retry window counts for: a session (resume_on_idle) or a project.
RetryScope = Literal["session", "project"]


@attrs.frozen
class PolicyOverride:
    """A runtime enable/disable (``POST /api/v1/policies/{name}/enable|disable``).

    Persisted (table ``policy_overrides``) and kept only while it differs from the
    config file; it wins over the file until the next enable/disable.
    """

    enabled: bool
    actor: str
    updated_at: str


@attrs.frozen
class RetryUse:
    """One open retry window: how much of ``max_retries`` is used, and when it comes back."""

    #: The session id or project name the window counts for.
    scope: str
    used: int
    next_reset: str


@attrs.frozen
class LastAction:
    """The last command or alert a policy decided (dry runs included)."""

    time: str
    #: The command type (``resume_session``...) or ``alert``.
    action: str
    target: str
    reason: str
    dry_run: bool = False
    #: The command sent (None: an alert, a dry run, or a command that was refused).
    command_id: str | None = None
    #: Why the command was refused, when it was.
    error: str | None = None


@attrs.frozen
class PolicyInfo:
    """One policy: its config, whether it runs, and its live state."""

    name: str
    #: Whether it runs: the config file's ``enabled``, unless a runtime override says otherwise.
    enabled: bool
    #: ``enabled`` as the config file has it.
    configured: bool
    override: PolicyOverride | None
    dry_run: bool
    #: The policy's config section as the engine uses it (kill_on_cost: with the
    #: budgets' limits when it has none of its own; see ``notes``).
    config: JSONObject
    #: Actions allowed per window and scope (None: the policy has no retry cap).
    max_retries: int | None = None
    retry_scope: RetryScope | None = None
    #: Actions taken in the fullest open window (one session's or project's, as
    #: ``retry_scope`` says; never more than ``max_retries``); every window is in ``windows``.
    retries_used: int = 0
    #: When that window resets (None: no window open).
    next_reset: str | None = None
    windows: list[RetryUse] = attrs.field(factory=list)
    last_action: LastAction | None = None
    notes: list[str] = attrs.field(factory=list)
