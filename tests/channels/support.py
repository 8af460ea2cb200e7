"""Builders shared by the routing tests."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from halswarm.models import Event

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject

_ids = itertools.count(1)


def event(
    type_: str,
    *,
    session: str | None = "ses_1",
    project: str | None = "api",
    node: str = "node-a",
    data: JSONObject | None = None,
    id_: int | None = None,
) -> Event:
    """A stored event; each call gets a fresh id unless *id_* is given."""
    event_id = next(_ids) if id_ is None else id_
    return Event(event_id, node, event_id, "2026-08-01T12:00:00.000000Z", type_, session, project, data or {})
