"""The fake Anthropic Admin API: usage and cost reports (docs: provider-apis.md §1)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs

from tests.cost.fake_providers._base import (
    BadRequest,
    FakeProvider,
    FakeRequest,
    FakeResponse,
    Spec,
    json_response,
    midnight,
    parse_query,
    rfc3339,
)
from tests.cost.fake_providers._dataset import ANTHROPIC_KEY, DISPLAY, TOKEN_TYPES, TokenType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.jsontypes import JSONValue

__all__ = ["FakeAnthropic"]


_ANTHROPIC_USAGE: Final = "/v1/organizations/usage_report/messages"
_ANTHROPIC_COST: Final = "/v1/organizations/cost_report"
_ANTHROPIC_ERRORS: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ANTHROPIC_SINGLE: Final = frozenset({"starting_at", "ending_at", "bucket_width", "limit", "page"})
_ANTHROPIC_USAGE_SPEC: Final = Spec(
    single=_ANTHROPIC_SINGLE,
    group_by=frozenset(
        {
            "model",
            "workspace_id",
            "api_key_id",
            "service_tier",
            "context_window",
            "inference_geo",
            "account_id",
            "service_account_id",
            "speed",
        }
    ),
    group_by_supported=frozenset({"model", "workspace_id"}),
    unsupported=frozenset(
        {
            "models[]",
            "workspace_ids[]",
            "api_key_ids[]",
            "account_ids[]",
            "service_account_ids[]",
            "service_tiers[]",
            "context_window[]",
            "inference_geos[]",
            "speeds[]",
        }
    ),
    max_limit=31,
    bucket_widths=frozenset({"1d"}),
)
_ANTHROPIC_COST_SPEC: Final = Spec(
    single=_ANTHROPIC_SINGLE,
    group_by=frozenset({"workspace_id", "description"}),
    group_by_supported=frozenset({"workspace_id", "description"}),
    unsupported=frozenset(),
    max_limit=31,
)
_ANTHROPIC_TOKEN_TYPES: Final[Mapping[TokenType, tuple[str, str]]] = {
    "input": ("uncached_input_tokens", "Input Tokens"),
    "output": ("output_tokens", "Output Tokens"),
    "cache_read": ("cache_read_input_tokens", "Cache Read Input Tokens"),
    "cache_write_5m": ("cache_creation.ephemeral_5m_input_tokens", "Cache Write (5m) Input Tokens"),
    "cache_write_1h": ("cache_creation.ephemeral_1h_input_tokens", "Cache Write (1h) Input Tokens"),
}


def _cents(usd: Decimal) -> str:
    """Dollars as the Anthropic cost report's decimal string of cents, every digit kept."""
    return format(usd.scaleb(2).normalize(), "f")


@attrs.define
class FakeAnthropic(FakeProvider):
    """The Anthropic Admin API's usage and cost reports (``docs: provider-apis.md`` §1)."""

    api_key: str = ANTHROPIC_KEY

    def error(
        self, status: int, message: str, *, param: str | None = None, extra_headers: tuple[tuple[str, str], ...] = ()
    ) -> FakeResponse:
        """``{"type": "error", "error": {"type", "message"}, "request_id"}`` with a request-id header."""
        request_id = self.request_id()
        body: JSONValue = {
            "type": "error",
            "error": {"type": _ANTHROPIC_ERRORS.get(status, "api_error"), "message": message},
            "request_id": request_id,
        }
        return json_response(body, status, (("request-id", request_id), *extra_headers))

    def route(self, req: FakeRequest) -> FakeResponse:
        """Check method, auth, version and query, then answer the report."""
        if req.path not in (_ANTHROPIC_USAGE, _ANTHROPIC_COST) or req.method != "GET":
            return self.error(404, f"{req.method} {req.path}: not found")
        if req.headers.get("x-api-key") != self.api_key:
            return self.error(401, "invalid x-api-key")
        if req.headers.get("anthropic-version") != "2023-06-01":
            return self.error(400, "anthropic-version: header is required (2023-06-01)")
        spec = _ANTHROPIC_USAGE_SPEC if req.path == _ANTHROPIC_USAGE else _ANTHROPIC_COST_SPEC
        single, groups = parse_query(req, spec)
        if "starting_at" not in single:
            raise BadRequest("starting_at: required", "starting_at")
        since = rfc3339(single["starting_at"], "starting_at")
        until = rfc3339(single["ending_at"], "ending_at") if "ending_at" in single else None
        if until is not None and until <= since:
            raise BadRequest("ending_at: must be after starting_at", "ending_at")
        days, token = self.paginate(req, self.window(since, until), int(single.get("limit", "7")), single.get("page"))
        results = self._usage if req.path == _ANTHROPIC_USAGE else self._costs
        data: list[JSONValue] = [
            {
                "starting_at": midnight(day).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ending_at": midnight(day + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "results": results(day, groups),
            }
            for day in days
        ]
        return json_response({"data": data, "has_more": token is not None, "next_page": token}, 200, self._id_header())

    def _id_header(self) -> tuple[tuple[str, str], ...]:
        return (("request-id", self.request_id()),)

    def _usage(self, day: dt.date, groups: list[str]) -> list[JSONValue]:
        rows: dict[tuple[str | None, str | None], dict[TokenType, int]] = {}
        for u in self.dataset.usage:
            if u.day != day:
                continue
            key = (u.model if "model" in groups else None, u.scope if "workspace_id" in groups else None)
            row = rows.setdefault(key, dict.fromkeys(TOKEN_TYPES, 0))
            for t in TOKEN_TYPES:
                row[t] += u.tokens(t)
        return [
            {
                "uncached_input_tokens": row["input"],
                "cache_read_input_tokens": row["cache_read"],
                "cache_creation": {
                    "ephemeral_5m_input_tokens": row["cache_write_5m"],
                    "ephemeral_1h_input_tokens": row["cache_write_1h"],
                },
                "output_tokens": row["output"],
                "server_tool_use": {"web_search_requests": 0},
                "model": model,
                "workspace_id": workspace,
                "api_key_id": None,
                "service_tier": None,
                "context_window": None,
                "inference_geo": None,
                "account_id": None,
                "service_account_id": None,
            }
            for (model, workspace), row in sorted(rows.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
        ]

    def _costs(self, day: dt.date, groups: list[str]) -> list[JSONValue]:
        by_description = "description" in groups
        by_workspace = "workspace_id" in groups
        # (workspace, description) -> (model, token_type, cost_type, usd)
        rows: dict[tuple[str | None, str | None], tuple[str | None, str | None, str | None, Decimal]] = {}

        def add(scope: str | None, description: str, detail: tuple[str | None, str | None, str], usd: Decimal) -> None:
            key = (scope if by_workspace else None, description if by_description else None)
            model, token_type, cost_type = detail if by_description else (None, None, None)
            previous = rows.get(key)
            rows[key] = (model, token_type, cost_type, usd + (previous[3] if previous else Decimal(0)))

        for u in self.dataset.usage:
            if u.day != day:
                continue
            for t, (token_type, label) in _ANTHROPIC_TOKEN_TYPES.items():
                if u.tokens(t):
                    description = f"{DISPLAY.get(u.model, u.model)} Usage - {label}"
                    add(u.scope, description, (u.model, token_type, "tokens"), self.dataset.cost(u, t))
        for c in self.dataset.charges:
            if c.day == day:
                add(c.scope, "Code Execution Usage", (None, None, "code_execution"), c.usd)
        return [
            {
                "currency": "USD",
                "amount": _cents(usd),
                "workspace_id": workspace,
                "description": description,
                "cost_type": cost_type,
                "model": model,
                "service_tier": "standard" if model else None,
                "token_type": token_type,
                "context_window": "0-200k" if model else None,
                "inference_geo": None,
            }
            for (workspace, description), (model, token_type, cost_type, usd) in sorted(
                rows.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")
            )
        ]
