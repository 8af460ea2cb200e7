"""Provider answers are range-checked where they are read: a figure no real bill has is a
ProviderError naming the endpoint and field, never an integer SQLite cannot store."""

from __future__ import annotations

from decimal import Decimal

import pytest

from halswarm.cost.model import ProviderError
from halswarm.cost.providers._merge import Reader

READER = Reader("openai", "/organization/costs")


def test_amounts_and_token_counts_within_range_are_read_exactly() -> None:
    assert READER.usd(0.06, "amount.value") == Decimal("0.06")
    assert READER.usd("123.78912", "amount", cents=True) == Decimal("1.2378912")
    assert READER.tokens({"output_tokens": 10**15}, "output_tokens") == 10**15


@pytest.mark.parametrize(
    ("read", "words"),
    [
        (lambda: READER.usd(1e10, "amount.value"), "amount.value is 10000000000.0, beyond any real bill"),
        (lambda: READER.usd("-2e11", "amount", cents=True), "amount is '-2e11', beyond any real bill"),
        (lambda: READER.tokens({"input_tokens": 2**70}, "input_tokens"), "input_tokens is 1180591620717411303424"),
    ],
)
def test_absurd_figures_are_provider_errors(read: object, words: str) -> None:
    assert callable(read)
    with pytest.raises(ProviderError, match="openai: GET /organization/costs: unexpected response") as info:
        read()
    assert words in str(info.value)
