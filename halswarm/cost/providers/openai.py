"""OpenAI organisation usage and costs as :class:`CostBucket` s.

``docs: provider-apis.md`` §2. Two reports, one page loop each:

- ``GET {base}/organization/usage/completions`` grouped by ``model`` and ``project_id``.
  ``input_tokens`` *includes* cached and cache-write tokens (pitfall 4): the uncached
  part is ``input_uncached_tokens`` when the answer has it, else
  ``input_tokens - input_cached_tokens - input_cache_write_tokens`` (§2.1);
- ``GET {base}/organization/costs`` grouped by ``project_id`` and ``line_item``:
  ``amount.value`` is a JSON number in **dollars**, read as ``Decimal(str(value))``.

Cost line items and models: the documented line item (``"input_tokens"``) names no model,
so such costs go to model ``""`` of their day and project. A line item of the form
``"<model>, <kind>"`` (e.g. ``"gpt-4.1, input"``) is attributed to ``<model>`` only when
that exact model id appears in the usage rows of the same fetch; anything else (display
names, fine-tune prefixes, tools) stays under ``""`` rather than being guessed.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs
import httpx

from halswarm.cost.providers._http import RetryPolicy, fetch_reports, log_fetched
from halswarm.cost.providers._merge import BucketMerger, Reader, daily_window, project_name

if TYPE_CHECKING:
    from halswarm.config.supervisor import CostConfig, OpenAIProvider
    from halswarm.cost.model import CostBucket
    from halswarm.jsontypes import JSONObject

__all__ = ["COSTS_PATH", "USAGE_PATH", "OpenAISource", "line_item_model"]

USAGE_PATH: Final = "/organization/usage/completions"
COSTS_PATH: Final = "/organization/costs"
DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
#: Documented maxima of ``limit``: usage with daily buckets, and costs.
MAX_USAGE_DAILY_BUCKETS: Final = 31
MAX_COST_BUCKETS: Final = 180
# See anthropic._PAGE_SLACK: at most one page per day plus a little.
_PAGE_SLACK: Final = 5


def line_item_model(line_item: str | None, models: frozenset[str]) -> str:
    """The model a cost line item belongs to, or ``""`` when it names none we know.

    Args:
        line_item: the row's ``line_item`` (null unless grouped by it).
        models: model ids seen in the usage report of the same fetch.

    Returns:
        ``<model>`` for ``"<model>, <kind>"`` when ``<model>`` is in *models*, else ``""``.
    """
    if not line_item:
        return ""
    head, sep, _ = line_item.partition(",")
    head = head.strip()
    return head if sep and head in models else ""


def _unix(moment: dt.datetime) -> str:
    return str(int(moment.timestamp()))


@attrs.define
class OpenAISource:
    """The OpenAI organisation's usage and costs, read with an Admin key.

    Satisfies :class:`~halswarm.cost.model.CostSource`. Build it from the config with
    :meth:`from_config`; tests may pass ``transport`` (``httpx.MockTransport``).
    """

    #: An organisation Admin key; kept out of ``repr`` and every message.
    api_key: str = attrs.field(repr=False)
    #: API root including ``/v1``.
    base_url: str = DEFAULT_BASE_URL
    #: Project id -> halswarm project; unmapped ids stay as they are.
    projects: Mapping[str, str] = attrs.Factory(dict)
    retry: RetryPolicy = attrs.Factory(RetryPolicy)
    transport: httpx.AsyncBaseTransport | None = attrs.field(default=None, repr=False)
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    name: str = attrs.field(default="openai", init=False)

    @classmethod
    def from_config(cls, provider: OpenAIProvider, cost: CostConfig) -> OpenAISource:
        """The source described by ``cost.providers.openai`` and the shared cost settings."""
        return cls(
            api_key=provider.org_api_key,
            base_url=provider.base_url,
            projects=dict(provider.projects),
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
        window = [("start_time", _unix(since)), ("end_time", _unix(until)), ("bucket_width", "1d")]
        usage, costs = await fetch_reports(
            self.name,
            [
                (
                    USAGE_PATH,
                    [
                        *window,
                        ("limit", str(MAX_USAGE_DAILY_BUCKETS)),
                        ("group_by[]", "model"),
                        ("group_by[]", "project_id"),
                    ],
                ),
                (
                    COSTS_PATH,
                    [
                        *window,
                        ("limit", str(MAX_COST_BUCKETS)),
                        ("group_by[]", "project_id"),
                        ("group_by[]", "line_item"),
                    ],
                ),
            ],
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self.api_key}"},
            secret=self.api_key,
            policy=self.retry,
            rng=self.rng,
            transport=self.transport,
            max_pages=(end - start).days + _PAGE_SLACK,
        )
        merger = BucketMerger(self.name)
        models = self._merge_usage(merger, usage.buckets, start, end)
        self._merge_costs(merger, costs.buckets, start, end, models)
        buckets = merger.buckets()
        log_fetched(self.name, start, end, usage.pages + costs.pages, len(buckets))
        return buckets

    def _day(self, reader: Reader, bucket: JSONObject, start: dt.date, end: dt.date) -> dt.date | None:
        """The bucket's UTC day, or None when it lies outside the asked range."""
        value = bucket.get("start_time")
        if isinstance(value, bool) or not isinstance(value, int):
            raise reader.error(f"start_time is {value!r}, expected Unix seconds")
        try:
            day = dt.datetime.fromtimestamp(value, dt.UTC).date()
        except (OverflowError, OSError, ValueError):
            raise reader.error(f"start_time {value!r} is not a usable Unix time") from None
        return day if start <= day < end else None

    def _merge_usage(
        self, merger: BucketMerger, buckets: list[JSONObject], start: dt.date, end: dt.date
    ) -> frozenset[str]:
        """Add the usage rows; returns the model ids seen (for cost line items)."""
        reader = Reader(self.name, USAGE_PATH)
        models: set[str] = set()
        for bucket in buckets:
            day = self._day(reader, bucket, start, end)
            if day is None:
                continue
            for row in reader.results(bucket):
                model = reader.text(row, "model") or ""
                models.add(model)
                cached = reader.tokens(row, "input_cached_tokens")
                cache_write = reader.tokens(row, "input_cache_write_tokens")
                if row.get("input_uncached_tokens") is not None:
                    uncached = reader.tokens(row, "input_uncached_tokens")
                else:
                    # Pitfall 4: input_tokens counts cached and cache-write tokens too.
                    uncached = reader.tokens(row, "input_tokens") - cached - cache_write
                    if uncached < 0:
                        raise reader.error(
                            f"input_tokens is smaller than its cached and cache-write parts ({model or 'no model'})"
                        )
                key = (day, model, project_name(reader.text(row, "project_id"), self.projects))
                merger.add_tokens(
                    key,
                    input_tokens=uncached,
                    output_tokens=reader.tokens(row, "output_tokens"),
                    cache_read_tokens=cached,
                    cache_write_tokens=cache_write,
                )
        models.discard("")
        return frozenset(models)

    def _merge_costs(
        self, merger: BucketMerger, buckets: list[JSONObject], start: dt.date, end: dt.date, models: frozenset[str]
    ) -> None:
        reader = Reader(self.name, COSTS_PATH)
        for bucket in buckets:
            day = self._day(reader, bucket, start, end)
            if day is None:
                continue
            for row in reader.results(bucket):
                amount = reader.obj(row, "amount")
                currency = reader.text(amount, "currency")
                if currency is not None and currency.lower() != "usd":
                    raise reader.error(f"cost in {currency!r}; only usd is documented")
                # Pitfall 2: a JSON number in dollars; Decimal(str(x)) keeps the digits sent.
                usd = reader.usd(amount.get("value"), "amount.value")
                model = line_item_model(reader.text(row, "line_item"), models)
                key = (day, model, project_name(reader.text(row, "project_id"), self.projects))
                merger.add_cost(key, usd)
