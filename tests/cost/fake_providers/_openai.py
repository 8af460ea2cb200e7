"""The fake OpenAI organisation API: completions usage and costs (docs: provider-apis.md §2)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal

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
    unix_time,
)
from tests.cost.fake_providers._dataset import OPENAI_KEY, TokenType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.jsontypes import JSONObject, JSONValue

__all__ = ["FakeOpenAI"]


_OPENAI_USAGE: Final = "/v1/organization/usage/completions"
_OPENAI_COSTS: Final = "/v1/organization/costs"
_OPENAI_USAGE_SPEC: Final = Spec(
    single=frozenset({"start_time", "end_time", "bucket_width", "limit", "page"}),
    group_by=frozenset({"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"}),
    group_by_supported=frozenset({"model", "project_id"}),
    unsupported=frozenset({"project_ids[]", "user_ids[]", "api_key_ids[]", "models[]", "batch"}),
    max_limit=31,
)
_OPENAI_COSTS_SPEC: Final = Spec(
    single=frozenset({"start_time", "end_time", "bucket_width", "limit", "page"}),
    group_by=frozenset({"project_id", "line_item", "api_key_id"}),
    group_by_supported=frozenset({"project_id", "line_item"}),
    unsupported=frozenset({"project_ids[]", "api_key_ids[]"}),
    max_limit=180,
)
# Token type -> (documented-style line item, model-prefixed suffix); cache writes are
# priced with input in neither style, so they get their own line here.
_OPENAI_LINE_ITEMS: Final[Mapping[TokenType, tuple[str, str]]] = {
    "input": ("input_tokens", "input"),
    "cache_read": ("cached_input_tokens", "cached input"),
    "cache_write_5m": ("cache_write_tokens", "cache write"),
    "cache_write_1h": ("cache_write_tokens", "cache write"),
    "output": ("output_tokens", "output"),
}


def _dollars(usd: Decimal) -> float:
    """A dollar amount as the JSON number OpenAI sends; refuses a dataset floats cannot carry."""
    value = float(usd)
    if Decimal(str(value)) != usd:
        raise AssertionError(f"{usd} does not survive a JSON number; use fewer significant digits")
    return value


@attrs.define
class FakeOpenAI(FakeProvider):
    """OpenAI's organisation usage (completions) and costs (``docs: provider-apis.md`` §2).

    ``line_items="documented"`` answers the doc's line items (``"input_tokens"``, which
    name no model); ``"model_prefixed"`` answers ``"<model>, input"`` and the like.
    ``legacy_usage_fields=True`` leaves out the newer ``input_cache_write_tokens`` and
    ``input_uncached_tokens`` (only ``input_tokens`` and ``input_cached_tokens``).
    """

    api_key: str = OPENAI_KEY
    line_items: Literal["documented", "model_prefixed"] = "documented"
    legacy_usage_fields: bool = False

    def error(
        self, status: int, message: str, *, param: str | None = None, extra_headers: tuple[tuple[str, str], ...] = ()
    ) -> FakeResponse:
        """``{"error": {"message", "type", "param", "code"}}`` with an x-request-id header."""
        kind = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}.get(status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        body: JSONValue = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return json_response(body, status, (("x-request-id", self.request_id()), *extra_headers))

    def route(self, req: FakeRequest) -> FakeResponse:
        """Check method, auth and query, then answer the report."""
        if req.path not in (_OPENAI_USAGE, _OPENAI_COSTS) or req.method != "GET":
            return self.error(404, f"Invalid URL ({req.method} {req.path})")
        auth = req.headers.get("authorization")
        if auth is None:
            return self.error(401, "You didn't provide an API key. Provide it in the Authorization header (Bearer).")
        if auth != f"Bearer {self.api_key}":
            given = auth.removeprefix("Bearer ")
            # Deliberately quotes the wrong key: the client must not pass this text on as is.
            return self.error(401, f"Incorrect API key provided: {given}. You can find your API key in Settings.")
        spec = _OPENAI_USAGE_SPEC if req.path == _OPENAI_USAGE else _OPENAI_COSTS_SPEC
        single, groups = parse_query(req, spec)
        if "start_time" not in single:
            raise BadRequest("start_time: required", "start_time")
        since = unix_time(single["start_time"], "start_time")
        until = unix_time(single["end_time"], "end_time") if "end_time" in single else None
        if until is not None and until <= since:
            raise BadRequest("end_time: must be after start_time", "end_time")
        days, token = self.paginate(req, self.window(since, until), int(single.get("limit", "7")), single.get("page"))
        results = self._usage if req.path == _OPENAI_USAGE else self._costs
        data: list[JSONValue] = [
            {
                "object": "bucket",
                "start_time": int(midnight(day).timestamp()),
                "end_time": int(midnight(day + dt.timedelta(days=1)).timestamp()),
                "results": results(day, groups),
            }
            for day in days
        ]
        body: JSONValue = {"object": "page", "data": data, "has_more": token is not None, "next_page": token}
        return json_response(body, 200, (("x-request-id", self.request_id()),))

    def _usage(self, day: dt.date, groups: list[str]) -> list[JSONValue]:
        rows: dict[tuple[str | None, str | None], list[int]] = {}
        for u in self.dataset.usage:
            if u.day != day:
                continue
            key = (u.model if "model" in groups else None, u.scope if "project_id" in groups else None)
            row = rows.setdefault(key, [0, 0, 0, 0, 0])
            row[0] += u.input
            row[1] += u.cache_read
            row[2] += u.cache_write
            row[3] += u.output
            row[4] += u.requests
        out: list[JSONValue] = []
        for (model, project), (uncached, cached, write, output, requests) in sorted(
            rows.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")
        ):
            result: JSONObject = {
                "object": "organization.usage.completions.result",
                "input_tokens": uncached + cached + write,  # pitfall 4: includes the cached parts
                "input_cached_tokens": cached,
                "input_cache_write_tokens": write,
                "input_uncached_tokens": uncached,
                "output_tokens": output,
                "num_model_requests": requests,
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "project_id": project,
                "model": model,
                "user_id": None,
                "api_key_id": None,
                "batch": None,
                "service_tier": None,
            }
            if self.legacy_usage_fields:
                del result["input_cache_write_tokens"], result["input_uncached_tokens"]
            out.append(result)
        return out

    def _costs(self, day: dt.date, groups: list[str]) -> list[JSONValue]:
        by_item = "line_item" in groups
        by_project = "project_id" in groups
        rows: dict[tuple[str | None, str | None], tuple[Decimal, int]] = {}

        def add(scope: str | None, item: str, usd: Decimal, quantity: int) -> None:
            key = (scope if by_project else None, item if by_item else None)
            previous = rows.get(key, (Decimal(0), 0))
            rows[key] = (previous[0] + usd, previous[1] + quantity)

        for u in self.dataset.usage:
            if u.day != day:
                continue
            for t, (documented, suffix) in _OPENAI_LINE_ITEMS.items():
                if u.tokens(t):
                    item = documented if self.line_items == "documented" else f"{u.model}, {suffix}"
                    add(u.scope, item, self.dataset.cost(u, t), u.tokens(t))
        for c in self.dataset.charges:
            if c.day == day:
                item = "image_generation" if self.line_items == "documented" else "gpt-image-1, image generation"
                add(c.scope, item, c.usd, 1)
        return [
            {
                "object": "organization.costs.result",
                "amount": {"value": _dollars(usd), "currency": "usd"},
                "line_item": item,
                "project_id": project,
                "api_key_id": None,
                "quantity": quantity,
                "quantity_unit": "images" if item and "image" in item else "tokens",
            }
            for (project, item), (usd, quantity) in sorted(
                rows.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")
            )
        ]
