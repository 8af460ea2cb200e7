"""Logging setup: JSON lines or text on stderr, with secrets redacted from every line.

Structured context goes in ``extra={"ctx": {...}}``; it is rendered as JSON fields or
``key=value`` pairs (so ``grep correlation_id=abc123`` works on text logs too).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final, Literal

import orjson

__all__ = [
    "CorrelationFilter",
    "LogFormat",
    "RedactingFilter",
    "configure_logging",
    "correlation_scope",
    "ctx",
    "current_correlation_id",
    "redact",
]

LogFormat = Literal["json", "text"]

# Token-shaped strings: bearer headers, provider keys, long hex/base64 runs.
_TOKEN_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{10,}"),
)
_REDACTED: Final = "[REDACTED]"


_CORRELATION: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "halswarm_correlation_id", default=None
)


def current_correlation_id() -> str | None:
    """The correlation id of the work in progress (an HTTP request, a command), if any."""
    return _CORRELATION.get()


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None) -> Generator[None, None, None]:
    """Within the block (and tasks it starts), log lines carry ``correlation_id``."""
    token = _CORRELATION.set(correlation_id)
    try:
        yield
    finally:
        _CORRELATION.reset(token)


def ctx(**fields: object) -> dict[str, Mapping[str, object]]:
    """``extra=`` payload for structured fields: ``log.info("x", extra=ctx(node_id=n))``."""
    return {"ctx": fields}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove configured secrets and token-shaped strings from *text*."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + _REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts the formatted message, arguments and exception text of every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redacted, and drop the raw arguments."""
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
        return True


def _fields(record: logging.LogRecord) -> Mapping[str, object]:
    fields = getattr(record, "ctx", None)
    fields = fields if isinstance(fields, Mapping) else {}
    correlation = getattr(record, "correlation_id", None)
    if correlation and "correlation_id" not in fields:
        return {**fields, "correlation_id": correlation}
    return fields


class CorrelationFilter(logging.Filter):
    """Stamps each record with the correlation id of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Copy the context's correlation id onto the record (formatters render it)."""
        record.correlation_id = _CORRELATION.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, context fields, exc."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record."""
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_text:
            out["exc"] = record.exc_text
        line = orjson.dumps(out, default=str).decode()
        return redact(line, self.secrets)


class TextFormatter(logging.Formatter):
    """Human-readable: time level logger: message key=value..."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """Render the record with its context fields appended."""
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return redact(f"{line} {extra}" if extra else line, self.secrets)


def configure_logging(level: str = "info", fmt: LogFormat = "json", secrets: Iterable[str] = ()) -> None:
    """Send every log record to stderr in *fmt*, redacting *secrets*.

    Replaces existing root handlers, so calling it again (e.g. once the config and
    its secrets are known) is safe.
    """
    secret_list = [s for s in secrets if s]
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CorrelationFilter())
    handler.addFilter(RedactingFilter(secret_list))
    handler.setFormatter(JsonFormatter(secret_list) if fmt == "json" else TextFormatter(secret_list))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # hypercorn's access log is noise at fleet scale; errors still surface.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    # httpx logs every request URL at INFO: Discord interaction tokens and webhook URLs
    # carry credentials in their paths, and our clients log route names instead.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
