"""SessionMapper against the recorded opencode 1.18.33 event streams.

Each scenario of ``tests/opencode/recordings`` is replayed through a mapper configured
with the one project the recording ran in, on a fake wall clock; the assertions are
what an operator would see: status, totals, pending requests, error counts and which
events reach the supervisor.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.agent.backend import OutEvent
from halswarm.agent.opencode.mapper import SessionMapper
from halswarm.agent.opencode.snapshot import RestSnapshot
from halswarm.jsontypes import is_json_object
from halswarm.models import SESSION_STATUSES, Project, Tokens

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import Session, SessionStatus

RECORDINGS = Path(__file__).parent.parent / "opencode" / "recordings"
SCENARIOS = sorted(p.stem for p in RECORDINGS.glob("*.jsonl"))
FEW = settings(max_examples=50, deadline=None, database=None)
MAX_STRING = 2000  # the mapper's cut-off for strings it forwards


class FakeClock:
    """A wall clock that moves 100 ms per reading (too little to trigger activity events)."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.current += timedelta(milliseconds=100)
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


# ---- recordings ----------------------------------------------------------------------


@functools.cache
def _lines(name: str) -> tuple[str, ...]:
    return tuple(line for line in (RECORDINGS / f"{name}.jsonl").read_text().splitlines() if line.strip())


def load(name: str, replacements: dict[str, str] | None = None) -> list[JSONObject]:
    """A recording's envelopes, freshly parsed, with text *replacements* applied first."""
    envelopes: list[JSONObject] = []
    for line in _lines(name):
        text = line
        for old, new in (replacements or {}).items():
            text = text.replace(old, new)
        value = orjson.loads(text)
        assert is_json_object(value)
        envelopes.append(value)
    return envelopes


def rest_pending() -> JSONObject:
    value = orjson.loads((RECORDINGS / "rest_pending.json").read_bytes())
    assert is_json_object(value)
    return value


def obj(value: JSONValue) -> JSONObject:
    assert is_json_object(value), value
    return value


def etype(envelope: JSONObject) -> str:
    return str(obj(envelope["payload"])["type"])


def props(envelope: JSONObject) -> JSONObject:
    return obj(obj(envelope["payload"]).get("properties", {}))


def project_dir(envelopes: Iterable[JSONObject]) -> str:
    """The one project directory the recording's envelopes name."""
    dirs = {d for e in envelopes if isinstance(d := e.get("directory"), str) and d.startswith("/")}
    assert len(dirs) == 1, dirs
    return dirs.pop()


def index_of(envelopes: list[JSONObject], kind: str, session_id: str | None = None) -> int:
    """Position of the first envelope of type *kind* (naming *session_id*, when given)."""
    for i, env in enumerate(envelopes):
        if etype(env) == kind and (session_id is None or props(env).get("sessionID") == session_id):
            return i
    raise AssertionError(f"no {kind} in recording")


def session_ids(envelopes: list[JSONObject]) -> tuple[str, list[str]]:
    """The root session id and the child ids, from the ``session.created`` infos."""
    roots: list[str] = []
    children: list[str] = []
    for env in envelopes:
        if etype(env) == "session.created":
            info = obj(props(env)["info"])
            (children if info.get("parentID") else roots).append(str(info["id"]))
    assert len(roots) == 1, roots
    return roots[0], children


def last_infos(envelopes: list[JSONObject]) -> dict[str, JSONObject]:
    """Each session's info from its last ``session.created``/``session.updated``."""
    infos: dict[str, JSONObject] = {}
    for env in envelopes:
        if etype(env) in ("session.created", "session.updated"):
            info = obj(props(env)["info"])
            infos[str(info["id"])] = info
    return infos


def envelope(directory: str, kind: str, properties: JSONObject) -> JSONObject:
    return {"directory": directory, "payload": {"id": "evt_synthetic", "type": kind, "properties": properties}}


# ---- replaying -----------------------------------------------------------------------


@attrs.define
class Replay:
    """A mapper for one project plus everything it forwarded so far."""

    mapper: SessionMapper
    clock: FakeClock
    directory: str
    out: list[OutEvent] = attrs.Factory(list)

    @classmethod
    def of(cls, project_directory: str) -> Replay:
        clock = FakeClock()
        mapper = SessionMapper("n1", [Project("app", project_directory)], now=clock)
        return cls(mapper, clock, project_directory)

    def feed(self, envelopes: Iterable[JSONObject]) -> list[OutEvent]:
        new = [event for e in envelopes for event in self.mapper.feed(e)]
        self.out.extend(new)
        return new

    def only(self) -> Session:
        sessions = self.mapper.sessions()
        assert len(sessions) == 1, sessions
        return sessions[0]

    def types(self) -> list[str]:
        return [e.type for e in self.out]

    def of_type(self, kind: str) -> list[OutEvent]:
        return [e for e in self.out if e.type == kind]

    def statuses(self) -> list[SessionStatus]:
        """Statuses the forwarded states went through, repeats collapsed."""
        shown: list[SessionStatus] = []
        for event in self.out:
            if event.state is not None and (not shown or shown[-1] != event.state.status):
                shown.append(event.state.status)
        return shown


def replay(name: str) -> Replay:
    envelopes = load(name)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes)
    return r


# ---- scenarios -----------------------------------------------------------------------


def noisy(envelopes: list[JSONObject], directory: str, session_id: str) -> list[JSONObject]:
    """The recording with server and plugin chatter after every envelope."""
    out: list[JSONObject] = []
    for e in envelopes:
        out += [
            e,
            {"payload": {"id": "evt_hb", "type": "server.heartbeat", "properties": {}}},
            envelope(directory, "plugin.added", {"name": "x", "sessionID": session_id}),
        ]
    return out


def test_plain_turn_ends_idle_with_totals_title_and_model() -> None:
    envelopes = load("plain")
    directory = project_dir(envelopes)
    sid, _ = session_ids(envelopes)
    r = Replay.of(directory)
    r.feed(noisy(envelopes, directory, sid))

    s = r.only()
    assert s.id == sid
    assert (s.project, s.directory, s.node_id) == ("app", directory, "n1")
    assert s.status == "idle"
    assert (s.tokens.input, s.tokens.output) == (100, 7)
    assert s.cost_usd == pytest.approx(0.000405)
    assert s.title == "Stub title"
    assert s.model == "stub/stub-model"
    assert s.consecutive_errors == 0
    assert r.mapper.turns(sid) == 1
    assert not r.mapper.is_busy(sid)

    types = r.types()
    assert types[0] == "session.created"
    assert types.count("session.idle") == 1
    assert types.count("message.completed") == 1
    assert [t for t in types if t in ("message.part.delta", "message.part.updated", "sync")] == []
    assert [t for t in types if t.startswith(("server.", "plugin.", "catalog."))] == []
    assert {e.session_id for e in r.out} == {sid}
    assert {e.project for e in r.out} == {"app"}
    # Level-triggered: opencode repeats "busy" four times, each change is forwarded once.
    assert [e.data["status"] for e in r.of_type("session.status")] == [{"type": "busy"}, {"type": "idle"}]
    assert r.statuses() == ["idle", "busy", "idle"]
    assert r.types().index("session.status") < r.types().index("message.completed") < r.types().index("session.idle")


def test_plain_message_completed_carries_the_assistant_totals() -> None:
    r = replay("plain")
    [done] = r.of_type("message.completed")
    assert done.data["model"] == "stub/stub-model"
    assert done.data["cost"] == pytest.approx(0.000405)
    assert obj(done.data["tokens"])["input"] == 100
    assert done.data["finish"] == "stop"


def test_bash_once_waits_for_approval_then_runs_to_idle() -> None:
    envelopes = load("bash_once")
    asked = index_of(envelopes, "permission.asked")
    replied = index_of(envelopes, "permission.replied")
    r = Replay.of(project_dir(envelopes))

    r.feed(envelopes[:asked])
    assert r.only().status == "busy"
    [ask] = r.feed(envelopes[asked : asked + 1])
    assert ask.type == "permission.asked"
    assert ask.state is not None
    assert ask.state.status == "waiting"
    [request] = ask.state.pending.permissions
    assert request.id.startswith("per_")
    assert request.permission == "bash"
    assert request.patterns == ["echo hello-from-bash"]
    assert request.title == "echo hello-from-bash"
    assert request.asked_at is not None
    assert ask.state.pending.questions == []
    assert r.mapper.is_busy(ask.state.id)  # opencode's own status stays busy meanwhile

    r.feed(envelopes[asked + 1 : replied])
    assert r.only().status == "waiting"
    [reply] = r.feed(envelopes[replied : replied + 1])
    assert reply.type == "permission.replied"
    assert reply.data["reply"] == "once"
    assert reply.state is not None
    assert reply.state.pending.is_empty()
    assert reply.state.status == "busy"

    r.feed(envelopes[replied + 1 :])
    s = r.only()
    assert s.status == "idle"
    assert s.pending.is_empty()
    assert s.consecutive_errors == 0
    assert r.types().count("session.idle") == 1
    assert r.statuses() == ["idle", "busy", "waiting", "busy", "idle"]


@pytest.mark.parametrize("name", ["bash_reject", "bash_reject_message"])
def test_rejected_permission_ends_idle_without_an_error(name: str) -> None:
    r = replay(name)
    s = r.only()
    assert s.status == "idle"
    assert s.pending.is_empty()
    assert s.consecutive_errors == 0
    assert [e.data["reply"] for e in r.of_type("permission.replied")] == ["reject"]
    assert r.of_type("session.error") == []
    assert "error" not in r.statuses()
    assert r.types().count("session.idle") == 1


def test_question_waits_with_its_options_until_answered() -> None:
    envelopes = load("question")
    asked = index_of(envelopes, "question.asked")
    replied = index_of(envelopes, "question.replied")
    r = Replay.of(project_dir(envelopes))

    r.feed(envelopes[: asked + 1])
    s = r.only()
    assert s.status == "waiting"
    [request] = s.pending.questions
    assert request.id.startswith("que_")
    [question] = request.questions
    assert question.question == "Pick a color?"
    assert question.header == "Color"
    assert question.options == ["red", "blue"]
    assert s.pending.permissions == []

    r.feed(envelopes[asked + 1 : replied + 1])
    assert r.only().pending.is_empty()
    assert r.only().status == "busy"
    assert obj(r.of_type("question.replied")[0].data)["answers"] == [["blue"]]

    r.feed(envelopes[replied + 1 :])
    assert r.only().status == "idle"
    assert r.types().count("session.idle") == 1


def test_task_child_folds_into_its_root() -> None:
    envelopes = load("task")
    root_id, children = session_ids(envelopes)
    [child_id] = children
    child_idle = index_of(envelopes, "session.idle", child_id)
    r = Replay.of(project_dir(envelopes))

    r.feed(envelopes[: child_idle + 1])
    assert r.only().status == "busy"  # the child's idle does not end the root's turn
    assert "session.idle" not in r.types()

    r.feed(envelopes[child_idle + 1 :])
    s = r.only()
    assert s.id == root_id
    assert r.mapper.get(child_id) is None
    assert r.mapper.root_of(child_id) == root_id
    assert s.status == "idle"
    assert {e.session_id for e in r.out} == {root_id}
    from_child = [e.type for e in r.out if e.data.get("child_session_id") == child_id]
    assert "session.child" in from_child
    assert "message.completed" in from_child
    assert r.types().count("session.idle") == 1
    assert r.types().count("session.created") == 1

    infos = last_infos(envelopes)
    own, sub = infos[root_id], infos[child_id]
    assert s.cost_usd == pytest.approx(float(str(own["cost"])) + float(str(sub["cost"])))
    assert float(str(sub["cost"])) > 0  # else the sum would prove nothing
    own_tokens, sub_tokens = obj(own["tokens"]), obj(sub["tokens"])
    assert s.tokens.input == int(str(own_tokens["input"])) + int(str(sub_tokens["input"]))
    assert s.tokens.output == int(str(own_tokens["output"])) + int(str(sub_tokens["output"]))


def test_child_permission_makes_the_root_wait() -> None:
    envelopes = load("task")
    root_id, [child_id] = session_ids(envelopes)
    directory = project_dir(envelopes)
    r = Replay.of(directory)
    r.feed(envelopes[: index_of(envelopes, "session.created", child_id) + 1])

    ask: JSONObject = {
        "id": "per_child",
        "sessionID": child_id,
        "permission": "bash",
        "patterns": ["ls"],
        "metadata": {},
    }
    [event] = r.feed([envelope(directory, "permission.asked", ask)])
    assert event.session_id == root_id
    assert event.state is not None
    assert event.state.status == "waiting"
    assert [p.id for p in event.state.pending.permissions] == ["per_child"]
    assert event.state.pending.permissions[0].title == "ls"

    reply: JSONObject = {"sessionID": child_id, "requestID": "per_child", "reply": "once"}
    r.feed([envelope(directory, "permission.replied", reply)])
    assert r.only().status == "busy"


def test_a_subagent_error_is_reported_but_does_not_fail_its_root() -> None:
    envelopes = load("task")
    root_id, [child_id] = session_ids(envelopes)
    directory = project_dir(envelopes)
    r = Replay.of(directory)
    r.feed(envelopes[: index_of(envelopes, "session.created", child_id) + 1])
    failure: JSONObject = {"sessionID": child_id, "error": {"name": "APIError", "data": {"message": "overloaded"}}}
    [event] = r.feed([envelope(directory, "session.error", failure)])
    assert (event.type, event.session_id, event.data["child_session_id"]) == ("session.error", root_id, child_id)
    assert event.state is None
    r.feed(envelopes[index_of(envelopes, "session.created", child_id) + 1 :])
    assert (r.only().status, r.only().consecutive_errors) == ("idle", 0)


def test_grandchildren_listed_before_their_parent_still_add_up_on_resync() -> None:
    r = Replay.of("/srv/app")
    root: JSONObject = {"id": "ses_root", "directory": "/srv/app", "cost": 1.0, "tokens": {"input": 10}}
    child: JSONObject = {"id": "ses_child", "parentID": "ses_root", "directory": "/srv/app", "cost": 0.5}
    grandchild: JSONObject = {"id": "ses_grand", "parentID": "ses_child", "directory": "/srv/app", "cost": 0.25}
    r.mapper.resync(RestSnapshot([grandchild, root, child], {}, [], []))
    assert r.only().cost_usd == 1.75


def test_subagents_of_sessions_we_do_not_track_are_not_kept() -> None:
    # One opencode server hosts many projects: their subagents are none of our business.
    r = Replay.of("/srv/app")
    root: JSONObject = {"id": "ses_root", "directory": "/srv/app"}
    child: JSONObject = {"id": "ses_child", "parentID": "ses_root", "directory": "/srv/app", "cost": 0.5}
    other: JSONObject = {"id": "ses_other", "directory": "/srv/other"}
    theirs: JSONObject = {"id": "ses_theirs", "parentID": "ses_other", "directory": "/srv/other", "cost": 9.0}
    grand: JSONObject = {"id": "ses_grand", "parentID": "ses_theirs", "directory": "/srv/other", "cost": 9.0}
    r.mapper.resync(RestSnapshot([grand, theirs, child, other, root], {}, [], []))
    assert set(r.mapper._children) == {"ses_child"}
    late: JSONObject = {"id": "ses_late", "parentID": "ses_theirs", "directory": "/srv/other"}
    mine: JSONObject = {"id": "ses_mine", "parentID": "ses_child", "directory": "/srv/app", "cost": 0.25}
    r.feed([envelope("/srv/other", "session.created", {"sessionID": "ses_late", "info": late})])
    r.feed([envelope("/srv/app", "session.created", {"sessionID": "ses_mine", "info": mine})])
    assert set(r.mapper._children) == {"ses_child", "ses_mine"}
    assert r.only().cost_usd == 0.75


def turn_of(envelopes: list[JSONObject]) -> list[JSONObject]:
    """A recording from its first ``session.status`` on: one prompt's turn."""
    return envelopes[index_of(envelopes, "session.status") :]


def test_err401_counts_one_error_and_a_good_turn_resets_it() -> None:
    envelopes = load("err401")
    sid, _ = session_ids(envelopes)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes)

    s = r.only()
    assert s.status == "error"
    assert s.consecutive_errors == 1  # the idle pair arrives twice, the error once
    [error] = r.of_type("session.error")
    assert obj(error.data["error"]) == {
        "name": "APIError",
        "message": "invalid api key",
        "statusCode": 401,
        "isRetryable": False,
    }
    assert r.types().count("session.idle") == 1
    assert r.mapper.turns(sid) == 1

    r.feed(turn_of(load("err401")))  # a second failing turn
    assert (r.only().status, r.only().consecutive_errors) == ("error", 2)

    plain = load("plain")
    plain_sid, _ = session_ids(plain)
    [prompted] = r.mapper.mark_prompted(sid, "hello")
    assert prompted.state is not None
    assert (prompted.state.status, prompted.state.consecutive_errors) == ("busy", 2)
    r.feed(turn_of(load("plain", {plain_sid: sid})))
    s = r.only()
    assert s.status == "idle"
    assert s.consecutive_errors == 0
    assert r.mapper.turns(sid) == 3


def test_abort_is_not_an_error() -> None:
    r = replay("abort_slow")
    s = r.only()
    assert s.status == "idle"
    assert s.consecutive_errors == 0
    [error] = r.of_type("session.error")
    assert error.data["aborted"] is True
    assert obj(error.data["error"])["name"] == "MessageAbortedError"
    assert "error" not in r.statuses()
    assert r.types().count("session.idle") == 1
    assert (s.tokens, s.cost_usd) == (Tokens(), 0.0)


@pytest.mark.parametrize(
    ("name", "auto", "idles"),
    [
        pytest.param("compaction_manual", False, 2, id="manual"),  # the prompt's turn, then summarize's
        pytest.param("compaction_auto", True, 1, id="auto"),  # one turn: BIG, summary, continuation
    ],
)
def test_compaction_is_counted_once(name: str, auto: bool, idles: int) -> None:
    r = replay(name)
    s = r.only()
    assert s.compaction_count == 1
    [compacted] = r.of_type("session.compacted")
    assert compacted.data["auto"] is auto
    assert s.status == "idle"
    assert r.types().count("session.idle") == idles


def test_auto_compaction_totals_include_summary_and_continuation() -> None:
    s = replay("compaction_auto").only()
    assert s.tokens.input == 9200
    assert s.cost_usd == pytest.approx(0.027915)
    assert s.model == "stub/stub-tiny"


def test_cache_tokens() -> None:
    s = replay("cache").only()
    assert s.tokens == Tokens(input=400, output=30, reasoning=20, cache_read=600, cache_write=0)
    assert s.cost_usd == pytest.approx(0.00195)


def test_deleted_session_is_completed_for_good() -> None:
    envelopes = load("delete")
    sid, _ = session_ids(envelopes)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes)
    assert r.only().status == "completed"
    deleted = r.out[-1]
    assert deleted.type == "session.deleted"
    assert deleted.state is not None
    assert deleted.state.status == "completed"

    r.feed([envelope(r.directory, "session.status", {"sessionID": sid, "status": {"type": "busy"}})])
    assert r.only().status == "completed"
    assert r.feed([envelope(r.directory, "session.deleted", {"sessionID": sid, "info": {"id": sid}})]) == []


@pytest.mark.parametrize(
    "configured",
    [
        pytest.param(lambda d: "/elsewhere/app", id="other-tree"),
        pytest.param(lambda d: d + "-sibling", id="sibling"),
        pytest.param(lambda d: d[:-1], id="string-prefix"),
        pytest.param(lambda d: d + "/sub", id="subdirectory"),
    ],
)
def test_sessions_outside_the_projects_are_ignored(configured: Callable[[str], str]) -> None:
    envelopes = load("write")
    directory = project_dir(envelopes)
    r = Replay.of(configured(directory))
    r.feed(envelopes)
    assert r.mapper.sessions() == []
    assert r.out == []


def test_session_in_a_subdirectory_of_a_project_is_tracked() -> None:
    envelopes = load("plain")
    directory = project_dir(envelopes)
    r = Replay.of(str(Path(directory).parent))
    r.feed(envelopes)
    assert r.only().status == "idle"


def test_file_edits_are_forwarded_for_the_project() -> None:
    r = replay("write")
    [edited] = r.of_type("file.edited")
    assert edited.project == "app"
    assert str(edited.data["file"]).endswith("/stub-note.txt")
    assert "file.watcher.updated" not in r.types()


# ---- resync --------------------------------------------------------------------------


def snapshot(raw: JSONObject, sessions: list[JSONObject] | None = None) -> RestSnapshot:
    infos = raw["GET /experimental/session"]
    statuses = obj(raw["GET /session/status"])
    perms, questions = raw["GET /permission"], raw["GET /question"]
    assert isinstance(infos, list)
    assert isinstance(perms, list)
    assert isinstance(questions, list)
    return RestSnapshot(
        [obj(i) for i in infos] if sessions is None else sessions,
        {k: obj(v) for k, v in statuses.items()},
        [obj(p) for p in perms],
        [obj(q) for q in questions],
    )


def bash_once_id() -> str:
    return session_ids(load("bash_once"))[0]


def test_resync_creates_the_waiting_session() -> None:
    raw = rest_pending()
    snap = snapshot(raw)
    r = Replay.of(project_dir(load("bash_once")))
    out = r.mapper.resync(snap)

    assert [e.type for e in out] == ["session.created"] * len(snap.sessions)
    assert all(e.data["resync"] is True for e in out)
    waiting = r.mapper.get(bash_once_id())
    assert waiting is not None
    assert waiting.status == "waiting"
    [request] = waiting.pending.permissions
    assert request.id.startswith("per_")
    assert (request.permission, request.patterns, request.title) == (
        "bash",
        ["echo hello-from-bash"],
        "echo hello-from-bash",
    )
    assert r.mapper.is_busy(bash_once_id())
    others = [s for s in r.mapper.sessions() if s.id != bash_once_id()]
    assert {s.status for s in others} == {"idle"}
    assert {s.predecessor_id for s in others} == {None, "ses_x"}  # metadata round-trips

    assert r.mapper.resync(snap) == []


def test_resync_agrees_with_the_events_it_replaces() -> None:
    envelopes = load("bash_once")
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[: index_of(envelopes, "permission.asked") + 1])
    before = r.only()
    out = r.mapper.resync(snapshot(rest_pending()))
    assert bash_once_id() not in {e.session_id for e in out}
    assert r.mapper.get(bash_once_id()) == before


def test_resync_without_a_known_session_completes_it() -> None:
    raw = rest_pending()
    r = Replay.of(project_dir(load("bash_once")))
    r.mapper.resync(snapshot(raw))
    rest = [i for i in snapshot(raw).sessions if i["id"] != bash_once_id()]
    out = r.mapper.resync(attrs.evolve(snapshot(raw, rest), statuses={}, permissions=[]))
    [gone] = out
    assert (gone.type, gone.session_id) == ("session.deleted", bash_once_id())
    assert gone.state is not None
    assert gone.state.status == "completed"
    assert gone.state.pending.is_empty()
    assert r.mapper.resync(attrs.evolve(snapshot(raw, rest), statuses={}, permissions=[])) == []


def test_resync_ignores_sessions_outside_the_projects() -> None:
    raw = rest_pending()
    snap = snapshot(raw)
    foreign = {**snap.sessions[0], "id": "ses_foreign", "directory": "/elsewhere/app"}
    ask = {**snap.permissions[0], "id": "per_foreign", "sessionID": "ses_foreign"}
    r = Replay.of(project_dir(load("bash_once")))
    out = r.mapper.resync(attrs.evolve(snap, sessions=[*snap.sessions, foreign], permissions=[*snap.permissions, ask]))
    assert "ses_foreign" not in {e.session_id for e in out}
    assert r.mapper.get("ses_foreign") is None
    assert len(r.mapper.sessions()) == len(snap.sessions)
    assert all(p.id != "per_foreign" for s in r.mapper.sessions() for p in s.pending.permissions)


def last_reply(envelopes: list[JSONObject]) -> JSONObject:
    """The info of the recording's last finished assistant message, as
    ``GET /session/{id}/message?limit=1`` shows it once the turn is over."""
    replies = [
        info
        for env in envelopes
        if etype(env) == "message.updated"
        and (info := obj(props(env)["info"]))["role"] == "assistant"
        and "completed" in obj(info["time"])
    ]
    return replies[-1]


def plain_turn_of(sid: str, fresh: str = "") -> list[JSONObject]:
    """The ``plain`` recording as a turn of *sid*; *fresh* renames its messages (another turn)."""
    plain = load("plain")
    replacements = {session_ids(plain)[0]: sid}
    if fresh:
        replacements["msg_"] = f"msg_{fresh}"
    return load("plain", replacements)


def second_turn_ended_unseen(newest: Callable[[str], JSONObject | None]) -> tuple[Replay, str, list[OutEvent]]:
    """``err401``'s failed turn seen, then a second prompt; the connection drops, the turn
    ends unseen, and the REST view shows the session at rest with ``newest(sid)`` as its
    newest message (None: not read). Returns the replay, the session and the resync's events."""
    envelopes = load("err401")
    sid, _ = session_ids(envelopes)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes)
    r.mapper.mark_prompted(sid, "again")
    message = newest(sid)
    last = {sid: message} if message is not None else {}
    return r, sid, r.mapper.resync(RestSnapshot([last_infos(envelopes)[sid]], {}, [], [], last))


def test_resync_after_a_missed_good_turn_clears_the_error_count() -> None:
    r, sid, [updated] = second_turn_ended_unseen(lambda sid: last_reply(plain_turn_of(sid, fresh="2")))
    assert updated.state is not None
    assert (updated.state.status, updated.state.consecutive_errors) == ("idle", 0)
    assert r.mapper.turns(sid) == 2


def test_resync_after_a_turn_that_failed_unseen_counts_the_error() -> None:
    # The stream is down while the provider refuses the second turn too.
    r, sid, [failed] = second_turn_ended_unseen(lambda sid: last_reply(load("err401", {"msg_": "msg_2"})))
    assert failed.type == "session.error"
    assert failed.state is not None
    assert (failed.state.status, failed.state.consecutive_errors) == ("error", 2)
    assert obj(failed.data["error"]) == {
        "name": "APIError",
        "message": "invalid api key",
        "statusCode": 401,
        "isRetryable": False,
    }
    assert failed.data["resync"] is True
    assert r.mapper.turns(sid) == 2


def cut_off(reply: JSONObject) -> JSONObject:
    """*reply* as opencode keeps it when it died mid-turn: never completed."""
    return {**reply, "time": {"created": obj(reply["time"])["created"]}}


@pytest.mark.parametrize(
    "newest",
    [
        pytest.param(lambda reply: None, id="not-read"),
        pytest.param(cut_off, id="cut-off-by-a-crash"),
        pytest.param(lambda reply: {"id": "msg_9", "role": "user", "time": {"created": 1}}, id="unanswered-prompt"),
    ],
)
def test_resync_after_a_turn_of_unknown_outcome_keeps_the_error_count(
    newest: Callable[[JSONObject], JSONObject | None],
) -> None:
    # e.g. opencode was OOM-killed mid-turn and restarted: it shows the session at rest.
    r, sid, [updated] = second_turn_ended_unseen(lambda sid: newest(last_reply(plain_turn_of(sid, fresh="2"))))
    assert updated.state is not None
    assert (updated.state.status, updated.state.consecutive_errors) == ("idle", 1)
    assert r.mapper.turns(sid) == 2


def test_resync_asks_for_the_newest_message_of_turns_it_ends_only() -> None:
    envelopes = load("plain")
    sid, _ = session_ids(envelopes)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[: index_of(envelopes, "session.status") + 1])
    r.mapper.adopt({"id": "ses_idle", "directory": r.directory})
    assert [s.id for s in r.mapper.turns_ending({})] == [sid]
    assert r.mapper.turns_ending({sid: {"type": "busy"}}) == []
    assert r.mapper.turns_ending({sid: {"type": "retry", "attempt": 1}}) == []


def resynced_mid_turn(name: str, until: str = "session.status") -> tuple[Replay, str, list[JSONObject]]:
    """The recording's turn seen up to its first *until*; then the stream drops, the turn
    ends during the resync, and the new stream still delivers the rest of it. Returns
    the replay after the resync, the session and those late envelopes."""
    envelopes = load(name)
    sid, _ = session_ids(envelopes)
    cut = index_of(envelopes, until) + 1
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[:cut])
    assert r.mapper.is_busy(sid)
    snap = RestSnapshot([last_infos(envelopes)[sid]], {}, [], [], {sid: last_reply(envelopes)})
    r.out.extend(r.mapper.resync(snap))
    return r, sid, envelopes[cut:]


def test_events_in_flight_during_the_resync_do_not_count_the_turn_again() -> None:
    r, sid, late = resynced_mid_turn("plain")
    assert (r.only().status, r.mapper.turns(sid)) == ("idle", 1)
    after = len(r.out)
    r.feed(late)
    assert r.mapper.turns(sid) == 1
    assert [e.type for e in r.out[after:] if e.state is not None and e.state.status != "idle"] == []
    assert "session.idle" not in r.types()
    assert r.only().status == "idle"
    # The late reply is still forwarded once: the resync does not carry messages.
    assert r.types().count("message.completed") == 1

    # The next turn (a new prompt, new messages) counts as usual.
    r.feed(turn_of(plain_turn_of(sid, fresh="2")))
    assert (r.only().status, r.mapper.turns(sid)) == ("idle", 2)
    assert r.statuses()[-3:] == ["idle", "busy", "idle"]


def test_late_events_of_a_failed_turn_do_not_count_it_again_or_clear_it() -> None:
    r, sid, late = resynced_mid_turn("err401")
    assert (r.only().status, r.only().consecutive_errors) == ("error", 1)
    r.feed(late)  # the session.error, two idle pairs and the failed reply, all older than the resync
    assert (r.only().status, r.only().consecutive_errors, r.mapper.turns(sid)) == ("error", 1, 1)
    assert len(r.of_type("session.error")) == 1


def test_late_events_do_not_end_the_turn_of_a_prompt_sent_meanwhile() -> None:
    # The handover's case: its prompt is recorded right after the resync, before the new
    # stream's older events are read; their idle is not the end of the prompt's turn.
    r, sid, late = resynced_mid_turn("plain")
    [prompted] = r.mapper.mark_prompted(sid, "write your notes", r.mapper.turns(sid))
    assert prompted.state is not None
    assert prompted.state.status == "busy"
    r.feed(late)
    assert (r.only().status, r.mapper.turns(sid)) == ("busy", 1)
    r.feed(turn_of(plain_turn_of(sid, fresh="2")))
    assert (r.only().status, r.mapper.turns(sid)) == ("idle", 2)


def test_a_late_error_counts_when_the_resync_could_not_tell() -> None:
    envelopes = load("err401")
    sid, _ = session_ids(envelopes)
    cut = index_of(envelopes, "session.status") + 1
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[:cut])
    # The newest message could not be read: the resync leaves the count alone...
    r.mapper.resync(RestSnapshot([last_infos(envelopes)[sid]], {}, [], [], {}))
    assert (r.only().status, r.only().consecutive_errors) == ("idle", 0)
    # ...and the stream's late session.error still tells it.
    r.feed(envelopes[cut:])
    assert (r.only().status, r.only().consecutive_errors) == ("error", 1)


# ---- restart, activity, trimming -----------------------------------------------------


def test_turn_in_flight_across_a_restart_still_forwards_its_idle() -> None:
    envelopes = load("plain")
    busy = index_of(envelopes, "session.status")
    first = Replay.of(project_dir(envelopes))
    first.feed(envelopes[: busy + 1])
    saved = first.mapper.export()
    assert [s.status for s in saved] == ["busy"]

    second = Replay.of(first.directory)
    second.mapper.restore(saved)
    second.feed(envelopes[busy + 1 :])
    assert second.only().status == "idle"
    assert second.types().count("session.idle") == 1
    assert "session.created" not in second.types()


def test_busy_session_with_only_dropped_events_shows_activity() -> None:
    envelopes = load("plain")
    sid, _ = session_ids(envelopes)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[: index_of(envelopes, "session.status") + 1])
    delta = envelopes[index_of(envelopes, "message.part.delta")]

    assert r.feed([delta]) == []
    r.clock.advance(31)
    [activity] = r.feed([delta])
    assert (activity.type, activity.session_id) == ("session.activity", sid)
    assert r.feed([delta]) == []


def test_oversized_strings_are_cut() -> None:
    envelopes = load("bash_once")
    asked = index_of(envelopes, "permission.asked")
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[:asked])

    command = "echo " + "x" * 10_000
    deep: JSONValue = "bottom"
    for _ in range(900):  # deeper than Python's recursion limit allows a naive walk
        deep = [deep]
    ask: JSONObject = {**props(envelopes[asked]), "metadata": {"command": command, "deep": deep}, "patterns": [command]}
    [event] = r.feed([envelope(r.directory, "permission.asked", ask)])
    cut = str(obj(event.data["metadata"])["command"])
    assert len(cut) < MAX_STRING + 50
    assert cut.startswith("echo xxx")
    assert "10005 chars" in cut
    assert len(orjson.dumps(event.data)) < 3 * MAX_STRING + 1000
    assert event.state is not None
    assert len(event.state.pending.permissions[0].title) <= MAX_STRING

    sid = str(ask["sessionID"])
    error: JSONObject = {"sessionID": sid, "error": {"name": "APIError", "data": {"message": "y" * 50_000}}}
    [failed] = r.feed([envelope(r.directory, "session.error", error)])
    assert len(str(obj(failed.data["error"])["message"])) < MAX_STRING + 50

    [prompted] = r.mapper.mark_prompted(sid, "z" * 50_000)
    assert len(str(prompted.data["prompt"])) < MAX_STRING + 50


# ---- any order -----------------------------------------------------------------------


@FEW
@given(
    name=st.sampled_from(SCENARIOS),
    picks=st.lists(st.integers(min_value=0, max_value=10_000), max_size=120),
)
def test_any_shuffled_or_duplicated_subsequence_is_safe(name: str, picks: list[int]) -> None:
    envelopes = load(name)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[i % len(envelopes)] for i in picks)
    states = [e.state for e in r.out if e.state is not None] + r.mapper.sessions()
    for state in states:
        assert state.status in SESSION_STATUSES
        if state.status != "completed":
            assert (state.status == "waiting") == (not state.pending.is_empty())
    assert {e.session_id for e in r.out} <= {s.id for s in r.mapper.sessions()} | {None}


def test_restored_sessions_keep_their_totals_until_the_resync() -> None:
    envelopes = load("plain")
    first = replay("plain")
    saved = first.mapper.export()
    second = Replay.of(first.directory)
    second.mapper.restore(saved)
    # The task watcher may refresh a session before opencode is even reachable.
    [event] = second.mapper.set_current_task("app", "Ship it")
    assert event.state is not None
    assert event.state.tokens.input == 100
    assert event.state.cost_usd == pytest.approx(0.000405)
    assert session_ids(envelopes)[0] == event.session_id


def test_failed_messages_forward_a_summary_not_the_provider_response() -> None:
    r = replay("err401")
    failed = [e for e in r.of_type("message.completed") if "error" in e.data]
    assert failed
    for event in failed:
        assert set(obj(event.data["error"])) <= {"name", "message", "statusCode", "isRetryable"}


def test_impossible_times_do_not_break_the_mapper() -> None:
    r = Replay.of("/srv/app")
    info: JSONObject = {"id": "ses_x", "directory": "/srv/app", "time": {"created": 10**20, "updated": 2**62}}
    [event] = r.mapper.adopt(info)
    assert event.state is not None
    assert event.state.started_at is not None


def test_ended_sessions_are_forgotten_beyond_a_bound() -> None:
    r = Replay.of("/srv/app")
    for i in range(700):
        sid = f"ses_{i:04d}"
        r.mapper.adopt({"id": sid, "directory": "/srv/app"})
        r.mapper.adopt({"id": f"ses_child_{i:04d}", "parentID": sid, "directory": "/srv/app", "cost": 0.1})
        r.mapper.mark_ended(sid, "session.killed", {})
    r.mapper.adopt({"id": "ses_live", "directory": "/srv/app"})
    assert len(r.mapper.sessions()) == 501  # the 500 most recent ended, and the live one
    assert r.mapper.get("ses_0000") is None
    assert r.mapper.get("ses_0699") is not None
    assert len(r.mapper._children) == 500
    assert [s.id for s in r.mapper.export()] == ["ses_live"]


def test_a_prompt_whose_turn_already_ended_leaves_the_session_idle() -> None:
    envelopes = load("plain")
    sid, _ = session_ids(envelopes)
    r = Replay.of(project_dir(envelopes))
    r.feed(envelopes[: index_of(envelopes, "session.status")])
    before = r.mapper.turns(sid)
    # The stream delivered the whole turn before the command recorded its prompt.
    r.feed(envelopes[index_of(envelopes, "session.status") :])
    [event] = r.mapper.mark_prompted(sid, "hello", before)
    assert event.type == "session.prompted"
    assert r.only().status == "idle"
    # Without a finished turn in between, the prompt makes the session busy at once.
    [event] = r.mapper.mark_prompted(sid, "again", r.mapper.turns(sid))
    assert event.state is not None
    assert event.state.status == "busy"
