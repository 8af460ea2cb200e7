"""Supervisor configuration: the seed's keys and defaults, plus halswarm's additions.

The public keys (``server.port``, ``server.http_port``, ``server.auth_token``,
``server.heartbeat_interval_sec``, ``server.heartbeat_timeout_count``, ``database.path``,
``security.*``, ``channels.discord.*``, ``cost.*``, ``policies.resume_on_idle.*``) follow
the product README. Unknown keys are errors: a typo must not silently fall back to a
default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import attrs

from halswarm.config._load import EnvBinding, load_config_file, parse_config
from halswarm.config.dependencies import DependencyStartConfig, check_dependencies
from halswarm.config.policies import PoliciesConfig, ResumeOnIdlePolicy, check_policies
from halswarm.config.routing import RouteConfig, SlackWebhookConfig, WebhookConfig, check_routing, routing_secrets
from halswarm.config.security import (
    MIN_TOKEN_LEN,
    ApiToken,
    check_api_tokens,
    check_node_tokens,
    check_origins,
    check_tls_files,
)
from halswarm.envcheck.manifest import ManifestError, load_manifest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.jsontypes import JSONObject

__all__ = [
    "SUPERVISOR_ENV",
    "AnthropicProvider",
    "BudgetsConfig",
    "CostConfig",
    "DatabaseConfig",
    "DiscordChannel",
    "EnvConfig",
    "OpenAIProvider",
    "ResumeOnIdlePolicy",
    "SecurityConfig",
    "ServerConfig",
    "SupervisorConfig",
    "TlsConfig",
    "load_database_config",
    "load_supervisor_config",
    "parse_supervisor_config",
]


@attrs.frozen
class ServerConfig:
    """Listeners, auth and link tuning."""

    auth_token: str = attrs.field(default="", repr=False)  # a secret: never in a repr
    #: Named API tokens with roles (see :mod:`halswarm.config.security`).
    tokens: list[ApiToken] = attrs.Factory(list)
    #: Node id -> that node's own agent token (the shared token is then refused for it).
    node_tokens: dict[str, str] = attrs.field(factory=dict, repr=False)  # secrets
    port: int = 8420
    http_port: int = 8421
    host: str = "0.0.0.0"
    heartbeat_interval_sec: float = 30.0
    heartbeat_timeout_count: int = 3
    max_frame_bytes: int = 4 * 1024 * 1024
    window: int = 8
    max_batch_events: int = 2000
    command_timeout_sec: float = 60.0
    shutdown_grace_sec: float = 10.0


@attrs.frozen
class DatabaseConfig:
    """Embedded SQLite storage."""

    path: str = "/var/lib/hal-o-swarm/supervisor.db"
    retention_days: int = 30


@attrs.frozen
class TlsConfig:
    """TLS for both listeners."""

    enabled: bool = False
    cert_path: str | None = None
    key_path: str | None = None


@attrs.frozen
class SecurityConfig:
    """Transport security and browser origin checks."""

    tls: TlsConfig = TlsConfig()
    origin_allowlist: list[str] = attrs.field(factory=lambda: ["*"])


@attrs.frozen
class DiscordChannel:
    """Discord bot: credentials, transport, channels and who may act (docs/discord.md)."""

    bot_token: str = attrs.field(default="", repr=False)  # a secret: never in a repr
    guild_id: str = ""
    application_id: str = ""
    #: The application's Ed25519 public key (hex), for the interactions endpoint.
    public_key: str = ""
    transport: Literal["gateway", "interactions"] = "gateway"
    #: Channel name (as routes say ``discord#<name>``) -> channel id.
    channels: dict[str, str] = attrs.Factory(dict)
    #: Who may run commands and press buttons; both empty = nobody (safe default).
    allowed_roles: list[str] = attrs.Factory(list)
    allowed_users: list[str] = attrs.Factory(list)
    #: Read-only commands (/status, /nodes, /logs, /cost): "allowed" (same lists) or "everyone".
    read_access: Literal["allowed", "everyone"] = "allowed"
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg"


@attrs.frozen
class ChannelsConfig:
    """Notification channels."""

    discord: DiscordChannel | None = None
    #: Name -> generic JSON webhook (n8n and friends); routes target ``webhook#<name>``.
    webhooks: dict[str, WebhookConfig] = attrs.Factory(dict)
    #: Name -> Slack incoming webhook; routes target ``slack#<name>``.
    slack: dict[str, SlackWebhookConfig] = attrs.Factory(dict)


@attrs.frozen
class AnthropicProvider:
    """Anthropic Admin API access (usage and cost reports)."""

    admin_api_key: str = attrs.field(default="", repr=False)  # a secret: never in a repr
    #: API root; override for proxies and tests.
    base_url: str = "https://api.anthropic.com"
    #: Anthropic workspace id -> halswarm project name (unmapped workspaces keep their id).
    workspaces: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class OpenAIProvider:
    """OpenAI organisation admin access (usage and costs)."""

    org_api_key: str = attrs.field(default="", repr=False)  # a secret: never in a repr
    #: API root including ``/v1``; override for proxies and tests.
    base_url: str = "https://api.openai.com/v1"
    #: OpenAI project id -> halswarm project name (unmapped projects keep their id).
    projects: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class ProvidersConfig:
    """Cost providers."""

    anthropic: AnthropicProvider | None = None
    openai: OpenAIProvider | None = None


@attrs.frozen
class CostConfig:
    """Cost polling and opencode estimates."""

    poll_interval_minutes: float = 60.0
    providers: ProvidersConfig = ProvidersConfig()
    #: Days fetched on the first poll of a provider (nothing stored yet).
    backfill_days: int = 31
    #: Trailing days re-fetched on every later poll: provider data settles late.
    repoll_days: int = 3
    #: How often opencode's per-session costs are folded into the daily estimates.
    estimate_interval_seconds: float = 60.0
    #: Per-request deadline for provider APIs.
    request_timeout_sec: float = 30.0
    #: Attempts per request before a poll of that provider is given up (5xx, timeouts, 429).
    max_attempts: int = 5


@attrs.frozen
class BudgetsConfig:
    """Daily spending limits; crossing ``warn_percent`` and 100 % emits cost events."""

    #: Fleet-wide daily limit in USD (None: no fleet budget).
    daily_usd: float | None = None
    #: Project name -> daily limit in USD.
    projects: dict[str, float] = attrs.Factory(dict)
    warn_percent: float = 80.0


@attrs.frozen
class EnvConfig:
    """The environment manifest the supervisor holds and sends to agents (issue #9).

    ``manifest_path``: the ``env-manifest.json`` file (``template_file`` and doc
    ``source`` paths are relative to it). Optional: without it the supervisor starts
    with no manifest and keeps one set by ``PUT /api/v1/env/manifest`` in memory only.
    A path that does not exist yet is created by the first PUT.
    """

    manifest_path: str | None = None

    def resolved_manifest_path(self) -> Path | None:
        """``manifest_path`` with ``~`` expanded, or None."""
        return Path(self.manifest_path).expanduser() if self.manifest_path else None


@attrs.frozen
class SupervisorConfig:
    """The whole supervisor config file."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    security: SecurityConfig = SecurityConfig()
    channels: ChannelsConfig = ChannelsConfig()
    cost: CostConfig = CostConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    policies: PoliciesConfig = attrs.Factory(PoliciesConfig)
    #: Project -> the projects it depends on (see docs/POLICIES.md, "Dependencies").
    dependencies: dict[str, list[str]] = attrs.Factory(dict)
    dependency_start: DependencyStartConfig = attrs.Factory(DependencyStartConfig)
    #: Event routing rules, in order (docs/ROUTING.md).
    routes: list[RouteConfig] = attrs.Factory(list)
    env: EnvConfig = EnvConfig()

    def secrets(self) -> list[str]:
        """Every secret value in this config, for log redaction."""
        values = [self.server.auth_token, *(t.token for t in self.server.tokens), *self.server.node_tokens.values()]
        if self.channels.discord:
            values.append(self.channels.discord.bot_token)
        if self.cost.providers.anthropic:
            values.append(self.cost.providers.anthropic.admin_api_key)
        if self.cost.providers.openai:
            values.append(self.cost.providers.openai.org_api_key)
        values += routing_secrets(self.channels.webhooks, self.channels.slack)
        return [v for v in values if v]

    def not_yet_active(self) -> list[str]:
        """Configured features this version accepts but does not act on yet."""
        notes: list[str] = []
        return notes


SUPERVISOR_ENV: Final[tuple[EnvBinding, ...]] = (
    ("HALSWARM_AUTH_TOKEN", ("server", "auth_token")),
    ("HALSWARM_DISCORD_BOT_TOKEN", ("channels", "discord", "bot_token")),
    ("HALSWARM_ANTHROPIC_ADMIN_KEY", ("cost", "providers", "anthropic", "admin_api_key")),
    ("HALSWARM_OPENAI_ADMIN_KEY", ("cost", "providers", "openai", "org_api_key")),
)


def _port_problem(key: str, port: int, allow_zero: bool) -> list[str]:
    low = 0 if allow_zero else 1
    return [] if low <= port <= 65535 else [f"{key}: must be between {low} and 65535, got {port}"]


def _api_key_problems(path: str, key: str) -> list[str]:
    """A provider key that cannot work as an HTTP header value (the value is never quoted)."""
    if key != key.strip():
        return [f"{path}: has leading or trailing whitespace (a copy-paste slip?); remove it"]
    if not key.isascii() or not key.isprintable():
        return [f"{path}: must be printable ASCII (it is sent as an HTTP header); check for pasted quotes or dashes"]
    return []


def _cost_problems(config: SupervisorConfig) -> list[str]:
    cost = config.cost
    positive = ("poll_interval_minutes", "estimate_interval_seconds", "request_timeout_sec")
    problems = [f"cost.{key}: must be greater than 0" for key in positive if getattr(cost, key) <= 0]
    if cost.backfill_days < 1:
        problems.append("cost.backfill_days: must be at least 1")
    if not 1 <= cost.repoll_days <= cost.backfill_days:
        problems.append("cost.repoll_days: must be between 1 and cost.backfill_days")
    if cost.max_attempts < 1:
        problems.append("cost.max_attempts: must be at least 1")
    anthropic, openai = cost.providers.anthropic, cost.providers.openai
    if anthropic is not None and not anthropic.admin_api_key:
        problems.append("cost.providers.anthropic.admin_api_key: required (or set HALSWARM_ANTHROPIC_ADMIN_KEY)")
    if openai is not None and not openai.org_api_key:
        problems.append("cost.providers.openai.org_api_key: required (or set HALSWARM_OPENAI_ADMIN_KEY)")
    for name, provider in (("anthropic", anthropic), ("openai", openai)):
        if provider is not None and not provider.base_url.startswith(("http://", "https://")):
            problems.append(f"cost.providers.{name}.base_url: must start with http:// or https://")
    keys = [
        ("cost.providers.anthropic.admin_api_key", anthropic.admin_api_key if anthropic else ""),
        ("cost.providers.openai.org_api_key", openai.org_api_key if openai else ""),
    ]
    for path, key in keys:
        problems += _api_key_problems(path, key)
    budgets = config.budgets
    if budgets.daily_usd is not None and budgets.daily_usd <= 0:
        problems.append("budgets.daily_usd: must be greater than 0")
    for project, limit in budgets.projects.items():
        if limit <= 0:
            problems.append(f"budgets.projects.{project}: must be greater than 0")
    if not 0 < budgets.warn_percent < 100:
        problems.append("budgets.warn_percent: must be between 0 and 100 (exclusive)")
    return problems


def _discord_problems(discord: DiscordChannel | None) -> list[str]:
    # Format checks only: the seed's example keeps placeholder ids and must still load.
    if discord is None:
        return []
    problems = []
    if not discord.api_base_url.startswith(("http://", "https://")):
        problems.append("channels.discord.api_base_url: must start with http:// or https://")
    if not discord.gateway_url.startswith(("ws://", "wss://")):
        problems.append("channels.discord.gateway_url: must start with ws:// or wss://")
    key = discord.public_key
    if key and (len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key)):
        problems.append("channels.discord.public_key: must be the application's 64-character hex public key")
    if discord.transport == "interactions" and not key:
        problems.append("channels.discord.public_key: required when transport is 'interactions'")
    return problems


def _database_problems(database: DatabaseConfig) -> list[str]:
    problems: list[str] = []
    if not database.path:
        problems.append("database.path: required")
    if database.retention_days < 1:
        problems.append("database.retention_days: must be at least 1")
    return problems


def check_supervisor_config(config: SupervisorConfig) -> list[str]:
    """Semantic checks beyond types: every problem, each naming its key path."""
    server = config.server
    problems: list[str] = []
    if not server.auth_token:
        problems.append("server.auth_token: required (or set HALSWARM_AUTH_TOKEN)")
    elif len(server.auth_token) < MIN_TOKEN_LEN:
        problems.append(f"server.auth_token: must be at least {MIN_TOKEN_LEN} characters")
    problems += check_api_tokens(server.tokens, server.auth_token)
    problems += check_node_tokens(server.node_tokens, server.auth_token, server.tokens)
    problems += _port_problem("server.port", server.port, allow_zero=True)
    problems += _port_problem("server.http_port", server.http_port, allow_zero=True)
    if server.port == server.http_port and server.port != 0:
        problems.append(f"server.http_port: must differ from server.port ({server.port})")
    if server.heartbeat_interval_sec <= 0:
        problems.append("server.heartbeat_interval_sec: must be greater than 0")
    if server.heartbeat_timeout_count < 1:
        problems.append("server.heartbeat_timeout_count: must be at least 1")
    if server.max_frame_bytes < 64 * 1024:
        problems.append("server.max_frame_bytes: must be at least 65536")
    if server.window < 1:
        problems.append("server.window: must be at least 1")
    if server.max_batch_events < 1:
        problems.append("server.max_batch_events: must be at least 1")
    if server.command_timeout_sec <= 0:
        problems.append("server.command_timeout_sec: must be greater than 0")
    if server.shutdown_grace_sec < 0:
        problems.append("server.shutdown_grace_sec: must not be negative")
    problems += _database_problems(config.database)
    tls = config.security.tls
    problems += check_tls_files(tls.enabled, tls.cert_path, tls.key_path)
    problems += check_origins(config.security.origin_allowlist)
    problems += _cost_problems(config)
    budgets = config.budgets
    problems += check_policies(config.policies, budget_limits=budgets.daily_usd is not None or bool(budgets.projects))
    problems += check_dependencies(config.dependencies, config.dependency_start)
    discord = config.channels.discord
    problems += _discord_problems(discord)
    problems += check_routing(
        config.routes,
        webhooks=config.channels.webhooks,
        slack=config.channels.slack,
        discord_channels=discord.channels if discord is not None else None,
    )
    problems += _env_problems(config.env)
    return problems


def _env_problems(env: EnvConfig) -> list[str]:
    """An unreadable or invalid manifest, each problem with the manifest's own key path."""
    if env.manifest_path is None:
        return []
    path = Path(env.manifest_path).expanduser()
    if not path.exists():
        if not path.parent.is_dir():
            return [f"env.manifest_path: {path.parent} is not a directory"]
        return []  # created by the first PUT /api/v1/env/manifest
    try:
        load_manifest(path)
    except ManifestError as exc:
        return [f"env.manifest_path: {path}: {problem}" for problem in exc.problems]
    return []


def parse_supervisor_config(
    raw: JSONObject, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> SupervisorConfig:
    """Validate an already-parsed supervisor config.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    return parse_config(
        raw, SupervisorConfig, source=source, env_bindings=SUPERVISOR_ENV, env=env, check=check_supervisor_config
    )


def load_supervisor_config(path: Path, *, env: Mapping[str, str] | None = None) -> SupervisorConfig:
    """Read and validate a supervisor config file.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    return load_config_file(path, SupervisorConfig, env_bindings=SUPERVISOR_ENV, env=env, check=check_supervisor_config)


def load_database_config(path: Path, *, env: Mapping[str, str] | None = None) -> DatabaseConfig:
    """Read a supervisor config file for the ``hal-supervisor db`` commands.

    The whole file must parse (types, no unknown keys), but only the ``database`` section
    is checked beyond that: a backup job need not hold the auth token or provider keys.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    config = load_config_file(
        path,
        SupervisorConfig,
        env_bindings=SUPERVISOR_ENV,
        env=env,
        check=lambda c: _database_problems(c.database),
    )
    return config.database
