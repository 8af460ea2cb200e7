"""``/openapi.json`` matches the routes, and schemathesis finds no 5xx and no schema drift (issue 8)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import hypothesis
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from halswarm.http.app import create_app
from halswarm.http.auth import check_routes, route_role
from halswarm.http.context import ApiContext
from halswarm.http.openapi import openapi_document
from halswarm.testing import TEST_TOKEN, api_client, open_supervisor, supervisor_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from quart_trio import QuartTrio

    from halswarm.supervisor.app import SupervisorHandle

_EXAMPLES = 20


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[SupervisorHandle]:
    """A supervisor without agents (every target is unknown: fuzzed commands touch nothing)."""
    with trio.fail_after(120):
        async with open_supervisor(supervisor_config(tmp_path / "supervisor.db")) as handle:
            yield handle


async def _served(sup: SupervisorHandle) -> dict[str, object]:
    async with api_client(sup, token=None) as anonymous:
        response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, object] = response.json()
    return document


def _app(sup: SupervisorHandle) -> QuartTrio:
    """The app as the supervisor builds it (route registration touches only these handles)."""

    async def ready() -> dict[str, str]:
        return {}

    context = ApiContext(
        token=TEST_TOKEN,
        store=sup.store,
        tracker=sup.tracker,
        registry=sup.registry,
        dispatcher=sup.dispatcher,
        metrics=sup.metrics,
        readiness=ready,
        queue_stats=dict,
        cost=None,  # type: ignore[arg-type]  # not called while only routes are listed
        policies=sup.policies,
        projects=sup.dependencies,
    )
    return create_app(context)


async def test_the_document_lists_exactly_the_api_routes_with_their_roles(sup: SupervisorHandle) -> None:
    document = await _served(sup)
    assert document == openapi_document()
    paths = document["paths"]
    assert isinstance(paths, dict)
    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    app = _app(sup)
    routed: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        role = route_role(app.view_functions[rule.endpoint])
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routed.add((method, path))
            assert paths[path][method.lower()]["x-required-role"] == role, (method, path)
    assert documented == routed
    schemes = document["components"]["securitySchemes"]  # type: ignore[index]
    assert schemes == {"bearer": {"type": "http", "scheme": "bearer"}}


async def test_an_unmarked_api_route_is_refused_at_startup(sup: SupervisorHandle) -> None:
    app = _app(sup)

    @app.get("/api/v1/unmarked")
    async def unmarked() -> str:
        return "x"

    with pytest.raises(RuntimeError, match="/api/v1/unmarked"):
        check_routes(app)


def _fuzz(document: dict[str, object], base_url: str) -> None:
    """Every operation, a bounded number of examples each, checked against the document."""
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) == 28
    for operation in operations:

        @hypothesis.settings(
            max_examples=_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case: object) -> None:
            assert isinstance(case, schemathesis.Case)
            case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=10)

        run()


async def test_schemathesis_finds_no_server_error_and_no_schema_drift(sup: SupervisorHandle) -> None:
    document = await _served(sup)
    with trio.fail_after(90):
        # schemathesis is synchronous (requests): run it in a thread while trio serves.
        await trio.to_thread.run_sync(_fuzz, document, f"http://127.0.0.1:{sup.http_port}")
