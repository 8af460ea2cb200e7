"""Pending human-in-the-loop requests across the fleet, flattened for halctl (pure: no I/O).

A session waits (status ``waiting``) while its ``pending`` holds permission requests
(a tool call to approve) or question requests (a choice to make). halctl lists them
all in one table and answers them by request id; this module turns sessions into one
:class:`PendingRequest` per request, finds one by id (or a unique prefix), checks
answers against a question's options, and renders the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import attrs
from rich import box
from rich.table import Table
from rich.text import Text

from halswarm.cli.render import ago, short_id
from halswarm.models import Question

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from halswarm.models import Session

__all__ = [
    "NOTHING_WAITING",
    "AnswerError",
    "PendingRequest",
    "RequestKind",
    "match_requests",
    "parse_answers",
    "pending_requests",
    "pending_table",
    "pending_totals",
]

RequestKind = Literal["permission", "question"]

#: What ``halctl sessions permissions`` prints when no request waits.
NOTHING_WAITING: Final = "nothing is waiting for a human: no pending permissions or questions"


@attrs.frozen
class PendingRequest:
    """One permission or question request and the session that waits on it.

    ``permission``/``patterns``/``title`` are set for permissions, ``questions`` for
    questions (empty when the agent did not say what it asked).
    """

    id: str
    kind: RequestKind
    session_id: str
    project: str
    node_id: str
    asked_at: str | None = None
    permission: str | None = None
    patterns: list[str] = attrs.field(factory=list)
    title: str = ""
    questions: list[Question] = attrs.field(factory=list)

    def asked(self) -> str:
        """What is asked, one line per question: ``bash: npm test`` or
        ``Approach: Which approach? (minimal | thorough)``."""
        if self.kind == "permission":
            patterns = ", ".join(self.patterns)
            return f"{self.permission}: {patterns}" if patterns else (self.permission or self.title or "-")
        lines = []
        for item in self.questions:
            line = f"{item.header}: {item.question}" if item.header else item.question
            if item.options:
                line += f" ({' | '.join(item.options)})"
            lines.append(line)
        return "\n".join(lines) or "-"


def pending_requests(sessions: Iterable[Session]) -> list[PendingRequest]:
    """Every pending request of *sessions*, the longest-waiting first (unknown times last)."""
    found: list[PendingRequest] = []
    for s in sessions:
        found.extend(
            PendingRequest(
                p.id,
                "permission",
                s.id,
                s.project,
                s.node_id,
                asked_at=p.asked_at,
                permission=p.permission,
                patterns=list(p.patterns),
                title=p.title,
            )
            for p in s.pending.permissions
        )
        found.extend(
            PendingRequest(
                q.id, "question", s.id, s.project, s.node_id, asked_at=q.asked_at, questions=list(q.questions)
            )
            for q in s.pending.questions
        )
    return sorted(found, key=lambda r: (r.asked_at is None, r.asked_at or "", r.session_id, r.id))


def match_requests(requests: Iterable[PendingRequest], ref: str) -> list[PendingRequest]:
    """The requests whose id is *ref*; if none, those whose id starts with it."""
    candidates = list(requests)
    exact = [r for r in candidates if r.id == ref]
    return exact or [r for r in candidates if ref and r.id.startswith(ref)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _labels(value: str, options: list[str]) -> list[str]:
    """Split on commas, but keep together the pieces that make up one option (longest first)."""
    pieces = value.split(",")
    labels: list[str] = []
    i = 0
    while i < len(pieces):
        j = next((j for j in range(len(pieces), i + 1, -1) if ",".join(pieces[i:j]).strip() in options), i + 1)
        label = ",".join(pieces[i:j]).strip()
        if label:
            labels.append(label)
        i = j
    return labels


class AnswerError(ValueError):
    """``--answer`` values that do not fit the question (a usage error)."""


def parse_answers(values: Iterable[str], questions: list[Question]) -> list[list[str]]:
    """One list of labels per ``--answer LABEL[,LABEL...]``, checked against *questions*.

    When the questions are known, there must be one answer per question, and every
    label of a question that lists options must be one of them (exactly as spelled).
    An option with a comma in it is still one label (``--answer "a, b"`` when ``a, b``
    is an option).

    Raises:
        AnswerError: an empty answer, the wrong number of answers, or an unknown label
            (naming it and the allowed ones).
    """
    options = [q.options for q in questions]
    answers = [_labels(value, options[i] if i < len(options) else []) for i, value in enumerate(values)]
    for i, labels in enumerate(answers, 1):
        if not labels:
            raise AnswerError(f"--answer #{i} is empty; give at least one label")
    if not questions:  # the agent did not say what it asked: nothing to check against
        return answers
    if len(answers) != len(questions):
        asked = "; ".join(f"#{i} {q.question}" for i, q in enumerate(questions, 1))
        given = f"{len(answers)} --answer {'was' if len(answers) == 1 else 'were'} given"
        raise AnswerError(
            f"the request asks {_count(len(questions), 'question')} ({asked}) but {given}; "
            "give one --answer per question, in order"
        )
    for i, (labels, question) in enumerate(zip(answers, questions, strict=True), 1):
        if not question.options:
            continue
        for label in labels:
            if label not in question.options:
                allowed = ", ".join(repr(o) for o in question.options)
                raise AnswerError(
                    f"{label!r} is not an option of question #{i} ({question.question}); allowed: {allowed}"
                )
    return answers


# ---- rendering ------------------------------------------------------------------------


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


_DROP_NODE_BELOW: Final = 100
_FIXED: Final = 12 + 10 + 12 + 8  # request, kind, session, age


def pending_table(requests: list[PendingRequest], now: datetime, width: int = 120) -> Table:
    """One row per request: id, kind, session, project, node, what is asked, its age.

    Ids are shortened (unique prefixes are accepted back); the node column is dropped
    below 100 columns; what is asked wraps, one line per question.
    """
    show_node = width >= _DROP_NODE_BELOW
    project_w = min(20, max((len(r.project) for r in requests), default=7))
    node_w = min(16, max((len(r.node_id) for r in requests), default=4)) if show_node else 0
    columns = 6 + show_node
    asked_w = max(16, width - _FIXED - project_w - node_w - 3 * (columns - 1))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("REQUEST", no_wrap=True, min_width=12)
    table.add_column("KIND", no_wrap=True, min_width=10)
    table.add_column("SESSION", no_wrap=True, min_width=12)
    table.add_column("PROJECT", no_wrap=True)
    if show_node:
        table.add_column("NODE", no_wrap=True)
    table.add_column("WHAT", overflow="fold", max_width=asked_w)
    table.add_column("ASKED", no_wrap=True, min_width=8)
    for r in requests:
        row: list[str | Text] = [
            short_id(r.id),
            Text(r.kind, style="bold magenta" if r.kind == "permission" else "cyan"),
            short_id(r.session_id),
            _clip(r.project, project_w),
        ]
        if show_node:
            row.append(_clip(r.node_id, node_w))
        row += [r.asked(), ago(r.asked_at, now)]
        table.add_row(*row)
    return table


def pending_totals(requests: list[PendingRequest]) -> Text:
    """``3 waiting: 2 permissions, 1 question · approve/reject/answer with halctl sessions ...``."""
    permissions = sum(1 for r in requests if r.kind == "permission")
    questions = len(requests) - permissions
    text = Text(f"{len(requests)} waiting", style="bold")
    text.append(f": {_count(permissions, 'permission')}, {_count(questions, 'question')}")
    text.append(" · reply with: halctl sessions approve|reject|answer REQUEST", style="dim")
    return text
