"""OpenAISource against the fake OpenAI organisation API (docs: provider-apis.md §2)."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import httpx
import pytest
import trio

from halswarm.cost.model import CostBucket, ProviderError
from halswarm.cost.providers import OpenAISource
from halswarm.cost.providers.openai import COSTS_PATH, USAGE_PATH, line_item_model
from tests.cost.fake_providers import (
    MOCK_OPENAI_URL,
    OPENAI_KEY,
    OPENAI_MODELS,
    OPENAI_PROJECTS,
    Charge,
    Dataset,
    FakeOpenAI,
    Usage,
    mock_transport,
    open_fake_openai,
)

START = dt.date(2026, 8, 1)
GPT, MINI = OPENAI_MODELS
NAMES = {"proj_alpha": "alpha"}
# The fake's paths include the /v1 of the base URL.
FAKE_USAGE, FAKE_COSTS = "/v1" + USAGE_PATH, "/v1" + COSTS_PATH


def _source(fake: FakeOpenAI) -> OpenAISource:
    return OpenAISource(api_key=OPENAI_KEY, base_url=MOCK_OPENAI_URL, projects=NAMES, transport=mock_transport(fake))


def _seeded(days: int = 10) -> Dataset:
    return Dataset.seeded(start=START, days=days, models=OPENAI_MODELS, scopes=OPENAI_PROJECTS, seed=3, empty_days=(4,))


async def test_multi_page_multi_day_buckets_and_totals_are_exact() -> None:
    data = _seeded()
    fake = FakeOpenAI(data)
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=10))

    # The documented line items ("input_tokens") name no model: cost lands in model "".
    assert buckets == data.expected_buckets("openai", NAMES, cost_by_model=False)
    assert sum((b.cost_usd for b in buckets), Decimal(0)) == data.total_usd()
    assert fake.count(FAKE_USAGE) == 5
    assert fake.count(FAKE_COSTS) == 5
    assert {b.project for b in buckets} == {"alpha", "proj_beta", ""}
    assert all(b.provider == "openai" and b.source == "provider" for b in buckets)


async def test_model_prefixed_line_items_attribute_cost_to_known_models_only() -> None:
    data = _seeded(days=6)
    fake = FakeOpenAI(data, line_items="model_prefixed")
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=6))
    # Token costs go to their model; the charges ("gpt-image-1, image generation": no
    # usage row has that model) stay under "".
    assert buckets == data.expected_buckets("openai", NAMES, cost_by_model=True)
    assert data.charges  # the seed has some, so the "" rows are exercised


def test_line_item_model_rule() -> None:
    models = frozenset({GPT, MINI})
    assert line_item_model("gpt-4.1, input", models) == GPT
    assert line_item_model("gpt-4.1-mini, cached input", models) == MINI
    assert line_item_model("input_tokens", models) == ""
    assert line_item_model("ft-gpt-4.1-custom, output", models) == ""
    assert line_item_model(None, models) == ""


async def test_real_sockets_give_the_same_buckets() -> None:
    data = _seeded(days=6)
    with trio.fail_after(30):
        async with open_fake_openai(data) as server:
            source = OpenAISource(api_key=OPENAI_KEY, base_url=server.base_url, projects=NAMES)
            buckets = await source.fetch(START, START + dt.timedelta(days=6))
    assert buckets == data.expected_buckets("openai", NAMES, cost_by_model=False)
    assert server.fake.statuses == [200] * 6


async def test_requests_follow_the_documented_query_and_headers() -> None:
    fake = FakeOpenAI(_seeded())
    with trio.fail_after(30):
        await _source(fake).fetch(START + dt.timedelta(days=1), START + dt.timedelta(days=4))

    usage = fake.requests[0]
    costs = next(r for r in fake.requests if r.path == FAKE_COSTS)
    assert usage.params("start_time") == [str(int(dt.datetime(2026, 8, 2, tzinfo=dt.UTC).timestamp()))]
    assert usage.params("end_time") == [str(int(dt.datetime(2026, 8, 5, tzinfo=dt.UTC).timestamp()))]
    assert usage.params("bucket_width") == ["1d"]
    assert usage.params("group_by[]") == ["model", "project_id"]
    assert costs.params("group_by[]") == ["project_id", "line_item"]
    assert usage.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert usage.headers["user-agent"].startswith("halswarm/")


async def test_input_tokens_include_cached_ones_and_are_split() -> None:
    # Served as input_tokens=1000 (incl. 400 cached and 100 cache writes), uncached 500.
    usage = Usage(START, GPT, "proj_alpha", input=500, output=50, cache_read=400, cache_write_5m=100)
    with trio.fail_after(30):
        buckets = await _source(FakeOpenAI(Dataset(usage=(usage,)))).fetch(START, START + dt.timedelta(days=1))
    [bucket] = [b for b in buckets if b.model == GPT]
    assert (bucket.input_tokens, bucket.cache_read_tokens, bucket.cache_write_tokens, bucket.output_tokens) == (
        500,
        400,
        100,
        50,
    )


async def test_without_the_newer_fields_uncached_input_is_input_minus_cached() -> None:
    data = _seeded(days=4)
    fake = FakeOpenAI(data, legacy_usage_fields=True)
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=4))
    assert buckets == data.expected_buckets("openai", NAMES, cost_by_model=False, cache_write_reported=False)


async def test_uncached_input_is_derived_when_only_cache_writes_are_reported() -> None:
    # §2.1: input_uncached_tokens absent -> input_tokens - input_cached_tokens - input_cache_write_tokens.
    row = {"input_tokens": 1000, "input_cached_tokens": 400, "input_cache_write_tokens": 100, "output_tokens": 7}
    bucket = {"start_time": int(dt.datetime(2026, 8, 1, tzinfo=dt.UTC).timestamp()), "results": [row | {"model": GPT}]}

    def handler(request: httpx.Request) -> httpx.Response:
        data = [bucket] if request.url.path.endswith(USAGE_PATH) else []
        return httpx.Response(200, json={"object": "page", "data": data, "has_more": False, "next_page": None})

    source = OpenAISource(api_key=OPENAI_KEY, base_url=MOCK_OPENAI_URL, transport=httpx.MockTransport(handler))
    with trio.fail_after(30):
        [result] = await source.fetch(START, START + dt.timedelta(days=1))
    assert (result.input_tokens, result.cache_read_tokens, result.cache_write_tokens) == (500, 400, 100)


async def test_dollar_numbers_become_exact_decimals() -> None:
    # 123,457 input tokens at $2/M = $0.246914; a charge of $1.005 outside any project.
    usage = Usage(START, GPT, "proj_beta", input=123_457, output=0)
    charge = Charge(START, None, Decimal("1.005"))
    fake = FakeOpenAI(Dataset(usage=(usage,), charges=(charge,)))
    with trio.fail_after(30):
        buckets = await _source(fake).fetch(START, START + dt.timedelta(days=1))
    assert buckets == [
        CostBucket(START, "openai", "", "", "provider", cost_usd=Decimal("1.005")),
        CostBucket(START, "openai", "", "proj_beta", "provider", cost_usd=Decimal("0.246914")),
        CostBucket(START, "openai", GPT, "proj_beta", "provider", input_tokens=123_457),
    ]
    assert all(isinstance(b.cost_usd, Decimal) for b in buckets)


async def test_days_without_usage_yield_no_buckets() -> None:
    fake = FakeOpenAI(Dataset(), today=START + dt.timedelta(days=3))
    with trio.fail_after(30):
        assert await _source(fake).fetch(START, START + dt.timedelta(days=3)) == []
    assert fake.count() == 4  # two pages of empty buckets per report


async def test_wrong_key_fails_at_once_without_the_key_even_when_the_provider_quotes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-admin-wrong-key-fffffffffffffffff"
    fake = FakeOpenAI(_seeded())
    source = OpenAISource(api_key=wrong, base_url=MOCK_OPENAI_URL, transport=mock_transport(fake))
    with trio.fail_after(30), pytest.raises(ProviderError) as raised:
        await source.fetch(START, START + dt.timedelta(days=2))

    message = str(raised.value)
    assert "authentication failed" in message
    assert "openai" in message
    assert USAGE_PATH in message
    assert "401" in message
    assert "Incorrect API key provided" in message
    assert wrong not in message
    assert wrong not in caplog.text
    assert all(wrong not in repr(record.__dict__) for record in caplog.records)
    assert fake.count() == 1


def test_the_key_is_not_in_the_repr() -> None:
    assert OPENAI_KEY not in repr(OpenAISource(api_key=OPENAI_KEY))
