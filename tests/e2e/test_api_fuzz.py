"""Schemathesis against the live /openapi.json: bounded examples per operation, no 5xx, every response
documented and conforming to its schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.api_client import ADMIN, Api

FUZZ_WORKSPACE = "fuzz-ws"
HEADER_CONTROL_CHARACTERS = "".join(chr(c) for c in range(32) if c != 9) + "\x7f"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(e2e):
    """A real workspace with a connection, so generated requests reach past the 404 of unknown ids."""
    api = Api(e2e.api_url)
    api.create_workspace(FUZZ_WORKSPACE)
    assert api.connect(FUZZ_WORKSPACE, "hubspot", e2e.sandbox.connections()).status_code == 201
    schema = schemathesis.openapi.from_url(f"{e2e.api_url}/openapi.json")
    # Negative cases may carry control characters in header values; such a request is not HTTP, and
    # uvicorn's parser answers it (400 text/plain) before the app sees it. Bodies, paths and queries
    # are still fuzzed with anything.
    schema.config.generation.update(codec="ascii", exclude_header_characters=HEADER_CONTROL_CHARACTERS)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case):
    if "workspace_id" in (case.path_parameters or {}) and case.operation.method.upper() != "DELETE":
        case.path_parameters["workspace_id"] = FUZZ_WORKSPACE
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS)
