"""The REST view a resync reads after every (re)connect of the event stream.

:func:`read_snapshot` reads opencode's sessions, statuses and pending requests, and how
the turns that ended unseen went, into a :class:`RestSnapshot` that
:meth:`SessionMapper.resync <halswarm.agent.opencode.mapper.SessionMapper.resync>` folds in.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import attrs

from halswarm.agent.opencode.client import OpencodeError, OpencodeNotFoundError, OpencodeUnavailableError
from halswarm.agent.opencode.shapes import as_str, permission_request, question_request
from halswarm.jsontypes import JSONObject
from halswarm.models import ACTIVE_STATUSES, PermissionRequest, QuestionRequest
from halswarm.obs.logging import ctx

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.agent.opencode.client import OpencodeClient
    from halswarm.agent.opencode.mapper import SessionMapper
    from halswarm.models import Project

__all__ = ["RestSnapshot", "directories", "read_snapshot"]

log = logging.getLogger(__name__)


@attrs.frozen
class RestSnapshot:
    """What a resync reads over REST: every session, and per directory the busy ones
    and the pending requests (merged over the configured projects); for the sessions
    :meth:`SessionMapper.turns_ending` names, the newest message's info (absent when it
    could not be read)."""

    sessions: list[JSONObject]
    statuses: dict[str, JSONObject]
    permissions: list[JSONObject]
    questions: list[JSONObject]
    last_messages: dict[str, JSONObject] = attrs.field(factory=dict)

    def pending_by_root(
        self, root_of: Callable[[str], str | None], asked_at: str
    ) -> dict[str, tuple[list[PermissionRequest], list[QuestionRequest]]]:
        """The pending requests per tracked root (*root_of* maps a session to its root)."""
        by_root: dict[str, tuple[list[PermissionRequest], list[QuestionRequest]]] = {}
        for raw in self.permissions:
            root_id = root_of(as_str(raw.get("sessionID")))
            if root_id is not None:
                by_root.setdefault(root_id, ([], []))[0].append(permission_request(raw, asked_at))
        for raw in self.questions:
            root_id = root_of(as_str(raw.get("sessionID")))
            if root_id is not None:
                by_root.setdefault(root_id, ([], []))[1].append(question_request(raw, asked_at))
        return by_root


def directories(projects: list[Project], mapper: SessionMapper) -> list[str]:
    """The directories to ask opencode about: the projects' and the live sessions'."""
    dirs = {p.directory for p in projects}
    dirs.update(s.directory for s in mapper.sessions() if s.directory and s.status in ACTIVE_STATUSES)
    return sorted(dirs)


async def read_snapshot(client: OpencodeClient, mapper: SessionMapper, projects: list[Project]) -> RestSnapshot:
    """Read the REST view of every session of *projects* that *mapper* needs.

    Raises:
        OpencodeError: a read failed (but for a turn's newest message: that turn's
            outcome then stays unknown).
    """
    sessions = await client.all_sessions()
    listed = {info.get("id") for info in sessions}
    for state in mapper.sessions():
        # Ended only when opencode says so, not because a list left it out.
        if state.status != "completed" and state.id not in listed:
            with contextlib.suppress(OpencodeNotFoundError):
                sessions.append(await client.session(state.id))
    # Sessions in sub-directories of a project have their own instance views.
    ours = {
        str(info.get("directory"))
        for info in sessions
        if isinstance(info.get("directory"), str) and mapper.project_for(str(info.get("directory")))
    }
    statuses: dict[str, JSONObject] = {}
    permissions: list[JSONObject] = []
    questions: list[JSONObject] = []
    for directory in sorted(ours.union(directories(projects, mapper))):
        statuses.update(await client.session_status(directory))
        permissions.extend(await client.permissions(directory))
        questions.extend(await client.questions(directory))
    last = await _ended_turns(client, mapper, {str(info.get("id")) for info in sessions}, statuses)
    return RestSnapshot(sessions, statuses, permissions, questions, last)


async def _ended_turns(
    client: OpencodeClient, mapper: SessionMapper, listed: set[str], statuses: dict[str, JSONObject]
) -> dict[str, JSONObject]:
    """The newest message of each session whose turn ended unseen (busy here, at rest in
    *statuses*), one bounded request each. A failed read leaves that turn's outcome
    unknown; an unreachable opencode fails the resync, as any other read does."""
    last: dict[str, JSONObject] = {}
    for state in mapper.turns_ending(statuses):
        if state.id not in listed:
            continue  # gone: the resync ends it anyway
        try:
            message = await client.last_message(state.id, state.directory)
        except OpencodeUnavailableError:
            raise
        except OpencodeError as exc:
            problem = ctx(session_id=state.id, error=str(exc))
            log.warning("cannot read how a turn ended; its error count stays", extra=problem)
            continue
        if message is not None:
            last[state.id] = message
    return last
