"""Hypothesis strategies for wire protocol messages, limited to what JSON can carry.

Text excludes surrogates (not encodable as UTF-8), integers fit in 64 bits (orjson's
limit), floats are finite, and timestamps use the canonical stored format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from halswarm.models import (
    COMMAND_TYPES,
    SESSION_STATUSES,
    Pending,
    PermissionRequest,
    Project,
    Question,
    QuestionRequest,
    Resources,
    Session,
    Tokens,
)
from halswarm.proto import (
    Ack,
    CommandMsg,
    CommandResult,
    EnvManifest,
    Events,
    Heartbeat,
    Hello,
    Message,
    SessionSnapshot,
    Welcome,
    WireEvent,
)
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = [
    "MESSAGE_STRATEGIES",
    "json_objects",
    "sessions",
    "texts",
    "timestamps",
    "wire_events",
]

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
counts = st.integers(min_value=0, max_value=2**53)
positive = st.integers(min_value=1, max_value=2**53)
floats = st.floats(allow_nan=False, allow_infinity=False)
optional_texts = st.none() | texts

json_values: st.SearchStrategy[JSONValue] = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
json_objects: st.SearchStrategy[JSONObject] = st.dictionaries(texts, json_values, max_size=4)

timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)).map(
    format_ts
)

projects = st.builds(Project, name=names, directory=texts)
tokens = st.builds(Tokens, input=counts, output=counts, reasoning=counts, cache_read=counts, cache_write=counts)
pending = st.builds(
    Pending,
    permissions=st.lists(
        st.builds(
            PermissionRequest,
            id=texts,
            permission=texts,
            patterns=st.lists(texts, max_size=2),
            title=texts,
            asked_at=st.none() | timestamps,
        ),
        max_size=2,
    ),
    questions=st.lists(
        st.builds(
            QuestionRequest,
            id=texts,
            questions=st.lists(
                st.builds(Question, question=texts, header=texts, options=st.lists(texts, max_size=2)), max_size=2
            ),
            asked_at=st.none() | timestamps,
        ),
        max_size=2,
    ),
)
sessions = st.builds(
    Session,
    id=texts,
    node_id=texts,
    project=texts,
    directory=texts,
    status=st.sampled_from(SESSION_STATUSES),
    title=texts,
    model=texts,
    tokens=tokens,
    cost_usd=floats,
    compaction_count=counts,
    consecutive_errors=counts,
    pending=pending,
    current_task=optional_texts,
    predecessor_id=optional_texts,
    started_at=st.none() | timestamps,
    last_activity=st.none() | timestamps,
)

wire_events = st.builds(
    WireEvent,
    seq=positive,
    ts=timestamps,
    type=names,
    session_id=optional_texts,
    project=optional_texts,
    data=json_objects,
    state=st.none() | sessions,
)

hellos = st.builds(
    Hello,
    node_id=texts,
    instance_key=texts,
    hostname=texts,
    version=texts,
    projects=st.lists(projects, max_size=3),
    capabilities=st.lists(texts, max_size=3),
    last_seq=ints,
    sessions=st.lists(st.builds(SessionSnapshot, seq=ints, session=sessions), max_size=2),
)
welcomes = st.builds(
    Welcome,
    ack_seq=ints,
    heartbeat_interval=floats,
    window=ints,
    max_batch_events=ints,
    max_frame_bytes=ints,
    server_version=texts,
)
heartbeats = st.builds(
    Heartbeat,
    ts=texts,
    resources=st.none() | st.builds(Resources, cpu_percent=floats, mem_used_mb=floats, disk_used_gb=floats),
    health=st.none() | st.dictionaries(texts, texts, max_size=3),
    outbox_backlog=st.none() | st.integers(min_value=0, max_value=2**40),
)
commands = st.builds(
    CommandMsg,
    command_id=texts,
    idempotency_key=texts,
    command_type=st.sampled_from(COMMAND_TYPES),
    target=texts,
    args=json_objects,
    deadline=floats,
    correlation_id=texts,
)
results = st.builds(
    CommandResult,
    command_id=texts,
    ok=st.booleans(),
    result=st.none() | json_objects,
    error=optional_texts,
    correlation_id=texts,
)

MESSAGE_STRATEGIES: dict[str, st.SearchStrategy[Message]] = {
    "hello": hellos,
    "welcome": welcomes,
    "events": st.builds(Events, events=st.lists(wire_events, max_size=4)),
    "ack": st.builds(Ack, seq=ints),
    "heartbeat": heartbeats,
    "command": commands,
    "command_result": results,
    "env_manifest": st.builds(EnvManifest, manifest_hash=texts, manifest=st.none() | json_objects),
}
"""One strategy per message class, keyed by its wire tag."""
