"""The one handler: reads answered at once, agent commands deferred, authorization refused and audited."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.channels.discord.commands import AGENT_COMMANDS, READ_COMMANDS
from halswarm.channels.discord.handler import Access, HandlerContext, HandlerOptions, Reply, handle
from halswarm.channels.discord.interactions import OptionType, parse_interaction
from halswarm.channels.discord.responses import CallbackType
from halswarm.commands import CommandRequest
from tests.channels.discord import support as s

if TYPE_CHECKING:
    from halswarm.channels.discord.messages import Message
    from halswarm.jsontypes import JSONObject, JSONValue

OPS = Access(allowed_roles=frozenset({s.OPS_ROLE}))
STRANGER = s.member("111111111111111111", roles=("222222222222222222",), username="eve")


def context(backend: s.FakeBackend, access: Access = OPS, *, ephemeral_reads: bool = True) -> HandlerContext:
    return HandlerContext(backend, access, lambda: s.NOW, HandlerOptions(ephemeral_reads=ephemeral_reads))


async def run(raw: JSONObject, backend: s.FakeBackend, access: Access = OPS) -> Reply:
    return await handle(parse_interaction(raw), context(backend, access))


async def followup(reply: Reply) -> JSONObject:
    assert reply.followup is not None
    message: Message = await reply.followup()
    return message.to_json()


def data_of(reply: Reply) -> JSONObject:
    data = reply.response.to_json().get("data")
    assert isinstance(data, dict)
    return data


def first_embed(body: JSONObject) -> JSONObject:
    embeds = body["embeds"]
    assert isinstance(embeds, list)
    embed = embeds[0]
    assert isinstance(embed, dict)
    return embed


# ---- basics and reads ------------------------------------------------------------------------


async def test_ping_gets_pong() -> None:
    reply = await run(s.ping(), s.FakeBackend(), Access())  # even with nobody allowed
    assert reply.response.to_json() == {"type": 1}
    assert reply.followup is None


async def test_status_is_answered_at_once_and_privately() -> None:
    reply = await run(s.slash("status"), s.FakeBackend())
    assert reply.response.type is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert reply.followup is None
    data = data_of(reply)
    assert data["flags"] == 64
    assert "ses_df2c01" in str(first_embed(data)["description"])


async def test_reads_can_be_public() -> None:
    reply = await handle(parse_interaction(s.slash("nodes")), context(s.FakeBackend(), ephemeral_reads=False))
    assert "flags" not in data_of(reply)


async def test_status_of_one_project() -> None:
    reply = await run(s.slash("status", [s.option("project", "web-ui")]), s.FakeBackend())
    embed = first_embed(data_of(reply))
    assert embed["title"] == "Sessions of web-ui"
    assert "ses_wait01" in str(embed["description"])
    assert "ses_df2c01" not in str(embed["description"])


async def test_logs_default_and_explicit_count() -> None:
    reply = await run(s.slash("logs", [s.option("target", "app-backend")]), s.FakeBackend())
    assert str(first_embed(data_of(reply))["description"]).count("session.idle") == 10
    raw = s.slash("logs", [s.option("target", "ses_df2c01"), s.option("count", 3, OptionType.INTEGER)])
    reply = await run(raw, s.FakeBackend())
    assert str(first_embed(data_of(reply))["description"]).count("session.idle") == 3


async def test_logs_of_an_unknown_target_is_a_private_error() -> None:
    reply = await run(s.slash("logs", [s.option("target", "nope")]), s.FakeBackend())
    data = data_of(reply)
    assert data["flags"] == 64
    assert "no session or project named 'nope'" in str(first_embed(data)["description"])


@pytest.mark.parametrize("period", ["today", "week", "month"])
async def test_cost_per_period(period: str) -> None:
    reply = await run(s.slash("cost", [s.option("period", period)]), s.FakeBackend())
    assert str(first_embed(data_of(reply))["title"]).startswith(f"Cost: {period}")


async def test_cost_defaults_to_today_and_refuses_other_periods() -> None:
    reply = await run(s.slash("cost"), s.FakeBackend())
    assert str(first_embed(data_of(reply))["title"]).startswith("Cost: today")
    reply = await run(s.slash("cost", [s.option("period", "year")]), s.FakeBackend())
    assert "must be one of today, week, month" in str(first_embed(data_of(reply))["description"])


async def test_an_unknown_command_says_so() -> None:
    reply = await run(s.slash("frobnicate"), s.FakeBackend())
    assert "not a halswarm command" in str(first_embed(data_of(reply))["description"])


# ---- the deferral rule -------------------------------------------------------------------------

ARGS: dict[str, list[JSONValue]] = {
    "status": [],
    "nodes": [],
    "logs": [s.option("target", "app-backend")],
    "cost": [],
    "resume": [s.option("project", "app-backend")],
    "inject": [s.option("project", "app-backend"), s.option("message", "run the tests")],
    "restart": [s.option("target", "ses_df2c01")],
    "kill": [s.option("target", "ses_df2c01")],
    "start": [s.option("project", "web-ui")],
    "approve": [s.option("request", "per_20d3aa")],
    "deny": [s.option("request", "per_20d3aa")],
}


def test_every_command_has_test_arguments() -> None:
    assert set(ARGS) == READ_COMMANDS | AGENT_COMMANDS


@pytest.mark.parametrize("name", sorted(READ_COMMANDS))
async def test_reads_are_never_deferred(name: str) -> None:
    reply = await run(s.slash(name, ARGS[name]), s.FakeBackend())
    assert reply.response.type is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert reply.followup is None


@pytest.mark.parametrize("name", sorted(AGENT_COMMANDS))
async def test_agent_commands_are_always_deferred_and_submit_only_in_the_followup(name: str) -> None:
    backend = s.FakeBackend()
    reply = await run(s.slash(name, ARGS[name]), backend)
    assert reply.response.to_json() == {"type": 5}  # public "thinking...", within the deadline
    assert backend.submitted == []  # nothing slow happened before the answer
    body = await followup(reply)
    assert len(backend.submitted) == 1
    assert str(first_embed(body)["title"]).startswith("✅")


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("resume", ARGS["resume"], CommandRequest("resume_session", "app-backend")),
        ("inject", ARGS["inject"], CommandRequest("prompt_session", "app-backend", {"prompt": "run the tests"})),
        ("restart", ARGS["restart"], CommandRequest("restart_session", "ses_df2c01")),
        ("kill", ARGS["kill"], CommandRequest("kill_session", "ses_df2c01")),
        ("start", ARGS["start"], CommandRequest("start_session", "web-ui")),
        (
            "start",
            [s.option("project", "web-ui"), s.option("prompt", "fix the build")],
            CommandRequest("start_session", "web-ui", {"prompt": "fix the build"}),
        ),
        (
            "approve",
            ARGS["approve"],
            CommandRequest("reply_permission", "ses_wait01", {"request_id": "per_20d3aa", "reply": "once"}),
        ),
        (
            "approve",
            [s.option("request", "per_20d3aa"), s.option("always", True, OptionType.BOOLEAN)],
            CommandRequest("reply_permission", "ses_wait01", {"request_id": "per_20d3aa", "reply": "always"}),
        ),
        (
            "deny",
            [s.option("request", "per_20d3aa"), s.option("reason", "not in prod")],
            CommandRequest(
                "reply_permission",
                "ses_wait01",
                {"request_id": "per_20d3aa", "reply": "reject", "message": "not in prod"},
            ),
        ),
    ],
)
async def test_agent_commands_map_to_supervisor_commands(
    name: str, options: list[JSONValue], expected: CommandRequest
) -> None:
    backend = s.FakeBackend()
    reply = await run(s.slash(name, options, interaction_id="1234"), backend)
    await followup(reply)
    ((request, actor),) = backend.submitted
    assert request == CommandRequest(expected.type, expected.target, expected.args, idempotency_key="discord:1234")
    assert actor == f"discord:{s.ANA}"


async def test_the_outcome_of_a_failed_command() -> None:
    backend = s.FakeBackend(outcome="failed")
    body = await followup(await run(s.slash("kill", ARGS["kill"]), backend))
    embed = first_embed(body)
    assert str(embed["title"]).startswith("❌ Kill ses_df2c01: failed")
    assert embed["description"] == "the agent reported a failure"


async def test_a_command_still_running_after_the_wait() -> None:
    backend = s.FakeBackend(finish_on_wait=False)
    body = await followup(await run(s.slash("restart", ARGS["restart"]), backend))
    assert "still sent" in str(first_embed(body)["description"])


async def test_a_refused_submission_becomes_a_public_error() -> None:
    backend = s.FakeBackend(offline=True)
    body = await followup(await run(s.slash("resume", ARGS["resume"]), backend))
    assert "node 'build-01' is offline" in str(first_embed(body)["description"])
    assert "flags" not in body


async def test_approving_a_request_nobody_waits_on() -> None:
    backend = s.FakeBackend()
    body = await followup(await run(s.slash("approve", [s.option("request", "per_gone")]), backend))
    assert "no session is waiting on permission request 'per_gone'" in str(first_embed(body)["description"])
    assert backend.submitted == []


async def test_a_blank_required_option_is_an_error_not_a_command() -> None:
    backend = s.FakeBackend()
    body = await followup(await run(s.slash("inject", [s.option("project", "x"), s.option("message", "  ")]), backend))
    assert "option message: required" in str(first_embed(body)["description"])
    assert backend.submitted == []


# ---- authorization -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AGENT_COMMANDS))
async def test_an_unauthorized_user_is_refused_and_audited(name: str) -> None:
    backend = s.FakeBackend()
    reply = await run(s.slash(name, ARGS[name], who=STRANGER), backend)
    assert reply.followup is None
    data = data_of(reply)
    assert reply.response.type is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert data["flags"] == 64
    assert f"not allowed to run /{name}" in str(data["content"])
    assert backend.submitted == []
    (note,) = backend.audits
    assert note.actor == "discord:111111111111111111"
    assert note.action == f"discord.{name}"
    assert note.outcome == "refused"
    assert note.source == "discord"
    assert note.detail["user"] == "eve"
    assert note.detail["guild_id"] == s.GUILD_ID


async def test_nobody_may_act_when_nothing_is_configured() -> None:
    backend = s.FakeBackend()
    reply = await run(s.slash("kill", ARGS["kill"]), backend, Access())
    assert "not allowed" in str(data_of(reply)["content"])
    assert len(backend.audits) == 1


async def test_reads_need_authorization_too_unless_open_to_everyone() -> None:
    backend = s.FakeBackend()
    reply = await run(s.slash("status", who=STRANGER), backend)
    assert "not allowed to run /status" in str(data_of(reply)["content"])
    assert backend.audits[0].action == "discord.status"
    reply = await run(s.slash("status", who=STRANGER), backend, Access(read_access="everyone"))
    assert "embeds" in data_of(reply)
    reply = await run(s.slash("kill", ARGS["kill"], who=STRANGER), backend, Access(read_access="everyone"))
    assert "not allowed to run /kill" in str(data_of(reply)["content"])


async def test_a_user_allowed_by_id_needs_no_role() -> None:
    backend = s.FakeBackend()
    access = Access(allowed_users=frozenset({"111111111111111111"}))
    reply = await run(s.slash("kill", ARGS["kill"], who=STRANGER), backend, access)
    assert reply.response.type is CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE


# ---- buttons ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("custom_id", "expected"),
    [
        ("hs1:resume:ses_df2c01", CommandRequest("resume_session", "ses_df2c01")),
        ("hs1:restart:ses_df2c01", CommandRequest("restart_session", "ses_df2c01")),
        ("hs1:kill:ses_df2c01", CommandRequest("kill_session", "ses_df2c01")),
        (
            "hs1:approve:per_20d3aa",
            CommandRequest("reply_permission", "ses_wait01", {"request_id": "per_20d3aa", "reply": "once"}),
        ),
        (
            "hs1:reject:per_20d3aa",
            CommandRequest("reply_permission", "ses_wait01", {"request_id": "per_20d3aa", "reply": "reject"}),
        ),
    ],
)
async def test_a_click_defers_the_update_then_runs_the_command(custom_id: str, expected: CommandRequest) -> None:
    backend = s.FakeBackend()
    reply = await run(s.click(custom_id, interaction_id="777"), backend)
    assert reply.response.to_json() == {"type": 6}
    assert backend.submitted == []
    body = await followup(reply)
    ((request, _),) = backend.submitted
    assert request == CommandRequest(expected.type, expected.target, expected.args, idempotency_key="discord:777")
    assert str(body["content"]).startswith("✅")
    assert body["components"] == []  # the used alert loses its buttons
    assert "embeds" not in body  # and keeps its embed


async def test_a_failed_click_keeps_the_buttons() -> None:
    backend = s.FakeBackend(outcome="failed")
    body = await followup(await run(s.click("hs1:restart:ses_df2c01"), backend))
    assert str(body["content"]).startswith("❌")
    assert "components" not in body


async def test_a_click_that_cannot_be_submitted() -> None:
    backend = s.FakeBackend(offline=True)
    body = await followup(await run(s.click("hs1:kill:ses_df2c01"), backend))
    assert body["content"] == f"❌ <@{s.ANA}>: node 'build-01' is offline"


async def test_an_unauthorized_click_is_refused_privately_and_audited() -> None:
    backend = s.FakeBackend()
    reply = await run(s.click("hs1:kill:ses_df2c01", who=STRANGER), backend)
    assert reply.followup is None
    data = data_of(reply)
    assert reply.response.type is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE  # a private note, the alert stays
    assert data["flags"] == 64
    assert "not allowed to run this button" in str(data["content"])
    (note,) = backend.audits
    assert (note.action, note.target) == ("discord.button.kill", "ses_df2c01")


async def test_a_foreign_button() -> None:
    reply = await run(s.click("approve:per_20d3"), s.FakeBackend())
    assert "not one of halswarm's" in str(first_embed(data_of(reply))["description"])


# ---- autocomplete -------------------------------------------------------------------------------


def choices(reply: Reply) -> list[tuple[str, str]]:
    assert reply.response.type is CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    items = data_of(reply)["choices"]
    assert isinstance(items, list)
    return [(str(c["name"]), str(c["value"])) for c in items if isinstance(c, dict)]


async def test_autocomplete_projects() -> None:
    backend = s.FakeBackend()
    backend.nodes_.append(s.node("build-02", ("infra",)))
    reply = await run(s.autocomplete("resume", [s.option("project", "", focused=True)]), backend)
    assert choices(reply) == [("app-backend", "app-backend"), ("infra", "infra"), ("web-ui", "web-ui")]
    reply = await run(s.autocomplete("resume", [s.option("project", "WEB", focused=True)]), backend)
    assert choices(reply) == [("web-ui", "web-ui")]


async def test_autocomplete_targets_offer_projects_and_sessions() -> None:
    reply = await run(s.autocomplete("kill", [s.option("target", "ses_", focused=True)]), s.FakeBackend())
    assert choices(reply) == [
        ("ses_df2c01 (app-backend, busy)", "ses_df2c01"),
        ("ses_wait01 (web-ui, waiting)", "ses_wait01"),
    ]
    reply = await run(s.autocomplete("kill", [s.option("target", "app", focused=True)]), s.FakeBackend())
    assert choices(reply)[0] == ("app-backend", "app-backend")  # prefix matches first


async def test_autocomplete_requests() -> None:
    reply = await run(s.autocomplete("approve", [s.option("request", "per", focused=True)]), s.FakeBackend())
    assert choices(reply) == [("per_20d3aa: bash (web-ui)", "per_20d3aa")]


async def test_autocomplete_is_capped_at_25() -> None:
    backend = s.FakeBackend()
    backend.sessions_ = [s.session(f"ses_{i:03d}", f"p{i:03d}") for i in range(60)]
    reply = await run(s.autocomplete("kill", [s.option("target", "", focused=True)]), backend)
    assert len(choices(reply)) == 25


async def test_autocomplete_suggests_nothing_to_those_who_may_not_read() -> None:
    backend = s.FakeBackend()
    reply = await run(s.autocomplete("kill", [s.option("target", "", focused=True)], who=STRANGER), backend)
    assert choices(reply) == []
    assert backend.audits == []  # typing is not an action: no audit noise


@pytest.mark.parametrize("wait", [0.0, -1.0, 13 * 60.0])
def test_the_command_wait_must_fit_the_token_lifetime(wait: float) -> None:
    with pytest.raises(ValueError, match="command_wait_s"):
        HandlerOptions(command_wait_s=wait)
