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
- Refusals are handled by :class:`halswarm.auth_failures.AuthFailures` (shared with the
  agent hub): counted, logged without the token, slowed down and audited.
"""

from __future__ import annotations

import hmac
import logging
import weakref
from typing import TYPE_CHECKING, Final, TypeVar

import attrs
from quart import g

from halswarm.config.security import ROLES, Role, token_sha256

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from quart import Quart

    from halswarm.config.security import ApiToken

__all__ = [
    "SHARED_ACTOR",
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
