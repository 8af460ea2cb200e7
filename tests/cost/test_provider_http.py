"""Retries, deadlines, rate limits, errors and page bounds of the provider clients.

Timing tests run on trio's MockClock (autojump) through ``httpx.MockTransport``; the
real-socket tests use the loopback fakes and real time, with short deadlines.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
from decimal import Decimal

import httpx
import orjson
import pytest
import trio
import trio.testing

from halswarm.cost.model import ProviderError
from halswarm.cost.providers import AnthropicSource, OpenAISource, RetryPolicy
from halswarm.cost.providers.anthropic import COST_PATH, USAGE_PATH
from tests.cost.fake_providers import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODELS,
    ANTHROPIC_WORKSPACES,
    MOCK_ANTHROPIC_URL,
    MOCK_OPENAI_URL,
    OPENAI_KEY,
    OPENAI_MODELS,
    OPENAI_PROJECTS,
    Dataset,
    FakeAnthropic,
    FakeOpenAI,
    mock_transport,
    open_fake_anthropic,
)

START = dt.date(2026, 8, 1)
DAYS = 4
END = START + dt.timedelta(days=DAYS)
ONE = dt.timedelta(days=1)
# 4 days at 2 buckets per page: 2 pages per report, 4 requests per clean fetch.
CLEAN_REQUESTS = 4
POLICY = RetryPolicy(max_attempts=4, timeout=10.0, backoff_initial=1.0, backoff_max=30.0)


class MaxJitter(random.Random):
    """Jitter that always picks the longest delay, so virtual times are exact."""

    def uniform(self, a: float, b: float) -> float:
        """The upper bound."""
        return b


def _data() -> Dataset:
    return Dataset.seeded(start=START, days=DAYS, models=ANTHROPIC_MODELS, scopes=ANTHROPIC_WORKSPACES, seed=11)


def _source(transport: httpx.AsyncBaseTransport, policy: RetryPolicy = POLICY) -> AnthropicSource:
    return AnthropicSource(
        api_key=ANTHROPIC_KEY, base_url=MOCK_ANTHROPIC_URL, retry=policy, transport=transport, rng=MaxJitter()
    )


def _unix(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


async def _timed_fetch(source: AnthropicSource | OpenAISource) -> tuple[float, list[object]]:
    start = trio.current_time()
    with trio.fail_after(3600):
        buckets = await source.fetch(START, END)
    return trio.current_time() - start, list(buckets)


async def test_server_errors_are_retried_with_exponential_backoff(autojump_clock: trio.testing.MockClock) -> None:
    data = _data()
    fake = FakeAnthropic(data)
    fake.fail_next(2)  # a 500, then a 500
    elapsed, buckets = await _timed_fetch(_source(mock_transport(fake)))
    assert buckets == data.expected_buckets("anthropic")
    assert fake.count() == CLEAN_REQUESTS + 2
    assert elapsed == 1.0 + 2.0


async def test_529_overloaded_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    data = _data()
    fake = FakeAnthropic(data)
    fake.fail_next(1, status=529)
    _, buckets = await _timed_fetch(_source(mock_transport(fake)))
    assert buckets == data.expected_buckets("anthropic")


async def test_backoff_jitter_stays_within_half_to_full_delay(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.fail_next(3)
    source = AnthropicSource(
        api_key=ANTHROPIC_KEY,
        base_url=MOCK_ANTHROPIC_URL,
        retry=POLICY,
        transport=mock_transport(fake),
        rng=random.Random(4),
    )
    elapsed, _ = await _timed_fetch(source)
    assert (0.5 + 1.0 + 2.0) <= elapsed <= (1.0 + 2.0 + 4.0)
    assert elapsed != 7.0  # the jitter did something


async def test_persistent_server_errors_give_up_after_max_attempts(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.fail_next(100)
    start = trio.current_time()
    with trio.fail_after(3600), pytest.raises(ProviderError) as raised:
        await _source(mock_transport(fake)).fetch(START, END)
    message = str(raised.value)
    assert "anthropic" in message
    assert USAGE_PATH in message
    assert "gave up after 4 attempts" in message
    assert "HTTP 500" in message
    assert "(request-id req_fake" in message
    assert fake.count() == 4
    assert trio.current_time() - start == 1.0 + 2.0 + 4.0


async def test_rate_limit_waits_for_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    data = _data()
    fake = FakeAnthropic(data)
    fake.rate_limit_next(7)
    elapsed, buckets = await _timed_fetch(_source(mock_transport(fake)))
    assert buckets == data.expected_buckets("anthropic")
    assert elapsed >= 7.0
    assert elapsed == 7.0  # exactly the provider's wait: not the 1 s backoff
    assert fake.statuses[0] == 429


async def test_openai_rate_limit_waits_for_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    data = Dataset.seeded(start=START, days=DAYS, models=OPENAI_MODELS, scopes=OPENAI_PROJECTS)
    fake = FakeOpenAI(data)
    fake.rate_limit_next(12.5)
    source = OpenAISource(api_key=OPENAI_KEY, base_url=MOCK_OPENAI_URL, retry=POLICY, transport=mock_transport(fake))
    elapsed, buckets = await _timed_fetch(source)
    assert buckets == data.expected_buckets("openai", cost_by_model=False)
    assert elapsed == 12.5


async def test_rate_limit_without_retry_after_backs_off(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.rate_limit_next(None, n=2)
    elapsed, _ = await _timed_fetch(_source(mock_transport(fake)))
    assert elapsed == 1.0 + 2.0


async def test_rate_limit_asking_too_long_a_wait_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.rate_limit_next(3600)
    start = trio.current_time()
    with trio.fail_after(3600), pytest.raises(ProviderError, match="wait 3600 s"):
        await _source(mock_transport(fake)).fetch(START, END)
    assert trio.current_time() - start == 0.0
    assert fake.count() == 1


async def test_rate_limits_count_as_attempts(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.rate_limit_next(5, n=10)
    with trio.fail_after(3600), pytest.raises(ProviderError, match=r"gave up after 4 attempts.*429"):
        await _source(mock_transport(fake)).fetch(START, END)
    assert fake.count() == 4


async def test_a_request_without_answer_times_out_and_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    data = _data()
    fake = FakeAnthropic(data)
    fake.hang_next(1)
    elapsed, buckets = await _timed_fetch(_source(mock_transport(fake)))
    assert buckets == data.expected_buckets("anthropic")
    assert elapsed == 10.0 + 1.0  # the request deadline, then the first backoff
    assert fake.count() == CLEAN_REQUESTS + 1


async def test_persistent_timeouts_give_up(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.hang_next(10)
    with trio.fail_after(3600), pytest.raises(ProviderError, match="no answer within 10 s"):
        await _source(mock_transport(fake)).fetch(START, END)
    assert fake.count() == 4


async def test_transport_errors_are_retried(autojump_clock: trio.testing.MockClock) -> None:
    data = _data()
    fake = FakeAnthropic(data)
    inner = mock_transport(fake)
    failures = [httpx.ConnectError("connection refused"), httpx.ReadError("connection reset")]

    async def flaky(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return await inner.handle_async_request(request)

    elapsed, buckets = await _timed_fetch(_source(httpx.MockTransport(flaky)))
    assert buckets == data.expected_buckets("anthropic")
    assert elapsed == 1.0 + 2.0


@pytest.mark.parametrize(
    ("status", "words"),
    [(400, "request rejected"), (403, "permission denied"), (404, "request rejected")],
)
async def test_client_errors_fail_at_once_with_the_providers_message(
    autojump_clock: trio.testing.MockClock, status: int, words: str
) -> None:
    fake = FakeAnthropic(_data())
    fake.fail_next(1, status=status)
    with trio.fail_after(3600), pytest.raises(ProviderError) as raised:
        await _source(mock_transport(fake)).fetch(START, END)
    message = str(raised.value)
    assert f"anthropic: GET {USAGE_PATH}: HTTP {status} {words}" in message
    assert "injected failure" in message  # the provider's own message
    assert "request-id req_fake" in message
    assert fake.count() == 1


async def test_a_non_json_answer_is_a_clear_error(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeAnthropic(_data())
    fake.garbage_next()
    with trio.fail_after(3600), pytest.raises(ProviderError, match="expected a JSON body, got text/html"):
        await _source(mock_transport(fake)).fetch(START, END)
    assert fake.count() == 1


async def test_a_client_query_bug_shows_as_a_400() -> None:
    # The fake is strict: the documented array form is group_by[], not group_by.
    fake = FakeAnthropic(_data())
    transport = mock_transport(fake)
    with trio.fail_after(30):
        async with httpx.AsyncClient(transport=transport, base_url=MOCK_ANTHROPIC_URL) as client:
            headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
            query = {"starting_at": "2026-08-01T00:00:00Z", "group_by": "model"}
            answer = await client.get(USAGE_PATH, params=query, headers=headers)
            unix_time = await client.get(USAGE_PATH, params={"starting_at": "1785542400"}, headers=headers)
            too_many = await client.get(
                COST_PATH, params={"starting_at": "2026-08-01T00:00:00Z", "limit": "32"}, headers=headers
            )
    assert answer.status_code == 400
    assert orjson.loads(answer.content)["error"]["type"] == "invalid_request_error"
    assert "group_by[]" in orjson.loads(answer.content)["error"]["message"]
    assert unix_time.status_code == 400
    assert too_many.status_code == 400


def _endless(repeat_token: bool) -> httpx.MockTransport:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        token = "page_same" if repeat_token else f"page_{count}"
        body = {"data": [], "has_more": True, "next_page": token}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


async def test_pagination_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(3600), pytest.raises(ProviderError, match=r"more than \d+ pages"):
        await _source(_endless(repeat_token=False)).fetch(START, END)


async def test_a_repeated_page_token_stops_the_loop(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(3600), pytest.raises(ProviderError, match="repeats an earlier page token"):
        await _source(_endless(repeat_token=True)).fetch(START, END)


async def test_malformed_answers_are_provider_errors(autojump_clock: trio.testing.MockClock) -> None:
    bucket = {"starting_at": "2026-08-01T00:00:00Z", "results": [{"model": "m", "uncached_input_tokens": "12"}]}
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"data": [bucket], "has_more": False}))
    with trio.fail_after(3600), pytest.raises(ProviderError, match="uncached_input_tokens is '12'"):
        await _source(transport).fetch(START, END)


async def test_buckets_outside_the_asked_days_are_ignored(autojump_clock: trio.testing.MockClock) -> None:
    # A provider that answers more than asked (a bucket before start, one at end) must
    # not make the caller overwrite days it did not ask for.
    def anthropic(request: httpx.Request) -> httpx.Response:
        row = {"model": "m", "uncached_input_tokens": 5, "amount": "100", "currency": "USD"}
        data = [{"starting_at": f"{day.isoformat()}T00:00:00Z", "results": [row]} for day in (START, END, END - ONE)]
        return httpx.Response(200, json={"data": data, "has_more": False, "next_page": None})

    def openai(request: httpx.Request) -> httpx.Response:
        row = {"model": "m", "input_tokens": 5, "amount": {"value": 1, "currency": "usd"}}
        data = [{"start_time": _unix(day), "results": [row]} for day in (START - ONE, END, START)]
        return httpx.Response(200, json={"object": "page", "data": data, "has_more": False, "next_page": None})

    with trio.fail_after(3600):
        a = await _source(httpx.MockTransport(anthropic)).fetch(START + ONE, END)
        o = await OpenAISource(
            api_key=OPENAI_KEY, base_url=MOCK_OPENAI_URL, transport=httpx.MockTransport(openai)
        ).fetch(START, END)
    assert [(b.day, b.input_tokens, b.cost_usd) for b in a] == [(END - ONE, 5, Decimal(1))]
    assert [(b.day, b.model) for b in o] == [(START, ""), (START, "m")]


async def test_logs_one_info_line_per_fetch_and_a_warning_per_retry(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="halswarm.cost.providers")
    data = _data()
    fake = FakeAnthropic(data)
    fake.fail_next(1)
    fake.rate_limit_next(3)
    await _timed_fetch(_source(mock_transport(fake)))

    ours = [r for r in caplog.records if r.name == "halswarm.cost.providers"]
    warnings = [r for r in ours if r.levelno == logging.WARNING]
    infos = [r for r in ours if r.levelno == logging.INFO]
    assert [w.ctx["attempt"] for w in warnings] == [1, 2]  # type: ignore[attr-defined]
    assert [w.ctx["delay_s"] for w in warnings] == [1.0, 3]  # type: ignore[attr-defined]
    assert "429" in warnings[1].ctx["reason"]  # type: ignore[attr-defined]
    assert all(w.ctx["request_id"].startswith("req_fake") for w in warnings)  # type: ignore[attr-defined]
    [info] = infos
    assert info.ctx == {  # type: ignore[attr-defined]
        "provider": "anthropic",
        "start": "2026-08-01",
        "end": "2026-08-05",
        "days": DAYS,
        "pages": 4,
        "buckets": len(data.expected_buckets("anthropic")),
    }


# ---- real sockets (no autojump: real time, short deadlines) ---------------------------------


async def test_real_socket_timeout_is_retried() -> None:
    data = _data()
    policy = RetryPolicy(max_attempts=3, timeout=0.5, backoff_initial=0.05)
    with trio.fail_after(30):
        async with open_fake_anthropic(data) as server:
            server.fake.hang_next(1)
            source = AnthropicSource(api_key=ANTHROPIC_KEY, base_url=server.base_url, retry=policy)
            start = trio.current_time()
            buckets = await source.fetch(START, END)
            elapsed = trio.current_time() - start
    assert buckets == data.expected_buckets("anthropic")
    assert elapsed >= 0.5
    assert server.fake.count() == CLEAN_REQUESTS + 1


async def test_real_socket_server_errors_and_rate_limits_are_retried() -> None:
    data = _data()
    policy = RetryPolicy(max_attempts=4, timeout=5.0, backoff_initial=0.05)
    with trio.fail_after(30):
        async with open_fake_anthropic(data) as server:
            server.fake.fail_next(1)
            server.fake.rate_limit_next(0.2)
            source = AnthropicSource(api_key=ANTHROPIC_KEY, base_url=server.base_url, retry=policy)
            buckets = await source.fetch(START, END)
    assert buckets == data.expected_buckets("anthropic")
    assert server.fake.statuses[:3] == [500, 429, 200]


async def test_nothing_listening_gives_up_with_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = RetryPolicy(max_attempts=2, timeout=5.0, backoff_initial=0.01)
    source = AnthropicSource(api_key=ANTHROPIC_KEY, base_url=f"http://127.0.0.1:{port}", retry=policy)
    with trio.fail_after(30), pytest.raises(ProviderError, match="gave up after 2 attempts; last: transport error"):
        await source.fetch(START, END)


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=5.0)
    rng = MaxJitter()
    assert [policy.backoff.delay(n, rng) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_an_invalid_base_url_is_a_provider_error() -> None:
    source = AnthropicSource(api_key=ANTHROPIC_KEY, base_url="http://[::1")
    with trio.fail_after(30), pytest.raises(ProviderError, match="invalid base_url"):
        await source.fetch(START, END)
