"""Supervisor configuration: the seed's keys and defaults, plus halswarm's additions.

The public keys (``server.port``, ``server.http_port``, ``server.auth_token``,
``server.heartbeat_interval_sec``, ``server.heartbeat_timeout_count``, ``database.path``,
``security.*``, ``channels.discord.*``, ``cost.*``, ``policies.resume_on_idle.*``) follow
the product README. Unknown keys are errors: a typo must not silently fall back to a
default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from halswarm.config._load import EnvBinding, load_config_file, parse_config

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from halswarm.jsontypes import JSONObject

__all__ = [
    "SUPERVISOR_ENV",
    "AnthropicProvider",
    "CostConfig",
    "DatabaseConfig",
    "DiscordChannel",
    "OpenAIProvider",
    "ResumeOnIdlePolicy",
    "SecurityConfig",
    "ServerConfig",
    "SupervisorConfig",
    "TlsConfig",
    "load_supervisor_config",
    "parse_supervisor_config",
]


@attrs.frozen
class ServerConfig:
    """Listeners, auth and link tuning."""

    auth_token: str = ""
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
    """Discord bot credentials."""

    bot_token: str = ""
    guild_id: str = ""


@attrs.frozen
class ChannelsConfig:
    """Notification channels."""

    discord: DiscordChannel | None = None


@attrs.frozen
class AnthropicProvider:
    """Anthropic Admin API access."""

    admin_api_key: str = ""


@attrs.frozen
class OpenAIProvider:
    """OpenAI organisation admin access."""

    org_api_key: str = ""


@attrs.frozen
class ProvidersConfig:
    """Cost providers."""

    anthropic: AnthropicProvider | None = None
    openai: OpenAIProvider | None = None


@attrs.frozen
class CostConfig:
    """Cost polling."""

    poll_interval_minutes: float = 60.0
    providers: ProvidersConfig = ProvidersConfig()


@attrs.frozen
class ResumeOnIdlePolicy:
    """Resume sessions idle beyond a threshold."""

    enabled: bool = False
    idle_threshold_seconds: float = 300.0
    max_retries: int = 3


@attrs.frozen
class PoliciesConfig:
    """Auto-intervention policies."""

    resume_on_idle: ResumeOnIdlePolicy = ResumeOnIdlePolicy()


@attrs.frozen
class SupervisorConfig:
    """The whole supervisor config file."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    security: SecurityConfig = SecurityConfig()
    channels: ChannelsConfig = ChannelsConfig()
    cost: CostConfig = CostConfig()
    policies: PoliciesConfig = PoliciesConfig()

    def secrets(self) -> list[str]:
        """Every secret value in this config, for log redaction."""
        values = [self.server.auth_token]
        if self.channels.discord:
            values.append(self.channels.discord.bot_token)
        if self.cost.providers.anthropic:
            values.append(self.cost.providers.anthropic.admin_api_key)
        if self.cost.providers.openai:
            values.append(self.cost.providers.openai.org_api_key)
        return [v for v in values if v]

    def not_yet_active(self) -> list[str]:
        """Configured features this version accepts but does not act on yet."""
        notes = []
        if self.channels.discord is not None:
            notes.append("channels.discord")
        if self.cost.providers.anthropic is not None or self.cost.providers.openai is not None:
            notes.append("cost.providers")
        if self.policies.resume_on_idle.enabled:
            notes.append("policies.resume_on_idle")
        return notes


SUPERVISOR_ENV: Final[tuple[EnvBinding, ...]] = (
    ("HALSWARM_AUTH_TOKEN", ("server", "auth_token")),
    ("HALSWARM_DISCORD_BOT_TOKEN", ("channels", "discord", "bot_token")),
    ("HALSWARM_ANTHROPIC_ADMIN_KEY", ("cost", "providers", "anthropic", "admin_api_key")),
    ("HALSWARM_OPENAI_ADMIN_KEY", ("cost", "providers", "openai", "org_api_key")),
)

_MIN_TOKEN_LEN: Final = 16


def _port_problem(key: str, port: int, allow_zero: bool) -> list[str]:
    low = 0 if allow_zero else 1
    return [] if low <= port <= 65535 else [f"{key}: must be between {low} and 65535, got {port}"]


def check_supervisor_config(config: SupervisorConfig) -> list[str]:
    """Semantic checks beyond types: every problem, each naming its key path."""
    server = config.server
    problems: list[str] = []
    if not server.auth_token:
        problems.append("server.auth_token: required (or set HALSWARM_AUTH_TOKEN)")
    elif len(server.auth_token) < _MIN_TOKEN_LEN:
        problems.append(f"server.auth_token: must be at least {_MIN_TOKEN_LEN} characters")
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
    if not config.database.path:
        problems.append("database.path: required")
    if config.database.retention_days < 1:
        problems.append("database.retention_days: must be at least 1")
    tls = config.security.tls
    if tls.enabled:
        problems.append("security.tls.enabled: TLS is not available in this version yet (planned); set false")
    if config.cost.poll_interval_minutes <= 0:
        problems.append("cost.poll_interval_minutes: must be greater than 0")
    policy = config.policies.resume_on_idle
    if policy.idle_threshold_seconds <= 0:
        problems.append("policies.resume_on_idle.idle_threshold_seconds: must be greater than 0")
    if policy.max_retries < 0:
        problems.append("policies.resume_on_idle.max_retries: must not be negative")
    return problems


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
