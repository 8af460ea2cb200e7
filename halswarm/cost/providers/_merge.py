"""Merging usage (tokens) and cost rows into one :class:`CostBucket` per (day, model, project).

Also the strict readers of provider JSON fields: a field of the wrong type is a
:class:`ProviderError` naming the provider and endpoint, not a crash deep in the poller.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import attrs

from halswarm.cost.model import CostBucket, ProviderError
from halswarm.cost.money import MAX_TOKENS, MAX_USD
from halswarm.jsontypes import JSONObject, JSONValue, is_json_object

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["BucketMerger", "Reader", "daily_window", "project_name"]

_Key = tuple[dt.date, str, str]


def project_name(scope_id: str | None, names: Mapping[str, str]) -> str:
    """The halswarm project of a workspace/project id: mapped, else the raw id, else ``""``.

    A null id is the default workspace (Anthropic) or usage outside any project (OpenAI).
    """
    if not scope_id:
        return ""
    return names.get(scope_id, scope_id)


def daily_window(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC midnights of *start* and *end*: the half-open range ``start <= t < end``."""
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC),
    )


@attrs.define
class _Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


@attrs.define
class BucketMerger:
    """Sums usage and cost rows per (day, model, project); rows of the same key add up.

    Adding is right because one fetch asks each report once, grouped finely enough that a
    key can only repeat where the provider split it further (service tier, context window,
    cost line items), and those parts do add up to the key's total.
    """

    provider: str
    _totals: dict[_Key, _Totals] = attrs.Factory(dict)

    def add_tokens(
        self, key: _Key, *, input_tokens: int, output_tokens: int, cache_read_tokens: int, cache_write_tokens: int
    ) -> None:
        """Add one usage row's tokens (input is the uncached part only)."""
        totals = self._totals.setdefault(key, _Totals())
        totals.input_tokens += input_tokens
        totals.output_tokens += output_tokens
        totals.cache_read_tokens += cache_read_tokens
        totals.cache_write_tokens += cache_write_tokens

    def add_cost(self, key: _Key, usd: Decimal) -> None:
        """Add one cost row's amount, in dollars."""
        self._totals.setdefault(key, _Totals()).cost_usd += usd

    def buckets(self) -> list[CostBucket]:
        """The merged buckets, sorted by (day, model, project); all-zero keys are dropped."""
        out: list[CostBucket] = []
        for (day, model, project), t in sorted(self._totals.items()):
            if not (t.input_tokens or t.output_tokens or t.cache_read_tokens or t.cache_write_tokens or t.cost_usd):
                continue
            out.append(
                CostBucket(
                    day=day,
                    provider=self.provider,
                    model=model,
                    project=project,
                    source="provider",
                    input_tokens=t.input_tokens,
                    output_tokens=t.output_tokens,
                    cache_read_tokens=t.cache_read_tokens,
                    cache_write_tokens=t.cache_write_tokens,
                    cost_usd=t.cost_usd,
                )
            )
        return out


@attrs.frozen
class Reader:
    """Typed access to fields of one endpoint's JSON, with errors that name it."""

    provider: str
    path: str

    def error(self, what: str) -> ProviderError:
        """A ProviderError about this endpoint's response."""
        return ProviderError(f"{self.provider}: GET {self.path}: unexpected response: {what}")

    def tokens(self, obj: JSONObject, key: str) -> int:
        """A token count; absent or null is 0 (fields newer than the account's API)."""
        value = obj.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(f"{key} is {value!r}, expected a non-negative integer")
        if value > MAX_TOKENS:
            raise self.error(f"{key} is {value!r}, beyond any real usage (at most {MAX_TOKENS:,})")
        return value

    def text(self, obj: JSONObject, key: str) -> str | None:
        """A string field; absent or null is None."""
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(f"{key} is {value!r}, expected a string or null")
        return value

    def obj(self, obj: JSONObject, key: str) -> JSONObject:
        """A nested object; absent or null is ``{}``."""
        value = obj.get(key)
        if value is None:
            return {}
        if not is_json_object(value):
            raise self.error(f"{key} is {value!r}, expected an object")
        return value

    def results(self, bucket: JSONObject) -> list[JSONObject]:
        """A bucket's ``results`` rows."""
        rows = bucket.get("results")
        if not isinstance(rows, list) or not all(is_json_object(r) for r in rows):
            raise self.error("a bucket has no 'results' list of objects")
        return [r for r in rows if is_json_object(r)]

    def decimal(self, value: JSONValue, what: str) -> Decimal:
        """A JSON number or decimal string as an exact Decimal (``Decimal(str(x))``, never float maths)."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(f"{what} is {value!r}, expected a number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.error(f"{what} is {value!r}, expected a number") from None
        if not number.is_finite():
            raise self.error(f"{what} is {value!r}, expected a finite number")
        return number

    def usd(self, value: JSONValue, what: str, *, cents: bool = False) -> Decimal:
        """A money amount in dollars (*cents*: the JSON value is in cents), range-checked.

        An amount beyond :data:`~halswarm.cost.money.MAX_USD` either way is an error here,
        naming the field, rather than an integer SQLite cannot store.
        """
        number = self.decimal(value, what)
        usd = number.scaleb(-2) if cents else number
        if abs(usd) > MAX_USD:
            raise self.error(f"{what} is {value!r}, beyond any real bill (at most ${MAX_USD:,} per row)")
        return usd
