"""Agent configuration: the seed's keys plus ``node_id``, ``data_dir``, link tuning and
the optional ``opencode`` section (how the agent runs or reaches ``opencode serve``)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

import attrs

from halswarm.config._load import EnvBinding, load_config_file, parse_config
from halswarm.models import Project

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.jsontypes import JSONObject

__all__ = [
    "AGENT_ENV",
    "AgentConfig",
    "LinkConfig",
    "OpencodeConfig",
    "default_data_dir",
    "load_agent_config",
    "missing_project_directories",
    "parse_agent_config",
    "resolved_projects",
]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@attrs.frozen
class LinkConfig:
    """How the agent talks to the supervisor. Every network wait has a deadline."""

    connect_timeout_sec: float = 10.0
    backoff_initial_sec: float = 0.5
    backoff_max_sec: float = 30.0
    # The backoff resets only after a connection stayed up this long, so a supervisor
    # that accepts and then drops us cannot cause a tight reconnect loop.
    stable_after_sec: float = 30.0
    batch_max_events: int = 1000
    batch_max_bytes: int = 1024 * 1024
    close_timeout_sec: float = 5.0


DEFAULT_CONTINUE_PROMPT: Final = "Continue with the next step of your current task."


@attrs.frozen
class OpencodeConfig:
    """How the agent gets an ``opencode serve`` (spawned as a child, or attached to).

    With none of these keys the agent spawns ``opencode`` from PATH on the seed's
    ``opencode_port``, bound to 127.0.0.1 with a random password.
    """

    mode: Literal["spawn", "attach"] = "spawn"
    binary: str = "opencode"
    host: str = "127.0.0.1"
    #: Basic-auth password. Spawn mode generates a random one when unset; attach mode
    #: sends it when set (the server's OPENCODE_SERVER_PASSWORD). Never in a repr.
    password: str | None = attrs.field(default=None, repr=False)
    username: str = "opencode"
    #: Extra environment for the spawned server (provider API keys, OPENCODE_CONFIG...).
    #: Its values may be secrets: never in a repr.
    env: dict[str, str] = attrs.field(factory=dict, repr=False)
    continue_prompt: str = DEFAULT_CONTINUE_PROMPT
    #: How long a restart with handover waits for the old session to write its notes.
    handover_timeout_sec: float = 300.0
    ready_timeout_sec: float = 30.0
    request_timeout_sec: float = 30.0
    restart_backoff_initial_sec: float = 1.0
    restart_backoff_max_sec: float = 60.0
    #: opencode sends a heartbeat every 10 s: a stream silent this long is dead.
    event_read_timeout_sec: float = 25.0

    def base_url(self, port: int) -> str:
        """The server's URL for *port*."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"


@attrs.frozen
class AgentConfig:
    """The whole agent config file."""

    supervisor_url: str = ""
    auth_token: str = attrs.field(default="", repr=False)  # a secret: never in a repr
    opencode_port: int = 4096
    projects: list[Project] = attrs.field(factory=list)
    node_id: str | None = None
    data_dir: str | None = None
    link: LinkConfig = LinkConfig()
    opencode: OpencodeConfig = OpencodeConfig()
    #: PEM file of the CA(s) that sign the supervisor's certificate (``wss://``); the
    #: system's CAs when unset.
    tls_ca_file: str | None = None
    #: Seconds between environment checks of every project (issue #9); 0: only when the
    #: manifest changes or an ``env_check`` command asks.
    env_check_interval_sec: float = 600.0

    def resolved_node_id(self) -> str:
        """The configured node id, or this machine's hostname."""
        return self.node_id or socket.gethostname()

    def resolved_data_dir(self, env: Mapping[str, str] | None = None) -> Path:
        """Where the outbox and identity live (see :func:`default_data_dir`)."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        return default_data_dir(self.resolved_node_id(), env)

    def ws_url(self) -> str:
        """The supervisor URL with the ``/ws`` path the hub serves."""
        parts = urlsplit(self.supervisor_url)
        path = parts.path if parts.path not in ("", "/") else "/ws"
        return parts._replace(path=path).geturl()

    def secrets(self) -> list[str]:
        """Secret values, for log redaction."""
        values = [self.auth_token, self.opencode.password or "", *self.opencode.env.values()]
        # Only values long enough to be secrets: redacting "1" or "true" would mangle logs.
        return [v for v in values if len(v) >= 8]


def default_data_dir(node_id: str, env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/halswarm/agent/<node_id>`` (``~/.local/state`` by default).

    One directory per node id, so several agents can share a machine.
    """
    environ = os.environ if env is None else env
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "halswarm" / "agent" / node_id


#: Where ``hal-agent`` (and ``halctl env`` on a node) look for the agent config.
DEFAULT_AGENT_CONFIG: Final = "/etc/hal-o-swarm/agent.config.json"

AGENT_ENV: Final[tuple[EnvBinding, ...]] = (
    ("HALSWARM_AUTH_TOKEN", ("auth_token",)),
    ("HALSWARM_OPENCODE_PASSWORD", ("opencode", "password")),
)


def check_agent_config(config: AgentConfig) -> list[str]:
    """Semantic checks: every problem, each naming its key path."""
    problems: list[str] = []
    url = urlsplit(config.supervisor_url)
    if not config.supervisor_url:
        problems.append("supervisor_url: required (e.g. ws://supervisor-host:8420)")
    elif url.scheme not in ("ws", "wss") or not url.hostname:
        problems.append(f"supervisor_url: must be a ws:// or wss:// URL with a host, got {config.supervisor_url!r}")
    if not config.auth_token:
        problems.append("auth_token: required (or set HALSWARM_AUTH_TOKEN)")
    if config.env_check_interval_sec < 0:
        problems.append("env_check_interval_sec: must not be negative (0: check only when the manifest changes)")
    if config.tls_ca_file is not None:
        if url.scheme != "wss":
            problems.append("tls_ca_file: only used with a wss:// supervisor_url")
        elif not Path(config.tls_ca_file).expanduser().is_file():
            problems.append(f"tls_ca_file: no such file: {config.tls_ca_file}")
    if not 1 <= config.opencode_port <= 65535:
        problems.append(f"opencode_port: must be between 1 and 65535, got {config.opencode_port}")
    if config.data_dir is not None and not Path(config.data_dir).expanduser().is_absolute():
        problems.append(f"data_dir: must be an absolute path, got {config.data_dir!r}")
    if config.node_id is not None and not _NAME_RE.match(config.node_id):
        problems.append("node_id: use letters, digits, '.', '_' or '-' (at most 128 characters)")
    seen: set[str] = set()
    for i, project in enumerate(config.projects):
        if not _NAME_RE.match(project.name):
            problems.append(f"projects[{i}].name: use letters, digits, '.', '_' or '-', got {project.name!r}")
        if project.name in seen:
            problems.append(f"projects[{i}].name: duplicate project name {project.name!r}")
        seen.add(project.name)
        if not project.directory:
            problems.append(f"projects[{i}].directory: required")
        elif not Path(project.directory).expanduser().is_absolute():
            problems.append(f"projects[{i}].directory: must be an absolute path, got {project.directory!r}")
    link = config.link
    positive = ("connect_timeout_sec", "backoff_initial_sec", "backoff_max_sec", "close_timeout_sec")
    problems.extend(f"link.{key}: must be greater than 0" for key in positive if getattr(link, key) <= 0)
    if link.backoff_max_sec < link.backoff_initial_sec:
        problems.append("link.backoff_max_sec: must be at least link.backoff_initial_sec")
    if link.stable_after_sec < 0:
        problems.append("link.stable_after_sec: must not be negative")
    elif link.stable_after_sec <= link.connect_timeout_sec:
        # Otherwise a connect attempt that hangs until its timeout would reset the backoff.
        problems.append("link.stable_after_sec: must be greater than link.connect_timeout_sec")
    if link.batch_max_events < 1:
        problems.append("link.batch_max_events: must be at least 1")
    if link.batch_max_bytes < 4096:
        problems.append("link.batch_max_bytes: must be at least 4096")
    problems.extend(_check_opencode(config.opencode))
    return problems


def _check_opencode(oc: OpencodeConfig) -> list[str]:
    problems: list[str] = []
    if not oc.binary.strip():
        problems.append("opencode.binary: must not be empty")
    if not oc.host.strip():
        problems.append("opencode.host: must not be empty")
    if oc.mode == "spawn" and oc.host not in ("127.0.0.1", "localhost", "::1"):
        # A spawned server runs tools with shell access: never expose it beyond loopback.
        problems.append(f"opencode.host: spawn mode binds to loopback only (127.0.0.1), got {oc.host!r}")
    if not oc.continue_prompt.strip():
        problems.append("opencode.continue_prompt: must not be empty")
    positive = (
        "handover_timeout_sec",
        "ready_timeout_sec",
        "request_timeout_sec",
        "restart_backoff_initial_sec",
        "restart_backoff_max_sec",
        "event_read_timeout_sec",
    )
    problems.extend(f"opencode.{key}: must be greater than 0" for key in positive if getattr(oc, key) <= 0)
    if oc.restart_backoff_max_sec < oc.restart_backoff_initial_sec:
        problems.append("opencode.restart_backoff_max_sec: must be at least opencode.restart_backoff_initial_sec")
    problems.extend(
        f"opencode.env.{key}: not a valid environment variable name"
        for key in oc.env
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key)
    )
    return problems


def missing_project_directories(config: AgentConfig) -> list[str]:
    """Start-time check: every configured project directory exists (one line per problem)."""
    problems: list[str] = []
    for i, project in enumerate(config.projects):
        path = Path(project.directory).expanduser()
        if not path.exists():
            problems.append(f"projects[{i}].directory: {project.directory} does not exist ({project.name!r})")
        elif not path.is_dir():
            problems.append(f"projects[{i}].directory: {project.directory} is not a directory ({project.name!r})")
    return problems


def resolved_projects(projects: list[Project]) -> list[Project]:
    """*projects* with each directory as opencode records it: ``~`` expanded, symlinks resolved.

    opencode stores a session's ``directory`` with symlinks resolved, and takes a ``~``
    in a request's directory for a relative path. Sessions are matched to projects by
    that directory, so the agent must speak of each project the way opencode does, or a
    project reached through a link (or written ``~/app``) would never see its sessions.
    Reads the file system (links); call it once at start.
    """
    return [attrs.evolve(p, directory=os.path.realpath(os.path.expanduser(p.directory))) for p in projects]


def parse_agent_config(
    raw: JSONObject, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Validate an already-parsed agent config.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    return parse_config(raw, AgentConfig, source=source, env_bindings=AGENT_ENV, env=env, check=check_agent_config)


def load_agent_config(path: Path, *, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate an agent config file.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    return load_config_file(path, AgentConfig, env_bindings=AGENT_ENV, env=env, check=check_agent_config)
