"""What an agent reports about one project's environment, as the supervisor stores it (issue #9).

The agent emits an ``env.check.report`` event per project and check run whose ``data``
is an :class:`EnvReport`; the supervisor keeps the latest one per (node, project) and
serves it from ``/api/v1/env/status``. ``agent_file`` carries the AGENT.md digest, and its
text when it differs from the rendered template (bounded), so ``/api/v1/agent-md/{p}/diff``
can show the difference without asking the node.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.envcheck.checks import CheckItem, DriftItem, ProjectReport, ProjectState, rendered_agent_file
from halswarm.envcheck.safefiles import UnsafeFileError, read_confined
from halswarm.envcheck.template import TemplateError, sha256_text

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.envcheck.manifest import ProjectSpec

__all__ = [
    "AGENT_FILE_MAX_CHARS",
    "REPORT_EVENT",
    "AgentFileInfo",
    "EnvReport",
    "agent_file_info",
    "env_report",
]

#: The event type carrying an :class:`EnvReport`.
REPORT_EVENT: Final = "env.check.report"
#: AGENT.md text kept in a report (only when it differs from the template).
AGENT_FILE_MAX_CHARS: Final = 32 * 1024


@attrs.frozen
class AgentFileInfo:
    """The project's AGENT.md as the node has it. ``sha256`` None: the file is absent."""

    path: str
    sha256: str | None
    expected_sha256: str | None
    #: Its text when it differs from the rendered template (cut at AGENT_FILE_MAX_CHARS).
    content: str | None = None
    truncated: bool = False


@attrs.frozen
class EnvReport:
    """The latest check of one project on one node."""

    node_id: str
    project: str
    directory: str
    state: ProjectState
    checked_at: str
    manifest_hash: str
    checks: list[CheckItem]
    drift: list[DriftItem]
    agent_file: AgentFileInfo | None = None

    def failed(self) -> list[str]:
        """Ids (``category:name``) of the failed checks."""
        return [c.id for c in self.checks if c.status == "fail"]


def agent_file_info(project: str, spec: ProjectSpec, directory: Path) -> AgentFileInfo:
    """Read the project's AGENT.md and compare it with the template (blocking: a worker thread)."""
    path = directory / spec.agent.file
    try:
        expected = rendered_agent_file(project, spec)
    except TemplateError:
        expected = None
    expected_sha = sha256_text(expected) if expected is not None else None
    try:
        # Never through a link or into a FIFO: the content is sent to the supervisor.
        data = read_confined(directory, spec.agent.file)
    except (UnsafeFileError, OSError):
        data = None
    if data is None:
        return AgentFileInfo(str(path), None, expected_sha)
    sha = hashlib.sha256(data).hexdigest()
    text = data.decode(errors="replace")
    if sha == expected_sha:
        return AgentFileInfo(str(path), sha, expected_sha)
    cut = len(text) > AGENT_FILE_MAX_CHARS
    return AgentFileInfo(str(path), sha, expected_sha, text[:AGENT_FILE_MAX_CHARS], cut)


def env_report(node_id: str, report: ProjectReport, checked_at: str, agent_file: AgentFileInfo | None) -> EnvReport:
    """The wire form of a :class:`ProjectReport` checked at *checked_at* on *node_id*."""
    return EnvReport(
        node_id,
        report.project,
        report.directory,
        report.state,
        checked_at,
        report.manifest_hash,
        list(report.checks),
        list(report.drift),
        agent_file,
    )
