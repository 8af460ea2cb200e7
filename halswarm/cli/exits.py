"""halctl's exit codes and the one-line messages for client errors.

=====  ==============================================================================
code   meaning
=====  ==============================================================================
0      success
1      the command failed or timed out (the agent reported a failure, or no answer
       came in time), or any other API error
2      usage error: bad options or arguments, unreadable or invalid config file
3      the supervisor is unreachable (not running, wrong ``--url``, network)
4      authentication failed: the API token is missing or was rejected
5      not found: unknown node, session, project or command
6      ``env``: a listed project's environment is degraded
7      ``env``: a listed project's environment is missing
=====  ==============================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from halswarm.cli.client import (
    ApiError,
    AuthenticationError,
    ClientError,
    NotFoundError,
    SupervisorUnreachableError,
)

if TYPE_CHECKING:
    from halswarm.cli.settings import Settings

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES_HELP",
    "EXIT_DEGRADED",
    "EXIT_FAILED",
    "EXIT_MISSING",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "describe_error",
    "exit_code_for",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_AUTH: Final = 4
EXIT_NOT_FOUND: Final = 5
#: ``halctl env``: the worst project is degraded / missing.
EXIT_DEGRADED: Final = 6
EXIT_MISSING: Final = 7

#: For the ``halctl --help`` epilog (``\b`` keeps click from re-wrapping it).
EXIT_CODES_HELP: Final = """\b
Exit codes:
  0  success
  1  command failed or timed out (agent reported failure / no answer), other API error
  2  usage error (bad options or arguments, invalid config file)
  3  supervisor unreachable (is it running? is --url right?)
  4  authentication failed (token missing or rejected)
  5  not found (unknown node, session, project or command)
  6  env: a project's environment is degraded (some checks failed)
  7  env: a project's environment is missing (no directory/repo, or a runtime absent)"""

_TOKEN_HOWTO: Final = 'set it with --token, HALCTL_TOKEN, or "token" in .halswarm/halctl.json'


def exit_code_for(states: list[str]) -> int:
    """``halctl env``'s exit code for these project states: the worst one wins (7, 6, else 0)."""
    if "missing" in states:
        return EXIT_MISSING
    if "degraded" in states:
        return EXIT_DEGRADED
    return EXIT_OK


def describe_error(exc: ClientError, settings: Settings) -> tuple[int, str]:
    """The exit code and one-line message for a client error (never the token itself)."""
    if isinstance(exc, SupervisorUnreachableError):
        return EXIT_UNREACHABLE, (
            f"cannot reach the supervisor at {exc.url} ({exc.reason}); check that hal-supervisor is running "
            f"and the URL is right (--url or HALCTL_URL; url from {settings.url_source})"
        )
    if isinstance(exc, AuthenticationError):
        if settings.token is None:
            return EXIT_AUTH, f"authentication failed: no API token is set; {_TOKEN_HOWTO}"
        return EXIT_AUTH, (
            f"authentication failed: the supervisor rejected the API token (from {settings.token_source}); "
            f"{_TOKEN_HOWTO}"
        )
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND, f"not found: {exc.message}"
    if isinstance(exc, ApiError):
        # The correlation id finds this request in the supervisor's logs and audit rows.
        trace = f"; correlation id {exc.correlation_id}" if exc.correlation_id else ""
        return EXIT_FAILED, f"{exc.message} ({exc.code}, HTTP {exc.status}{trace})"
    return EXIT_FAILED, exc.message
