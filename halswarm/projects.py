"""What ``/api/v1/projects`` answers: one schema for the API and halctl (issue #6, dependencies).

The supervisor builds these (:mod:`halswarm.policy.completions`), the API serialises them
and halctl structures the same classes back, so the CLI can never read a field the API
does not send. Times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "CompleteAnswer",
    "CompleteRequest",
    "CompletionInfo",
    "CompletionSource",
    "DependencyStartInfo",
    "ProjectInfo",
    "StartStatus",
]

#: Who marked a project complete: an operator through the API (``halctl projects
#: complete``), or its agent, which saw the project's ``.context/COMPLETE`` marker.
CompletionSource = Literal["api", "agent"]

#: A dependant's start: ``waiting`` for an online node hosting it, ``sent`` (its
#: ``start_session`` command was accepted; the outcome is in the command record) or
#: ``refused`` by the dispatcher for good (``error`` says why).
StartStatus = Literal["waiting", "sent", "refused"]


@attrs.frozen
class CompletionInfo:
    """When and by whom a project was marked complete."""

    time: str
    source: CompletionSource
    #: ``api`` (the HTTP API's one shared token) or ``node:<node id>`` for an agent.
    actor: str
    #: Free text given with the completion (``--detail``, or the marker file's first line).
    detail: str | None = None
    #: The node whose agent reported it (agent completions only).
    node_id: str | None = None


@attrs.frozen
class DependencyStartInfo:
    """The automatic start of a project whose dependencies all completed."""

    #: When its last dependency completed (the start was decided then).
    time: str
    #: The project whose completion made it ready.
    after: str
    #: Its dependencies (all complete), as the start prompt names them.
    dependencies: list[str]
    status: StartStatus
    #: The ``start_session`` command (None while waiting, or when refused before storing).
    command_id: str | None = None
    #: Why it waits (no online node hosts it) or was refused.
    error: str | None = None


@attrs.frozen
class ProjectInfo:
    """One project: where it is hosted, its place in the dependency graph, its state."""

    name: str
    #: Nodes whose agent declared the project, online or not (sorted).
    nodes: list[str]
    #: Those of them online now: a start goes to one of these.
    nodes_online: list[str]
    #: What it depends on, and what depends on it (config ``dependencies``; sorted).
    depends_on: list[str]
    dependants: list[str]
    complete: CompletionInfo | None = None
    started_by_dependency: DependencyStartInfo | None = None
    #: Sessions of the project the supervisor tracks, and how many of them are not completed.
    sessions: int = 0
    active_sessions: int = 0


@attrs.frozen
class CompleteRequest:
    """Body of ``POST /api/v1/projects/{name}/complete`` (optional)."""

    detail: str | None = None


@attrs.frozen
class CompleteAnswer:
    """What marking a project complete did."""

    project: ProjectInfo
    #: It was complete before: nothing changed and nothing was started.
    already_complete: bool
    #: The dependants this completion started (or that wait for a node), with their state.
    started: list[ProjectInfo] = attrs.Factory(list)
