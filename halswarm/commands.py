"""Command requests and per-type argument schemas, shared by the supervisor and agents.

The supervisor validates ``args`` with these before persisting a command, so a bad
request is a clear 400 instead of a failure on some node minutes later; the agent
parses the same classes before acting.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import attrs

from halswarm.convert import ConversionError, structure_strict
from halswarm.jsontypes import JSONObject
from halswarm.models import CommandType

__all__ = [
    "ARG_SCHEMAS",
    "ENV_COMMANDS",
    "SESSION_TARGETED",
    "AnswerQuestionArgs",
    "CommandArgs",
    "CommandRequest",
    "EnvArgs",
    "EnvInstallArgs",
    "NoArgs",
    "PromptArgs",
    "ReplyPermissionArgs",
    "RestartArgs",
    "ResumeArgs",
    "StartArgs",
    "parse_args",
]


@attrs.frozen
class CommandRequest:
    """Body of ``POST /api/v1/commands``."""

    type: CommandType
    target: str
    args: JSONObject = attrs.field(factory=dict)
    idempotency_key: str | None = None


@attrs.frozen
class StartArgs:
    """``start_session``: optional first prompt, model (``provider/model``) and agent."""

    prompt: str | None = None
    model: str | None = None
    agent: str | None = None


@attrs.frozen
class PromptArgs:
    """``prompt_session``: the text to inject."""

    prompt: str


@attrs.frozen
class ResumeArgs:
    """``resume_session``: the prompt to continue with (default: the configured one)."""

    prompt: str | None = None


@attrs.frozen
class RestartArgs:
    """``restart_session``: hand context over to the new session first (default)."""

    handover: bool = True


@attrs.frozen
class NoArgs:
    """Commands without arguments."""


@attrs.frozen
class ReplyPermissionArgs:
    """``reply_permission``: answer a pending permission request."""

    request_id: str
    reply: Literal["once", "always", "reject"]
    message: str | None = None


@attrs.frozen
class AnswerQuestionArgs:
    """``answer_question``: one list of chosen labels per question."""

    request_id: str
    answers: list[list[str]]


@attrs.frozen
class EnvArgs:
    """``env_check`` / ``env_provision``: one project (default: every project of the node).

    ``only`` limits provisioning to these check categories (``agent_config`` for an
    AGENT.md sync); ``dry_run`` returns the plan and changes nothing.
    """

    dry_run: bool = False
    project: str | None = None
    only: list[str] | None = None


@attrs.frozen
class EnvInstallArgs:
    """``env_install``: run the manifest's declared install command *install* of *project*
    (a risky fix, after a human approved it: ``POST /api/v1/env/approve/{node}``)."""

    project: str
    install: str
    #: The hash of the manifest the approver saw; the agent refuses to run the install
    #: from a different manifest (its command line could differ from the one approved).
    manifest_hash: str = ""


CommandArgs: TypeAlias = (
    StartArgs
    | PromptArgs
    | ResumeArgs
    | RestartArgs
    | NoArgs
    | ReplyPermissionArgs
    | AnswerQuestionArgs
    | EnvArgs
    | EnvInstallArgs
)

ARG_SCHEMAS: Final[dict[str, type[CommandArgs]]] = {
    "start_session": StartArgs,
    "prompt_session": PromptArgs,
    "resume_session": ResumeArgs,
    "restart_session": RestartArgs,
    "abort_session": NoArgs,
    "kill_session": NoArgs,
    "reply_permission": ReplyPermissionArgs,
    "answer_question": AnswerQuestionArgs,
    "env_check": EnvArgs,
    "env_provision": EnvArgs,
    "env_install": EnvInstallArgs,
}

#: Commands carried out by the agent's environment checker, not its session backend.
ENV_COMMANDS: Final[frozenset[str]] = frozenset({"env_check", "env_provision", "env_install"})

#: Commands whose target resolves to one session (a session id, or a project's active session).
SESSION_TARGETED: Final[frozenset[str]] = frozenset(
    {
        "prompt_session",
        "resume_session",
        "restart_session",
        "abort_session",
        "kill_session",
        "reply_permission",
        "answer_question",
    }
)


def parse_args(command_type: str, args: JSONObject) -> CommandArgs:
    """Validate *args* for *command_type*.

    Raises:
        ConversionError: naming each bad or missing argument (``args.<name>: ...``).
    """
    schema = ARG_SCHEMAS[command_type]
    parsed = structure_strict(args, schema, path="$.args")
    if isinstance(parsed, PromptArgs) and not parsed.prompt.strip():
        raise ConversionError(["args.prompt: must not be empty"])
    return parsed
