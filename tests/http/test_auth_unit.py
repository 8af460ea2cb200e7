"""Token resolution, route marks and refusal bookkeeping, socket-free on virtual time (issue 8)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from halswarm.auth_failures import AuthFailures
from halswarm.auth_throttle import FailureThrottle
from halswarm.config.security import ApiToken, token_sha256
from halswarm.http.auth import Authenticator, Principal, requires, role_allows, route_role

if TYPE_CHECKING:
    from halswarm.store import AuditRecord

SHARED = "shared-token-" + "s" * 16
VIEW = "viewer-token-" + "v" * 16
ADMIN = "admin-token-" + "a" * 16


def _authenticator() -> Authenticator:
    return Authenticator(
        SHARED,
        [ApiToken("dash", "viewer", token=VIEW), ApiToken("root", "admin", token_sha256=token_sha256(ADMIN).upper())],
    )


@pytest.mark.parametrize(
    ("header", "principal"),
    [
        (f"Bearer {SHARED}", Principal("api", "admin")),
        (f"bearer {VIEW}", Principal("token:dash", "viewer")),
        (f"Bearer {ADMIN}", Principal("token:root", "admin")),
        (f"Bearer {VIEW}x", None),
        (f"Basic {VIEW}", None),
        ("Bearer", None),
        (None, None),
    ],
)
def test_tokens_resolve_to_principals_by_digest(header: str | None, principal: Principal | None) -> None:
    assert _authenticator().from_header(header) == principal


def test_the_authenticator_repr_holds_no_secret() -> None:
    text = repr(_authenticator())
    assert SHARED not in text
    assert token_sha256(SHARED) not in text


@pytest.mark.parametrize(
    ("role", "required", "allowed"),
    [
        ("viewer", "viewer", True),
        ("viewer", "operator", False),
        ("operator", "admin", False),
        ("admin", "viewer", True),
    ],
)
def test_roles_are_ordered(role: str, required: str, allowed: bool) -> None:
    assert role_allows(role, required) is allowed  # type: ignore[arg-type]


def test_requires_marks_the_view() -> None:
    @requires("operator")
    async def view() -> None:
        pass

    async def unmarked() -> None:
        pass

    assert route_role(view) == "operator"
    assert route_role(unmarked) is None


def _failures(rows: list[AuditRecord], counted: list[int]) -> AuthFailures:
    async def write(record: AuditRecord) -> None:
        rows.append(record)

    return AuthFailures(
        listener="http",
        throttle=FailureThrottle(free=2, base_delay=0.5, max_delay=2.0),
        write_audit=write,
        count=lambda: counted.append(1),
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_repeated_failures_are_slowed_down_per_address(autojump_clock: trio.testing.MockClock) -> None:
    failures = _failures([], [])
    delays = []
    for _ in range(6):
        start = trio.current_time()
        await failures.refuse(
            address="10.0.0.1", reason="bad token", target="/api/v1/sessions", detail={"path": "/api/v1/sessions"}
        )
        delays.append(trio.current_time() - start)
    assert delays == [0.0, 0.0, 0.5, 1.0, 2.0, 2.0]
    start = trio.current_time()
    await failures.refuse(
        address="10.0.0.2", reason="bad token", target="/api/v1/sessions", detail={"path": "/api/v1/sessions"}
    )
    assert trio.current_time() == start  # another address owes nothing
    # A success does not wipe the slate (a holder of one token could guess others at
    # full speed); the window does.
    await trio.sleep(61)
    start = trio.current_time()
    await failures.refuse(
        address="10.0.0.1", reason="bad token", target="/api/v1/sessions", detail={"path": "/api/v1/sessions"}
    )
    assert trio.current_time() == start


async def test_audit_rows_are_one_per_address_per_minute_with_a_count(autojump_clock: trio.testing.MockClock) -> None:
    rows: list[AuditRecord] = []
    counted: list[int] = []
    failures = _failures(rows, counted)
    failures.throttle = FailureThrottle(free=1000)
    for _ in range(50):
        await failures.refuse(
            address="10.0.0.1", reason="bad token", target="/api/v1/commands", detail={"path": "/api/v1/commands"}
        )
    await failures.refuse(address="10.0.0.9", reason="role", actor="token:dash", target="/api/v1/commands")
    assert len(counted) == 51
    assert [(r.actor, r.detail["count"]) for r in rows] == [("unknown", 1), ("token:dash", 1)]
    await trio.sleep(61)
    await failures.refuse(
        address="10.0.0.1", reason="bad token", target="/api/v1/commands", detail={"path": "/api/v1/commands"}
    )
    assert len(rows) == 3
    last = rows[-1]
    assert (last.action, last.source, last.outcome, last.target) == (
        "auth.failure",
        "http",
        "refused",
        "/api/v1/commands",
    )
    assert last.detail == {"address": "10.0.0.1", "path": "/api/v1/commands", "reason": "bad token", "count": 50}
