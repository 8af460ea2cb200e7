"""halswarm: a control plane for autonomous LLM coding agents (opencode), built on trio."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
