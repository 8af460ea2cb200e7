"""Persistent storage (SQLite, WAL, one writer thread)."""

from __future__ import annotations

from halswarm.store.sql import AuditRecord, EventQuery, IngestBatch, IngestSummary, NodeRecord, StoredState
from halswarm.store.store import SchemaTooNewError, Store, StoreError, open_store

__all__ = [
    "AuditRecord",
    "EventQuery",
    "IngestBatch",
    "IngestSummary",
    "NodeRecord",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "StoredState",
    "open_store",
]
