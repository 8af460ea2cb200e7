"""Shared test data: documented interaction payloads (provider-apis.md §3.1) and a fake backend.

The payloads follow the reference's samples, with the trimmed ids ("2909…") filled in
and the fields real interactions carry besides (``app_permissions``, ``locale``,
``entitlements``, ``context`` ...), which the parser must ignore.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.channels.discord.backend import AuditNote, BackendError, PendingPermission
from halswarm.channels.discord.customid import install_key
from halswarm.commands import CommandRequest
from halswarm.cost.model import CostReport, ModelLine, ProviderLine, SourceStatus, TokenCounts
from halswarm.envcheck.views import PendingInstall
from halswarm.models import Command, CommandStatus, Event, Node, Pending, PermissionRequest, Project, Session, Tokens

if TYPE_CHECKING:
    from halswarm.channels.discord.interactions import Actor
    from halswarm.cost.model import CostPeriod
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import SessionStatus

NOW: Final = dt.datetime(2026, 8, 22, 12, 0, tzinfo=dt.UTC)
APP_ID: Final = "456"
GUILD_ID: Final = "290926798626357999"
CHANNEL_ID: Final = "645027906669510667"
ANA: Final = "539082325061763094"  # user id
OPS_ROLE: Final = "987654321098765432"
TOKEN: Final = "A_UNIQUE_TOKEN"
MANIFEST_HASH: Final = "5a1e" + "0123456789abcdef" * 3 + "cafe0123456b"


def member(user_id: str = ANA, roles: tuple[str, ...] = (OPS_ROLE,), username: str = "ana") -> JSONObject:
    """A guild member object as interactions carry it."""
    role_list: list[JSONValue] = list(roles)
    return {
        "user": {"id": user_id, "username": username, "global_name": None, "avatar": None, "discriminator": "0"},
        "roles": role_list,
        "permissions": "2147483647",
        "joined_at": "2026-01-01T00:00:00+00:00",
        "nick": None,
    }


def _common(interaction_type: int, interaction_id: str = "786008729715212338") -> JSONObject:
    return {
        "type": interaction_type,
        "id": interaction_id,
        "application_id": APP_ID,
        "token": TOKEN,
        "version": 1,
        "guild_id": GUILD_ID,
        "channel_id": CHANNEL_ID,
        "app_permissions": "442368",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID},
        "context": 0,
        "attachment_size_limit": 10485760,
    }


def ping() -> JSONObject:
    """PING (type 1)."""
    return {"type": 1, "id": "786008729715212339", "application_id": APP_ID, "token": TOKEN, "version": 1}


def option(name: str, value: JSONValue, option_type: int = 3, *, focused: bool = False) -> JSONObject:
    """One given option."""
    out: JSONObject = {"name": name, "type": option_type, "value": value}
    if focused:
        out["focused"] = True
    return out


def slash(
    name: str,
    options: list[JSONValue] | None = None,
    *,
    who: JSONObject | None = None,
    interaction_id: str = "786008729715212338",
) -> JSONObject:
    """APPLICATION_COMMAND (type 2) invoking /name with *options*."""
    raw = _common(2, interaction_id)
    raw["member"] = who if who is not None else member()
    raw["data"] = {"id": "1000000000000000001", "name": name, "type": 1, "options": options or []}
    return raw


def reference_slash_sample() -> JSONObject:
    """The reference's ``/session inject`` sample (sub-command), trimmed ids filled in."""
    raw = _common(2)
    raw["member"] = member()
    raw["data"] = {
        "name": "session",
        "type": 1,
        "options": [
            {
                "name": "inject",
                "type": 1,
                "options": [
                    {"name": "session_id", "type": 3, "value": "ses_df2c01"},
                    {"name": "message", "type": 3, "value": "run the tests"},
                ],
            }
        ],
    }
    return raw


def autocomplete(name: str, options: list[JSONValue], *, who: JSONObject | None = None) -> JSONObject:
    """APPLICATION_COMMAND_AUTOCOMPLETE (type 4); one option should be focused."""
    raw = slash(name, options, who=who)
    raw["type"] = 4
    return raw


def click(custom_id: str, *, who: JSONObject | None = None, interaction_id: str = "786008729715212340") -> JSONObject:
    """MESSAGE_COMPONENT (type 3): a button click on message 999."""
    raw = _common(3, interaction_id)
    raw["member"] = who if who is not None else member()
    raw["message"] = {"id": "999", "channel_id": CHANNEL_ID, "content": "", "embeds": [], "components": []}
    raw["data"] = {"component_type": 2, "custom_id": custom_id}
    return raw


# ---- domain data ---------------------------------------------------------------------------


def session(
    session_id: str = "ses_df2c01",
    project: str = "app-backend",
    status: SessionStatus = "busy",
    *,
    pending: Pending | None = None,
    current_task: str | None = "Add the Discord handler",
) -> Session:
    """A tracked session."""
    return Session(
        id=session_id,
        node_id="build-01",
        project=project,
        status=status,
        tokens=Tokens(input=40000, output=5231),
        cost_usd=0.84,
        compaction_count=2,
        pending=pending or Pending(),
        current_task=current_task,
        started_at="2026-08-22T09:48:00.000000Z",
        last_activity="2026-08-22T11:58:00.000000Z",
    )


def waiting_session() -> Session:
    """A session waiting on one permission request."""
    request = PermissionRequest(id="per_20d3aa", permission="bash", patterns=["rm -rf build"], title="Run rm")
    return session("ses_wait01", "web-ui", "waiting", pending=Pending(permissions=[request]))


def node(node_id: str = "build-01", projects: tuple[str, ...] = ("app-backend", "web-ui")) -> Node:
    """An online node hosting *projects*."""
    return Node(
        id=node_id,
        hostname=f"{node_id}.lan",
        status="online",
        projects=[Project(p, f"/src/{p}") for p in projects],
        sessions=2,
        last_heartbeat="2026-08-22T11:59:50.000000Z",
    )


def cost_report(period: CostPeriod = "today") -> CostReport:
    """A small report: two providers."""
    tokens = TokenCounts(input=1000, output=200, cache_read=50, cache_write=10)
    return CostReport(
        period=period,
        start="2026-08-22",
        end="2026-08-22",
        days=1,
        group_by="provider",
        total_usd=12.5,
        estimate_usd=12.0,
        gap_usd=0.5,
        daily_average_usd=12.5,
        tokens=tokens,
        groups=[],
        daily=[],
        providers=[
            ProviderLine("anthropic", 10.0, tokens, [ModelLine("claude-sonnet-4", 10.0, tokens)]),
            ProviderLine("openai", 2.5, tokens, [ModelLine("gpt-5", 2.5, tokens)]),
        ],
        sources=[SourceStatus("anthropic", "ok"), SourceStatus("openai", "error", last_error="401 bad key")],
        budgets=[],
    )


def pending_install(node_id: str = "build-01", project: str = "app-backend", install: str = "jdk17") -> PendingInstall:
    """A declared install awaiting approval."""
    return PendingInstall(
        node_id,
        project,
        install,
        "runtime:java",
        ["sudo", "apt-get", "install", "-y", "openjdk-17-jdk"],
        900.0,
        MANIFEST_HASH,
    )


@attrs.define
class FakeBackend:
    """A supervisor for the handler: records what it is asked, answers from fixed data."""

    sessions_: list[Session] = attrs.Factory(lambda: [session(), waiting_session()])
    nodes_: list[Node] = attrs.Factory(lambda: [node()])
    submitted: list[tuple[CommandRequest, str]] = attrs.Factory(list)
    audits: list[AuditNote] = attrs.Factory(list)
    outcome: CommandStatus = "succeeded"
    finish_on_wait: bool = True
    offline: bool = False
    #: Installs the manifest declares (find_install), and those a failed check asks for.
    installs_: list[PendingInstall] = attrs.Factory(lambda: [pending_install()])
    pending_installs_: list[PendingInstall] = attrs.Factory(lambda: [pending_install()])
    approved: list[tuple[PendingInstall, str, str]] = attrs.Factory(list)
    declined: list[tuple[PendingInstall, str, str | None]] = attrs.Factory(list)
    #: What approve/decline refuse with (BackendError), if anything.
    install_refusal: str | None = None
    #: The install's result: exit code (None: timed out).
    install_exit: int | None = 0

    async def sessions(self, project: str | None) -> list[Session]:
        return [s for s in self.sessions_ if project is None or s.project == project]

    async def nodes(self) -> list[Node]:
        return list(self.nodes_)

    async def events(self, target: str, n: int) -> list[Event]:
        if not any(target in (s.id, s.project) for s in self.sessions_):
            raise BackendError(f"no session or project named {target!r}")
        return [
            Event(id=i, node_id="build-01", seq=i, ts=f"2026-08-22T11:{i:02d}:00.000000Z", type="session.idle")
            for i in range(n)
        ]

    async def submit(self, request: CommandRequest, actor: Actor) -> Command:
        if self.offline:
            raise BackendError("node 'build-01' is offline")
        self.submitted.append((request, actor.audit_name))
        return Command(
            id=f"cmd{len(self.submitted)}",
            type=request.type,
            target=request.target,
            args=request.args,
            actor=actor.audit_name,
            source="discord",
            idempotency_key=request.idempotency_key or "",
        )

    async def wait(self, command_id: str, max_wait: float) -> Command | None:
        if command_id.startswith("inst"):
            return self._install_command(int(command_id.removeprefix("inst")), finished=self.finish_on_wait)
        request, actor = self.submitted[int(command_id.removeprefix("cmd")) - 1]
        status: CommandStatus = self.outcome if self.finish_on_wait else "sent"
        return Command(
            id=command_id,
            type=request.type,
            target=request.target,
            args=request.args,
            status=status,
            result={"session_id": "ses_new001", "predecessor_id": request.target} if status == "succeeded" else None,
            error="the agent reported a failure" if status == "failed" else None,
            actor=actor,
        )

    async def cost(self, period: CostPeriod) -> CostReport:
        return cost_report(period)

    async def pending(self, request_id: str) -> PendingPermission | None:
        for s in self.sessions_:
            for p in s.pending.permissions:
                if p.id == request_id:
                    return PendingPermission(s, p)
        return None

    async def audit(self, note: AuditNote) -> None:
        self.audits.append(note)

    async def find_install(self, key: str) -> PendingInstall | None:
        return next((i for i in self.installs_ if install_key(i.node_id, i.project, i.install) == key), None)

    async def pending_installs(self) -> list[PendingInstall]:
        return list(self.pending_installs_)

    async def approve_install(self, item: PendingInstall, actor: Actor, idempotency_key: str) -> Command:
        if self.install_refusal is not None:
            raise BackendError(self.install_refusal)
        self.approved.append((item, actor.audit_name, idempotency_key))
        return self._install_command(len(self.approved), finished=False)

    def _install_command(self, n: int, *, finished: bool) -> Command:
        item, actor, key = self.approved[n - 1]
        args: JSONObject = {"project": item.project, "install": item.install, "manifest_hash": item.manifest_hash}
        result: JSONObject | None = None
        if finished:
            code = self.install_exit
            result = {"exit_code": code, "ok": code == 0, "timed_out": code is None, "state_after": "ready"}
        return Command(
            id=f"inst{n}",
            type="env_install",
            target=item.node_id,
            args=args,
            status="succeeded" if finished else "pending",
            result=result,
            actor=actor,
            source="discord",
            idempotency_key=key,
        )

    async def decline_install(self, item: PendingInstall, actor: Actor, reason: str | None) -> None:
        if self.install_refusal is not None:
            raise BackendError(self.install_refusal)
        self.declined.append((item, actor.audit_name, reason))
