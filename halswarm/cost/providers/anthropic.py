"""Anthropic Admin API: daily usage and cost reports as :class:`CostBucket` s.

``docs: provider-apis.md`` §1. Two reports, one page loop each:

- ``GET /v1/organizations/usage_report/messages`` grouped by ``model`` and
  ``workspace_id``: uncached input, cache reads, cache writes (the *sum* of the
  ``cache_creation`` object, pitfall 1) and output tokens;
- ``GET /v1/organizations/cost_report`` grouped by ``workspace_id`` and ``description``:
  ``amount`` is a decimal string in **cents** (pitfall 2). Grouping by description is
  what fills each row's ``model``; rows that name no model (code execution, some tool
  use) go to model ``""`` of their day and project.

The documentation states no maximum range per request (only 31 daily buckets per page),
so a long range is one query followed page by page.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs
import httpx

from halswarm.cost.providers._http import RetryPolicy, fetch_reports, log_fetched
from halswarm.cost.providers._merge import BucketMerger, Reader, daily_window, project_name
from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    import datetime as dt

    from halswarm.config.supervisor import AnthropicProvider, CostConfig
    from halswarm.cost.model import CostBucket
    from halswarm.jsontypes import JSONObject

__all__ = ["ANTHROPIC_VERSION", "COST_PATH", "USAGE_PATH", "AnthropicSource"]

USAGE_PATH: Final = "/v1/organizations/usage_report/messages"
COST_PATH: Final = "/v1/organizations/cost_report"
#: The API version header value the admin endpoints are documented with.
ANTHROPIC_VERSION: Final = "2023-06-01"
DEFAULT_BASE_URL: Final = "https://api.anthropic.com"
#: Documented maximum of ``limit`` for daily buckets (both reports).
MAX_DAILY_BUCKETS: Final = 31
# A page holds at least one bucket, so a correct answer needs at most one page per day;
# the slack covers a trailing empty page without letting a broken token loop run on.
_PAGE_SLACK: Final = 5


def _rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class AnthropicSource:
    """The Anthropic organisation's usage and cost, read with an Admin API key.

    Satisfies :class:`~halswarm.cost.model.CostSource`. Build it from the config with
    :meth:`from_config`; tests may pass ``transport`` (``httpx.MockTransport``).
    """

    #: An Admin key (``sk-ant-admin01-…``); kept out of ``repr`` and every message.
    api_key: str = attrs.field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    #: Workspace id -> halswarm project; unmapped ids stay as they are.
    workspaces: Mapping[str, str] = attrs.Factory(dict)
    retry: RetryPolicy = attrs.Factory(RetryPolicy)
    transport: httpx.AsyncBaseTransport | None = attrs.field(default=None, repr=False)
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    name: str = attrs.field(default="anthropic", init=False)

    @classmethod
    def from_config(cls, provider: AnthropicProvider, cost: CostConfig) -> AnthropicSource:
        """The source described by ``cost.providers.anthropic`` and the shared cost settings."""
        return cls(
            api_key=provider.admin_api_key,
            base_url=provider.base_url,
            workspaces=dict(provider.workspaces),
            retry=RetryPolicy(max_attempts=cost.max_attempts, timeout=cost.request_timeout_sec),
        )

    async def fetch(self, start: dt.date, end: dt.date) -> list[CostBucket]:
        """Every bucket of UTC days ``start <= day < end``, tokens and cost merged.

        Returns:
            One ``source="provider"`` bucket per (day, model, project) with any usage or
            cost, sorted; days without usage yield nothing.

        Raises:
            ProviderError: a report could not be read (after retries), authentication
                failed, or an answer was malformed. The message never holds the key.

        Cancellation: safe at any await; nothing is kept between calls.
        """
        if end <= start:
            return []
        since, until = daily_window(start, end)
        common = [
            ("starting_at", _rfc3339(since)),
            ("ending_at", _rfc3339(until)),
            ("bucket_width", "1d"),
            ("limit", str(MAX_DAILY_BUCKETS)),
        ]
        usage, costs = await fetch_reports(
            self.name,
            [
                (USAGE_PATH, [*common, ("group_by[]", "model"), ("group_by[]", "workspace_id")]),
                (COST_PATH, [*common, ("group_by[]", "workspace_id"), ("group_by[]", "description")]),
            ],
            base_url=self.base_url,
            headers={"x-api-key": self.api_key, "anthropic-version": ANTHROPIC_VERSION},
            secret=self.api_key,
            policy=self.retry,
            rng=self.rng,
            transport=self.transport,
            max_pages=(end - start).days + _PAGE_SLACK,
        )
        merger = BucketMerger(self.name)
        self._merge_usage(merger, usage.buckets, start, end)
        self._merge_costs(merger, costs.buckets, start, end)
        buckets = merger.buckets()
        log_fetched(self.name, start, end, usage.pages + costs.pages, len(buckets))
        return buckets

    def _day(self, reader: Reader, bucket: JSONObject, start: dt.date, end: dt.date) -> dt.date | None:
        """The bucket's UTC day, or None when it lies outside the asked range."""
        text = reader.text(bucket, "starting_at")
        if text is None:
            raise reader.error("a bucket has no starting_at")
        try:
            day = parse_ts(text).date()
        except ValueError:
            raise reader.error(f"starting_at {text!r} is not an RFC 3339 time") from None
        return day if start <= day < end else None

    def _merge_usage(self, merger: BucketMerger, buckets: list[JSONObject], start: dt.date, end: dt.date) -> None:
        reader = Reader(self.name, USAGE_PATH)
        for bucket in buckets:
            day = self._day(reader, bucket, start, end)
            if day is None:
                continue
            for row in reader.results(bucket):
                # Pitfall 1: cache writes exist only inside cache_creation, one counter per
                # cache lifetime (5m, 1h); summing every *_input_tokens keeps future
                # lifetimes counted too.
                creation = reader.obj(row, "cache_creation")
                cache_write = sum(reader.tokens(creation, k) for k in sorted(creation) if k.endswith("_input_tokens"))
                key = (
                    day,
                    reader.text(row, "model") or "",
                    project_name(reader.text(row, "workspace_id"), self.workspaces),
                )
                merger.add_tokens(
                    key,
                    input_tokens=reader.tokens(row, "uncached_input_tokens"),
                    output_tokens=reader.tokens(row, "output_tokens"),
                    cache_read_tokens=reader.tokens(row, "cache_read_input_tokens"),
                    cache_write_tokens=cache_write,
                )

    def _merge_costs(self, merger: BucketMerger, buckets: list[JSONObject], start: dt.date, end: dt.date) -> None:
        reader = Reader(self.name, COST_PATH)
        for bucket in buckets:
            day = self._day(reader, bucket, start, end)
            if day is None:
                continue
            for row in reader.results(bucket):
                currency = reader.text(row, "currency")
                if currency is not None and currency.upper() != "USD":
                    raise reader.error(f"cost in {currency!r}; only USD is documented")
                # Pitfall 2: a decimal string in cents; scaleb keeps every digit exact.
                usd = reader.usd(row.get("amount"), "amount", cents=True)
                key = (
                    day,
                    reader.text(row, "model") or "",
                    project_name(reader.text(row, "workspace_id"), self.workspaces),
                )
                merger.add_cost(key, usd)
