"""Event routing config (issue #7): ``routes``, ``channels.webhooks`` and ``channels.slack``.

::

    "routes": [
      {"match": "session.error", "target": "discord#alerts", "throttle": "5m"},
      {"match": "session.idle && idle_for > 5m", "target": "discord#alerts"},
      {"match": "cost.daily > 20", "target": "slack#ops"},
      {"match": "*", "target": "webhook#n8n"}
    ],
    "channels": {
      "webhooks": {"n8n": {"url": "https://n8n.example/webhook/halswarm", "secret": "..."}},
      "slack": {"ops": {"webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX"}}
    }

Targets name a key of ``channels.webhooks``, ``channels.slack`` or
``channels.discord.channels`` (name -> Discord channel id). docs/ROUTING.md describes
the match language, throttling and the webhook signature; the router is
:mod:`halswarm.channels.router`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.channels.durations import DurationError, seconds_of
from halswarm.channels.expr import ExprError, parse
from halswarm.channels.fields import KeyTemplate
from halswarm.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from halswarm.channels.targets import NAME_RULE, Target, TargetError, is_valid_name

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "RESERVED_HEADERS",
    "RouteConfig",
    "SlackWebhookConfig",
    "WebhookConfig",
    "check_routing",
    "routing_secrets",
]

#: Headers halswarm sets on webhook requests itself; config ``headers`` may not set them.
RESERVED_HEADERS: Final = frozenset(
    name.lower() for name in ("Content-Type", "Content-Length", "Host", SIGNATURE_HEADER, TIMESTAMP_HEADER)
)

_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_WORDS: Final = frozenset({"token", "secret", "key", "apikey", "auth", "password", "signature"})
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)  # RFC 9110 token


@attrs.frozen
class RouteConfig:
    """One routing rule: events matching ``match`` go to ``target``.

    ``throttle`` is a window (seconds, or a duration such as ``"5m"``) within which a
    repeat of the same dedup key is suppressed and counted. ``dedup_key`` is a template
    of event fields (``"{type}:{project}"``); the default is per event type and subject.
    """

    match: str
    target: str
    throttle: float | str | None = None
    dedup_key: str | None = None


@attrs.frozen
class WebhookConfig:
    """A generic JSON webhook (n8n and friends): each routed event is POSTed to ``url``.

    With ``secret`` set, each request carries ``X-Halswarm-Timestamp`` and
    ``X-Halswarm-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``
    (:mod:`halswarm.channels.signing`).
    """

    #: Receivers such as n8n put the credential in the URL's path: never in a repr or log.
    url: str = attrs.field(repr=False)
    #: Extra request headers (e.g. an ``Authorization`` the receiver wants).
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)  # may hold credentials
    secret: str | None = attrs.field(default=None, repr=False)  # a secret: never in a repr
    #: Deadline of one request attempt.
    timeout_sec: float = 10.0
    #: Attempts per event (timeouts, connection errors, 429 and 5xx are retried).
    max_attempts: int = 3


@attrs.frozen
class SlackWebhookConfig:
    """A Slack incoming webhook (the URL is the credential)."""

    webhook_url: str = attrs.field(repr=False)  # a secret: never in a repr


def _where(text: str, exc: ExprError) -> str:
    return f"{exc.message} (position {exc.position} in {text!r})"


def _target_problems(
    key: str,
    target: Target,
    webhooks: Mapping[str, WebhookConfig],
    slack: Mapping[str, SlackWebhookConfig],
    discord_channels: Mapping[str, str] | None,
) -> list[str]:
    defined: Mapping[str, object]
    match target.kind:
        case "webhook":
            defined, section, what = webhooks, "channels.webhooks", "webhook"
        case "slack":
            defined, section, what = slack, "channels.slack", "Slack webhook"
        case "discord":
            if discord_channels is None:
                return [f"{key}: {target} needs channels.discord, which is not configured"]
            defined, section, what = discord_channels, "channels.discord.channels", "Discord channel"
    if target.name in defined:
        return []
    names = ", ".join(sorted(defined)) if defined else "none"
    return [f"{key}: {target}: no {what} named {target.name!r} in {section} (defined: {names})"]


def _route_problems(
    index: int,
    route: RouteConfig,
    webhooks: Mapping[str, WebhookConfig],
    slack: Mapping[str, SlackWebhookConfig],
    discord_channels: Mapping[str, str] | None,
) -> list[str]:
    key = f"routes[{index}]"
    problems: list[str] = []
    try:
        parse(route.match)
    except ExprError as exc:
        problems.append(f"{key}.match: {_where(route.match, exc)}")
    try:
        target = Target.parse(route.target)
    except TargetError as exc:
        problems.append(f"{key}.target: {exc}")
    else:
        problems += _target_problems(f"{key}.target", target, webhooks, slack, discord_channels)
    try:
        seconds_of(route.throttle)
    except DurationError as exc:
        problems.append(f"{key}.throttle: {exc}")
    if route.dedup_key is not None:
        try:
            KeyTemplate.parse(route.dedup_key)
        except ExprError as exc:
            problems.append(f"{key}.dedup_key: {_where(route.dedup_key, exc)}")
    return problems


def _url_problem(key: str, url: str) -> list[str]:
    if not url:
        return [f"{key}: required"]
    if not url.startswith(("http://", "https://")):
        return [f"{key}: must start with http:// or https://"]
    if url != url.strip() or any(not c.isprintable() or c.isspace() for c in url):
        return [f"{key}: must not contain spaces or control characters (a copy-paste slip?)"]
    return []


def _header_problems(key: str, headers: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, value in headers.items():
        where = f"{key}[{name!r}]"
        if not _HEADER_NAME_RE.fullmatch(name):
            problems.append(f"{where}: not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            problems.append(f"{where}: set by halswarm itself; remove it")
        if not value.isascii() or not value.isprintable():
            problems.append(f"{where}: the value must be printable ASCII on one line")
    return problems


def _webhook_problems(name: str, webhook: WebhookConfig) -> list[str]:
    key = f"channels.webhooks[{name!r}]"
    problems = _url_problem(f"{key}.url", webhook.url)
    problems += _header_problems(f"{key}.headers", webhook.headers)
    if webhook.secret is not None and not webhook.secret:
        problems.append(f"{key}.secret: must not be empty (leave it out to send unsigned requests)")
    elif webhook.secret is not None and webhook.secret != webhook.secret.strip():
        problems.append(f"{key}.secret: has leading or trailing whitespace (a copy-paste slip?); remove it")
    if webhook.timeout_sec <= 0:
        problems.append(f"{key}.timeout_sec: must be greater than 0")
    if webhook.max_attempts < 1:
        problems.append(f"{key}.max_attempts: must be at least 1")
    return problems


def _name_problems(section: str, names: Sequence[str]) -> list[str]:
    return [f"{section}: name {name!r}: {NAME_RULE}" for name in names if not is_valid_name(name)]


def check_routing(
    routes: Sequence[RouteConfig],
    *,
    webhooks: Mapping[str, WebhookConfig],
    slack: Mapping[str, SlackWebhookConfig],
    discord_channels: Mapping[str, str] | None,
) -> list[str]:
    """Semantic checks of ``routes``, ``channels.webhooks`` and ``channels.slack``; every problem names its key.

    Types and unknown keys are checked when the file is structured; this adds match
    expressions that do not parse (with the position of the error), unknown target
    kinds, targets naming an undefined webhook, Slack webhook or Discord channel, bad
    throttles and dedup key templates, and bad webhook URLs, headers and limits.

    Args:
        routes: config ``routes``.
        webhooks: config ``channels.webhooks``.
        slack: config ``channels.slack``.
        discord_channels: config ``channels.discord.channels`` (name -> channel id), or
            None when ``channels.discord`` is not configured.

    Returns:
        Problem lines; empty when all is valid.
    """
    problems: list[str] = []
    for index, route in enumerate(routes):
        problems += _route_problems(index, route, webhooks, slack, discord_channels)
    problems += _name_problems("channels.webhooks", list(webhooks))
    for name, webhook in webhooks.items():
        problems += _webhook_problems(name, webhook)
    problems += _name_problems("channels.slack", list(slack))
    for name, hook in slack.items():
        problems += _url_problem(f"channels.slack[{name!r}].webhook_url", hook.webhook_url)
    return problems


def _is_credential_header(name: str) -> bool:
    words = name.lower().replace("_", "-").split("-")
    return name.lower() in _CREDENTIAL_HEADERS or any(word in _CREDENTIAL_WORDS for word in words)


def routing_secrets(webhooks: Mapping[str, WebhookConfig], slack: Mapping[str, SlackWebhookConfig]) -> list[str]:
    """Secret values of the routing config, for log redaction.

    Webhook URLs (n8n-style receivers put their credential in the path) and secrets,
    the values of credential headers (``Authorization``, ``Cookie``, names with a word
    such as ``token``, ``key`` or ``secret``: ``X-Api-Key``) and Slack webhook URLs.
    Other header values (``X-Source: halswarm``) are not secrets: redacting them would
    hide that text everywhere in the logs.
    """
    values: list[str] = []
    for webhook in webhooks.values():
        values += [webhook.url, webhook.secret or ""]
        values += [value for name, value in webhook.headers.items() if _is_credential_header(name)]
    values += [hook.webhook_url for hook in slack.values()]
    return [v for v in values if v]
