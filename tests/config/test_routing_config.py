"""routes, channels.webhooks, channels.slack: shapes, defaults, and every problem named by key path.

The supervisor config embeds these models (``routes`` at the top, ``webhooks`` and
``slack`` under ``channels``); ``Doc`` below mirrors that shape so the messages are the
ones an operator sees.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import orjson
import pytest

from halswarm.channels.router import Router
from halswarm.config import ConfigError
from halswarm.config._load import parse_config
from halswarm.config.routing import (
    RouteConfig,
    SlackWebhookConfig,
    WebhookConfig,
    check_routing,
    routing_secrets,
)

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

DOCS = Path(__file__).parents[2] / "docs" / "ROUTING.md"


@attrs.frozen
class Discord:
    channels: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class Channels:
    discord: Discord | None = None
    webhooks: dict[str, WebhookConfig] = attrs.Factory(dict)
    slack: dict[str, SlackWebhookConfig] = attrs.Factory(dict)


@attrs.frozen
class Doc:
    routes: list[RouteConfig] = attrs.Factory(list)
    channels: Channels = Channels()


def check(doc: Doc) -> list[str]:
    discord = doc.channels.discord
    return check_routing(
        doc.routes,
        webhooks=doc.channels.webhooks,
        slack=doc.channels.slack,
        discord_channels=discord.channels if discord is not None else None,
    )


CHANNELS: JSONObject = {
    "discord": {"channels": {"alerts": "111", "dev-log": "222"}},
    "webhooks": {"n8n": {"url": "https://n8n.example/webhook/halswarm", "secret": "s3cret-value"}},
    "slack": {"ops": {"webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX"}},
}


def parse(routes: list[JSONObject], channels: JSONObject | None = None) -> Doc:
    raw: JSONObject = {"routes": list(routes), "channels": CHANNELS if channels is None else channels}
    return parse_config(raw, Doc, source="supervisor.json", check=check)


def problems_of(routes: list[JSONObject], channels: JSONObject | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(routes, channels)
    return info.value.problems


def test_the_documented_example() -> None:
    doc = parse(
        [
            {"match": "session.error", "target": "discord#alerts", "throttle": "5m"},
            {"match": "session.idle && idle_for > 5m", "target": "discord#alerts"},
            {"match": "cost.daily > 20", "target": "slack#ops"},
            {"match": "*", "target": "webhook#n8n", "throttle": 30, "dedup_key": "{type}:{session}"},
        ]
    )
    assert doc.routes[0] == RouteConfig("session.error", "discord#alerts", "5m", None)
    assert doc.routes[3] == RouteConfig("*", "webhook#n8n", 30, "{type}:{session}")
    webhook = doc.channels.webhooks["n8n"]
    assert (webhook.headers, webhook.timeout_sec, webhook.max_attempts) == ({}, 10.0, 3)


def test_defaults() -> None:
    assert parse([], {}) == Doc()
    assert RouteConfig("a.b", "discord#x") == RouteConfig("a.b", "discord#x", None, None)


def test_secrets_stay_out_of_reprs() -> None:
    hook: JSONObject = {"url": "https://x.example/webhook/6f1d2c7e-token", "secret": "s3cret-value"}
    doc = parse([], {**CHANNELS, "webhooks": {"n8n": hook}})
    assert "s3cret-value" not in repr(doc)
    assert "6f1d2c7e-token" not in repr(doc)
    assert "XXXX" not in repr(doc)


def test_routing_secrets() -> None:
    webhooks = {
        "a": WebhookConfig(
            "https://a.example",
            headers={"Authorization": "Bearer abc123", "X-Api-Key": "k-1", "X-Source": "halswarm", "X-Author": "me"},
            secret="s3cret",
        ),
        "b": WebhookConfig("https://b.example"),
    }
    slack = {"ops": SlackWebhookConfig("https://hooks.slack.com/services/T/B/X")}
    assert routing_secrets(webhooks, slack) == [
        "https://a.example",
        "s3cret",
        "Bearer abc123",
        "k-1",
        "https://b.example",
        "https://hooks.slack.com/services/T/B/X",
    ]


# ---- routes --------------------------------------------------------------------------------


def test_unparsable_match_names_the_position() -> None:
    assert problems_of([{"match": "session.idle && idle_for >", "target": "discord#alerts"}]) == [
        "routes[0].match: expected a literal (a number, a duration such as 5m, a quoted string, true or false) "
        "after '>', found the end (position 26 in 'session.idle && idle_for >')"
    ]


def test_unknown_field_names_the_position() -> None:
    [problem] = problems_of(
        [
            {"match": "session.error", "target": "discord#alerts"},
            {"match": "session.idle && idle_fro > 5m", "target": "discord#alerts"},
        ]
    )
    assert problem.startswith("routes[1].match: unknown field 'idle_fro' (fields: type, node, ")
    assert problem.endswith("(position 16 in 'session.idle && idle_fro > 5m')")


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (
            "telegram#ops",
            "routes[0].target: unknown target kind 'telegram' in 'telegram#ops' "
            "(use discord#<name>, webhook#<name>, slack#<name>)",
        ),
        ("alerts", "routes[0].target: 'alerts' is not a target (use discord#<name>, webhook#<name>, slack#<name>)"),
        (
            "discord#alert",
            "routes[0].target: discord#alert: no Discord channel named 'alert' in channels.discord.channels "
            "(defined: alerts, dev-log)",
        ),
        (
            "webhook#n8m",
            "routes[0].target: webhook#n8m: no webhook named 'n8m' in channels.webhooks (defined: n8n)",
        ),
        ("slack#dev", "routes[0].target: slack#dev: no Slack webhook named 'dev' in channels.slack (defined: ops)"),
        (
            "slack#a b",
            "routes[0].target: bad name 'a b' in 'slack#a b': use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (at most 100 characters)",
        ),
    ],
)
def test_bad_targets(target: str, problem: str) -> None:
    assert problems_of([{"match": "session.error", "target": target}]) == [problem]


def test_targets_without_their_section() -> None:
    routes: list[JSONObject] = [
        {"match": "session.error", "target": "discord#alerts"},
        {"match": "session.error", "target": "webhook#n8n"},
        {"match": "session.error", "target": "slack#ops"},
    ]
    assert problems_of(routes, {}) == [
        "routes[0].target: discord#alerts needs channels.discord, which is not configured",
        "routes[1].target: webhook#n8n: no webhook named 'n8n' in channels.webhooks (defined: none)",
        "routes[2].target: slack#ops: no Slack webhook named 'ops' in channels.slack (defined: none)",
    ]


@pytest.mark.parametrize(
    ("throttle", "problem"),
    [
        ("5 minutes", "routes[0].throttle: '5 minutes' is not a duration (write a number and a unit: 30s, 5m, 2h, 1d)"),
        ("5x", "routes[0].throttle: unknown duration unit 'x' in '5x' (units: s, m, h, d)"),
        ("30", "routes[0].throttle: '30' is not a duration (write a number and a unit: 30s, 5m, 2h, 1d)"),
        (-1, "routes[0].throttle: must not be negative, got -1"),
    ],
)
def test_bad_throttles(throttle: JSONValue, problem: str) -> None:
    assert problems_of([{"match": "session.error", "target": "discord#alerts", "throttle": throttle}]) == [problem]


def test_throttle_of_another_type_is_a_type_error() -> None:
    [problem] = problems_of([{"match": "session.error", "target": "discord#alerts", "throttle": [5]}])
    assert problem.startswith("routes[0].throttle: ")


def test_bad_dedup_key() -> None:
    assert problems_of([{"match": "a.b", "target": "discord#alerts", "dedup_key": "{project}:{sesion}"}]) == [
        "routes[0].dedup_key: unknown field 'sesion' (fields: type, node, project, session, status, idle_for, "
        "consecutive_errors, compaction_count, cost.daily, cost.project_daily, data.<key>) "
        "(position 11 in '{project}:{sesion}')"
    ]


def test_every_problem_at_once() -> None:
    problems = problems_of(
        [
            {"match": "", "target": "nowhere", "throttle": "soon", "dedup_key": "{"},
            {"match": "session.error", "target": "discord#alerts"},
        ]
    )
    assert [p.split(":")[0] for p in problems] == [
        "routes[0].match",
        "routes[0].target",
        "routes[0].throttle",
        "routes[0].dedup_key",
    ]


def test_shapes_are_checked_when_structured() -> None:
    problems = problems_of([{"match": 5, "target": "discord#alerts", "filter": "x"}, {"target": "discord#alerts"}])
    assert "routes[0]: unknown key(s): filter" in problems
    assert "routes[1].match: required key is missing" in problems


# ---- webhooks and Slack ----------------------------------------------------------------------


def webhook_problems(webhook: JSONObject, name: str = "n8n") -> list[str]:
    return problems_of([], {"webhooks": {name: webhook}})


def test_webhook_shape() -> None:
    assert webhook_problems({"secret": "x"}) == ["channels.webhooks['n8n'].url: required key is missing"]
    assert webhook_problems({"url": "https://x.example", "retries": 3}) == [
        "channels.webhooks['n8n']: unknown key(s): retries"
    ]
    assert webhook_problems({"url": "https://x.example", "headers": {"X-A": 1}}) == [
        "channels.webhooks['n8n'].headers['X-A']: expected a string, got int"
    ]


@pytest.mark.parametrize(
    ("webhook", "problem"),
    [
        ({"url": ""}, "channels.webhooks['n8n'].url: required"),
        ({"url": "ftp://x.example"}, "channels.webhooks['n8n'].url: must start with http:// or https://"),
        (
            {"url": "https://x.example/a b"},
            "channels.webhooks['n8n'].url: must not contain spaces or control characters (a copy-paste slip?)",
        ),
        (
            {"url": "https://x.example", "secret": ""},
            "channels.webhooks['n8n'].secret: must not be empty (leave it out to send unsigned requests)",
        ),
        (
            {"url": "https://x.example", "secret": "abc "},
            "channels.webhooks['n8n'].secret: has leading or trailing whitespace (a copy-paste slip?); remove it",
        ),
        (
            {"url": "https://x.example", "timeout_sec": 0},
            "channels.webhooks['n8n'].timeout_sec: must be greater than 0",
        ),
        ({"url": "https://x.example", "max_attempts": 0}, "channels.webhooks['n8n'].max_attempts: must be at least 1"),
        (
            {"url": "https://x.example", "headers": {"Bad Name": "x"}},
            "channels.webhooks['n8n'].headers['Bad Name']: not a valid header name",
        ),
        (
            {"url": "https://x.example", "headers": {"X-Halswarm-Signature": "x"}},
            "channels.webhooks['n8n'].headers['X-Halswarm-Signature']: set by halswarm itself; remove it",
        ),
        (
            {"url": "https://x.example", "headers": {"content-type": "text/plain"}},
            "channels.webhooks['n8n'].headers['content-type']: set by halswarm itself; remove it",
        ),
        (
            {"url": "https://x.example", "headers": {"X-A": "a\r\nInjected: 1"}},
            "channels.webhooks['n8n'].headers['X-A']: the value must be printable ASCII on one line",
        ),
    ],
)
def test_bad_webhooks(webhook: JSONObject, problem: str) -> None:
    assert webhook_problems(webhook) == [problem]


def test_bad_names() -> None:
    assert webhook_problems({"url": "https://x.example"}, name="my hook") == [
        "channels.webhooks: name 'my hook': use letters, digits, '.', '_' or '-', "
        "starting with a letter or digit (at most 100 characters)"
    ]
    assert problems_of([], {"slack": {"#ops": {"webhook_url": "https://hooks.slack.com/x"}}}) == [
        "channels.slack: name '#ops': use letters, digits, '.', '_' or '-', "
        "starting with a letter or digit (at most 100 characters)"
    ]


def test_bad_slack_webhooks() -> None:
    assert problems_of([], {"slack": {"ops": {}}}) == ["channels.slack['ops'].webhook_url: required key is missing"]
    assert problems_of([], {"slack": {"ops": {"webhook_url": "hooks.slack.com/x"}}}) == [
        "channels.slack['ops'].webhook_url: must start with http:// or https://"
    ]


def test_check_routing_directly() -> None:
    routes = [RouteConfig("session.error", "discord#alerts")]
    assert check_routing(routes, webhooks={}, slack={}, discord_channels={"alerts": "1"}) == []
    assert check_routing(routes, webhooks={}, slack={}, discord_channels={}) == [
        "routes[0].target: discord#alerts: no Discord channel named 'alerts' in channels.discord.channels "
        "(defined: none)"
    ]


def test_the_config_example_in_the_docs_is_valid() -> None:
    text = DOCS.read_text()
    block = text.split("```json", 1)[1].split("```", 1)[0]
    raw = orjson.loads(block)
    doc = parse_config(raw, Doc, source=str(DOCS), check=check)
    assert len(Router.from_config(doc.routes).routes) == len(doc.routes)


def test_the_match_examples_in_the_docs_parse() -> None:
    section = DOCS.read_text().split("### Examples", 1)[1].split("## Targets", 1)[0]
    matches = [m.replace("\\|", "|") for m in re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)]
    assert len(matches) >= 10
    routes = [RouteConfig(match, "discord#alerts") for match in matches]
    assert check_routing(routes, webhooks={}, slack={}, discord_channels={"alerts": "1"}) == []
