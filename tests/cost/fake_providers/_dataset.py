"""Seeded usage datasets for the fake providers, and the buckets a correct client returns."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal

import attrs

from halswarm.cost.model import CostBucket

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ANTHROPIC_KEY",
    "ANTHROPIC_MODELS",
    "ANTHROPIC_WORKSPACES",
    "DISPLAY",
    "MOCK_ANTHROPIC_URL",
    "MOCK_OPENAI_URL",
    "OPENAI_KEY",
    "OPENAI_MODELS",
    "OPENAI_PROJECTS",
    "PRICES",
    "TOKEN_TYPES",
    "Charge",
    "Dataset",
    "Prices",
    "TokenType",
    "Usage",
]

ANTHROPIC_KEY: Final = "sk-ant-admin01-fake-key-0123456789abcdef"
OPENAI_KEY: Final = "sk-admin-fake-key-0123456789abcdef"
#: Base URLs for sources that talk to a fake through :func:`mock_transport`.
MOCK_ANTHROPIC_URL: Final = "https://anthropic.fake.invalid"
MOCK_OPENAI_URL: Final = "https://openai.fake.invalid/v1"

ANTHROPIC_MODELS: Final = ("claude-sonnet-4-20250514", "claude-haiku-4-5-20251001")
OPENAI_MODELS: Final = ("gpt-4.1", "gpt-4.1-mini")
#: Scopes of seeded datasets; None is the default workspace / no project.
ANTHROPIC_WORKSPACES: Final = ("wrkspc_01alpha", "wrkspc_01beta", None)
OPENAI_PROJECTS: Final = ("proj_alpha", "proj_beta", None)

_MILLION: Final = Decimal(1_000_000)

TokenType = Literal["input", "output", "cache_read", "cache_write_5m", "cache_write_1h"]
TOKEN_TYPES: Final[tuple[TokenType, ...]] = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")


@attrs.frozen
class Prices:
    """USD per million tokens of one model."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal

    def of(self, token_type: TokenType) -> Decimal:
        """The price of one token type."""
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
        }[token_type]


def _prices(*values: str) -> Prices:
    return Prices(*(Decimal(v) for v in values))


#: The fakes' price list; the figures only need to be exact decimals, not current.
PRICES: Final[Mapping[str, Prices]] = {
    "claude-sonnet-4-20250514": _prices("3", "15", "0.30", "3.75", "6"),
    "claude-haiku-4-5-20251001": _prices("1", "5", "0.10", "1.25", "2"),
    "gpt-4.1": _prices("2", "8", "0.50", "2.50", "2.50"),
    "gpt-4.1-mini": _prices("0.40", "1.60", "0.10", "0.50", "0.50"),
}
DISPLAY: Final = {
    "claude-sonnet-4-20250514": "Claude Sonnet 4",
    "claude-haiku-4-5-20251001": "Claude Haiku 4.5",
}


@attrs.frozen
class Usage:
    """One day's usage of one model in one scope (workspace or project; None: default/none).

    ``input`` is the uncached input; OpenAI's fake reports ``input_tokens`` as the sum of
    input, cache reads and cache writes, as the real API does.
    """

    day: dt.date
    model: str
    scope: str | None
    input: int
    output: int
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    requests: int = 1

    def tokens(self, token_type: TokenType) -> int:
        """The count of one token type."""
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
        }[token_type]

    @property
    def cache_write(self) -> int:
        """Both cache lifetimes together."""
        return self.cache_write_5m + self.cache_write_1h


@attrs.frozen
class Charge:
    """A cost that belongs to no model (code execution, image generation)."""

    day: dt.date
    scope: str | None
    usd: Decimal


@attrs.frozen
class Dataset:
    """What a fake organisation used and paid, day by day.

    Example::

        data = Dataset.seeded(start=dt.date(2026, 8, 1), days=5, models=ANTHROPIC_MODELS,
                              scopes=ANTHROPIC_WORKSPACES, empty_days=(2,))
        async with open_fake_anthropic(data) as server:
            ...  # poll server.base_url with ANTHROPIC_KEY
        assert stored == data.expected_buckets("anthropic", {"wrkspc_01alpha": "alpha"})
    """

    usage: tuple[Usage, ...] = ()
    charges: tuple[Charge, ...] = ()
    prices: Mapping[str, Prices] = PRICES

    @classmethod
    def seeded(
        cls,
        *,
        start: dt.date,
        days: int,
        models: Iterable[str],
        scopes: Iterable[str | None],
        seed: int = 0,
        empty_days: Iterable[int] = (),
        charges: bool = True,
    ) -> Dataset:
        """Random but reproducible usage for ``days`` days from ``start``.

        Args:
            start: first day (UTC).
            days: how many days.
            models: model ids (must be in :data:`PRICES`).
            scopes: workspace or project ids; None is the default workspace / no project.
            seed: the random seed: the same arguments give the same dataset.
            empty_days: day offsets with no usage at all (buckets with empty results).
            charges: add a model-less charge on some days.
        """
        rng = random.Random(seed)
        empty = set(empty_days)
        model_list, scope_list = list(models), list(scopes)
        usage: list[Usage] = []
        extra: list[Charge] = []
        for offset in range(days):
            if offset in empty:
                continue
            day = start + dt.timedelta(days=offset)
            pairs = [(m, s) for m in model_list for s in scope_list if rng.random() < 0.7]
            for model, scope in pairs or [(model_list[0], scope_list[0])]:
                usage.append(
                    Usage(
                        day=day,
                        model=model,
                        scope=scope,
                        input=rng.randrange(1_000, 2_000_000),
                        output=rng.randrange(100, 300_000),
                        cache_read=rng.randrange(0, 5_000_000),
                        cache_write_5m=rng.randrange(0, 400_000),
                        cache_write_1h=rng.choice((0, rng.randrange(1, 200_000))),
                        requests=rng.randrange(1, 500),
                    )
                )
            if charges and rng.random() < 0.5:
                extra.append(Charge(day=day, scope=rng.choice(scope_list), usd=Decimal(rng.randrange(1, 5_000)) / 1000))
        return cls(usage=tuple(usage), charges=tuple(extra))

    def cost(self, usage: Usage, token_type: TokenType) -> Decimal:
        """Exact USD of one token type of one usage row."""
        return usage.tokens(token_type) * self.prices[usage.model].of(token_type) / _MILLION

    def usage_usd(self, usage: Usage) -> Decimal:
        """Exact USD of one usage row."""
        return sum((self.cost(usage, t) for t in TOKEN_TYPES), Decimal(0))

    def total_usd(self, start: dt.date | None = None, end: dt.date | None = None) -> Decimal:
        """Everything the organisation paid on days ``start <= day < end`` (default: all)."""
        usd = sum((self.usage_usd(u) for u in self.usage if _within(u.day, start, end)), Decimal(0))
        return usd + sum((c.usd for c in self.charges if _within(c.day, start, end)), Decimal(0))

    def days(self) -> list[dt.date]:
        """Days with any usage or charge, sorted."""
        return sorted({u.day for u in self.usage} | {c.day for c in self.charges})

    def expected_buckets(
        self,
        provider: Literal["anthropic", "openai"],
        names: Mapping[str, str] | None = None,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        cost_by_model: bool = True,
        cache_write_reported: bool = True,
    ) -> list[CostBucket]:
        """The buckets a correct client returns for this dataset, sorted like the sources'.

        Keys whose tokens and cost are all zero are left out, like the sources do.

        Args:
            provider: the ``provider`` of the buckets.
            names: scope id -> project name; unmapped ids stay, None becomes ``""``.
            start: first day included (default: all).
            end: first day excluded (default: all).
            cost_by_model: whether the cost report attributes cost to models (Anthropic,
                and OpenAI with model-prefixed line items). When false each day's cost
                lands in model ``""`` of its project.
            cache_write_reported: False for OpenAI answers without
                ``input_cache_write_tokens``: writes then count as uncached input.
        """
        names = names or {}
        totals: dict[tuple[dt.date, str, str], list[int]] = {}
        costs: dict[tuple[dt.date, str, str], Decimal] = {}

        def project(scope: str | None) -> str:
            return "" if scope is None else names.get(scope, scope)

        for u in self.usage:
            if not _within(u.day, start, end):
                continue
            key = (u.day, u.model, project(u.scope))
            write = u.cache_write if cache_write_reported else 0
            uncached = u.input if cache_write_reported else u.input + u.cache_write
            row = totals.setdefault(key, [0, 0, 0, 0])
            row[0] += uncached
            row[1] += u.output
            row[2] += u.cache_read
            row[3] += write
            cost_key = key if cost_by_model else (u.day, "", project(u.scope))
            costs[cost_key] = costs.get(cost_key, Decimal(0)) + self.usage_usd(u)
        for c in self.charges:
            if _within(c.day, start, end):
                key = (c.day, "", project(c.scope))
                costs[key] = costs.get(key, Decimal(0)) + c.usd
        return [
            CostBucket(
                day=key[0],
                provider=provider,
                model=key[1],
                project=key[2],
                source="provider",
                input_tokens=totals.get(key, [0])[0],
                output_tokens=totals.get(key, [0, 0])[1],
                cache_read_tokens=totals.get(key, [0, 0, 0])[2],
                cache_write_tokens=totals.get(key, [0, 0, 0, 0])[3],
                cost_usd=costs.get(key, Decimal(0)),
            )
            for key in sorted(totals.keys() | costs.keys())
            if any(totals.get(key, ())) or costs.get(key)
        ]


def _within(day: dt.date, start: dt.date | None, end: dt.date | None) -> bool:
    return (start is None or day >= start) and (end is None or day < end)
