"""Configuration files of the supervisor and the agent: models, loading, validation."""

from __future__ import annotations

from halswarm.config._load import ConfigError
from halswarm.config.agent import (
    AgentConfig,
    LinkConfig,
    OpencodeConfig,
    load_agent_config,
    missing_project_directories,
    parse_agent_config,
)
from halswarm.config.supervisor import SupervisorConfig, load_supervisor_config, parse_supervisor_config

__all__ = [
    "AgentConfig",
    "ConfigError",
    "LinkConfig",
    "OpencodeConfig",
    "SupervisorConfig",
    "load_agent_config",
    "load_supervisor_config",
    "missing_project_directories",
    "parse_agent_config",
    "parse_supervisor_config",
]
