"""Project completions and the dependant starts they trigger: pure helpers (issue #6, point 3).

No trio, no store. :class:`~halswarm.policy.dependencies.DependencyState` says which
projects are complete and which dependants were started (each once, ever);
:class:`DependencyProgress` adds what the supervisor needs around it:

- who completed each project, and how (``completions``);
- each decided start and whether it reached a node (``starts``): a start whose project no
  online node hosts waits, persisted, until one comes online; a ``start_session`` the
  dispatcher refused because the node went offline meanwhile is retried under a new
  idempotency key (:func:`start_key`), since the refused command holds the old one;
- how far the stored ``project.completed`` events were read (``event_cursor``).

Both are persisted in ``policy_state`` (rows :data:`STATE_ROW` and :data:`PROGRESS_ROW`,
written in one transaction) before any start is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from halswarm.convert import dumps, load_json_row
from halswarm.models import SUPERVISOR_NODE_ID
from halswarm.policy.summary import epoch_ts
from halswarm.projects import CompletionInfo, CompletionSource, DependencyStartInfo, ProjectInfo, StartStatus

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from halswarm.models import Event
    from halswarm.policy.dependencies import DependencyGraph, DependencyState

__all__ = [
    "COMPLETED_EVENT",
    "DEPENDENCY_ROWS",
    "MAX_DETAIL",
    "PROGRESS_ROW",
    "STATE_ROW",
    "CompletionNote",
    "DependencyProgress",
    "ReportedCompletion",
    "StartNote",
    "clean_detail",
    "project_info",
    "reported_completion",
    "restore_progress",
    "start_key",
]

#: ``policy_state`` rows of the dependencies: the graph's state and the progress around it.
STATE_ROW: Final = "dependencies"
PROGRESS_ROW: Final = "dependencies.progress"
DEPENDENCY_ROWS: Final = frozenset({STATE_ROW, PROGRESS_ROW})

#: The event an agent emits when a project's ``.context/COMPLETE`` marker appears.
COMPLETED_EVENT: Final = "project.completed"

#: Longest detail kept (a marker file's first line, ``--detail``).
MAX_DETAIL: Final = 500


@attrs.frozen
class CompletionNote:
    """Who marked a project complete (its time is in :class:`DependencyState`)."""

    source: CompletionSource
    actor: str
    detail: str | None = None
    node_id: str | None = None


@attrs.frozen
class StartNote:
    """A dependant start decided by a completion, until it reaches a node."""

    #: The project whose completion made it ready.
    after: str
    dependencies: tuple[str, ...]
    #: The completion's correlation id, carried by the command and every row about it.
    correlation_id: str
    status: StartStatus = "waiting"
    #: Refusals because the chosen node went offline (each retry takes a new key).
    attempt: int = 0
    command_id: str | None = None
    error: str | None = None


@attrs.frozen
class DependencyProgress:
    """Everything about completions and starts besides :class:`DependencyState`. Plain data."""

    completions: dict[str, CompletionNote] = attrs.Factory(dict)
    starts: dict[str, StartNote] = attrs.Factory(dict)
    #: The id of the last stored ``project.completed`` event read.
    event_cursor: int = 0

    def waiting(self) -> list[str]:
        """Projects whose start waits for an online node, sorted."""
        return sorted(name for name, note in self.starts.items() if note.status == "waiting")

    def dump(self) -> str:
        """This progress as JSON text, for persisting."""
        return dumps(self).decode()


def restore_progress(text: str | bytes | None) -> tuple[DependencyProgress, list[str]]:
    """Rebuild the progress from :meth:`DependencyProgress.dump`'s text (None: nothing yet).

    An unreadable text gives the empty progress and a problem line for the log: the
    completions themselves are in the state row, so what is lost is who made them,
    starts still waiting for a node, and the event cursor (events are read again from
    the start; completions already recorded change nothing).
    """
    return load_json_row(text, DependencyProgress, PROGRESS_ROW)


def start_key(project: str, decided_at: float, attempt: int = 0) -> str:
    """The idempotency key of a dependant's ``start_session``.

    Derived from the project and the completion that made it ready (its time), so a
    start replayed after a crash runs once; ``attempt`` > 0 after refusals for an
    offline node, whose failed command holds the previous key.
    """
    key = f"dependencies:start:{project}:{epoch_ts(decided_at)}"
    return f"{key}:{attempt}" if attempt else key


def clean_detail(text: str | None) -> str | None:
    """A completion's detail: stripped, at most :data:`MAX_DETAIL` characters; None when empty."""
    if text is None:
        return None
    stripped = text.strip()
    return stripped[:MAX_DETAIL] or None


@attrs.frozen
class ReportedCompletion:
    """A ``project.completed`` event from an agent, checked."""

    project: str
    node_id: str
    detail: str | None = None


def reported_completion(event: Event) -> ReportedCompletion | None:
    """The completion an agent reported in a stored event, or None for anything else.

    None for another event type, for the supervisor's own ``project.completed`` events
    (the record of completions it made itself) and for an event naming no project.
    The project is the event's ``project``, else its data's ``project``.
    """
    if event.type != COMPLETED_EVENT or event.node_id == SUPERVISOR_NODE_ID:
        return None
    named = event.data.get("project")
    project = event.project or (named if isinstance(named, str) else None)
    if not project:
        return None
    detail = event.data.get("detail")
    return ReportedCompletion(project, event.node_id, clean_detail(detail) if isinstance(detail, str) else None)


def project_info(
    name: str,
    *,
    graph: DependencyGraph,
    state: DependencyState,
    progress: DependencyProgress,
    hosts: Mapping[str, Sequence[tuple[str, bool]]],
    sessions: Mapping[str, tuple[int, int]],
) -> ProjectInfo:
    """One project as ``GET /api/v1/projects`` shows it.

    Args:
        name: the project.
        graph: the dependency graph.
        state: completions and automatic starts, with their times.
        progress: who completed what, and where each start is.
        hosts: project -> (node id, online) of every node hosting it.
        sessions: project -> (sessions tracked, sessions not completed).
    """
    nodes = sorted(hosts.get(name, ()))
    complete: CompletionInfo | None = None
    if name in state.completed:
        note = progress.completions.get(name)
        source: CompletionSource = note.source if note is not None else "api"
        complete = CompletionInfo(
            time=epoch_ts(state.completed[name]),
            source=source,
            actor=note.actor if note is not None else "unknown",
            detail=note.detail if note is not None else None,
            node_id=note.node_id if note is not None else None,
        )
    started: DependencyStartInfo | None = None
    if name in state.started:
        start = progress.starts.get(name)
        dependencies = sorted(graph.dependencies_of(name))
        started = DependencyStartInfo(
            time=epoch_ts(state.started[name]),
            after=start.after if start is not None else "",
            dependencies=list(start.dependencies) if start is not None else dependencies,
            status=start.status if start is not None else "sent",
            command_id=start.command_id if start is not None else None,
            error=start.error if start is not None else None,
        )
    total, active = sessions.get(name, (0, 0))
    return ProjectInfo(
        name=name,
        nodes=[node for node, _online in nodes],
        nodes_online=[node for node, online in nodes if online],
        depends_on=sorted(graph.dependencies_of(name)),
        dependants=sorted(graph.dependants_of(name)),
        complete=complete,
        started_by_dependency=started,
        sessions=total,
        active_sessions=active,
    )
