"""Rate-limit bookkeeping from headers and 429s (provider-apis.md §3.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from halswarm.channels.discord.messages import Message
from halswarm.channels.discord.ratelimit import RateLimiter, RetryAdvice
from halswarm.channels.discord.rest import Route, create_message, edit_original

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

CHANNEL_A = create_message("1", Message(content="x")).route
CHANNEL_B = create_message("2", Message(content="x")).route
EDIT_A = Route("PATCH", "/channels/{channel_id}/messages/{message_id}", "channels/1")
WEBHOOK = edit_original("456", "tok", Message(content="x")).route


def headers(remaining: int, reset_after: float, bucket: str = "abcd") -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": "1787400000.5",
        "X-RateLimit-Reset-After": str(reset_after),
        "X-RateLimit-Bucket": bucket,
    }


def test_nothing_known_means_no_wait() -> None:
    assert RateLimiter().delay(CHANNEL_A, 0.0) == 0.0


def test_an_exhausted_bucket_waits_until_reset_after() -> None:
    limiter = RateLimiter()
    assert limiter.update(CHANNEL_A, 200, headers(0, 2.5), None, now=10.0) == RetryAdvice(retry=False)
    assert limiter.delay(CHANNEL_A, 10.0) == pytest.approx(2.5)
    assert limiter.delay(CHANNEL_A, 11.0) == pytest.approx(1.5)
    assert limiter.delay(CHANNEL_A, 12.5) == 0.0


def test_remaining_requests_are_counted_down_locally() -> None:
    limiter = RateLimiter()
    limiter.update(CHANNEL_A, 200, headers(2, 4.0), None, now=0.0)
    limiter.sent(CHANNEL_A, 0.1)
    assert limiter.delay(CHANNEL_A, 0.1) == 0.0
    limiter.sent(CHANNEL_A, 0.2)
    assert limiter.delay(CHANNEL_A, 0.2) == pytest.approx(3.8)  # both used: wait for the refill
    limiter.sent(CHANNEL_A, 4.5)  # after the reset: unknown again, not negative
    assert limiter.delay(CHANNEL_A, 4.5) == 0.0


def test_limits_are_per_major_resource() -> None:
    limiter = RateLimiter()
    limiter.update(CHANNEL_A, 200, headers(0, 3.0), None, now=0.0)
    assert limiter.delay(CHANNEL_A, 0.0) == pytest.approx(3.0)
    assert limiter.delay(CHANNEL_B, 0.0) == 0.0


def test_routes_sharing_a_bucket_share_its_limit_per_major() -> None:
    limiter = RateLimiter()
    limiter.update(CHANNEL_A, 200, headers(3, 1.0, bucket="shared"), None, now=0.0)
    limiter.update(EDIT_A, 200, headers(0, 2.0, bucket="shared"), None, now=0.0)
    assert limiter.delay(CHANNEL_A, 0.0) == pytest.approx(2.0)


def test_header_names_are_case_insensitive() -> None:
    limiter = RateLimiter()
    limiter.update(CHANNEL_A, 200, {k.lower(): v for k, v in headers(0, 1.0).items()}, None, now=0.0)
    assert limiter.delay(CHANNEL_A, 0.0) == pytest.approx(1.0)


def test_a_429_honours_retry_after_from_the_body() -> None:
    limiter = RateLimiter()
    body: JSONObject = {"message": "You are being rate limited.", "retry_after": 0.75, "global": False}
    advice = limiter.update(CHANNEL_A, 429, {"Retry-After": "1", "X-RateLimit-Scope": "user"}, body, now=5.0)
    assert advice == RetryAdvice(retry=True, after=0.75, is_global=False, scope="user")
    assert limiter.delay(CHANNEL_A, 5.0) == pytest.approx(0.75)
    assert limiter.delay(CHANNEL_B, 5.0) == 0.0  # only that bucket
    assert limiter.delay(CHANNEL_A, 5.75) == 0.0


def test_a_429_without_a_body_falls_back_to_the_header() -> None:
    advice = RateLimiter().update(CHANNEL_A, 429, {"Retry-After": "3"}, None, now=0.0)
    assert advice.after == 3.0
    assert advice.retry


def test_a_429_that_says_nothing_waits_a_second() -> None:
    assert RateLimiter().update(CHANNEL_A, 429, {}, {"message": "?"}, now=0.0).after == 1.0


@pytest.mark.parametrize("bad", [-1, float("inf"), "soon", True])
def test_nonsense_retry_after_values_are_ignored(bad: JSONValue) -> None:
    body: JSONObject = {"retry_after": bad}
    advice = RateLimiter().update(CHANNEL_A, 429, {"Retry-After": "2"}, body, now=0.0)
    assert advice.after == 2.0


def test_a_global_429_stops_every_bot_request_but_not_interaction_routes() -> None:
    limiter = RateLimiter()
    body: JSONObject = {"message": "You are being rate limited.", "retry_after": 1.5, "global": True}
    advice = limiter.update(
        CHANNEL_A, 429, {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}, body, now=0.0
    )
    assert advice == RetryAdvice(retry=True, after=1.5, is_global=True, scope="global")
    assert limiter.delay(CHANNEL_B, 0.0) == pytest.approx(1.5)
    assert limiter.delay(EDIT_A, 1.0) == pytest.approx(0.5)
    assert limiter.delay(WEBHOOK, 0.0) == 0.0  # interaction follow-ups are exempt


def test_the_global_flag_from_the_header_alone() -> None:
    limiter = RateLimiter()
    advice = limiter.update(CHANNEL_A, 429, {"X-RateLimit-Global": "true", "Retry-After": "2"}, None, now=0.0)
    assert advice.is_global
    assert limiter.delay(CHANNEL_B, 0.0) == pytest.approx(2.0)


def test_we_pace_ourselves_under_50_requests_a_second() -> None:
    limiter = RateLimiter()
    for i in range(50):
        assert limiter.delay(CHANNEL_A, i * 0.01) == 0.0
        limiter.sent(CHANNEL_A, i * 0.01)
    assert limiter.delay(CHANNEL_B, 0.5) == pytest.approx(0.5)  # the first left at 0.0
    assert limiter.delay(WEBHOOK, 0.5) == 0.0
    assert limiter.delay(CHANNEL_B, 1.0) == 0.0


def test_invalid_requests_are_counted_over_ten_minutes_without_shared_429s() -> None:
    limiter = RateLimiter()
    limiter.update(CHANNEL_A, 401, {}, None, now=0.0)
    limiter.update(CHANNEL_A, 403, {}, None, now=1.0)
    limiter.update(CHANNEL_A, 429, {"X-RateLimit-Scope": "user"}, None, now=2.0)
    limiter.update(CHANNEL_A, 429, {"X-RateLimit-Scope": "shared"}, None, now=3.0)
    limiter.update(CHANNEL_A, 200, {}, None, now=4.0)
    assert limiter.invalid_requests(5.0) == 3
    assert limiter.invalid_requests(600.5) == 2
    assert limiter.invalid_requests(700.0) == 0


def test_memory_stays_bounded_with_one_major_per_interaction_token() -> None:
    limiter = RateLimiter(max_entries=100)
    for i in range(1000):
        route = edit_original("456", f"token{i}", Message(content="x")).route
        limiter.update(route, 200, headers(4, 5.0, bucket="webhook"), None, now=float(i))
    assert limiter.tracked_buckets <= 100
