"""Isolation: every key kind by every endpoint, over real HTTP.

Two accounts, each with a project; the first project also has keys scoped to
customer ``c1``, a revoked write key and a spare project. Every key calls every
endpoint; each answer must be the one its kind earns (the endpoint's own kind
and project, or a refusal), and afterwards the database must show that no read,
write or delete crossed a project or a customer: what each key wrote is in its
own project (with its own customer when it has one), what each query read is
its own project's (its own customer's), what each delete removed was its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from test_web import csrf_token, sign_in

from eventbunker.admin.accounts import create_account, create_project_in_account
from eventbunker.admin.projects import create_key, revoke_key

# Kinds: the first project's keys, the other account's, the customer's.
KINDS = (
    "write",
    "query",
    "customer_delete",  # before the unscoped delete key: it must remove c1's victim only
    "delete",
    "revoked",
    "other_write",
    "other_query",
    "other_delete",
    "other_admin",
    "customer_write",
    "customer_query",
    "admin",  # last: it deletes the spare project
)
REFUSED = "refused"  # nothing read, written or deleted
SEED = {"none": 4, "c1": 2, "c2": 3}  # the first project's "seed" events per customer
OTHER_SEED = 5
VISIBLE_WITHIN_S = 2.0


@dataclass
class World:
    account: int
    other_account: int
    project: int
    other_project: int
    spare_project: int
    revoked_key_id: int
    keys: dict[str, str]


@pytest.fixture
def world(client: httpx.Client, db: psycopg.Connection[Any]) -> World:
    stamp = time.monotonic_ns()
    mine = create_account(db, f"iso-a-{stamp}")
    theirs = create_account(db, f"iso-b-{stamp}")
    project = create_project_in_account(db, mine["id"], "mine")
    other = create_project_in_account(db, theirs["id"], "theirs")
    spare = create_project_in_account(db, mine["id"], "spare")
    revoked = create_key(db, project["id"], "write")
    revoke_key(db, revoked["id"])
    keys = {
        "write": project["keys"]["write"],
        "query": project["keys"]["query"],
        "delete": project["keys"]["delete"],
        "admin": mine["admin_key"],
        "revoked": revoked["key"],
        "other_write": other["keys"]["write"],
        "other_query": other["keys"]["query"],
        "other_delete": other["keys"]["delete"],
        "other_admin": theirs["admin_key"],
        "customer_write": create_key(db, project["id"], "write", "c1")["key"],
        "customer_query": create_key(db, project["id"], "query", "c1")["key"],
        "customer_delete": create_key(db, project["id"], "delete", "c1")["key"],
    }
    w = World(
        mine["id"], theirs["id"], project["id"], other["id"], spare["id"], revoked["id"], keys
    )
    seed: list[dict[str, Any]] = []
    for customer, n in SEED.items():
        extra = {} if customer == "none" else {"customer_identifier": customer}
        seed += [{"event_name": "seed", **extra}] * n
        seed.append({"event_name": "victim", **extra})
    post_events(client, keys["write"], seed)
    post_events(client, keys["other_write"], [{"event_name": "seed"}] * OTHER_SEED)
    post_events(client, keys["other_write"], [{"event_name": "victim"}])
    # Named imports: the project's unscoped one, the customer's, the other project's.
    for key, import_id in [("write", "imp-all"), ("customer_write", "imp-c1")]:
        assert post_import(client, keys[key], import_id, "import-seed").status_code == 200
    assert post_import(client, keys["other_write"], "imp-other", "import-seed").status_code == 200
    wait_for_rows(db, w.project, sum(SEED.values()) + len(SEED) + 2)
    wait_for_rows(db, w.other_project, OTHER_SEED + 2)
    return w


def post_events(client: httpx.Client, key: str, events: list[dict[str, Any]]) -> None:
    response = client.post("/v1/events", content=orjson.dumps(events), headers=headers(key))
    assert response.status_code == 202, response.text


def post_import(client: httpx.Client, key: str, import_id: str | None, name: str) -> httpx.Response:
    line = orjson.dumps({"event_name": name, "customer_identifier": "c2"}) + b"\n"
    extra = {"X-Import-Id": import_id} if import_id else {}
    return client.post(
        "/v1/events/import",
        content=line,
        headers={**headers(key), "Content-Type": "application/x-ndjson", **extra},
    )


def headers(key: str) -> dict[str, str]:
    return {"X-Api-Key": key, "Content-Type": "application/json"}


def wait_for_rows(db: psycopg.Connection[Any], project_id: int, n: int) -> None:
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while time.monotonic() < deadline:
        [(count,)] = db.execute(
            "SELECT count(*) FROM events WHERE project_id = %s", (project_id,)
        ).fetchall()
        if count >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"project {project_id}: fewer than {n} rows")


@dataclass(frozen=True)
class Endpoint:
    """One call, made with each key; ``allowed``: kind → expected status
    (any other kind is refused, with one of the ``refused`` statuses)."""

    name: str
    call: Callable[[httpx.Client, World, str, str], httpx.Response]
    allowed: dict[str, int]
    refused: tuple[int, ...] = (401, 403)


WRITERS = {"write": 202, "customer_write": 202, "other_write": 202}
ADMIN_OWN = {"admin": 200, "other_admin": 404}


def _events(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = {"event_name": f"probe-{kind}", "customer_identifier": "c2"}
    return client.post("/v1/events", content=orjson.dumps(body), headers=headers(key))


def _segment(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = {"batch": [{"type": "track", "event": f"sdk-{kind}", "userId": "u"}]}
    return client.post("/v1/batch", content=orjson.dumps(body), headers=headers(key))


def _amplitude(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    # The key in the body, as Amplitude's SDKs send it.
    body = {"api_key": key, "events": [{"event_type": f"amp-{kind}", "user_id": "u"}]}
    return client.post("/2/httpapi", content=orjson.dumps(body))


def _posthog(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = {"api_key": key, "event": f"ph-{kind}", "distinct_id": "u"}
    return client.post("/capture/", content=orjson.dumps(body))


def _mixpanel(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = [{"event": f"mp-{kind}", "properties": {"token": key, "distinct_id": "u"}}]
    return client.post("/track", content=orjson.dumps(body))


def _import(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    return post_import(client, key, None, f"import-{kind}")


def _progress(import_id: str) -> Callable[[httpx.Client, World, str, str], httpx.Response]:
    def call(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
        return client.get(f"/v1/events/import/{import_id}", headers=headers(key))

    return call


def _query(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = {"analysis": "count", "event_name": "seed", "timeframe": "this_1_days"}
    return client.post("/v1/query", content=orjson.dumps(body), headers=headers(key))


def _extraction(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = {"analysis": "extraction", "timeframe": "this_1_days", "limit": 1000}
    return client.post("/v1/query", content=orjson.dumps(body), headers=headers(key))


def _delete(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
    body = {"event_name": "victim"}
    return client.post("/v1/delete", content=orjson.dumps(body), headers=headers(key))


def _admin(
    method: str, path: str, body: dict[str, Any] | None = None
) -> Callable[[httpx.Client, World, str, str], httpx.Response]:
    def call(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
        url = path.format(p=w.project, spare=w.spare_project, key=w.revoked_key_id)
        content = orjson.dumps(body) if body is not None else None
        return client.request(method, url, content=content, headers=headers(key))

    return call


def _web(path: str) -> Callable[[httpx.Client, World, str, str], httpx.Response]:
    """A page of the web app, signed in with the key (only an admin key signs in)."""

    def call(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
        with httpx.Client(base_url=client.base_url, timeout=10) as browser:
            sign_in(browser, key)
            return browser.get(path.format(p=w.project))

    return call


def _web_form(
    path: str, form: dict[str, str]
) -> Callable[[httpx.Client, World, str, str], httpx.Response]:
    """A form of the web app, posted signed in with the key (with the CSRF
    token of the signed-in projects page; a key that cannot sign in has none)."""

    def call(client: httpx.Client, w: World, kind: str, key: str) -> httpx.Response:
        with httpx.Client(base_url=client.base_url, timeout=10) as browser:
            sign_in(browser, key)
            home = browser.get("/")
            token = csrf_token(home.text) if home.status_code == 200 else ""
            fields = {k: v.format(kind=kind) for k, v in form.items()}
            return browser.post(path.format(p=w.project), data={**fields, "csrf_token": token})

    return call


ENDPOINTS = [
    Endpoint("POST /v1/events", _events, WRITERS),
    Endpoint("POST /v1/batch (Segment)", _segment, {k: 200 for k in WRITERS}),
    # Amplitude's API answers a bad key 400 (its SDKs expect that).
    Endpoint("POST /2/httpapi (Amplitude)", _amplitude, {k: 200 for k in WRITERS}, (400,)),
    Endpoint("POST /capture/ (PostHog)", _posthog, {k: 200 for k in WRITERS}),
    Endpoint("POST /track (Mixpanel)", _mixpanel, {k: 200 for k in WRITERS}),
    Endpoint("POST /v1/events/import", _import, {k: 200 for k in WRITERS}),
    Endpoint(
        "GET import imp-all",
        _progress("imp-all"),
        {"write": 200, "customer_write": 404, "other_write": 404},
    ),
    Endpoint(
        "GET import imp-c1",
        _progress("imp-c1"),
        {"write": 200, "customer_write": 200, "other_write": 404},
    ),
    Endpoint(
        "GET import imp-other",
        _progress("imp-other"),
        {"write": 404, "customer_write": 404, "other_write": 200},
    ),
    Endpoint(
        "POST /v1/query count", _query, {"query": 200, "customer_query": 200, "other_query": 200}
    ),
    Endpoint(
        "POST /v1/query extraction",
        _extraction,
        {"query": 200, "customer_query": 200, "other_query": 200},
    ),
    Endpoint(
        "POST /v1/delete", _delete, {"delete": 200, "customer_delete": 200, "other_delete": 200}
    ),
    Endpoint("GET /v1/projects", _admin("GET", "/v1/projects"), {"admin": 200, "other_admin": 200}),
    Endpoint("GET project", _admin("GET", "/v1/projects/{p}"), ADMIN_OWN),
    Endpoint("GET keys", _admin("GET", "/v1/projects/{p}/keys"), ADMIN_OWN),
    Endpoint("PATCH project", _admin("PATCH", "/v1/projects/{p}", {"name": "renamed"}), ADMIN_OWN),
    Endpoint(
        "PUT retention",
        _admin("PUT", "/v1/projects/{p}/retention", {"retention_days": 30}),
        ADMIN_OWN,
    ),
    Endpoint(
        "PUT rate_limit",
        _admin("PUT", "/v1/projects/{p}/rate_limit", {"events_per_second": 7, "burst": 70}),
        ADMIN_OWN,
    ),
    Endpoint(
        "POST key",
        _admin("POST", "/v1/projects/{p}/keys", {"kind": "query"}),
        {"admin": 201, "other_admin": 404},
    ),
    Endpoint("DELETE key", _admin("DELETE", "/v1/projects/{p}/keys/{key}"), ADMIN_OWN),
    Endpoint("GET usage", _admin("GET", "/v1/usage?project_id={p}"), ADMIN_OWN),
    Endpoint("web project page", _web("/projects/{p}"), ADMIN_OWN, (303,)),  # to /login
    Endpoint("web live events", _web("/projects/{p}/live"), ADMIN_OWN, (401,)),
    Endpoint(
        "web explore result",
        _web(
            "/projects/{p}/explore/result?analysis=count&timeframe=this_90_days"
            "&interval=none&group_by=event_name"
        ),
        ADMIN_OWN,
        (401,),
    ),
    Endpoint(
        "web create key",
        _web_form("/projects/{p}/keys", {"kind": "query", "name": "web-{kind}"}),
        {"admin": 201, "other_admin": 404},
        (303,),  # to /login
    ),
    # Each account creates projects in its own account only (checked below).
    Endpoint(
        "POST /v1/projects",
        _admin("POST", "/v1/projects", {"name": "made-by-api"}),
        {"admin": 201, "other_admin": 201},
    ),
    Endpoint(
        "web create project",
        _web_form("/projects", {"name": "made-on-web"}),
        {"admin": 201, "other_admin": 201},
        (303,),
    ),
    Endpoint("DELETE project", _admin("DELETE", "/v1/projects/{spare}"), ADMIN_OWN),
]


def test_no_key_crosses_a_project_or_a_customer(
    client: httpx.Client, db: psycopg.Connection[Any], world: World
) -> None:
    w = world
    answers: dict[tuple[str, str], httpx.Response] = {}
    wrong = []
    for endpoint in ENDPOINTS:
        for kind in KINDS:
            response = endpoint.call(client, w, kind, w.keys[kind])
            answers[endpoint.name, kind] = response
            want = endpoint.allowed.get(kind, REFUSED)
            got = response.status_code
            if not (got in endpoint.refused if want == REFUSED else got == want):
                wrong.append((endpoint.name, kind, want, got, response.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))
    cells = len(ENDPOINTS) * len(KINDS)
    assert cells == 336
    print(f"isolation matrix: {len(ENDPOINTS)} endpoints x {len(KINDS)} key kinds = {cells} calls")

    # Reads: each query key sees its own project, the customer's only c1's.
    counts = {k: answers["POST /v1/query count", k].json()["result"] for k in WRITERS_QUERY}
    assert counts == {
        "query": sum(SEED.values()),
        "customer_query": SEED["c1"],
        "other_query": OTHER_SEED,
    }
    mine = {("seed", c) for c in (None, "c1", "c2")} | {("victim", c) for c in (None, "c1", "c2")}
    mine |= {("import-seed", "c2"), ("import-seed", "c1")}
    theirs = {("seed", None), ("victim", None), ("import-seed", "c2")}
    for prefix, body_customer in PROBES:
        mine |= {(f"{prefix}-write", body_customer), (f"{prefix}-customer_write", "c1")}
        theirs.add((f"{prefix}-other_write", body_customer))
    for kind, visible in [
        ("query", mine),
        ("customer_query", {(n, c) for n, c in mine if c == "c1"}),
        ("other_query", theirs),
    ]:
        rows = answers["POST /v1/query extraction", kind].json()["result"]
        assert {(r["event_name"], r["customer_identifier"]) for r in rows} == visible, kind
    live = answers["web live events", "admin"].json()["events"]
    assert live and {e["event_name"] for e in live} <= {n for n, _ in mine}
    explored = answers["web explore result", "admin"].json()["result"]
    assert explored and {g["event_name"] for g in explored} <= {n for n, _ in mine}
    progress = answers["GET import imp-c1", "customer_write"].json()
    assert progress["import_id"] == "imp-c1"

    # Writes: in the writer's own project, under its own customer when it has one.
    written = db.execute(
        "SELECT event_name, project_id, customer_identifier FROM events"
        " WHERE project_id = ANY(%s) AND event_name ~ %s AND event_name <> 'import-seed'",
        ([w.project, w.other_project], PROBE_NAMES),
    ).fetchall()
    expected = set()
    for prefix, body_customer in PROBES:
        expected |= {
            (f"{prefix}-write", w.project, body_customer),
            (f"{prefix}-customer_write", w.project, "c1"),
            (f"{prefix}-other_write", w.other_project, body_customer),
        }
    assert sorted(written, key=str) == sorted(expected, key=str)
    [(strays,)] = db.execute(
        "SELECT count(*) FROM events WHERE event_name ~ %s"
        " AND event_name <> 'import-seed' AND project_id <> ALL(%s)",
        (PROBE_NAMES, [w.project, w.other_project]),
    ).fetchall()
    assert strays == 0

    # Deletes: each delete key removed its own project's victims, nothing else;
    # the customer's key (first) only its customer's one.
    assert answers["POST /v1/delete", "customer_delete"].json()["deleted"] == 1
    assert answers["POST /v1/delete", "delete"].json()["deleted"] == len(SEED) - 1
    assert answers["POST /v1/delete", "other_delete"].json()["deleted"] == 1
    left = dict(
        db.execute(
            "SELECT project_id, count(*) FROM events WHERE event_name = 'seed'"
            " AND project_id = ANY(%s) GROUP BY project_id",
            ([w.project, w.other_project],),
        ).fetchall()
    )
    assert left == {w.project: sum(SEED.values()), w.other_project: OTHER_SEED}

    # The admin API: each account sees and changes only its own projects.
    listed = answers["GET /v1/projects", "other_admin"].json()["projects"]
    assert [p["id"] for p in listed] == [w.other_project]
    listed = answers["GET /v1/projects", "admin"].json()["projects"]
    assert {p["id"] for p in listed} == {w.project, w.spare_project}
    names = dict(
        db.execute(
            "SELECT id, name FROM projects WHERE id = ANY(%s)",
            ([w.project, w.other_project, w.spare_project],),
        ).fetchall()
    )
    assert names == {w.project: "renamed", w.other_project: "theirs"}  # spare deleted
    limits = db.execute(
        "SELECT id, rate_limit_events_per_second, rate_limit_burst FROM projects"
        " WHERE id = ANY(%s) ORDER BY id",
        ([w.project, w.other_project],),
    ).fetchall()
    assert limits == sorted([(w.project, 7, 70), (w.other_project, None, None)])
    web_keys = db.execute(
        "SELECT project_id, name FROM api_keys WHERE name LIKE 'web-%%' AND project_id = ANY(%s)",
        ([w.project, w.other_project],),
    ).fetchall()
    assert web_keys == [(w.project, "web-admin")]
    # Projects created by a key: only by admin keys, each in its own account.
    made = db.execute(
        "SELECT name, account_id FROM projects"
        " WHERE name LIKE 'made-%%' AND account_id = ANY(%s) ORDER BY 1, 2",
        ([w.account, w.other_account],),
    ).fetchall()
    assert made == sorted(
        (name, account)
        for name in ("made-by-api", "made-on-web")
        for account in (w.account, w.other_account)
    )


WRITERS_QUERY = ("query", "customer_query", "other_query")
# What each writing endpoint names its probe events, and the customer its body claims.
PROBES = [
    ("probe", "c2"),
    ("sdk", None),
    ("amp", None),
    ("ph", None),
    ("mp", None),
    ("import", "c2"),
]
PROBE_NAMES = "^(" + "|".join(prefix for prefix, _ in PROBES) + ")-"
