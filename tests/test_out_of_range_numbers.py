"""Every input that reaches an answer encodes: numbers out of range in a body
(beyond 64 bits, beyond a double, beyond a field's bound) answer 400 naming
the field; ids out of range in a path are no such thing (404), never a 500.
The import's X-Import-First-Line is tested in test_import_api.py."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from conftest import Project
from eventbunker.admin.accounts import create_account, create_project_in_account

# In the bodies: 2**64, 2**63 and 1e400, as sent.
BEYOND_64_BITS = str(1 << 64)
BEYOND_INT64 = str(1 << 63)


@pytest.fixture
def admin(db: psycopg.Connection[Any]) -> tuple[dict[str, str], int]:
    account = create_account(db, "out-of-range")
    project = create_project_in_account(db, account["id"], "numbers")
    return {"Authorization": f"Bearer {account['admin_key']}"}, int(project["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            '{"analysis": "extraction", "timeframe": "this_1_days", "limit": 18446744073709551616}',
            "limit",
        ),
        (
            '{"analysis": "percentile", "target_property": "metric_value", "percentile": 1e400,'
            ' "timeframe": "this_1_days"}',
            "percentile",
        ),
        ('{"analysis": "count", "timeframe": "this_9223372036854775808_days"}', "timeframe"),
    ],
)
def test_query_numbers(client: httpx.Client, project: Project, body: str, field: str) -> None:
    r = client.post("/v1/query", content=body, headers={"X-Api-Key": project.query_key})
    assert r.status_code == 400, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ('{"event_name": "e", "timestamp": 18446744073709551616}', "timestamp"),
        ('{"event_name": "e", "timestamp": 1e400}', "timestamp"),
        ('{"event_name": "e", "sent_at": 18446744073709551616}', "sent_at"),
        (
            '{"event_name": "e", "metric_name": "m", "metric_value": 1e400}',
            "metric_value",
        ),
    ],
)
def test_event_numbers(client: httpx.Client, project: Project, event: str, field: str) -> None:
    headers = {"X-Api-Key": project.write_key, "Content-Type": "application/json"}
    r = client.post("/v1/events", content=event, headers=headers)
    assert r.status_code == 400, r.text
    assert [(d["index"], d["field"]) for d in r.json()["error"]["details"]] == [(0, field)]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("retention", '{"retention_days": 18446744073709551616}', "retention_days"),
        ("retention", '{"retention_days": 1e400}', "retention_days"),
        ("rate_limit", '{"events_per_second": 1e39, "burst": 5}', "events_per_second"),
        ("rate_limit", '{"events_per_second": 5, "burst": 9223372036854775808}', "burst"),
    ],
)
def test_admin_numbers(
    client: httpx.Client, admin: tuple[dict[str, str], int], path: str, body: str, field: str
) -> None:
    headers, project_id = admin
    r = client.put(f"/v1/projects/{project_id}/{path}", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/projects/{big}"),
        ("DELETE", "/v1/projects/{big}"),
        ("DELETE", "/v1/projects/{p}/keys/{big}"),
        ("GET", "/v1/usage?project_id={big}"),
    ],
)
@pytest.mark.parametrize("big", [BEYOND_INT64, BEYOND_64_BITS])
def test_ids_out_of_range_are_not_found(
    client: httpx.Client, admin: tuple[dict[str, str], int], method: str, path: str, big: str
) -> None:
    headers, project_id = admin
    r = client.request(method, path.format(big=big, p=project_id), headers=headers)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
