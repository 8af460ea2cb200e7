"""``halctl sessions permissions|approve|reject|answer`` against a real supervisor and agents.

The simulation asks for permissions and answers them itself at random, which would race
the tests; so these agents start from saved sessions that already wait on known
requests, produce no events of their own (rate 0.001/s, no human-in-the-loop) and only
react to commands.
"""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Final

import orjson
import pytest
import trio

from halswarm.agent.outbox import open_outbox
from halswarm.cli.pending import PendingRequest
from halswarm.convert import converter
from halswarm.models import Command, Event, Pending, PermissionRequest, Project, Question, QuestionRequest, Session
from halswarm.testing import (
    Cluster,
    agent_config,
    api_client,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)
from halswarm.testing.halctl import Halctl

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    from halswarm.testing.halctl import Result

#: Where the simulated backend keeps its sessions in the agent's outbox.
STATE_KEY: Final = "simulated_sessions"

SES_NPM: Final = "ses_1111aaaa00000000000000a1"
SES_QUESTION: Final = "ses_2222bbbb00000000000000b2"
SES_IDLE: Final = "ses_3333cccc00000000000000c3"
SES_TWO: Final = "ses_4444dddd00000000000000d4"
PER_NPM: Final = "per_1111aaaa00000000000000a1"
QUE_APPROACH: Final = "que_2222bbbb00000000000000b2"
PER_EDIT: Final = "per_4444dddd00000000000000d4"
PER_PUSH: Final = "per_5555eeee00000000000000e5"

QUESTIONS: Final = [
    Question("Which approach should I take?", "Approach", ["minimal", "thorough"]),
    Question("Which files may I touch?", "Files", ["src/a.py", "src/b.py", "tests, docs"]),
]


def _session(session_id: str, node_id: str, project: str, pending: Pending, started: str) -> Session:
    return Session(
        id=session_id,
        node_id=node_id,
        project=project,
        directory=f"/srv/{project}",
        status="idle" if pending.is_empty() else "waiting",
        title=f"Work on {project}",
        pending=pending,
        started_at=started,
        last_activity=started,
    )


SEEDED: Final[dict[str, list[Session]]] = {
    "node-1": [
        _session(
            SES_NPM,
            "node-1",
            "proj-1-1",
            Pending([PermissionRequest(PER_NPM, "bash", ["npm test"], "npm test", "2024-01-01T12:00:00Z")]),
            "2024-01-01T11:00:00Z",
        ),
        _session(
            SES_QUESTION,
            "node-1",
            "proj-1-2",
            Pending(questions=[QuestionRequest(QUE_APPROACH, list(QUESTIONS), "2024-01-01T12:01:00Z")]),
            "2024-01-01T11:01:00Z",
        ),
        _session(SES_IDLE, "node-1", "proj-1-1", Pending(), "2024-01-01T11:02:00Z"),
    ],
    "node-2": [
        _session(
            SES_TWO,
            "node-2",
            "proj-2-1",
            Pending(
                [
                    PermissionRequest(PER_EDIT, "edit", ["src/app.py", "src/db.py"], "edit", "2024-01-01T12:02:00Z"),
                    PermissionRequest(PER_PUSH, "bash", ["git push"], "git push", "2024-01-01T12:03:00Z"),
                ]
            ),
            "2024-01-01T11:03:00Z",
        ),
    ],
}


@asynccontextmanager
async def open_waiting_cluster(tmp_path: Path) -> AsyncGenerator[Cluster]:
    """A supervisor and two quiet simulated agents whose saved sessions wait on requests."""
    config = supervisor_config(tmp_path / "supervisor.db")
    async with open_supervisor(config) as sup, AsyncExitStack() as stack:
        agents = []
        for node_id, sessions in SEEDED.items():
            data_dir = tmp_path / f"agent-{node_id}"
            data_dir.mkdir()
            async with open_outbox(data_dir) as outbox:
                await outbox.put_kv(STATE_KEY, orjson.dumps(converter.unstructure(sessions)))
            projects = [Project(name, f"/srv/{name}") for name in sorted({s.project for s in sessions})]
            cfg = agent_config(sup.ws_port, data_dir, node_id=node_id, projects=projects)
            agent = open_sim_agent(cfg, sessions=0, rate=0.001, human_in_loop=False)
            agents.append(await stack.enter_async_context(agent))
        client = await stack.enter_async_context(api_client(sup))
        seeded = [s for sessions in SEEDED.values() for s in sessions]

        def all_tracked() -> bool:
            return all((tracked := sup.tracker.get(s.id)) is not None and tracked.pending == s.pending for s in seeded)

        await wait_until(all_tracked, within=15, what="the seeded sessions tracked")
        yield Cluster(sup, agents, client)


@pytest.fixture
async def halctl(tmp_path: Path) -> AsyncIterator[Halctl]:
    """halctl against the waiting cluster (replaces the conftest's busy one here)."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    with trio.fail_after(60):
        async with open_waiting_cluster(tmp_path) as cluster:
            yield Halctl(cluster, cwd, home)


def _requests(result: Result) -> list[PendingRequest]:
    assert result.exit_code == 0, result.stderr
    return converter.structure(result.json()["requests"], list[PendingRequest])


def _command(result: Result) -> Command:
    assert result.exit_code == 0, result.stderr
    return converter.structure(result.json()["command"], Command)


def _tracked(halctl: Halctl, session_id: str) -> Session:
    session = halctl.cluster.supervisor.tracker.get(session_id)
    assert session is not None
    return session


async def _wait_pending(halctl: Halctl, session_id: str, pending: Pending, status: str) -> None:
    def done() -> bool:
        session = _tracked(halctl, session_id)
        return session.pending == pending and session.status == status

    await wait_until(done, within=10, what=f"{session_id} {status} with {pending}")


# ---- permissions ------------------------------------------------------------------------


async def test_permissions_table_lists_every_pending_request_oldest_first(halctl: Halctl) -> None:
    result = await halctl("sessions", "permissions")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "REQUEST" in line)
    assert header.split() == ["REQUEST", "KIND", "SESSION", "PROJECT", "NODE", "WHAT", "ASKED"]
    rows = [line.split() for line in lines if line.startswith(("per_", "que_"))]
    assert [row[:5] for row in rows] == [
        [PER_NPM[:12], "permission", SES_NPM[:12], "proj-1-1", "node-1"],
        [QUE_APPROACH[:12], "question", SES_QUESTION[:12], "proj-1-2", "node-1"],
        [PER_EDIT[:12], "permission", SES_TWO[:12], "proj-2-1", "node-2"],
        [PER_PUSH[:12], "permission", SES_TWO[:12], "proj-2-1", "node-2"],
    ]
    assert "bash: npm test" in result.stdout
    # One line per question (wrapped to the column), each with its options.
    assert "Approach: Which approach should I take?" in result.stdout
    assert "(minimal | thorough)" in result.stdout
    assert "Files: Which files may I touch?" in result.stdout
    assert "edit: src/app.py, src/db.py" in result.stdout
    assert " ".join(rows[0][-2:]).endswith("d ago")  # asked on 2024-01-01: days ago
    assert SES_IDLE[:12] not in result.stdout
    assert lines[-1].startswith("4 waiting: 3 permissions, 1 question")


async def test_permissions_json_and_filters(halctl: Halctl) -> None:
    everything = _requests(await halctl("-o", "json", "sessions", "permissions"))
    assert [(r.id, r.kind, r.session_id) for r in everything] == [
        (PER_NPM, "permission", SES_NPM),
        (QUE_APPROACH, "question", SES_QUESTION),
        (PER_EDIT, "permission", SES_TWO),
        (PER_PUSH, "permission", SES_TWO),
    ]
    npm = everything[0]
    assert (npm.permission, npm.patterns, npm.asked_at, npm.project, npm.node_id) == (
        "bash",
        ["npm test"],
        "2024-01-01T12:00:00Z",
        "proj-1-1",
        "node-1",
    )
    assert everything[1].questions == QUESTIONS

    on_node_2 = _requests(await halctl("sessions", "permissions", "--node", "node-2", "-o", "json"))
    assert [r.id for r in on_node_2] == [PER_EDIT, PER_PUSH]
    in_project = _requests(await halctl("sessions", "permissions", "--project", "proj-1-2", "-o", "json"))
    assert [r.id for r in in_project] == [QUE_APPROACH]
    by_prefix = _requests(await halctl("sessions", "permissions", "--session", SES_NPM[:12], "-o", "json"))
    assert [r.id for r in by_prefix] == [PER_NPM]

    unknown = await halctl("sessions", "permissions", "--session", "ses_ffffffff")
    assert unknown.exit_code == 5
    assert unknown.stderr.startswith("error: not found: ")


async def test_permissions_when_nothing_waits(halctl: Halctl) -> None:
    result = await halctl("sessions", "permissions", "--session", SES_IDLE)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "nothing is waiting for a human: no pending permissions or questions"
    assert _requests(await halctl("-o", "json", "sessions", "permissions", "--project", "proj-9")) == []


# ---- approve / reject -------------------------------------------------------------------


async def test_approve_by_prefix_clears_the_request_and_the_session_stops_waiting(halctl: Halctl) -> None:
    result = await halctl("sessions", "approve", PER_NPM[:12])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"reply_permission on {SES_NPM}: succeeded — permission {PER_NPM} approved (once)"
    await _wait_pending(halctl, SES_NPM, Pending(), "busy")
    left = _requests(await halctl("-o", "json", "sessions", "permissions"))
    assert PER_NPM not in {r.id for r in left}
    assert len(left) == 3

    # Approving it again: nothing waits on it any more.
    again = await halctl("sessions", "approve", PER_NPM)
    assert again.exit_code == 5
    assert PER_NPM in again.stderr


async def test_approve_always_keeps_the_session_waiting_on_its_other_request(halctl: Halctl) -> None:
    command = _command(await halctl("-o", "json", "sessions", "approve", PER_EDIT, "--always"))
    assert (command.type, command.target, command.status) == ("reply_permission", SES_TWO, "succeeded")
    assert (command.args["request_id"], command.args["reply"]) == (PER_EDIT, "always")
    remaining = Pending([PermissionRequest(PER_PUSH, "bash", ["git push"], "git push", "2024-01-01T12:03:00Z")])
    await _wait_pending(halctl, SES_TWO, remaining, "waiting")


async def test_reject_with_a_message_reaches_the_agent(halctl: Halctl) -> None:
    result = await halctl("sessions", "reject", PER_PUSH, "--message", "push after review", "--idempotency-key", "k1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"reply_permission on {SES_TWO}: succeeded — permission {PER_PUSH} rejected"
    remaining = Pending(
        [PermissionRequest(PER_EDIT, "edit", ["src/app.py", "src/db.py"], "edit", "2024-01-01T12:02:00Z")]
    )
    await _wait_pending(halctl, SES_TWO, remaining, "waiting")

    logs = await halctl("-o", "json", "sessions", "logs", SES_TWO, "--type", "permission.replied")
    assert logs.exit_code == 0, logs.stderr
    events = converter.structure(logs.json()["events"], list[Event])
    assert [e.data for e in events] == [{"requestID": PER_PUSH, "reply": "reject", "message": "push after review"}]

    # The key belongs to that reply: reusing it for another one is refused.
    first = await halctl("-o", "json", "sessions", "reject", PER_EDIT, "--message", "x", "--idempotency-key", "k1")
    assert first.exit_code == 1
    assert "idempotency_conflict" in first.stderr


# ---- answer -----------------------------------------------------------------------------


async def test_answer_with_valid_labels(halctl: Halctl) -> None:
    args = ("sessions", "answer", QUE_APPROACH[:12], "--answer", "thorough", "--answer", "src/a.py, tests, docs")
    command = _command(await halctl("-o", "json", *args))
    assert command.target == SES_QUESTION
    assert command.args == {"request_id": QUE_APPROACH, "answers": [["thorough"], ["src/a.py", "tests, docs"]]}
    await _wait_pending(halctl, SES_QUESTION, Pending(), "busy")


async def test_answer_prints_the_outcome(halctl: Halctl) -> None:
    result = await halctl("sessions", "answer", QUE_APPROACH, "--answer", "minimal", "--answer", "src/b.py")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"answer_question on {SES_QUESTION}: succeeded — question {QUE_APPROACH} answered"


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            ("fast", "src/a.py"),
            "'fast' is not an option of question #1 (Which approach should I take?); allowed: 'minimal', 'thorough'",
        ),
        (
            ("minimal", "src/a.py,src/c.py"),
            "'src/c.py' is not an option of question #2 (Which files may I touch?); "
            "allowed: 'src/a.py', 'src/b.py', 'tests, docs'",
        ),
        (("minimal",), "the request asks 2 questions (#1 Which approach should I take?; #2 Which files may I touch?)"),
        (("minimal", " , "), "--answer #2 is empty"),
    ],
)
async def test_answer_with_bad_labels_is_a_usage_error_and_sends_nothing(
    halctl: Halctl, answers: tuple[str, ...], message: str
) -> None:
    args = [arg for label in answers for arg in ("--answer", label)]
    result = await halctl("sessions", "answer", QUE_APPROACH, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {QUE_APPROACH}: ")
    assert message in result.stderr
    assert _tracked(halctl, SES_QUESTION).pending == SEEDED["node-1"][1].pending


# ---- errors -----------------------------------------------------------------------------


async def test_unknown_request_is_exit_5(halctl: Halctl) -> None:
    for args in (
        ("sessions", "approve", "per_0000000000"),
        ("sessions", "reject", "per_0000000000", "--message", "no"),
        ("sessions", "answer", "per_0000000000", "--answer", "minimal"),
    ):
        result = await halctl(*args)
        assert result.exit_code == 5, result
        assert result.stdout == ""
        assert result.stderr.strip() == (
            "error: not found: no session is waiting on a request 'per_0000000000'; "
            "list them with: halctl sessions permissions"
        )


async def test_wrong_kind_or_ambiguous_prefix_is_exit_2(halctl: Halctl) -> None:
    question = await halctl("sessions", "approve", QUE_APPROACH)
    assert question.exit_code == 2
    assert f"{QUE_APPROACH} is a question request, not a permission request" in question.stderr
    assert f"halctl sessions answer {QUE_APPROACH} --answer LABEL" in question.stderr

    permission = await halctl("sessions", "answer", PER_NPM, "--answer", "minimal")
    assert permission.exit_code == 2
    assert f"{PER_NPM} is a permission request, not a question request" in permission.stderr

    ambiguous = await halctl("sessions", "reject", "per_")
    assert ambiguous.exit_code == 2
    assert "'per_' matches 3 pending requests" in ambiguous.stderr
    for session_id in (SES_NPM, SES_TWO):
        assert _tracked(halctl, session_id).status == "waiting"


async def test_answer_needs_an_answer(halctl: Halctl) -> None:
    result = await halctl("sessions", "answer", QUE_APPROACH)
    assert result.exit_code == 2
    assert "--answer" in result.stderr
