"""Reading opencode's JSON shapes (sans-IO): lenient field access, trimming, tokens,
pending requests, error summaries, and how a turn ended judged by its newest message.

opencode's payloads are untyped JSON: every reader here takes any value and falls back
to an empty one (``""``, ``0``, ``{}``) when a field is missing or of another type, so
odd input never raises.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from halswarm.jsontypes import JSONObject, JSONValue, is_json_object
from halswarm.models import PermissionRequest, Question, QuestionRequest, Tokens
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ABORT_ERRORS",
    "PREDECESSOR_KEY",
    "add_tokens",
    "as_int",
    "as_num",
    "as_obj",
    "as_str",
    "diff_files",
    "error_summary",
    "event_data",
    "level_of",
    "message_data",
    "model_of",
    "ms_ts",
    "parse_tokens",
    "permission_request",
    "question_request",
    "trim",
    "turn_completed",
    "turn_error",
    "turn_ids",
]

#: Session metadata key under which a restarted session records its predecessor.
PREDECESSOR_KEY: Final = "halswarm_predecessor"
_MAX_STRING: Final = 2000
_MAX_LIST: Final = 200
#: Error names that mean the turn was aborted, which is no failure.
ABORT_ERRORS: Final = frozenset({"MessageAbortedError"})


def as_str(value: JSONValue, default: str = "") -> str:
    """*value* if it is a string, else *default*."""
    return value if isinstance(value, str) else default


def as_int(value: JSONValue) -> int:
    """*value* if it is an integer (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_num(value: JSONValue) -> float:
    """*value* as a float if it is a number (not a bool), else 0.0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def as_obj(value: JSONValue) -> JSONObject:
    """*value* if it is a JSON object, else ``{}``."""
    return value if is_json_object(value) else {}


def ms_ts(value: JSONValue) -> str | None:
    """opencode's epoch milliseconds -> our timestamp."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return format_ts(datetime.fromtimestamp(value / 1000, tz=UTC))
    except (OverflowError, OSError, ValueError):  # a time no clock can show
        return None


def trim(value: JSONValue, depth: int = 0) -> JSONValue:
    """Cut long strings and lists so an event stays small (the sink caps the rest)."""
    if isinstance(value, str):
        return value if len(value) <= _MAX_STRING else value[:_MAX_STRING] + f"… [{len(value)} chars]"
    if depth > 8 and isinstance(value, list | dict):
        return "…"  # lists too: a deeply nested list would otherwise hit the recursion limit
    if isinstance(value, list):
        return [trim(v, depth + 1) for v in value[:_MAX_LIST]]
    if is_json_object(value):
        return {k: trim(v, depth + 1) for k, v in value.items()}
    return value


def event_data(props: JSONObject) -> JSONObject:
    """An event's properties, trimmed, as the data of the event we forward."""
    value = trim(props)
    return value if is_json_object(value) else {}


def parse_tokens(raw: JSONValue) -> Tokens:
    """opencode's ``{input, output, reasoning, cache: {read, write}}``."""
    tokens = as_obj(raw)
    cache = as_obj(tokens.get("cache"))
    return Tokens(
        as_int(tokens.get("input")),
        as_int(tokens.get("output")),
        as_int(tokens.get("reasoning")),
        as_int(cache.get("read")),
        as_int(cache.get("write")),
    )


def add_tokens(a: Tokens, b: Tokens) -> Tokens:
    """The sum of two token counts."""
    return Tokens(
        a.input + b.input,
        a.output + b.output,
        a.reasoning + b.reasoning,
        a.cache_read + b.cache_read,
        a.cache_write + b.cache_write,
    )


def model_of(info: JSONObject) -> str:
    """A session info's model as ``provider/model`` (``""`` when not both are known)."""
    model = as_obj(info.get("model"))
    provider, model_id = as_str(model.get("providerID")), as_str(model.get("id") or model.get("modelID"))
    return f"{provider}/{model_id}" if provider and model_id else ""


def permission_request(raw: JSONObject, asked_at: str) -> PermissionRequest:
    """A pending permission from ``permission.asked`` or ``GET /permission``."""
    raw_patterns = raw.get("patterns")
    patterns = [p for p in raw_patterns if isinstance(p, str)] if isinstance(raw_patterns, list) else []
    metadata = as_obj(raw.get("metadata"))
    title = as_str(metadata.get("command")) or as_str(metadata.get("description")) or " ".join(patterns)
    return PermissionRequest(
        as_str(raw.get("id")), as_str(raw.get("permission")), patterns, title[:_MAX_STRING], asked_at
    )


def question_request(raw: JSONObject, asked_at: str) -> QuestionRequest:
    """A pending question from ``question.asked`` or ``GET /question``."""
    questions: list[Question] = []
    items = raw.get("questions")
    for item in items if isinstance(items, list) else []:
        q = as_obj(item)
        options = q.get("options")
        labels = [as_str(as_obj(o).get("label")) for o in options] if isinstance(options, list) else []
        questions.append(Question(as_str(q.get("question"))[:_MAX_STRING], as_str(q.get("header")), labels))
    return QuestionRequest(as_str(raw.get("id")), questions, asked_at)


def error_summary(error: JSONObject) -> JSONObject:
    """Name, message, status and retryability of an opencode error; never the provider's
    response body, headers or URL."""
    err_data = as_obj(error.get("data"))
    summary: JSONObject = {
        "name": as_str(error.get("name"), "UnknownError"),
        "message": trim(as_str(err_data.get("message"))),
    }
    for key in ("statusCode", "isRetryable"):
        if isinstance(err_data.get(key), int | bool):
            summary[key] = err_data[key]
    return summary


def message_data(info: JSONObject) -> JSONObject:
    """The data of ``message.completed`` from a completed assistant message's info."""
    provider, model_id = as_str(info.get("providerID")), as_str(info.get("modelID"))
    data: JSONObject = {
        "role": "assistant",
        "message_id": as_str(info.get("id")),
        "model": f"{provider}/{model_id}" if provider and model_id else "",
        "agent": as_str(info.get("agent")),
        "tokens": trim(as_obj(info.get("tokens"))),
        "cost": as_num(info.get("cost")),
        "finish": as_str(info.get("finish")),
    }
    if info.get("error"):
        data["error"] = error_summary(as_obj(info.get("error")))
    return data


def diff_files(props: JSONObject) -> list[JSONValue]:
    """The files of a ``session.diff`` event, each with its line counts and status."""
    files: list[JSONValue] = []
    diff = props.get("diff")
    for item in diff if isinstance(diff, list) else []:
        entry = as_obj(item)
        files.append(
            {
                "file": as_str(entry.get("file")),
                "additions": as_int(entry.get("additions")),
                "deletions": as_int(entry.get("deletions")),
                "status": as_str(entry.get("status")),
            }
        )
    return files


# ---- how a turn ended ------------------------------------------------------------------


def level_of(statuses: Mapping[str, JSONObject], session_id: str) -> str:
    """opencode's level for a session in ``GET /session/status`` (idle ones are omitted)."""
    return as_str(as_obj(statuses.get(session_id)).get("type"), "idle")


def _reply(message: JSONObject | None) -> JSONObject:
    """*message* if it is an assistant reply, else ``{}``."""
    return message if message is not None and as_str(message.get("role")) == "assistant" else {}


def turn_error(message: JSONObject | None) -> JSONObject | None:
    """The error a turn failed with, from its newest message (an abort is no failure)."""
    error = as_obj(_reply(message).get("error"))
    if not error or as_str(error.get("name")) in ABORT_ERRORS:
        return None
    return error_summary(error)


def turn_completed(message: JSONObject | None) -> bool:
    """True when the turn's newest message is a reply that finished (or was aborted);
    False when that is unknown: no reply yet, one cut off (opencode died), or not read."""
    reply = _reply(message)
    return bool(as_obj(reply.get("time")).get("completed") or reply.get("error"))


def turn_ids(message: JSONObject | None) -> frozenset[str]:
    """The ids of a finished turn's reply and of the prompt it answers."""
    reply = _reply(message)
    return frozenset(i for i in (as_str(reply.get("id")), as_str(reply.get("parentID"))) if i)
