"""Accounts and what an account admin key may do with its own projects.

Every function takes a psycopg connection and runs in one transaction, so
the CLI, the admin API and the web app share one implementation. The
``*_in_account`` functions never touch another account's project: one that
is not the caller's is reported exactly like one that does not exist
(:class:`NotFound`), so ids of other accounts cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from eventbunker.admin.keys import (
    display_prefix,
    generate_admin_secret,
    hash_secret,
)
from eventbunker.admin.projects import AdminError, create_key, create_project

MAX_NAME_LENGTH = 200
# Admin keys touch ``last_used_at`` at most this often.
LAST_USED_RESOLUTION = "1 minute"


class NotFound(AdminError):
    """No such object in this account (or at all)."""


@dataclass(frozen=True, slots=True)
class AdminKey:
    """An authenticated account admin key."""

    id: int
    account_id: int
    account_name: str


class AdminKeyStatus:
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    PROJECT_KEY = "project_key"  # a write, query or delete key: not for the admin API


def check_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise AdminError(f"{what} name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise AdminError(f"{what} name must be at most {MAX_NAME_LENGTH} characters")
    return name


def _insert_admin_key(conn: psycopg.Connection[Any], account_id: int) -> dict[str, Any]:
    secret = generate_admin_secret()
    row = conn.execute(
        "INSERT INTO admin_keys (account_id, key_hash, prefix) VALUES (%s, %s, %s) RETURNING id",
        (account_id, hash_secret(secret), display_prefix(secret)),
    ).fetchone()
    assert row is not None
    return {"id": int(row[0]), "account_id": account_id, "admin_key": secret}


def create_account(conn: psycopg.Connection[Any], name: str) -> dict[str, Any]:
    """An account and its first admin key; the secret is shown only here."""
    name = check_name(name, "account")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO accounts (name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()
        assert row is not None
        account_id = int(row[0])
        key = _insert_admin_key(conn, account_id)
    return {"id": account_id, "name": name, "admin_key": key["admin_key"]}


def create_admin_key(conn: psycopg.Connection[Any], account_id: int) -> dict[str, Any]:
    """Another admin key for an existing account (e.g. the default one)."""
    with conn.transaction():
        _account_name(conn, account_id)
        return _insert_admin_key(conn, account_id)


def revoke_admin_key(conn: psycopg.Connection[Any], admin_key_id: int) -> dict[str, Any]:
    with conn.transaction():
        row = conn.execute(
            "UPDATE admin_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
            " RETURNING id",
            (admin_key_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no admin key with id {admin_key_id}")
        conn.execute("DELETE FROM web_sessions WHERE admin_key_id = %s", (admin_key_id,))
    return {"id": int(row[0]), "revoked": True}


def _account_name(conn: psycopg.Connection[Any], account_id: int) -> str:
    row = conn.execute("SELECT name FROM accounts WHERE id = %s", (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    return str(row[0])


def authenticate_admin(conn: psycopg.Connection[Any], secret: str) -> AdminKey | str:
    """The admin key for ``secret``, or an :class:`AdminKeyStatus` saying why not."""
    digest = hash_secret(secret)
    with conn.transaction():
        row = conn.execute(
            "SELECT k.id, k.account_id, a.name, k.revoked_at IS NOT NULL,"
            " k.last_used_at IS NULL OR k.last_used_at < now() - %s::interval"
            " FROM admin_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = %s",
            (LAST_USED_RESOLUTION, digest),
        ).fetchone()
        if row is None:
            project_key = conn.execute(
                "SELECT 1 FROM api_keys WHERE key_hash = %s", (digest,)
            ).fetchone()
            return AdminKeyStatus.UNKNOWN if project_key is None else AdminKeyStatus.PROJECT_KEY
        if row[3]:
            return AdminKeyStatus.REVOKED
        if row[4]:
            conn.execute("UPDATE admin_keys SET last_used_at = now() WHERE id = %s", (row[0],))
    return AdminKey(id=int(row[0]), account_id=int(row[1]), account_name=str(row[2]))


# --- Projects of one account -------------------------------------------------


# What a project row is shown with: _project_row reads these, in this order.
_PROJECT_COLUMNS = (
    "p.id, p.name, p.created_at, p.retention_days,"
    " p.rate_limit_events_per_second, p.rate_limit_burst"
)


def _project_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": int(row[0]),
        "name": row[1],
        "created_at": row[2],
        "retention_days": row[3],
        **_rate_limit(row[4:6]),
    }


def _rate_limit(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"rate_limit": {"events_per_second": row[0], "burst": row[1]}}


def list_projects(conn: psycopg.Connection[Any], account_id: int) -> list[dict[str, Any]]:
    """The account's projects with their billed writes today and this month (UTC)."""
    rows = conn.execute(
        f"SELECT {_PROJECT_COLUMNS},"
        " coalesce(sum(w.events) FILTER (WHERE w.day = t.today), 0),"
        " coalesce(sum(w.events), 0)"
        " FROM projects p"
        " CROSS JOIN (SELECT (now() AT TIME ZONE 'UTC')::date AS today) t"
        " LEFT JOIN write_counters w ON w.project_id = p.id"
        "  AND w.day >= date_trunc('month', t.today)::date AND w.day <= t.today"
        " WHERE p.account_id = %s GROUP BY p.id ORDER BY p.id",
        (account_id,),
    ).fetchall()
    return [
        {**_project_row(r), "billed_today": int(r[6]), "billed_this_month": int(r[7])} for r in rows
    ]


def get_project(conn: psycopg.Connection[Any], account_id: int, project_id: int) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {_PROJECT_COLUMNS} FROM projects p WHERE id = %s AND account_id = %s",
        (project_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return _project_row(row)


def create_project_in_account(
    conn: psycopg.Connection[Any], account_id: int, name: str
) -> dict[str, Any]:
    """A project with one key of each kind (as the CLI does); secrets shown only here."""
    created = create_project(conn, check_name(name, "project"), account_id)
    return {**get_project(conn, account_id, created["id"]), "keys": created["keys"]}


def rename_project(
    conn: psycopg.Connection[Any], account_id: int, project_id: int, name: str
) -> dict[str, Any]:
    name = check_name(name, "project")
    row = conn.execute(
        "UPDATE projects p SET name = %s WHERE id = %s AND account_id = %s"
        f" RETURNING {_PROJECT_COLUMNS}",
        (name, project_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return _project_row(row)


MAX_RETENTION_DAYS = 36_500


def set_retention(
    conn: psycopg.Connection[Any], account_id: int | None, project_id: int, days: object
) -> dict[str, Any]:
    """Keep the project's events ``days`` days (UTC midnights), or forever with None;
    ``account_id`` None (the operator's CLI): whichever account owns it."""
    if days is not None and (
        not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_RETENTION_DAYS
    ):
        raise AdminError(
            f"retention_days must be null or an integer from 1 to {MAX_RETENTION_DAYS}"
        )
    row = conn.execute(
        "UPDATE projects SET retention_days = %s WHERE id = %s"
        " AND (%s::bigint IS NULL OR account_id = %s) RETURNING id, retention_days",
        (days, project_id, account_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return {"id": int(row[0]), "retention_days": row[1]}


# A bucket's burst is a PostgreSQL integer; a rate beyond this is no limit at all.
MAX_RATE_LIMIT = 2**31 - 1


def set_rate_limit(
    conn: psycopg.Connection[Any],
    account_id: int | None,
    project_id: int,
    events_per_second: object,
    burst: object,
) -> dict[str, Any]:
    """The project's own rate limit (ingest/rate_limits.py) for its write keys
    and customers; None for either: the server's setting. ``account_id`` None
    (the operator's CLI): whichever account owns it."""
    if events_per_second is not None and (
        not isinstance(events_per_second, int | float)
        or isinstance(events_per_second, bool)
        or not 0 < events_per_second <= MAX_RATE_LIMIT
    ):
        raise AdminError(
            f"events_per_second must be null or a number above 0, at most {MAX_RATE_LIMIT}"
        )
    if burst is not None and (
        not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= MAX_RATE_LIMIT
    ):
        raise AdminError(f"burst must be null or an integer from 1 to {MAX_RATE_LIMIT}")
    row = conn.execute(
        "UPDATE projects SET rate_limit_events_per_second = %s, rate_limit_burst = %s"
        " WHERE id = %s AND (%s::bigint IS NULL OR account_id = %s)"
        " RETURNING id, rate_limit_events_per_second, rate_limit_burst",
        (events_per_second, burst, project_id, account_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return {"id": int(row[0]), **_rate_limit(row[1:3])}


def delete_project(
    conn: psycopg.Connection[Any], account_id: int, project_id: int
) -> dict[str, Any]:
    """Delete a project, its events and (by cascade) its keys.

    The billed write counters stay: a billed count is what was written, and
    deleting events later does not reduce it.
    """
    with conn.transaction():
        row = conn.execute(
            "SELECT id FROM projects WHERE id = %s AND account_id = %s FOR UPDATE",
            (project_id, account_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"no project with id {project_id}")
        deleted = conn.execute("DELETE FROM events WHERE project_id = %s", (project_id,)).rowcount
        conn.execute("DELETE FROM projects WHERE id = %s", (project_id,))
    return {"id": project_id, "deleted": True, "events_deleted": deleted}


# --- Keys of one account's projects -------------------------------------------


def _key_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": int(row[0]),
        "project_id": int(row[1]),
        "kind": row[2],
        "prefix": row[3],
        "name": row[4],
        "customer_identifier": row[5],
        "created_at": row[6],
        "last_used_at": row[7],
        "revoked_at": row[8],
        "revoked": row[8] is not None,
    }


_KEY_COLUMNS = (
    "k.id, k.project_id, k.kind, k.prefix, k.name, k.customer_identifier,"
    " k.created_at, k.last_used_at, k.revoked_at"
)


def list_keys(
    conn: psycopg.Connection[Any], account_id: int, project_id: int
) -> list[dict[str, Any]]:
    """A project's keys, active first; never the secret (only its first characters)."""
    get_project(conn, account_id, project_id)
    rows = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.project_id = %s"
        " ORDER BY k.revoked_at IS NOT NULL, k.id",
        (project_id,),
    ).fetchall()
    return [_key_row(r) for r in rows]


def create_key_in_account(
    conn: psycopg.Connection[Any],
    account_id: int,
    project_id: int,
    kind: str,
    customer_identifier: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A new project key; the secret is in the answer and nowhere else."""
    customer_identifier = (customer_identifier or "").strip() or None
    name = (name or "").strip() or None
    if name is not None:
        name = check_name(name, "key")
    with conn.transaction():
        get_project(conn, account_id, project_id)
        created = create_key(conn, project_id, kind, customer_identifier)
        if name is not None:
            conn.execute("UPDATE api_keys SET name = %s WHERE id = %s", (name, created["id"]))
        row = conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.id = %s", (created["id"],)
        ).fetchone()
    assert row is not None
    return {**_key_row(row), "key": created["key"]}


def revoke_key_in_account(
    conn: psycopg.Connection[Any], account_id: int, project_id: int, key_id: int
) -> dict[str, Any]:
    """Revoke (the key stays listed, marked revoked); refused by ingest within a second."""
    row = conn.execute(
        "UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now())"
        " FROM projects p WHERE k.id = %s AND k.project_id = %s"
        " AND p.id = k.project_id AND p.account_id = %s RETURNING k.id",
        (key_id, project_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no key with id {key_id} in project {project_id}")
    return {"id": int(row[0]), "revoked": True}


def latest_events(
    conn: psycopg.Connection[Any], account_id: int, project_id: int, limit: int = 20
) -> list[dict[str, Any]]:
    """The project's latest events by event time, with their enriched fields."""
    get_project(conn, account_id, project_id)
    cur = conn.execute(
        'SELECT "timestamp", received_at, event_name, customer_identifier, metric_name,'
        " metric_value, ua_browser, ua_os, ua_device_type, geo_country, geo_city,"
        " url_path, referrer_host, utm_source, utm_medium, utm_campaign"
        ' FROM events WHERE project_id = %s ORDER BY "timestamp" DESC LIMIT %s',
        (project_id, limit),
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
