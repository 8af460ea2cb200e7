"""Who is calling the HTTP API, what each route requires, and what happens to a refusal (issue 8).

- :class:`Authenticator` turns a bearer token into a :class:`Principal`: the shared
  ``server.auth_token`` is ``admin`` with the actor name ``api`` (as before roles
  existed); a named ``server.tokens`` entry has its configured role and the actor
  ``token:<name>``. Only SHA-256 digests are compared (with :func:`hmac.compare_digest`,
  against every configured token, never stopping at the first match), so tokens may be
  stored hashed and the time taken says nothing about which token came close.
- :func:`requires` marks a view with the least role it needs; :func:`route_role` reads
  the mark back, and :func:`check_routes` refuses to build an app in which an ``/api/``
  route has none, so a new route cannot silently default to open or closed.
- :class:`AuthFailures` handles a refusal: counted, logged without the token, slowed
  down per address (:class:`~halswarm.auth_throttle.FailureThrottle`) and audited, at
  most one audit row per address per window (with the count), so a flood of bad tokens
  cannot grow the audit table without bound.
"""

from __future__ import annotations

import collections
import hmac
import logging
import weakref
from typing import TYPE_CHECKING, Final, TypeVar

import attrs
import trio
from quart import g

from halswarm.config.security import ROLES, Role, token_sha256
from halswarm.obs.logging import ctx, current_correlation_id
from halswarm.store import AuditRecord, StoreError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from quart import Quart

    from halswarm.auth_throttle import FailureThrottle
    from halswarm.config.security import ApiToken
    from halswarm.timeutil import Clock

__all__ = [
    "SHARED_ACTOR",
    "AuthFailures",
    "Authenticator",
    "Principal",
    "check_routes",
    "current_principal",
    "requires",
    "role_allows",
    "route_role",
]

log = logging.getLogger(__name__)

#: The actor name of the shared ``server.auth_token`` (unchanged from before roles).
SHARED_ACTOR: Final = "api"
_AUDIT_WINDOW_S: Final = 60.0
_MAX_AUDIT_ADDRESSES: Final = 10_000

F = TypeVar("F")

# View function -> least role. Weak keys: each create_app() makes new view functions,
# and tests build many apps.
_ROUTE_ROLES: Final[weakref.WeakKeyDictionary[object, Role]] = weakref.WeakKeyDictionary()


@attrs.frozen
class Principal:
    """An authenticated caller: the actor name written to audit rows and commands, and its role."""

    actor: str
    role: Role


def current_principal() -> Principal:
    """The caller of the ``/api/`` request being handled (set by the app's auth hook).

    Raises:
        RuntimeError: outside an authenticated request (a programming error).
    """
    principal = g.get("principal")
    if not isinstance(principal, Principal):
        raise RuntimeError("no authenticated principal for this request")
    return principal


def role_allows(role: Role, required: Role) -> bool:
    """Whether *role* includes the rights of *required* (roles are ordered, see ``ROLES``)."""
    return ROLES.index(role) >= ROLES.index(required)


class Authenticator:
    """Resolves bearer tokens to principals by comparing SHA-256 digests in constant time."""

    def __init__(self, shared_token: str, tokens: Sequence[ApiToken] = ()) -> None:
        entries: list[tuple[bytes, Principal]] = []
        if shared_token:
            entries.append((token_sha256(shared_token).encode(), Principal(SHARED_ACTOR, "admin")))
        entries.extend((t.digest().encode(), Principal(f"token:{t.name}", t.role)) for t in tokens)
        self._entries = entries

    def __repr__(self) -> str:
        # Digests are not the tokens, but they are still not for logs.
        return f"Authenticator({len(self._entries)} tokens)"

    def resolve(self, presented: str) -> Principal | None:
        """The principal whose token is *presented*, or None."""
        if not presented:
            return None
        digest = token_sha256(presented).encode()
        found: Principal | None = None
        for expected, principal in self._entries:
            # No early exit: every configured digest is compared on every request.
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found

    def from_header(self, header: str | None) -> Principal | None:
        """The principal for an ``Authorization: Bearer <token>`` header value, or None."""
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.resolve(presented.strip())


def requires(role: Role) -> Callable[[F], F]:
    """Mark a view function with the least role allowed to call it.

    Apply below the route decorator (``@app.get(...)`` then ``@requires("viewer")``), so the
    mark is on the function before it is registered.
    """

    def mark(view: F) -> F:
        _ROUTE_ROLES[view] = role
        return view

    return mark


def route_role(view: object) -> Role | None:
    """The role a view was marked with by :func:`requires`, or None when unmarked."""
    try:
        return _ROUTE_ROLES.get(view)
    except TypeError:  # not weak-referenceable: cannot have been marked
        return None


def check_routes(app: Quart, prefix: str = "/api/") -> None:
    """Refuse an app with an unmarked route under *prefix*.

    Raises:
        RuntimeError: naming every unmarked route (a programming error, found at startup).
    """
    unmarked = [
        f"{sorted(rule.methods or ())} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(prefix) and route_role(app.view_functions.get(rule.endpoint)) is None
    ]
    if unmarked:
        raise RuntimeError(f"API routes without a required role (use @requires): {', '.join(unmarked)}")


@attrs.define
class _AuditWindow:
    opened: float
    suppressed: int = 0


class AuthFailures:
    """What a refused request costs its sender: a count, a log line, a delay and an audit row.

    Args:
        throttle: per-address failure bookkeeping; its delay is slept before answering.
        write_audit: appends an audit row (``Store.insert_audit``).
        count: increments ``hal_o_swarm_auth_failures{listener="http"}``.
        now: wall clock for audit timestamps; durations use ``trio.current_time()``.
        audit_window: at most one audit row per address per this many seconds.
    """

    def __init__(
        self,
        *,
        throttle: FailureThrottle,
        write_audit: Callable[[AuditRecord], Awaitable[None]],
        count: Callable[[], None],
        now: Clock,
        audit_window: float = _AUDIT_WINDOW_S,
        max_addresses: int = _MAX_AUDIT_ADDRESSES,
    ) -> None:
        self.throttle = throttle
        self.write_audit = write_audit
        self.count = count
        self.now = now
        self.audit_window = audit_window
        self.max_addresses = max_addresses
        self._windows: collections.OrderedDict[str, _AuditWindow] = collections.OrderedDict()

    def succeeded(self, address: str) -> None:
        """A good token from *address*: its next failure starts without a delay."""
        self.throttle.succeeded(address)

    async def refuse(self, *, address: str, path: str, reason: str, actor: str = "unknown") -> None:
        """Count, log and audit one refusal, then sleep the delay the throttle asks for.

        Args:
            address: the remote address (the throttle's key).
            path: the request path (never the query string, which could carry a secret).
            reason: why, in words (never the token).
            actor: ``unknown`` for a bad token; the principal's actor when its role is too low.

        Cancellation: safe at any await; the sleep is the last step.
        Error handling: an audit row that cannot be stored is logged; the refusal stands.
        """
        moment = trio.current_time()
        delay = self.throttle.failed(address, moment)
        self.count()
        log.warning(
            "HTTP request refused: %s",
            reason,
            extra=ctx(address=address, path=path, actor=actor, delay_s=delay),
        )
        count = self._audit_due(address, moment)
        if count:
            record = AuditRecord(
                ts=format_ts(self.now()),
                actor=actor,
                source="http",
                action="auth.failure",
                target=path,
                outcome="refused",
                correlation_id=current_correlation_id() or "",
                detail={"address": address, "path": path, "reason": reason, "count": count},
            )
            try:
                await self.write_audit(record)
            except StoreError as exc:
                log.error("cannot store the auth-failure audit row: %s", exc, extra=ctx(address=address))
        if delay > 0:
            await trio.sleep(delay)

    def _audit_due(self, address: str, moment: float) -> int:
        """Failures to report in a row now (this one plus those suppressed), or 0 to stay quiet."""
        window = self._windows.get(address)
        if window is not None and moment - window.opened < self.audit_window:
            window.suppressed += 1
            return 0
        count = 1 + (window.suppressed if window is not None else 0)
        self._windows[address] = _AuditWindow(moment)
        self._windows.move_to_end(address)
        while len(self._windows) > self.max_addresses:
            self._windows.popitem(last=False)
        return count

    def pending(self) -> Iterable[tuple[str, int]]:
        """(address, failures not yet in an audit row), for tests and health output."""
        return [(a, w.suppressed) for a, w in self._windows.items() if w.suppressed]
