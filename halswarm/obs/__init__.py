"""Observability: logging and metrics."""
