"""Log redaction and correlation ids: what an operator reading the logs sees (issue 8).

Every line goes through one pipeline (``configure_logging``): secrets configured in the
supervisor and token-shaped strings are gone from messages, structured fields and
tracebacks, in JSON and text format alike; lines logged inside a correlation scope
carry its id.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Final, TypeAlias

import orjson
import pytest

from halswarm.obs.logging import (
    CorrelationFilter,
    JsonFormatter,
    LogFormat,
    RedactingFilter,
    TextFormatter,
    add_secrets,
    configure_logging,
    correlation_scope,
    ctx,
    redact,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

Stream: TypeAlias = "tuple[logging.Logger, io.StringIO, list[logging.Handler]]"

DISCORD_BOT: Final = "MTI3NjU0MzIxMDk4NzY1NDMyMQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
SLACK_HOOK: Final = "https://hooks.slack.com/services/T0001ABCD/B0002EFGH/XyZsecretPathPart1234567"
ANTHROPIC: Final = "sk-ant-admin01-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
OPENAI: Final = "sk-AbCdEfGhIjKlMnOpQrSt0123456789"
OPENAI_PROJECT: Final = "sk-proj-AbCdEfGhIjKlMnOpQrSt0123456789_-xy"
BASIC: Final = "dXNlcjpodW50ZXIyLXN1cGVyLXNlY3JldA=="
BEARER: Final = "eyJhbGciOi.payload-part_42.signature~x"
HEX64: Final = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

TOKEN_SHAPED: Final = [
    pytest.param(f"logging in with {DISCORD_BOT} now", DISCORD_BOT, id="discord-bot-token"),
    pytest.param(f"POST {SLACK_HOOK} failed: 404", "XyZsecretPathPart1234567", id="slack-webhook"),
    pytest.param(f"anthropic rejected key {ANTHROPIC}", ANTHROPIC, id="anthropic-key"),
    pytest.param(f"openai rejected key {OPENAI}", OPENAI, id="openai-key"),
    pytest.param(f"openai rejected key {OPENAI_PROJECT}", OPENAI_PROJECT, id="openai-project-key"),
    pytest.param(f"headers: Authorization: Basic {BASIC}", BASIC, id="authorization-basic"),
    pytest.param(f"headers: Authorization: Bearer {BEARER}", BEARER, id="authorization-bearer"),
    pytest.param(f"sent bearer {BEARER}", BEARER, id="bare-bearer"),
    pytest.param(f"url ?token={HEX64}&x=1", HEX64, id="hex-after-token="),
    pytest.param(f"webhook_secret={HEX64}", HEX64, id="hex-after-secret="),
    pytest.param(f'{{"api_key": "{HEX64}"}}', HEX64, id="hex-as-json-key-value"),
    pytest.param(f"password: {HEX64}", HEX64, id="hex-after-password"),
]


@pytest.mark.parametrize(("line", "secret"), TOKEN_SHAPED)
def test_token_shaped_strings_are_redacted_without_configuration(line: str, secret: str) -> None:
    """Guards: a provider key, bot token or webhook URL reached the logs because nobody listed it as a secret."""
    out = redact(line)
    assert secret not in out
    assert "[REDACTED]" in out


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(f"event {HEX64} stored", id="sha256-in-prose"),
        pytest.param("command 0123456789abcdef0123456789abcdef accepted", id="uuid-hex-command-id"),
        pytest.param(f"idempotency {HEX64[:32]} reused", id="hex-id"),
        pytest.param("a basic configuration is enough", id="word-basic"),
        pytest.param("sk-1 is a short label", id="short-sk"),
        pytest.param("session ses_01J9Z3K4ABCDEF.part.x started", id="dotted-id"),
    ],
)
def test_ordinary_ids_survive(line: str) -> None:
    """Guards: over-eager patterns blanked out event ids and digests operators grep for."""
    assert redact(line) == line


def test_the_key_name_survives_so_the_reader_knows_what_was_removed() -> None:
    assert redact(f"token={HEX64}") == "token=[REDACTED]"
    assert redact(f"Authorization: Bearer {BEARER}") == "Authorization: Bearer [REDACTED]"
    assert redact(SLACK_HOOK) == "https://hooks.slack.com/services/[REDACTED]"


# ---- the whole pipeline (configure_logging's handler) -----------------------------------

CONFIGURED: Final = [
    "plain-auth-token-1234567890",
    'quote"and\\backslash-secret',  # JSON escaping changes both characters
    "ünïcödé-sécret-ß-🔑",  # non-ASCII (escaped by the stdlib json, kept by orjson)
    "tab\tand\nnewline-secret",  # control characters are escaped too
]


@pytest.fixture
def stream() -> Iterator[Stream]:
    """A private logger whose handlers the tests set up like configure_logging does."""
    logger = logging.getLogger("tests.obs.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    buffer = io.StringIO()
    handlers: list[logging.Handler] = []
    yield logger, buffer, handlers
    for handler in handlers:
        logger.removeHandler(handler)
    logger.propagate = True


def attach(stream: Stream, fmt: LogFormat, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    logger, buffer, handlers = stream
    handler = logging.StreamHandler(buffer)
    handler.addFilter(CorrelationFilter())
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    logger.addHandler(handler)
    handlers.append(handler)
    return logger, buffer


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("secret", CONFIGURED)
def test_configured_secrets_never_reach_a_line(stream: Stream, fmt: LogFormat, secret: str) -> None:
    """Guards: a secret with a quote, backslash or non-ASCII character survived in JSON logs
    because only the finished (escaped) line was searched for its raw spelling."""
    logger, buffer = attach(stream, fmt, CONFIGURED)
    logger.info("as %%s arg: %s", secret)
    logger.info("in a field", extra=ctx(detail=secret, nested={"list": [secret, 1]}))
    logger.info(f"inline in the message {secret}")  # a message built by a careless caller
    try:
        raise RuntimeError(f"provider said no to {secret}")
    except RuntimeError:
        logger.exception("poll failed")
    text = buffer.getvalue()
    escaped = orjson.dumps(secret).decode()[1:-1]
    assert secret not in text
    assert escaped not in text
    assert text.count("[REDACTED]") >= 5
    if fmt == "json":
        lines = [orjson.loads(line) for line in text.splitlines()]
        assert [line["msg"] for line in lines][-1] == "poll failed"
        assert "RuntimeError: provider said no to [REDACTED]" in lines[-1]["exc"]
        assert lines[1]["detail"] == "[REDACTED]"
        assert lines[1]["nested"] == {"list": ["[REDACTED]", 1]}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_tracebacks_are_redacted(stream: Stream, fmt: LogFormat) -> None:
    """Guards: a failing HTTP call's exception text (with the key in a header) printed verbatim."""
    logger, buffer = attach(stream, fmt, [])
    try:
        raise ValueError(f"401 for Authorization: Bearer {BEARER} with key {ANTHROPIC}")
    except ValueError:
        logger.exception("request failed")
    text = buffer.getvalue()
    assert "Traceback" in text
    assert BEARER not in text
    assert ANTHROPIC not in text


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_correlation_id_appears_inside_its_scope_only(stream: Stream, fmt: LogFormat) -> None:
    logger, buffer = attach(stream, fmt, [])
    logger.info("before")
    with correlation_scope("abc123def456"):
        logger.info("inside")
    logger.info("after")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    if fmt == "json":
        parsed = [orjson.loads(line) for line in lines]
        assert [p.get("correlation_id") for p in parsed] == [None, "abc123def456", None]
        assert '"correlation_id":"abc123def456"' in lines[1]
    else:
        assert ["correlation_id=abc123def456" in line for line in lines] == [False, True, False]


def test_an_explicit_correlation_field_wins_over_the_scope(
    stream: Stream,
) -> None:
    """The dispatcher logs with its own record's id even when called from another scope."""
    logger, buffer = attach(stream, "json", [])
    with correlation_scope("outer"):
        logger.info("outcome", extra=ctx(correlation_id="record-id"))
    assert orjson.loads(buffer.getvalue())["correlation_id"] == "record-id"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_newline_from_a_peer_cannot_forge_a_log_line(stream: Stream, fmt: LogFormat) -> None:
    """Guards: an unauthenticated path with %0A printed a whole fake line in text logs."""
    logger, buffer = attach(stream, fmt, [])
    forged = "/api/v1/x\n2026-01-01 00:00:00 INFO    halswarm.supervisor.dispatcher: command accepted actor=api"
    logger.warning("HTTP request refused: %s", forged, extra=ctx(target=forged))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    if fmt == "text":
        assert "/api/v1/x\\n2026-01-01" in lines[0]
    else:
        assert orjson.loads(lines[0])["target"] == forged  # JSON keeps it, escaped


@contextlib.contextmanager
def root_configured(fmt: LogFormat, secrets: list[str]) -> Generator[None, None, None]:
    """configure_logging on the root logger, undone afterwards (pytest's handlers come back)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quieted = {name: logging.getLogger(name).level for name in ("hypercorn.access", "httpx", "httpcore")}
    configure_logging("info", fmt, secrets)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in quieted.items():
            logging.getLogger(name).setLevel(old)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_added_after_start_are_redacted_by_every_part_of_the_handler(
    capsys: pytest.CaptureFixture[str], fmt: LogFormat
) -> None:
    """Guards: a secret a config reload brought (add_secrets) reached the filter but not the
    formatter, or the reverse; the configured ones must stay redacted too."""
    started = "started-ALPHA-secret-1234"
    added = [
        'reload"BRAVO\\secret-5678',  # JSON escaping changes the quote and the backslash
        # The text format writes ESC as \x1b, which the formatter's pass over the finished
        # line does not look for: only the filter (before formatting) removes it.
        "ctrl\x1bCHARLIE-secret-9012",
    ]
    with root_configured(fmt, [started]):
        add_secrets(added)
        log = logging.getLogger("tests.obs.added")
        for secret in (started, *added):
            log.info("message with %s", secret)
            # A field's name is not redacted by the filter: only the formatter's pass over
            # the finished line removes it.
            log.info("field named after it", extra=ctx(**{secret: 1}))
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 6
    assert [word for word in ("ALPHA", "BRAVO", "CHARLIE") if word in err] == []
    assert err.count("[REDACTED]") == 6
