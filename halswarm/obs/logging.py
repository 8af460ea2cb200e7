"""Logging setup: JSON lines or text on stderr, with secrets redacted from every line.

Structured context goes in ``extra={"ctx": {...}}``; it is rendered as JSON fields or
``key=value`` pairs (so ``grep correlation_id=abc123`` works on text logs too).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Literal

import orjson

__all__ = [
    "CorrelationFilter",
    "JsonFormatter",
    "LogFormat",
    "RedactingFilter",
    "SecretSet",
    "TextFormatter",
    "add_secrets",
    "configure_logging",
    "correlation_scope",
    "ctx",
    "current_correlation_id",
    "redact",
]

LogFormat = Literal["json", "text"]

_MIN_SECRET: Final = 4

_REDACTED: Final = "[REDACTED]"

# Token-shaped strings (issue 8): whatever configured secrets a deployment has, these
# never reach a log line. Each pattern keeps group 1 (a prefix worth seeing: the header
# or key name) and replaces the rest. Ordinary ids (event ids, SHA-256 digests) survive
# unless they follow a credential-ish key name.
_KEY_NAMES: Final = r"(?:token|secret|key|password|passwd|api[_-]?key|access[_-]?key|client[_-]?secret)"
_TOKEN_PATTERNS: Final = (
    # Authorization: Basic <b64> / Bearer <token> (header or "authorization=" field).
    re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # Slack incoming webhooks: the path is the credential.
    re.compile(r"(https?://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+"),
    # Discord webhooks: /api/webhooks/<id>/<token>.
    re.compile(r"(https?://(?:\w+\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks/\d+/)[A-Za-z0-9._-]+"),
    # Discord bot tokens: base64(user id) . timestamp . HMAC.
    re.compile(r"()(?<![A-Za-z0-9_.-])[A-Za-z0-9_-]{23,}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"),
    # Anthropic (sk-ant-...), OpenAI (sk-..., sk-proj-..., sk-admin-...) keys.
    re.compile(r"()\bsk-[A-Za-z0-9_-]{10,}"),
    # Long hex runs only as the value of a credential-ish key: token=..., "secret": "...".
    re.compile(r"(?i)(\b[A-Za-z0-9_-]*" + _KEY_NAMES + r"[\"']?\s*[:=]\s*[\"']?)[0-9a-fA-F]{32,}"),
)


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
    """Remove configured secrets and token-shaped strings from *text*.

    Args:
        text: a log line, an error message or a traceback.
        secrets: exact values to remove (shorter than 4 characters are ignored: they
            would blank out ordinary words).

    Returns:
        *text* with every match replaced by ``[REDACTED]``.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, _REDACTED)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(_keep_prefix, text)
    return text


def _keep_prefix(match: re.Match[str]) -> str:
    return match.group(1) + _REDACTED


def _json_forms(secrets: Iterable[str]) -> list[str]:
    """Each secret plus its JSON-escaped spelling (quotes, backslashes, control and
    non-ASCII characters change when serialised), so a finished JSON line is covered."""
    forms: list[str] = []
    for secret in secrets:
        if not secret or len(secret) < _MIN_SECRET:
            continue
        # orjson keeps non-ASCII as is; the stdlib escapes it (\uXXXX): cover both.
        forms += [secret, orjson.dumps(secret).decode()[1:-1], json.dumps(secret)[1:-1]]
    # Longest first: a secret containing another is removed whole.
    return sorted(set(forms), key=len, reverse=True)


class SecretSet:
    """The configured secrets a handler redacts, shared by its filter and its formatter.

    :func:`configure_logging` gives its handler's parts one set; :func:`add_secrets`
    grows that set, so every part redacts a new secret from the same moment.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = tuple(_json_forms(secrets))

    @property
    def forms(self) -> tuple[str, ...]:
        """Each secret and its JSON-escaped spellings, longest first (a secret containing
        another is removed whole)."""
        return self._forms

    def add(self, secrets: Iterable[str]) -> None:
        """Redact *secrets* too, from now on (the ones already held stay)."""
        forms = _json_forms(secrets)
        with self._lock:
            # One assignment: a thread logging meanwhile reads the old tuple or the new one.
            self._forms = tuple(sorted({*self._forms, *forms}, key=len, reverse=True))

    def replace(self, secrets: Iterable[str]) -> None:
        """Redact exactly *secrets* from now on."""
        forms = tuple(_json_forms(secrets))
        with self._lock:
            self._forms = forms


def _secret_set(secrets: Iterable[str] | SecretSet) -> SecretSet:
    """*secrets* itself when shared, else a set of the part's own."""
    return secrets if isinstance(secrets, SecretSet) else SecretSet(secrets)


#: The set read by the handler configure_logging installs (and grown by add_secrets).
_CONFIGURED: Final = SecretSet()


def _redact_value(value: object, secrets: Sequence[str]) -> object:
    """Redact the strings inside a structured field (before it is serialised)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), secrets)


class RedactingFilter(logging.Filter):
    """Redacts the formatted message, context fields and exception text of every record.

    Attach it to every handler (``configure_logging`` does): it renders the message
    once, redacted, so no formatter can see the raw arguments.

    Args:
        secrets: the values to remove, or a :class:`SecretSet` shared with the
            handler's formatter.
    """

    def __init__(self, secrets: Iterable[str] | SecretSet = ()) -> None:
        super().__init__()
        self.secrets = _secret_set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redacted, and drop the raw arguments."""
        secrets = self.secrets.forms
        record.msg = redact(record.getMessage(), secrets)
        record.args = None
        fields = getattr(record, "ctx", None)
        if isinstance(fields, Mapping):
            record.ctx = {str(k): _redact_value(v, secrets) for k, v in fields.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
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
    """One JSON object per line: ts, level, logger, msg, context fields, exc.

    The message, fields and traceback arrive redacted by :class:`RedactingFilter` (on
    the same handler); the finished line is searched once more for the JSON-escaped
    spelling of each secret (*secrets*: values, or the filter's :class:`SecretSet`).
    """

    def __init__(self, secrets: Iterable[str] | SecretSet = ()) -> None:
        super().__init__()
        self.secrets = _secret_set(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record, then redact the finished line."""
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        line = orjson.dumps(out, default=str).decode()
        return redact(line, self.secrets.forms)


class TextFormatter(logging.Formatter):
    """Human-readable: time level logger: message key=value... (*secrets* as for :class:`JsonFormatter`)."""

    def __init__(self, secrets: Iterable[str] | SecretSet = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.secrets = _secret_set(secrets)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The header and message on one line: control characters escaped."""
        return _one_line(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        """Render the record with its context fields appended."""
        line = super().format(record)
        extra = " ".join(f"{k}={_one_line(str(v))}" for k, v in _fields(record).items())
        return redact(f"{line} {extra}" if extra else line, self.secrets.forms)


# Text logs are read line by line: a newline inside a message or a field (an HTTP path,
# a node id chosen by a peer) must not forge a second log line.
_ESCAPES: Final = {
    **{i: f"\\x{i:02x}" for i in range(32)},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x7F: "\\x7f",
}


def _one_line(text: str) -> str:
    return text.translate(_ESCAPES)


def configure_logging(level: str = "info", fmt: LogFormat = "json", secrets: Iterable[str] = ()) -> None:
    """Send every log record to stderr in *fmt*, redacting *secrets*.

    Replaces existing root handlers, so calling it again (e.g. once the config and
    its secrets are known) is safe.
    """
    _CONFIGURED.replace(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CorrelationFilter())
    handler.addFilter(RedactingFilter(_CONFIGURED))
    handler.setFormatter(JsonFormatter(_CONFIGURED) if fmt == "json" else TextFormatter(_CONFIGURED))
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


def add_secrets(secrets: Iterable[str]) -> None:
    """Redact *secrets* too, from now on, on every handler :func:`configure_logging` set up.

    A config reload brings new webhook URLs and secrets; the old ones stay redacted as
    well (a delivery in flight may still log about them).
    """
    _CONFIGURED.add(secrets)
