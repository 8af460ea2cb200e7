"""AnthropicSource against the fake Anthropic Admin API (docs: provider-apis.md §1)."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
import trio

from halswarm.config.supervisor import AnthropicProvider, CostConfig, OpenAIProvider, ProvidersConfig
from halswarm.cost.model import CostBucket, ProviderError
from halswarm.cost.providers import AnthropicSource, OpenAISource, RetryPolicy, sources_from_config
from halswarm.cost.providers.anthropic import COST_PATH, USAGE_PATH
from tests.cost.fake_providers import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODELS,
    ANTHROPIC_WORKSPACES,
    MOCK_ANTHROPIC_URL,
    OPENAI_KEY,
    OPENAI_MODELS,
    OPENAI_PROJECTS,
    Charge,
    Dataset,
    FakeAnthropic,
    Usage,
    mock_transport,
    open_fake_anthropic,
    open_fake_openai,
)

START = dt.date(2026, 8, 1)
SONNET, HAIKU = ANTHROPIC_MODELS
NAMES = {"wrkspc_01alpha": "alpha"}


def _source(fake: FakeAnthropic) -> AnthropicSource:
    return AnthropicSource(
        api_key=ANTHROPIC_KEY, base_url=MOCK_ANTHROPIC_URL, workspaces=NAMES, transport=mock_transport(fake)
    )


def _seeded(days: int = 10) -> Dataset:
    return Dataset.seeded(
        start=START, days=days, models=ANTHROPIC_MODELS, scopes=ANTHROPIC_WORKSPACES, seed=5, empty_days=(3, 7)
    )


async def test_multi_page_multi_day_buckets_and_totals_are_exact() -> None:
    data = _seeded()
    fake = FakeAnthropic(data)
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=10))

    assert buckets == data.expected_buckets("anthropic", NAMES)
    assert sum((b.cost_usd for b in buckets), Decimal(0)) == data.total_usd()
    # 10 daily buckets at 2 per page: five pages of each report.
    assert fake.count(USAGE_PATH) == 5
    assert fake.count(COST_PATH) == 5
    # Mapped, unmapped and default workspaces all keep their usage.
    assert {b.project for b in buckets} == {"alpha", "wrkspc_01beta", ""}
    assert all(b.provider == "anthropic" and b.source == "provider" for b in buckets)


async def test_real_sockets_give_the_same_buckets() -> None:
    data = _seeded(days=6)
    with trio.fail_after(30):
        async with open_fake_anthropic(data) as server:
            source = AnthropicSource(api_key=ANTHROPIC_KEY, base_url=server.base_url, workspaces=NAMES)
            buckets = await source.fetch(START, START + dt.timedelta(days=6))
    assert buckets == data.expected_buckets("anthropic", NAMES)
    assert server.fake.statuses == [200] * 6


async def test_requests_follow_the_documented_query_and_headers() -> None:
    fake = FakeAnthropic(_seeded())
    with trio.fail_after(30):
        await _source(fake).fetch(START + dt.timedelta(days=1), START + dt.timedelta(days=4))

    usage, cost = fake.requests[0], next(r for r in fake.requests if r.path == COST_PATH)
    assert usage.params("starting_at") == ["2026-08-02T00:00:00Z"]
    assert usage.params("ending_at") == ["2026-08-05T00:00:00Z"]
    assert usage.params("bucket_width") == ["1d"]
    assert usage.params("group_by[]") == ["model", "workspace_id"]
    assert cost.params("group_by[]") == ["workspace_id", "description"]
    assert usage.headers["x-api-key"] == ANTHROPIC_KEY
    assert usage.headers["anthropic-version"] == "2023-06-01"
    assert usage.headers["user-agent"].startswith("halswarm/")
    # Pages after the first repeat the query plus the provider's token.
    assert fake.requests[1].params("page")
    assert [(k, v) for k, v in fake.requests[1].query if k != "page"] == list(usage.query)


async def test_range_is_whole_utc_days_start_inclusive_end_exclusive() -> None:
    data = _seeded()
    start, end = START + dt.timedelta(days=2), START + dt.timedelta(days=5)
    with trio.fail_after(30):
        buckets = await _source(FakeAnthropic(data)).fetch(start, end)
    assert buckets == data.expected_buckets("anthropic", NAMES, start=start, end=end)
    assert {b.day for b in buckets} == {start, start + dt.timedelta(days=2)}  # day 3 is empty


async def test_cache_writes_are_the_sum_of_cache_creation_and_input_is_uncached_only() -> None:
    usage = Usage(
        START, SONNET, "wrkspc_01alpha", input=1500, output=500, cache_read=200, cache_write_5m=500, cache_write_1h=1000
    )
    with trio.fail_after(30):
        [bucket] = await _source(FakeAnthropic(Dataset(usage=(usage,)))).fetch(START, START + dt.timedelta(days=1))
    assert (bucket.input_tokens, bucket.cache_read_tokens, bucket.cache_write_tokens, bucket.output_tokens) == (
        1500,
        200,
        1500,
        500,
    )


async def test_cost_in_cents_becomes_exact_dollars_and_model_less_costs_go_to_model_blank() -> None:
    # 412,631 input tokens at $3/M = $1.237893, served as the string "123.7893" (cents).
    usage = Usage(START, SONNET, None, input=412_631, output=0)
    charge = Charge(START, "wrkspc_01alpha", Decimal("0.125"))
    fake = FakeAnthropic(Dataset(usage=(usage,), charges=(charge,)))
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=1))

    assert buckets == [
        CostBucket(START, "anthropic", "", "alpha", "provider", cost_usd=Decimal("0.125")),
        CostBucket(START, "anthropic", SONNET, "", "provider", input_tokens=412_631, cost_usd=Decimal("1.237893")),
    ]


async def test_days_without_usage_yield_no_buckets() -> None:
    fake = FakeAnthropic(Dataset(), today=START + dt.timedelta(days=4))
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=4))
    assert buckets == []
    assert fake.count() == 4  # the empty buckets were served and read, page by page


async def test_rows_of_zeros_yield_no_buckets() -> None:
    used = Usage(START, HAIKU, "wrkspc_01beta", input=10, output=1)
    zeros = Usage(START + dt.timedelta(days=1), SONNET, "wrkspc_01beta", input=0, output=0)
    fake = FakeAnthropic(Dataset(usage=(used, zeros)))
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=2))
    assert [(b.day, b.model) for b in buckets] == [(START, HAIKU)]


async def test_empty_range_asks_nothing() -> None:
    fake = FakeAnthropic(_seeded())
    assert await _source(fake).fetch(START, START) == []
    assert fake.count() == 0


async def test_wrong_key_fails_at_once_saying_authentication_failed_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-ant-admin01-wrong-key-ffffffffffffffff"
    fake = FakeAnthropic(_seeded())
    source = AnthropicSource(api_key=wrong, base_url=MOCK_ANTHROPIC_URL, transport=mock_transport(fake))
    with trio.fail_after(30), pytest.raises(ProviderError) as raised:
        await source.fetch(START, START + dt.timedelta(days=2))

    message = str(raised.value)
    assert "authentication failed" in message
    assert "anthropic" in message
    assert USAGE_PATH in message
    assert "401" in message
    assert "invalid x-api-key" in message  # the provider's own words
    assert wrong not in message
    assert wrong not in caplog.text
    assert all(wrong not in repr(record.__dict__) for record in caplog.records)
    assert fake.count() == 1  # not retried


def test_the_key_is_not_in_the_repr() -> None:
    assert ANTHROPIC_KEY not in repr(AnthropicSource(api_key=ANTHROPIC_KEY))


def _cost_config(anthropic_url: str, openai_url: str) -> CostConfig:
    return CostConfig(
        providers=ProvidersConfig(
            anthropic=AnthropicProvider(admin_api_key=ANTHROPIC_KEY, base_url=anthropic_url, workspaces=NAMES),
            openai=OpenAIProvider(org_api_key=OPENAI_KEY, base_url=openai_url, projects={"proj_alpha": "alpha"}),
        ),
        request_timeout_sec=12.0,
        max_attempts=2,
    )


def test_sources_from_config_builds_one_source_per_configured_provider() -> None:
    config = _cost_config("https://a.example", "https://o.example/v1")
    anthropic, openai = sources_from_config(config)
    assert isinstance(anthropic, AnthropicSource)
    assert isinstance(openai, OpenAISource)
    assert (anthropic.name, anthropic.api_key, anthropic.base_url) == ("anthropic", ANTHROPIC_KEY, "https://a.example")
    assert anthropic.workspaces == NAMES
    assert (openai.name, openai.api_key, openai.base_url) == ("openai", OPENAI_KEY, "https://o.example/v1")
    assert openai.projects == {"proj_alpha": "alpha"}
    assert anthropic.retry == openai.retry == RetryPolicy(max_attempts=2, timeout=12.0)
    assert sources_from_config(CostConfig()) == []
    only_openai = CostConfig(providers=ProvidersConfig(openai=config.providers.openai))
    assert [s.name for s in sources_from_config(only_openai)] == ["openai"]


async def test_configured_sources_read_the_fake_servers_and_honour_max_attempts() -> None:
    anthropic_data = _seeded(days=3)
    openai_data = Dataset.seeded(start=START, days=3, models=OPENAI_MODELS, scopes=OPENAI_PROJECTS, seed=9)
    end = START + dt.timedelta(days=3)
    with trio.fail_after(30):
        async with open_fake_anthropic(anthropic_data) as a_server, open_fake_openai(openai_data) as o_server:
            anthropic, openai = sources_from_config(_cost_config(a_server.base_url, o_server.base_url))
            assert await anthropic.fetch(START, end) == anthropic_data.expected_buckets("anthropic", NAMES)
            assert await openai.fetch(START, end) == openai_data.expected_buckets(
                "openai", {"proj_alpha": "alpha"}, cost_by_model=False
            )
            a_server.fake.fail_next(5)
            before = a_server.fake.count()
            with pytest.raises(ProviderError, match="gave up after 2 attempts"):
                await anthropic.fetch(START, end)
            assert a_server.fake.count() - before == 2
