"""Project and key management, shared by the CLI and the admin API."""

from __future__ import annotations

from typing import Any

import psycopg

from eventbunker.admin.keys import (
    KEY_KINDS,
    KeyKind,
    display_prefix,
    generate_secret,
    hash_secret,
)

DEFAULT_ACCOUNT_NAME = "default"


class AdminError(Exception):
    """A refused admin operation (unknown project, unknown key...)."""


def _default_account_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT id FROM accounts WHERE name = %s ORDER BY id LIMIT 1", (DEFAULT_ACCOUNT_NAME,)
    ).fetchone()
    if row is None:
        row = conn.execute(
            "INSERT INTO accounts (name) VALUES (%s) RETURNING id", (DEFAULT_ACCOUNT_NAME,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _insert_key(
    conn: psycopg.Connection[Any],
    project_id: int,
    kind: KeyKind,
    customer_identifier: str | None,
) -> dict[str, Any]:
    secret = generate_secret(kind)
    row = conn.execute(
        "INSERT INTO api_keys (project_id, kind, key_hash, prefix, customer_identifier)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (project_id, kind, hash_secret(secret), display_prefix(secret), customer_identifier),
    ).fetchone()
    assert row is not None
    return {
        "id": int(row[0]),
        "key": secret,
        "kind": kind,
        "project_id": project_id,
        "customer_identifier": customer_identifier,
    }


def create_project(
    conn: psycopg.Connection[Any], name: str, account_id: int | None = None
) -> dict[str, Any]:
    """Create a project with one key of each kind; the secrets are shown only here."""
    if not name.strip():
        raise AdminError("project name must not be empty")
    with conn.transaction():
        if account_id is None:
            account_id = _default_account_id(conn)
        elif conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,)).fetchone() is None:
            raise AdminError(f"no account with id {account_id}")
        row = conn.execute(
            "INSERT INTO projects (account_id, name) VALUES (%s, %s) RETURNING id",
            (account_id, name),
        ).fetchone()
        assert row is not None
        project_id = int(row[0])
        keys = {kind: _insert_key(conn, project_id, kind, None)["key"] for kind in KEY_KINDS}
    return {"id": project_id, "name": name, "keys": keys}


def create_key(
    conn: psycopg.Connection[Any],
    project_id: int,
    kind: str,
    customer_identifier: str | None = None,
) -> dict[str, Any]:
    if kind not in KEY_KINDS:
        raise AdminError(f"kind must be one of {', '.join(KEY_KINDS)}, not {kind!r}")
    with conn.transaction():
        if conn.execute("SELECT 1 FROM projects WHERE id = %s", (project_id,)).fetchone() is None:
            raise AdminError(f"no project with id {project_id}")
        return _insert_key(conn, project_id, kind, customer_identifier)


def revoke_key(conn: psycopg.Connection[Any], key_id: int) -> dict[str, Any]:
    with conn.transaction():
        row = conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
            " RETURNING id",
            (key_id,),
        ).fetchone()
    if row is None:
        raise AdminError(f"no key with id {key_id}")
    return {"id": int(row[0]), "revoked": True}
