"""Generated requests for every operation of ``/schema/openapi.json``
(schemathesis), with real keys of the kind each one takes, against the real
server: no answer is a server error, and every answer matches its documented
status, content type, headers and schema. Bounded: ``CASES`` examples per
operation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from conftest import Server
from eventbunker.admin.accounts import create_account, create_project_in_account

CASES = 50
# What the answers must be. Not positive_data_acceptance: the schema cannot
# say every rule of a valid request (avg needs a target_property), so a
# schema-valid request may rightly be a 400.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def keys(database_url: str) -> dict[str, str]:
    """An account of its own for the admin operations (whatever the generated
    calls create, rename or delete stays in it: a project of its own to find),
    and the keys of a project of another account, out of the admin key's
    reach (a generated DELETE /v1/projects/{id} had deleted it, and every
    later write operation answered 401 unknown_key)."""
    with psycopg.connect(database_url, autocommit=True) as db:
        account = create_account(db, "schemathesis")
        create_project_in_account(db, account["id"], "generated")
        other = create_account(db, "schemathesis-keys")
        project = create_project_in_account(db, other["id"], "ingested")
    return {**project["keys"], "admin": account["admin_key"]}


def key_kind(path: str) -> str:
    if path == "/v1/query":
        return "query"
    if path == "/v1/delete":
        return "delete"
    if path.startswith(("/v1/projects", "/v1/usage")):
        return "admin"
    return "write"


def test_every_operation_answers_as_documented(server: Server, keys: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/schema/openapi.json")
    failures: list[str] = []
    statuses: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        calls = statuses.setdefault(name, [])
        try:
            exercise(operation, server.url, keys[key_kind(operation.path)], calls)
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; all shown
            failures.append(f"{name}: {exc}"[:3000])
    print(f"{sum(map(len, statuses.values()))} generated requests over {len(statuses)} operations")
    for name, calls in statuses.items():
        print(f"  {name}: {dict(sorted(Counter(calls).items()))}")
    assert len(statuses) >= 18, statuses
    assert not failures, "\n\n".join(failures)
    # The real keys were used: each operation was answered past its key check
    # (a 401 is only for a key the generator itself sent in Authorization).
    unauthenticated = [name for name, calls in statuses.items() if set(calls) <= {401}]
    assert not unauthenticated, statuses


def exercise(operation: Any, url: str, key: str, calls: list[int]) -> None:
    """``CASES`` generated requests of ``operation`` with ``key``; their statuses
    into ``calls``; raises what the checks found."""

    @given(operation.as_strategy())
    @settings(
        max_examples=CASES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        response = case.call_and_validate(base_url=url, headers={"X-Api-Key": key}, checks=CHECKS)
        calls.append(response.status_code)

    run()


# The Litestar handlers' own answers that need no key.
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}


def test_every_operation_documents_its_body_errors_and_security(server: Server) -> None:
    """Beyond what a generated request can reach: every operation with a body
    describes it, every keyed operation names its security scheme and documents
    its refusals (401, 403) in the API's one error shape."""
    from openapi_spec_validator import validate

    document = httpx.get(server.url + "/schema/openapi.json").json()
    validate(document)
    schemes = document["components"]["securitySchemes"]
    error = document["components"]["schemas"]["ErrorDocument"]
    assert error["required"] == ["error"], error
    operations = [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) >= 18
    for method, path, operation in operations:
        where = f"{method.upper()} {path}"
        if method in ("post", "put", "patch"):
            assert operation["requestBody"]["content"], where
        if path in OPEN_PATHS:
            continue
        assert operation["security"], where
        for requirement in operation["security"]:
            assert set(requirement) <= set(schemes), where
        for status in ("401", "403"):
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorDocument"}, where
        for status, answer in operation["responses"].items():
            if status in ("429", "503"):
                assert "Retry-After" in answer["headers"], where
