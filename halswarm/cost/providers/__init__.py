"""Provider admin API clients: Anthropic and OpenAI usage and cost reports as daily buckets.

Each source implements :class:`~halswarm.cost.model.CostSource`; the poller builds them
with :func:`sources_from_config` and calls ``fetch(start, end)`` on each.
"""

from __future__ import annotations

from halswarm.cost.providers._http import RetryPolicy
from halswarm.cost.providers._sources import sources_from_config
from halswarm.cost.providers.anthropic import AnthropicSource
from halswarm.cost.providers.openai import OpenAISource

__all__ = ["AnthropicSource", "OpenAISource", "RetryPolicy", "sources_from_config"]
