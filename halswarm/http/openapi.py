"""``GET /openapi.json``: an OpenAPI 3.1 description of the API, built from the code (issue 8).

Request and response schemas are derived from the attrs classes the routes actually
structure (``structure_strict``, so request bodies forbid unknown keys) and unstructure
(every field is emitted: the converter does not omit defaults), so the document cannot
drift from the models. The operation table below is checked against the app's URL map
by ``tests/http/test_openapi.py``: every ``/api/`` route is documented and nothing else.
Served without a token, like the probes.
"""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Final, Literal, Union, get_args, get_origin

import attrs
import orjson
from quart import Quart, Response

from halswarm.audit import AuditEntry
from halswarm.commands import CommandRequest
from halswarm.cost.model import COST_GROUPINGS, CostReport
from halswarm.envcheck.views import (
    AgentMdDiff,
    AgentMdInfo,
    AgentMdSyncAnswer,
    AgentMdSyncRequest,
    ApproveRequest,
    DriftEntry,
    EnvStatus,
    ManifestInfo,
)
from halswarm.jsontypes import JSONObject
from halswarm.models import SESSION_STATUSES, Command, Event, Node, Session
from halswarm.policy.views import PolicyInfo
from halswarm.projects import CompleteAnswer, CompleteRequest, ProjectInfo

if TYPE_CHECKING:
    from collections.abc import Mapping

    from halswarm.jsontypes import JSONValue

__all__ = ["OPENAPI_PATH", "openapi_document", "register_openapi"]

OPENAPI_PATH: Final = "/openapi.json"
_REF: Final = "#/components/schemas/"


class _Schemas:
    """Collects component schemas for attrs classes reached from the documented types."""

    def __init__(self) -> None:
        self.components: dict[str, JSONValue] = {}

    def of(self, tp: object, *, strict: bool = False) -> JSONObject:
        """The JSON schema of a type annotation (attrs classes become ``$ref`` components)."""
        if tp is str:
            return {"type": "string"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is type(None):
            return {"type": "null"}
        if tp is object:
            return {}
        origin = get_origin(tp)
        args = get_args(tp)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(a, strict=strict) for a in args]}
        if origin is list:
            return {"type": "array", "items": self.of(args[0], strict=strict)}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1], strict=strict)}
        if isinstance(tp, type) and attrs.has(tp):
            return self.ref(tp, strict=strict)
        raise TypeError(f"no JSON schema for {tp!r}")

    def ref(self, cls: type, *, strict: bool = False) -> JSONObject:
        """A ``$ref`` to *cls*'s component, generating it on first use.

        Args:
            cls: an attrs class.
            strict: a request body: unknown keys refused, fields with defaults optional.
                Response components list every field as required (all are emitted).
        """
        name = cls.__name__ + ("Body" if strict else "")
        if name not in self.components:
            self.components[name] = {}  # placeholder against recursion
            hints = typing.get_type_hints(cls)
            properties: dict[str, JSONValue] = {}
            required: list[JSONValue] = []
            for field in attrs.fields(cls):
                properties[field.name] = self.of(hints[field.name], strict=strict)
                if not strict or field.default is attrs.NOTHING:
                    required.append(field.name)
            schema: JSONObject = {"type": "object", "properties": properties, "required": required}
            if strict:
                schema["additionalProperties"] = False
            doc = (cls.__doc__ or "").strip().splitlines()
            if doc:
                schema["description"] = doc[0]
            self.components[name] = schema
        return {"$ref": _REF + name}


def _param(name: str, where: str, schema: JSONObject, description: str = "") -> JSONObject:
    param: JSONObject = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if description:
        param["description"] = description
    return param


def _q(name: str, schema: Mapping[str, JSONValue] | None = None, description: str = "") -> JSONObject:
    return _param(name, "query", dict(schema) if schema else {"type": "string"}, description)


_LIMIT: Final[JSONObject] = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
_ROW_ID: Final[JSONObject] = {"type": "integer", "minimum": 0, "maximum": 2**62}
_TIME: Final[JSONObject] = {"type": "string", "description": "RFC 3339 time, e.g. 2026-01-01T00:00:00Z"}
_WAIT: Final[JSONObject] = {"type": "number", "minimum": 0, "maximum": 300}

_EVENT_FILTERS: Final = [
    _q("node"),
    _q("project"),
    _q("type"),
    _q("since", _TIME, "events at or after this time"),
    _q("after", _ROW_ID, "events with a larger id"),
    _q("limit", _LIMIT),
]


@attrs.frozen
class _Op:
    """One documented operation."""

    method: str
    path: str
    summary: str
    role: str
    ok: JSONObject
    params: list[JSONObject] = attrs.Factory(list)
    body: JSONObject | None = None
    body_required: bool = True
    errors: tuple[int, ...] = (400, 404)
    ok_status: int = 200


def _list(key: str, item: JSONObject) -> JSONObject:
    return {"type": "object", "properties": {key: {"type": "array", "items": item}}, "required": [key]}


def _one(key: str, item: JSONObject) -> JSONObject:
    return {"type": "object", "properties": {key: item}, "required": [key]}


def _operations(s: _Schemas) -> list[_Op]:
    command = _one("command", s.of(Command))
    policy = _one("policy", s.of(PolicyInfo))
    return [*_core_operations(s, command, policy), *_env_operations(s, command)]


def _env_operations(s: _Schemas, command: JSONObject) -> list[_Op]:
    """The environment routes (issue #9)."""
    manifest = s.of(ManifestInfo)
    status = s.of(EnvStatus)
    filters = [_q("node"), _q("project")]
    wait = _q("wait", _WAIT, "seconds to wait for the outcome (default 30)")
    command_errors = (400, 404, 409, 502, 504)
    return [
        _Op("get", "/api/v1/env/manifest", "The environment manifest the supervisor holds", "viewer", manifest,
            errors=(404,)),
        _Op("put", "/api/v1/env/manifest", "Replace the manifest (validated, stored, sent to agents; audited)",
            "admin", manifest, body={"type": "object"}, errors=(400, 404)),
        _Op("get", "/api/v1/env/status", "Latest check report per node and project", "viewer", status, filters,
            errors=(400, 404)),
        _Op("get", "/api/v1/env/status/{node}", "One node's latest check reports", "viewer", status,
            [_q("project")], errors=(400, 404)),
        _Op("get", "/api/v1/env/drift", "Drift items of the latest reports", "viewer",
            _list("drift", s.of(DriftEntry)), filters, errors=(400, 404)),
        _Op("post", "/api/v1/env/check/{node}", "Check a node's projects now (an env_check command)", "operator",
            command, [_q("project"), wait], errors=command_errors),
        _Op("post", "/api/v1/env/provision/{node}", "Apply the safe fixes on a node (an env_provision command)",
            "operator", command, [_q("project"), _q("dry_run", {"type": "boolean"}), wait], errors=command_errors),
        _Op("post", "/api/v1/env/approve/{node}", "Approve and run a declared install command (audited)",
            "operator", command, [wait], body=s.of(ApproveRequest, strict=True), errors=command_errors),
        _Op("get", "/api/v1/agent-md/{project}", "The rendered AGENT.md and each node's copy", "viewer",
            s.of(AgentMdInfo), errors=(404,)),
        _Op("get", "/api/v1/agent-md/{project}/diff", "Each node's AGENT.md against the template", "viewer",
            {"type": "object", "properties": {"project": {"type": "string"},
                                              "diffs": {"type": "array", "items": s.of(AgentMdDiff)}},
             "required": ["project", "diffs"]}, errors=(404,)),
        _Op("post", "/api/v1/agent-md/sync", "Rewrite AGENT.md from the template (an env_provision per node)",
            "operator", s.of(AgentMdSyncAnswer), [wait], body=s.of(AgentMdSyncRequest, strict=True),
            errors=command_errors),
    ]  # fmt: skip


def _core_operations(s: _Schemas, command: JSONObject, policy: JSONObject) -> list[_Op]:
    return [
        _Op("get", "/api/v1/sessions", "List tracked sessions", "viewer", _list("sessions", s.of(Session)),
            [_q("status", {"enum": list(SESSION_STATUSES)}), _q("project"), _q("node")], errors=(400,)),
        _Op("get", "/api/v1/sessions/{session_id}", "One session", "viewer", _one("session", s.of(Session))),
        _Op("get", "/api/v1/sessions/{session_id}/events", "A session's stored events", "viewer",
            _list("events", s.of(Event)), list(_EVENT_FILTERS)),
        _Op("get", "/api/v1/events", "Stored events", "viewer", _list("events", s.of(Event)),
            [_q("session"), *_EVENT_FILTERS], errors=(400,)),
        _Op("get", "/api/v1/nodes", "List known nodes", "viewer", _list("nodes", s.of(Node)), errors=()),
        _Op("get", "/api/v1/nodes/{node_id}", "One node", "viewer", _one("node", s.of(Node)), errors=(404,)),
        _Op("post", "/api/v1/commands", "Submit a command (200 done, 202 running, 502 failed, 504 no answer)",
            "operator", command, [_q("wait", _WAIT, "seconds to wait for the outcome (default 30)")],
            body=s.of(CommandRequest, strict=True), errors=(400, 404, 409, 502, 503, 504)),
        _Op("get", "/api/v1/commands/{command_id}", "One command, optionally waiting for its outcome", "viewer",
            command, [_q("wait", _WAIT)], errors=(400, 404, 502, 504)),
        _Op("get", "/api/v1/cost", "The cost report", "viewer", s.of(CostReport),
            [_q("period", {"enum": ["today", "week", "month"]}), _q("from", {"type": "string", "format": "date"}),
             _q("to", {"type": "string", "format": "date"}), _q("group_by", {"enum": list(COST_GROUPINGS)})],
            errors=(400,)),
        _Op("get", "/api/v1/policies", "Policies in priority order", "viewer",
            _list("policies", s.of(PolicyInfo)), errors=()),
        _Op("get", "/api/v1/policies/{name}", "One policy", "viewer", policy, errors=(404,)),
        _Op("post", "/api/v1/policies/{name}/enable", "Enable a policy at runtime (audited)", "admin", policy,
            errors=(404, 409)),
        _Op("post", "/api/v1/policies/{name}/disable", "Disable a policy at runtime (audited)", "admin", policy,
            errors=(404, 409)),
        _Op("get", "/api/v1/projects", "Known projects", "viewer", _list("projects", s.of(ProjectInfo)), errors=()),
        _Op("get", "/api/v1/projects/{name}", "One project", "viewer", _one("project", s.of(ProjectInfo)),
            errors=(404,)),
        _Op("post", "/api/v1/projects/{name}/complete", "Mark a project complete; start its dependants", "operator",
            s.of(CompleteAnswer), body=s.of(CompleteRequest, strict=True), body_required=False),
        _Op("get", "/api/v1/audit", "The audit log, newest first", "viewer", _list("audit", s.of(AuditEntry)),
            [_q("actor", description="exact, or a prefix ending in *"), _q("action", description="exact or prefix*"),
             _q("target"), _q("since", _TIME), _q("until", _TIME), _q("before", _ROW_ID), _q("after", _ROW_ID),
             _q("limit", _LIMIT)], errors=(400,)),
    ]  # fmt: skip


#: Routes that submit commands: 202 while the command is still running after ``wait``.
_COMMAND_ROUTES: Final = (
    "/api/v1/env/check/",
    "/api/v1/env/provision/",
    "/api/v1/env/approve/",
    "/api/v1/agent-md/sync",
)

_ERROR_TEXT: Final = {
    400: "Invalid parameter, header or body",
    401: "Missing or unknown bearer token",
    403: "Role too low, or Origin not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    502: "The command failed on the agent",
    503: "Storage unavailable",
    504: "No answer before the deadline",
}


def openapi_document() -> JSONObject:
    """The OpenAPI 3.1 document for every ``/api/`` route."""
    s = _Schemas()
    error: JSONObject = {"$ref": _REF + "Error"}
    paths: dict[str, JSONObject] = {}
    for op in _operations(s):
        responses: JSONObject = {str(op.ok_status): _json("OK", op.ok)}
        if op.path == "/api/v1/commands" or op.path.startswith(_COMMAND_ROUTES):
            responses["202"] = _json("Accepted, still running", op.ok)
        for status in sorted({*op.errors, 401, 403, 413, 503}):
            responses[str(status)] = _json(_ERROR_TEXT[status], error)
        path_params = [_param(p.strip("{}"), "path", {"type": "string"}) for p in op.path.split("/") if "{" in p]
        operation: JSONObject = {
            "summary": op.summary,
            "description": f"Requires role {op.role} or higher.",
            "operationId": op.method + "".join(p.strip("{}").title() for p in op.path.split("/")[3:]),
            "parameters": [*path_params, *op.params],
            "responses": responses,
            "x-required-role": op.role,
        }
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": op.body}},
            }
        paths.setdefault(op.path, {})[op.method] = operation
    components: dict[str, JSONValue] = dict(s.components)
    components["Error"] = {
        "type": "object",
        "description": "Every error answer; some add sibling keys (a failed command, the required role).",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "halswarm supervisor API",
            "version": "1",
            "description": "Roles: viewer (reads) < operator (commands, session actions, project completion) "
            "< admin (policies, runtime config). Send X-Correlation-ID to follow a request through the logs.",
        },
        "paths": dict(paths),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _json(description: str, schema: JSONObject) -> JSONObject:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def register_openapi(app: Quart) -> None:
    """Add ``GET /openapi.json`` to *app* (built once, served without a token)."""
    body = orjson.dumps(openapi_document())

    @app.get(OPENAPI_PATH)
    async def openapi_json() -> Response:
        return Response(body, content_type="application/json")
