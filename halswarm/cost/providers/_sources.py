"""Building the configured cost sources."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.cost.providers.anthropic import AnthropicSource
from halswarm.cost.providers.openai import OpenAISource

if TYPE_CHECKING:
    from halswarm.config.supervisor import CostConfig
    from halswarm.cost.model import CostSource

__all__ = ["sources_from_config"]


def sources_from_config(cost: CostConfig) -> list[CostSource]:
    """One source per configured provider (Anthropic first, then OpenAI).

    Each uses its provider's key, ``base_url`` and id -> project map, and the shared
    ``cost.request_timeout_sec`` (deadline of one request) and ``cost.max_attempts``.

    Args:
        cost: the ``cost`` section of the supervisor config (already validated: a
            configured provider has a key).

    Returns:
        The sources; empty when no provider is configured.
    """
    sources: list[CostSource] = []
    if cost.providers.anthropic is not None:
        sources.append(AnthropicSource.from_config(cost.providers.anthropic, cost))
    if cost.providers.openai is not None:
        sources.append(OpenAISource.from_config(cost.providers.openai, cost))
    return sources
