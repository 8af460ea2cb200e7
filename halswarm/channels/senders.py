"""Delivering routed events: generic JSON webhooks and Slack incoming webhooks (issue #7).

A sender turns one :class:`~halswarm.channels.router.Delivery` into HTTP requests and
says how it went (:data:`Outcome`). Each target has its own sender task in
:mod:`halswarm.channels.router_service`, so a slow receiver only delays itself.

**Webhook body** (``webhook#<name>``), one JSON object per delivery::

    {
      "event": {"node_id": "node-1", "seq": 42, "ts": "2026-08-01T12:00:00.000000Z",
                "type": "session.error", "session_id": "ses_1", "project": "api", "data": {...}},
      "route": {"index": 0, "match": "session.error", "target": "webhook#n8n"},
      "suppressed_count": 0,
      "sent_at": "2026-08-01T12:00:00.123456Z"
    }

``(event.node_id, event.seq)`` identifies the event (as ``GET /api/v1/events`` lists it);
``X-Halswarm-Delivery`` (``<node_id>:<seq>:<route index>``) is the same for every attempt
of one delivery, so a receiver can drop the duplicates a retry may cause. With a
``secret``, ``X-Halswarm-Timestamp`` and ``X-Halswarm-Signature`` are added
(:mod:`halswarm.channels.signing`; re-signed per attempt, the body is the same).

**Retries**: timeouts, connection errors, 429 (honouring ``Retry-After``) and 5xx are
retried up to ``max_attempts`` with exponential backoff; other answers (4xx) are final.

**Secrets**: logs name the target (``webhook#n8n``), the status and the exception type,
never a URL (a Slack webhook URL is the credential), a header value or the secret.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final, Literal, Protocol

import attrs
import httpx
import orjson
import trio

from halswarm.channels.signing import signature_headers
from halswarm.config.routing import SlackWebhookConfig, WebhookConfig
from halswarm.obs.logging import ctx
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from halswarm.channels.router import Delivery
    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.models import Event

__all__ = [
    "DELIVERY_HEADER",
    "Outcome",
    "RetryTuning",
    "Sender",
    "SlackSender",
    "WebhookSender",
    "event_json",
    "slack_message",
    "webhook_body",
]

log = logging.getLogger(__name__)

#: Identifies one delivery across its attempts: ``<node_id>:<seq>:<route index>``.
DELIVERY_HEADER: Final = "X-Halswarm-Delivery"

#: What became of one delivery.
Outcome = Literal["delivered", "failed"]

_SLACK_TEXT_MAX: Final = 3000  # Block Kit section text limit
_SLACK_HEADER_MAX: Final = 150
_SLACK_FIELD_MAX: Final = 2000


@attrs.frozen
class RetryTuning:
    """Backoff between attempts, and the Slack defaults (its config has only the URL)."""

    #: Delay before the second attempt; doubled for each further one.
    initial_backoff_sec: float = 1.0
    max_backoff_sec: float = 30.0
    #: The longest ``Retry-After`` honoured (a longer one is cut to this).
    max_retry_after_sec: float = 60.0
    slack_timeout_sec: float = 10.0
    slack_max_attempts: int = 3

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt number *attempt* (1-based)."""
        return min(self.initial_backoff_sec * 2.0 ** (attempt - 1), self.max_backoff_sec)


class Sender(Protocol):
    """Delivers to one target."""

    async def send(self, delivery: Delivery, route_text: str) -> Outcome:
        """Deliver, retrying as the target allows; never raises (but Cancelled)."""
        ...


def event_json(event: Event) -> JSONObject:
    """An event as webhook bodies carry it (the store's row id is local: left out)."""
    return {
        "node_id": event.node_id,
        "seq": event.seq,
        "ts": event.ts,
        "type": event.type,
        "session_id": event.session_id,
        "project": event.project,
        "data": event.data,
    }


def webhook_body(delivery: Delivery, route_text: str, sent_at: str) -> JSONObject:
    """The JSON body of a ``webhook#<name>`` request (see the module docstring)."""
    return {
        "event": event_json(delivery.event),
        "route": {"index": delivery.route_index, "match": route_text, "target": str(delivery.target)},
        "suppressed_count": delivery.suppressed_count,
        "sent_at": sent_at,
    }


def _delivery_id(delivery: Delivery) -> str:
    return f"{delivery.event.node_id}:{delivery.event.seq}:{delivery.route_index}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@attrs.frozen
class _Attempt:
    """What one attempt found: a final outcome, or a retry after an optional delay."""

    outcome: Outcome | None
    reason: str
    retry_after: float | None = None


async def _post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    *,
    ok: Callable[[httpx.Response], bool],
) -> _Attempt:
    """One POST under a deadline, classified. Never raises but Cancelled."""
    try:
        with trio.fail_after(deadline):
            response = await client.post(url, content=body, headers=headers, timeout=httpx.Timeout(deadline))
    except trio.TooSlowError:
        return _Attempt(None, "timed out")
    except httpx.TimeoutException:
        return _Attempt(None, "timed out")
    except httpx.HTTPError as exc:  # the type only: some messages carry the URL
        return _Attempt(None, f"request failed ({type(exc).__name__})")
    status = response.status_code
    if ok(response):
        return _Attempt("delivered", f"HTTP {status}")
    if status == 429:
        return _Attempt(None, "HTTP 429", _retry_after(response))
    if status >= 500:
        return _Attempt(None, f"HTTP {status}")
    return _Attempt("failed", f"HTTP {status} (not retried)")


async def _deliver(
    what: str,
    attempt_once: Callable[[], Awaitable[_Attempt]],
    *,
    max_attempts: int,
    tuning: RetryTuning,
) -> Outcome:
    """Attempt until an outcome, retrying with backoff up to *max_attempts*."""
    for attempt in range(1, max_attempts + 1):
        result = await attempt_once()
        if result.outcome == "delivered":
            log.debug("delivered", extra=ctx(target=what, attempt=attempt))
            return "delivered"
        if result.outcome == "failed":
            log.warning("delivery refused: %s", result.reason, extra=ctx(target=what, attempt=attempt))
            return "failed"
        if attempt == max_attempts:
            log.warning("delivery failed after %d attempts: %s", attempt, result.reason, extra=ctx(target=what))
            return "failed"
        delay = tuning.backoff(attempt)
        if result.retry_after is not None:
            delay = min(max(delay, result.retry_after), tuning.max_retry_after_sec)
        log.info("delivery attempt failed (%s); retrying in %.1fs", result.reason, delay, extra=ctx(target=what))
        await trio.sleep(delay)
    return "failed"  # max_attempts < 1: the config check refuses it


@attrs.define
class WebhookSender:
    """POSTs each delivery as JSON to a generic webhook (n8n and friends)."""

    name: str
    config: WebhookConfig = attrs.field(repr=False)
    client: httpx.AsyncClient = attrs.field(repr=False)
    now: Clock
    tuning: RetryTuning = attrs.Factory(RetryTuning)

    async def send(self, delivery: Delivery, route_text: str) -> Outcome:
        """POST the delivery (signed when a secret is set), retrying on 5xx, 429 and timeouts.

        Returns:
            ``delivered`` on a 2xx answer; ``failed`` on another answer or when every
            attempt failed.

        Cancellation: safe at any await (an attempt in flight is abandoned).
        Error handling: never raises; failures are logged without the URL or secrets.
        """
        body = orjson.dumps(webhook_body(delivery, route_text, format_ts(self.now())))
        delivery_id = _delivery_id(delivery)

        async def attempt_once() -> _Attempt:
            headers = {**self.config.headers, "Content-Type": "application/json", DELIVERY_HEADER: delivery_id}
            if self.config.secret:
                headers.update(signature_headers(self.config.secret, body, int(self.now().timestamp())))
            return await _post(self.client, self.config.url, body, headers, self.config.timeout_sec, ok=_is_2xx)

        return await _deliver(
            f"webhook#{self.name}", attempt_once, max_attempts=self.config.max_attempts, tuning=self.tuning
        )


def _is_2xx(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def _slack_ok(response: httpx.Response) -> bool:
    # Slack answers 200 with the body "ok"; anything else is a failure (provider-apis.md §4).
    return response.status_code == 200 and response.text.strip() == "ok"


_EMOJI: Final = {
    "session.error": ":red_circle:",
    "node.offline": ":red_circle:",
    "cost.budget_exceeded": ":red_circle:",
    "cost.budget_warning": ":warning:",
    "policy.alert": ":warning:",
    "permission.asked": ":raising_hand:",
    "question.asked": ":raising_hand:",
    "session.idle": ":zzz:",
    "project.completed": ":white_check_mark:",
}


def _escape(text: str) -> str:
    """Slack mrkdwn control characters (its docs: escape &, < and >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _detail(data: JSONObject) -> str | None:
    """A short human line from the event data: an error's name and message, a reason."""
    error = data.get("error")
    if isinstance(error, dict):
        name = error.get("name")
        inner = error.get("data")
        message = inner.get("message") if isinstance(inner, dict) else error.get("message")
        parts = [str(p) for p in (name, message) if isinstance(p, str) and p]
        if parts:
            return ": ".join(parts)
    for key in ("message", "reason", "detail", "summary"):
        value: JSONValue = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def slack_message(delivery: Delivery) -> JSONObject:
    """An incoming-webhook message: ``{text, blocks}`` with a short summary of the event.

    ``text`` is the notification fallback; ``blocks`` hold a header, the detail (an
    error's name and message, a reason) and the subject as fields, within Block Kit's
    limits (provider-apis.md §4).
    """
    event = delivery.event
    emoji = _EMOJI.get(event.type, ":information_source:")
    subject = " · ".join(p for p in (event.project, event.session_id) if p)
    title = f"{emoji} {event.type}" + (f" — {subject}" if subject else "")
    detail = _detail(event.data)
    text = title + (f": {detail}" if detail else "")
    if delivery.suppressed_count:
        text += f" (+{delivery.suppressed_count} similar suppressed)"
    fields: list[JSONValue] = []
    for label, value in (("Project", event.project), ("Session", event.session_id), ("Node", event.node_id)):
        if value:
            fields.append({"type": "mrkdwn", "text": _clip(f"*{label}*\n{_escape(value)}", _SLACK_FIELD_MAX)})
    blocks: list[JSONValue] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(title, _SLACK_HEADER_MAX), "emoji": True}}
    ]
    if detail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(_escape(detail), _SLACK_TEXT_MAX)}})
    if fields:
        blocks.append({"type": "section", "fields": fields})
    footer = f"{event.ts}"
    if delivery.suppressed_count:
        footer += f" · {delivery.suppressed_count} similar suppressed since the last message"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(footer)}]})
    # The notification text carries agent output too: escaped so it cannot @channel anyone.
    return {"text": _clip(_escape(text), _SLACK_TEXT_MAX), "blocks": blocks}


@attrs.define
class SlackSender:
    """Posts each delivery to a Slack incoming webhook (Block Kit)."""

    name: str
    config: SlackWebhookConfig = attrs.field(repr=False)
    client: httpx.AsyncClient = attrs.field(repr=False)
    tuning: RetryTuning = attrs.Factory(RetryTuning)

    async def send(self, delivery: Delivery, route_text: str) -> Outcome:
        """POST :func:`slack_message`; retried on 5xx, 429 (``Retry-After``) and timeouts.

        Returns:
            ``delivered`` when Slack answers 200 ``ok``; else ``failed``.

        Cancellation: safe at any await.
        Error handling: never raises; the URL (a credential) is never logged.
        """
        del route_text  # a chat message does not show the rule
        body = orjson.dumps(slack_message(delivery))
        headers = {"Content-Type": "application/json"}

        async def attempt_once() -> _Attempt:
            return await _post(
                self.client, self.config.webhook_url, body, headers, self.tuning.slack_timeout_sec, ok=_slack_ok
            )

        return await _deliver(
            f"slack#{self.name}", attempt_once, max_attempts=self.tuning.slack_max_attempts, tuning=self.tuning
        )
