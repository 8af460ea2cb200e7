"""The environment a spawned opencode gets, built in one place (issue #9).

The agent's opencode runner (spawn mode), the agent's environment checker and halctl's
local ``env check|provision`` all build it with :meth:`OpencodeEnvironment.build`, so a
check tests exactly the environment opencode and its tools (``env`` in a bash call) get.
Layers, each one overriding the ones before it:

1. the process environment (the agent's; halctl's for a local check), without the
   agent's private variables (``HALSWARM_*``, ``HALCTL_*``) and without any variable
   whose value is one of the agent's secrets (the supervisor token, the opencode
   password) unless ``opencode.env`` sets that value itself;
2. opencode's own state directories (``XDG_DATA_HOME``, ``XDG_STATE_HOME``,
   ``XDG_CACHE_HOME`` under ``<data_dir>/opencode``) and ``OPENCODE_DISABLE_AUTOUPDATE=1``:
   the server's database and logs never mix with a user's interactive opencode;
3. the manifest's declared values for the node's projects (:func:`manifest_environment`;
   one server serves every project, so on a conflict the project first by name wins);
4. the agent config's ``opencode.env``: the node's own setting wins over the fleet-wide
   manifest (a check then reports the manifest's variable as a different value);
5. the server's credentials (``OPENCODE_SERVER_PASSWORD``, ``OPENCODE_SERVER_USERNAME``):
   never taken from a lower layer; only the runner sets them (checks do not see them).

opencode reads its environment once, at start: a spawned server keeps the values it was
started with. :class:`ServerEnvironment` is what the agent knows of the running server's
environment, so the checks can tell a value that changed since (the runner remembers what
it spawned the server with; in attach mode nobody knows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

import attrs

from halswarm.envcheck.provision import opencode_env

if TYPE_CHECKING:
    from collections.abc import Iterable

    from halswarm.config.agent import AgentConfig
    from halswarm.envcheck.manifest import Manifest

__all__ = [
    "ATTACH_MODE_NOTE",
    "PRIVATE_ENV_PREFIXES",
    "SERVER_CREDENTIALS",
    "OpencodeEnvironment",
    "ServerEnvironment",
    "manifest_environment",
]

#: The agent's own variables (its token among them): never passed on to opencode.
PRIVATE_ENV_PREFIXES: Final = ("HALSWARM_", "HALCTL_")
#: Set by the runner for the server it spawns; dropped from every lower layer.
SERVER_CREDENTIALS: Final = ("OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME")
#: Why an attached server's environment is not compared (shown as a skipped check).
ATTACH_MODE_NOTE: Final = "attach mode: the server's own environment is not checked"
_STATE_DIRS: Final = (("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache"))


def manifest_environment(manifest: Manifest | None, projects: Iterable[str]) -> dict[str, str]:
    """The manifest's declared values for *projects* (layer 3).

    One opencode server serves every project of the node: on a conflict the project
    first by name wins. Empty without a manifest.
    """
    env: dict[str, str] = {}
    if manifest is None:
        return env
    for project in sorted(set(projects)):
        for key, value in opencode_env(manifest.spec_for(project)).items():
            env.setdefault(key, value)
    return env


@attrs.frozen
class OpencodeEnvironment:
    """The fixed layers of opencode's environment; :meth:`build` adds the manifest's."""

    #: The agent config's ``opencode.env`` (layer 4).
    config_env: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    #: Values a process variable must not carry to be passed on (the agent's secrets).
    hidden: frozenset[str] = attrs.field(default=frozenset(), repr=False)
    #: ``<data_dir>/opencode``: where the state directories of layer 2 live; None (a
    #: local check without an agent config) leaves the process's own.
    state_dir: Path | None = None
    #: The process environment (layer 1); None: ``os.environ`` as it is at each build.
    process_env: Mapping[str, str] | None = attrs.field(default=None, repr=False)

    @classmethod
    def for_agent(
        cls, config: AgentConfig, *, data_dir: Path | None = None, process_env: Mapping[str, str] | None = None
    ) -> Self:
        """The layers for the agent *config* describes.

        Args:
            config: the agent's config (``opencode.env``, its secrets, ``data_dir``).
            data_dir: the agent's data directory; default ``config.resolved_data_dir()``.
            process_env: the process environment; default ``os.environ`` at each build.
        """
        directory = data_dir if data_dir is not None else config.resolved_data_dir(process_env)
        config_env = dict(config.opencode.env)
        # A secret opencode.env hands over on purpose (a provider key) is not hidden.
        hidden = frozenset(config.secrets()) - frozenset(config_env.values())
        return cls(config_env, hidden, directory / "opencode", process_env)

    def build(
        self, manifest_env: Mapping[str, str] | None = None, *, server: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The environment opencode gets.

        Args:
            manifest_env: the manifest's layer (:func:`manifest_environment`).
            server: the server's credentials (the runner's; checks pass none).

        Returns:
            A new mapping, layers applied in the order of the module docstring.
        """
        environ = os.environ if self.process_env is None else self.process_env
        env = {
            key: value
            for key, value in environ.items()
            if not key.startswith(PRIVATE_ENV_PREFIXES) and value not in self.hidden
        }
        if self.state_dir is not None:
            for var, sub in _STATE_DIRS:
                env[var] = str(self.state_dir / sub)
        env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
        env.update(manifest_env or {})
        env.update(self.config_env)
        for key in SERVER_CREDENTIALS:
            env.pop(key, None)
        env.update(server or {})
        return env


@attrs.frozen
class ServerEnvironment:
    """What the agent knows of the environment of the opencode server running now.

    Checks compare the manifest's variables against it: a spawned server keeps the values
    it was started with until it restarts.
    """

    #: The environment the running server was started with, its credentials left out;
    #: None when the agent cannot know it (it attached to a server someone else started).
    env: Mapping[str, str] | None = attrs.field(repr=False)
    #: Why ``env`` is unknown (shown in the report as a skipped check).
    unknown_reason: str = ""

    @classmethod
    def spawned(cls, env: Mapping[str, str]) -> Self:
        """A server the agent started with *env* (its credentials are dropped)."""
        return cls({key: value for key, value in env.items() if key not in SERVER_CREDENTIALS})

    @classmethod
    def attached(cls) -> Self:
        """A server the agent attached to: its environment is unknown."""
        return cls(None, ATTACH_MODE_NOTE)
