"""Fake Anthropic and OpenAI admin APIs (usage and cost reports) for tests.

They follow ``docs: provider-apis.md`` §1 and §2 exactly, and are strict on purpose so a
client bug shows up as a failing test rather than as wrong numbers:

- **auth**: Anthropic wants ``x-api-key`` and ``anthropic-version: 2023-06-01``; OpenAI
  wants ``Authorization: Bearer <key>``. A wrong key gets 401 with the provider's error
  shape. The OpenAI fake quotes the wrong key back in its message (as OpenAI does, only
  less masked), so tests can prove the client never passes it on.
- **query**: only documented parameters; arrays only as ``group_by[]`` (pitfall 7);
  RFC 3339 ``starting_at``/``ending_at`` (Anthropic) vs Unix-second ``start_time``/
  ``end_time`` (OpenAI, pitfall 3); ``limit`` within the documented range; ``page`` must
  be a token this fake issued for the identical query. Anything else is a 400 with the
  provider's error shape. Documented options the fake does not implement (``1h``
  buckets, filters, other groupings) are a 400 saying so.
- **answers**: every day of the range is a bucket, empty ones included (pitfall 6);
  grouping fields are null unless grouped by (pitfall 5); Anthropic cache writes only in
  ``cache_creation`` (pitfall 1) and cost as a cents decimal *string*; OpenAI
  ``input_tokens`` including cached and cache-write tokens (pitfall 4) and cost as a
  dollar *number* (pitfall 2).
- **pages**: at most ``page_size`` buckets per page (default 2, below any ``limit`` the
  client may ask for) so every multi-day test crosses pages.

Faults, consumed one per incoming request (any endpoint) in the order queued:
``fail_next(n, status=500)``, ``hang_next(n)`` (no answer until the fake closes),
``rate_limit_next(retry_after, n)`` (429 with ``retry-after`` seconds) and
``garbage_next(n)`` (200 ``text/html``). ``requests`` records every request received.

Two ways to serve a fake, the same handler behind both:

- ``async with open_fake_anthropic(dataset) as server:`` -> ``server.base_url`` on
  ``127.0.0.1:0`` (hypercorn + quart-trio; for real-socket tests, never autojump);
- ``mock_transport(FakeAnthropic(dataset))`` -> an ``httpx.MockTransport`` for sources
  built with ``transport=`` and base URL :data:`MOCK_ANTHROPIC_URL` (MockClock tests).

**Datasets for other tests** (the poller's, the e2e): build one with
:meth:`Dataset.seeded` (or list :class:`Usage` / :class:`Charge` rows by hand), serve it,
and compare what was stored with :meth:`Dataset.expected_buckets` or
:meth:`Dataset.total_usd`. Costs come from :data:`PRICES` (USD per million tokens), so
every expected figure is an exact :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from tests.cost.fake_providers._anthropic import FakeAnthropic
from tests.cost.fake_providers._base import FakeProvider, FakeRequest, FakeResponse
from tests.cost.fake_providers._dataset import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODELS,
    ANTHROPIC_WORKSPACES,
    MOCK_ANTHROPIC_URL,
    MOCK_OPENAI_URL,
    OPENAI_KEY,
    OPENAI_MODELS,
    OPENAI_PROJECTS,
    PRICES,
    Charge,
    Dataset,
    Prices,
    Usage,
)
from tests.cost.fake_providers._openai import FakeOpenAI
from tests.cost.fake_providers._serve import (
    FakeServer,
    mock_transport,
    open_fake_anthropic,
    open_fake_openai,
    open_fake_server,
)

__all__ = [
    "ANTHROPIC_KEY",
    "ANTHROPIC_MODELS",
    "ANTHROPIC_WORKSPACES",
    "MOCK_ANTHROPIC_URL",
    "MOCK_OPENAI_URL",
    "OPENAI_KEY",
    "OPENAI_MODELS",
    "OPENAI_PROJECTS",
    "PRICES",
    "Charge",
    "Dataset",
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeProvider",
    "FakeRequest",
    "FakeResponse",
    "FakeServer",
    "Prices",
    "Usage",
    "mock_transport",
    "open_fake_anthropic",
    "open_fake_openai",
    "open_fake_server",
]
