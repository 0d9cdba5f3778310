"""Accounts and the admin API: who reaches what, key lists, usage numbers vs stored rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from test_cli import as_json, eventbunker

from conftest import Server
from eventbunker.admin.accounts import create_account, create_admin_key, revoke_admin_key


@pytest.fixture
def admin(client: httpx.Client, db: psycopg.Connection[Any]) -> Callable[..., httpx.Response]:
    """``admin(method, path, json=...)`` as a fresh account's admin key."""
    return account_client(client, create_account(db, "acme")["admin_key"])


def account_client(client: httpx.Client, key: str) -> Callable[..., httpx.Response]:
    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        return client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)

    return call


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


def send(client: httpx.Client, key: str, events: Any) -> httpx.Response:
    return client.post("/v1/events", json=events, headers={"X-Api-Key": key})


def wait_stored(db: psycopg.Connection[Any], project_id: int, count: int) -> None:
    """A 202 means durable (maybe in the local spool first): wait until it is queryable."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = db.execute("SELECT count(*) FROM events WHERE project_id = %s", (project_id,))
        if row.fetchone() == (count,):
            return
        time.sleep(0.05)
    pytest.fail(f"project {project_id} did not get its {count} events")


def utc_today() -> date:
    return datetime.now(UTC).date()


# --- Accounts from the command line ------------------------------------------------


def test_account_create_command(database_url: str, db: psycopg.Connection[Any]) -> None:
    account = as_json(eventbunker("account", "create", "globex", "--database-url", database_url))
    assert set(account) == {"id", "name", "admin_key"}
    assert account["name"] == "globex"
    assert account["admin_key"].startswith("eba_")
    stored = db.execute(
        "SELECT key_hash, prefix FROM admin_keys WHERE account_id = %s", (account["id"],)
    ).fetchall()
    assert len(stored) == 1
    assert len(bytes(stored[0][0])) == 32  # only the hash
    assert account["admin_key"].encode() not in bytes(stored[0][0])
    assert account["admin_key"].startswith(stored[0][1])
    assert len(stored[0][1]) < len(account["admin_key"])

    # `project create --account` puts the project in that account.
    project = as_json(
        eventbunker(
            "project",
            "create",
            "site",
            "--account",
            str(account["id"]),
            "--database-url",
            database_url,
        )
    )
    assert set(project) == {"id", "name", "keys"}
    owner = db.execute("SELECT account_id FROM projects WHERE id = %s", (project["id"],))
    assert owner.fetchone() == (account["id"],)

    # Without --account: the default account, as before.
    plain = as_json(eventbunker("project", "create", "plain", "--database-url", database_url))
    row = db.execute(
        "SELECT a.name FROM projects p JOIN accounts a ON a.id = p.account_id WHERE p.id = %s",
        (plain["id"],),
    ).fetchone()
    assert row == ("default",)

    # The default account gets an admin key on request (to sign in to the web app).
    default_id = db.execute("SELECT id FROM accounts WHERE name = 'default' ORDER BY id LIMIT 1")
    default_row = default_id.fetchone()
    assert default_row is not None
    key = as_json(
        eventbunker(
            "account", "admin-key", "--account", str(default_row[0]), "--database-url", database_url
        )
    )
    assert key["admin_key"].startswith("eba_") and key["account_id"] == default_row[0]

    missing = eventbunker(
        "project", "create", "x", "--account", "987654", "--database-url", database_url, check=False
    )
    assert missing.returncode == 1
    assert b"no account with id 987654" in missing.stderr
    assert missing.stdout == b""


# --- Who reaches what ----------------------------------------------------------------


def test_admin_key_reaches_only_its_own_account(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    alice = account_client(client, create_account(db, "alice")["admin_key"])
    bob = account_client(client, create_account(db, "bob")["admin_key"])
    created = alice("POST", "/v1/projects", json={"name": "alice-shop"})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    key_id = alice("GET", f"/v1/projects/{pid}/keys").json()["keys"][0]["id"]

    assert [p["id"] for p in alice("GET", "/v1/projects").json()["projects"]] == [pid]
    assert bob("GET", "/v1/projects").json() == {"projects": []}

    # Every route answers for Bob exactly as for a project that does not exist.
    for method, path, body in [
        ("GET", f"/v1/projects/{pid}", None),
        ("PATCH", f"/v1/projects/{pid}", {"name": "stolen"}),
        ("DELETE", f"/v1/projects/{pid}", None),
        ("GET", f"/v1/projects/{pid}/keys", None),
        ("POST", f"/v1/projects/{pid}/keys", {"kind": "write"}),
        ("DELETE", f"/v1/projects/{pid}/keys/{key_id}", None),
        ("GET", f"/v1/usage?project_id={pid}", None),
    ]:
        assert_error(bob(method, path, json=body), 404, "not_found")
        assert_error(alice(method, path.replace(str(pid), "999999"), json=body), 404, "not_found")

    # Nothing changed for Alice.
    assert alice("GET", f"/v1/projects/{pid}").json()["name"] == "alice-shop"
    assert not any(k["revoked"] for k in alice("GET", f"/v1/projects/{pid}/keys").json()["keys"])
    # A key id of Alice's, under a project of Bob's, is not found either.
    bob_pid = bob("POST", "/v1/projects", json={"name": "bob-shop"}).json()["id"]
    assert_error(bob("DELETE", f"/v1/projects/{bob_pid}/keys/{key_id}"), 404, "not_found")


def test_project_keys_cannot_use_the_admin_api(
    client: httpx.Client, project: Any, db: psycopg.Connection[Any]
) -> None:
    routes = [("GET", "/v1/projects"), ("POST", "/v1/projects"), ("GET", "/v1/usage")]
    routes += [("GET", f"/v1/projects/{project.id}"), ("DELETE", f"/v1/projects/{project.id}")]
    for key in (project.write_key, project.query_key, project.delete_key):
        for method, path in routes:
            for headers in ({"Authorization": f"Bearer {key}"}, {"X-Api-Key": key}):
                response = client.request(method, path, headers=headers, json={"name": "x"})
                assert_error(response, 403, "wrong_key_kind")
    assert db.execute("SELECT 1 FROM projects WHERE id = %s", (project.id,)).fetchone()

    assert_error(client.get("/v1/projects"), 401, "missing_key")
    assert client.get("/v1/projects").headers["www-authenticate"].startswith("Bearer")
    unknown = {"Authorization": "Bearer eba_notakey"}
    assert_error(client.get("/v1/projects", headers=unknown), 401, "unknown_key")

    account = create_account(db, "revoked-soon")
    second = create_admin_key(db, account["id"])
    revoke_admin_key(db, second["id"])
    revoked = {"Authorization": f"Bearer {second['admin_key']}"}
    assert_error(client.get("/v1/projects", headers=revoked), 403, "revoked_key")
    ok = {"Authorization": f"Bearer {account['admin_key']}"}
    assert client.get("/v1/projects", headers=ok).status_code == 200
    # Both headers: X-Api-Key is the key, as for every other API (it used to
    # be the Authorization header here, and the ingest's other way round).
    both = {"X-Api-Key": account["admin_key"], "Authorization": "Bearer eba_notakey"}
    assert client.get("/v1/projects", headers=both).status_code == 200
    both = {"X-Api-Key": "eba_notakey", "Authorization": f"Bearer {account['admin_key']}"}
    assert_error(client.get("/v1/projects", headers=both), 401, "unknown_key")


# --- Projects and keys ------------------------------------------------------------


def test_project_and_key_lifecycle(
    admin: Callable[..., httpx.Response], client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    created = admin("POST", "/v1/projects", json={"name": "  shop  "})
    assert created.status_code == 201
    project = created.json()
    assert project["name"] == "shop"
    assert set(project["keys"]) == {"write", "query", "delete"}
    pid = project["id"]

    renamed = admin("PATCH", f"/v1/projects/{pid}", json={"name": "boutique"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "boutique"
    assert_error(admin("PATCH", f"/v1/projects/{pid}", json={"name": " "}), 400, "invalid_request")
    assert_error(admin("PATCH", f"/v1/projects/{pid}", json={"name": 3}), 400, "invalid_request")
    bad_json = admin("POST", "/v1/projects", content=b"{nope")
    assert_error(bad_json, 400, "malformed_json")
    assert bad_json.json()["error"]["details"][0]["field"] == "body"

    new_key = admin(
        "POST",
        f"/v1/projects/{pid}/keys",
        json={"kind": "write", "customer_identifier": "cust-7", "name": "website"},
    )
    assert new_key.status_code == 201, new_key.text
    secret = new_key.json()["key"]
    assert secret.startswith("ebw_")
    assert_error(
        admin("POST", f"/v1/projects/{pid}/keys", json={"kind": "admin"}), 400, "invalid_request"
    )

    listed = admin("GET", f"/v1/projects/{pid}/keys")
    assert listed.status_code == 200
    keys = listed.json()["keys"]
    assert len(keys) == 4
    for key in keys:
        assert set(key) == {
            "id",
            "project_id",
            "kind",
            "prefix",
            "name",
            "customer_identifier",
            "created_at",
            "last_used_at",
            "revoked_at",
            "revoked",
        }
    # The secrets are never listed, only their first characters.
    for secret_value in [secret, *project["keys"].values()]:
        assert secret_value not in listed.text
        assert secret_value[:10] in listed.text
    mine = next(k for k in keys if k["id"] == new_key.json()["id"])
    assert (mine["kind"], mine["name"], mine["customer_identifier"]) == (
        "write",
        "website",
        "cust-7",
    )
    assert mine["last_used_at"] is None

    # Used: last_used_at shows up (written off the request path, within the refresh interval).
    assert send(client, secret, {"event_name": "signup"}).status_code == 202
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        keys = admin("GET", f"/v1/projects/{pid}/keys").json()["keys"]
        if next(k for k in keys if k["id"] == mine["id"])["last_used_at"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail("last_used_at was not recorded")

    revoked = admin("DELETE", f"/v1/projects/{pid}/keys/{mine['id']}")
    assert revoked.json() == {"id": mine["id"], "revoked": True}
    time.sleep(1.0)  # revocation is visible within a second
    assert_error(send(client, secret, {"event_name": "late"}), 403, "revoked_key")
    keys = admin("GET", f"/v1/projects/{pid}/keys").json()["keys"]
    assert next(k for k in keys if k["id"] == mine["id"])["revoked"] is True

    # Deleting the project deletes its events and keys; the billed counts stay.
    both = [{"event_name": "a"}, {"event_name": "b"}]
    assert send(client, project["keys"]["write"], both).status_code == 202
    wait_stored(db, pid, 3)
    deleted = admin("DELETE", f"/v1/projects/{pid}")
    assert deleted.json() == {"id": pid, "deleted": True, "events_deleted": 3}
    assert db.execute("SELECT count(*) FROM events WHERE project_id = %s", (pid,)).fetchone() == (
        0,
    )
    assert db.execute("SELECT count(*) FROM api_keys WHERE project_id = %s", (pid,)).fetchone() == (
        0,
    )
    billed = db.execute(
        "SELECT sum(events) FROM write_counters WHERE project_id = %s", (pid,)
    ).fetchone()
    assert billed == (3,)
    assert_error(admin("GET", f"/v1/projects/{pid}"), 404, "not_found")
    time.sleep(1.0)
    assert_error(send(client, project["keys"]["write"], {"event_name": "x"}), 401, "unknown_key")


# --- Usage ------------------------------------------------------------------------


def test_usage_equals_the_stored_rows(
    admin: Callable[..., httpx.Response], client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    one = admin("POST", "/v1/projects", json={"name": "one"}).json()
    two = admin("POST", "/v1/projects", json={"name": "two"}).json()
    # Concurrent-ish batches of several sizes, as several flushes and shards.
    sent = 0
    for size in (1, 7, 50, 3, 120):
        batch = [{"event_name": "view", "n": i} for i in range(size)]
        assert send(client, one["keys"]["write"], batch).status_code == 202
        sent += size
    assert send(client, two["keys"]["write"], {"event_name": "solo"}).status_code == 202
    wait_stored(db, one["id"], sent)
    wait_stored(db, two["id"], 1)

    today = utc_today()
    yesterday = today - timedelta(days=1)
    # An earlier day, written by two flushers (shards), and refusals by reason.
    db.execute(
        "INSERT INTO write_counters (project_id, day, shard, events, latency_ms_sum,"
        " latency_ms_max) VALUES (%s, %s, 900, 10, 50, 9), (%s, %s, 901, 5, 40, 12)",
        (one["id"], yesterday, one["id"], yesterday),
    )
    db.execute(
        "INSERT INTO rejected_counters (project_id, day, reason, shard, requests) VALUES"
        " (%s, %s, 'invalid_event', 900, 2), (%s, %s, 'invalid_event', 901, 3),"
        " (%s, %s, 'body_too_large', 900, 1)",
        (one["id"], yesterday, one["id"], yesterday, one["id"], yesterday),
    )

    response = admin("GET", f"/v1/usage?start={yesterday}&end={today}")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["start"], report["end"], report["timezone"]) == (
        yesterday.isoformat(),
        today.isoformat(),
        "UTC",
    )
    by_id = {p["project_id"]: p for p in report["projects"]}
    assert set(by_id) == {one["id"], two["id"]}

    stored_today = db.execute(
        "SELECT project_id, count(*) FROM events WHERE project_id = ANY(%s)"
        " AND (received_at AT TIME ZONE 'UTC')::date = %s GROUP BY project_id",
        ([one["id"], two["id"]], today),
    ).fetchall()
    assert dict(stored_today) == {one["id"]: sent, two["id"]: 1}

    day_yesterday, day_today = by_id[one["id"]]["days"]
    assert day_today["day"] == today.isoformat() and day_today["events"] == sent
    assert by_id[two["id"]]["days"][1]["events"] == 1
    assert by_id[two["id"]]["days"][0] == {
        "day": yesterday.isoformat(),
        "events": 0,
        "rejected": {},
        "latency_ms_mean": None,
        "latency_ms_max": None,
    }
    # Summed over shards; mean latency = sum(latency_ms_sum) / sum(events); max of maxes.
    assert day_yesterday["events"] == 15
    assert day_yesterday["rejected"] == {"body_too_large": 1, "invalid_event": 5}
    assert day_yesterday["latency_ms_mean"] == pytest.approx(90 / 15, abs=1e-3)
    assert day_yesterday["latency_ms_max"] == 12
    # Today's latency, from the counters the ingest path wrote with the rows.
    latency = db.execute(
        "SELECT sum(latency_ms_sum) / sum(events), max(latency_ms_max) FROM write_counters"
        " WHERE project_id = %s AND day = %s",
        (one["id"], today),
    ).fetchone()
    assert latency is not None
    assert day_today["latency_ms_mean"] == pytest.approx(latency[0], abs=1e-3)
    assert day_today["latency_ms_max"] == pytest.approx(latency[1])
    assert 0 <= day_today["latency_ms_mean"] <= day_today["latency_ms_max"]

    total = by_id[one["id"]]["total"]
    assert total["events"] == sent + 15
    assert total["rejected"] == {"body_too_large": 1, "invalid_event": 5}
    assert total["latency_ms_max"] == max(12, day_today["latency_ms_max"])

    only_two = admin("GET", f"/v1/usage?start={today}&end={today}&project_id={two['id']}")
    assert [p["project_id"] for p in only_two.json()["projects"]] == [two["id"]]
    assert only_two.json()["projects"][0]["total"]["events"] == 1

    # Deleting events later does not reduce what was billed.
    db.execute("DELETE FROM events WHERE project_id = %s AND event_name = 'view'", (one["id"],))
    again = admin("GET", f"/v1/usage?start={today}&end={today}&project_id={one['id']}")
    assert again.json()["projects"][0]["days"][0]["events"] == sent


def test_usage_rejects_bad_ranges(admin: Callable[..., httpx.Response]) -> None:
    for query in [
        "start=2024-13-01&end=2024-12-31",
        "start=yesterday",
        "start=2024-02-01&end=2024-01-01",
        "start=2020-01-01&end=2024-01-01",
        "project_id=abc",
    ]:
        assert_error(admin("GET", f"/v1/usage?{query}"), 400, "invalid_request")
    # Default range: the last 30 days, today included.
    default = admin("GET", "/v1/usage").json()
    assert default["end"] == utc_today().isoformat()
    assert date.fromisoformat(default["end"]) - date.fromisoformat(default["start"]) == timedelta(
        days=29
    )


def test_admin_routes_are_documented(server: Server) -> None:
    schema = httpx.get(server.url + "/schema/openapi.json").json()
    assert "/v1/usage" in schema["paths"]
    assert "/v1/projects/{project_id}/keys" in schema["paths"]
    assert not any(path.startswith("/projects") or path == "/login" for path in schema["paths"])
