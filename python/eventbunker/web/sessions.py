"""Server-side web sessions, opened by signing in with an account admin key.

The cookie holds a random token; the database keeps only its SHA-256, with
the admin key that opened the session and the session's CSRF token. A
session ends when it expires, on sign-out, or when its admin key is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from eventbunker.admin.accounts import AdminKey

SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Session:
    admin_key_id: int
    account_id: int
    account_name: str
    csrf_token: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def open_session(conn: psycopg.Connection[Any], admin: AdminKey) -> tuple[str, Session]:
    """A new session for ``admin``: the cookie token (shown only here) and the session."""
    token, csrf_token = new_token(), new_token()
    with conn.transaction():
        conn.execute("DELETE FROM web_sessions WHERE expires_at < now()")
        conn.execute(
            "INSERT INTO web_sessions (token_hash, admin_key_id, csrf_token, expires_at)"
            " VALUES (%s, %s, %s, now() + %s)",
            (_digest(token), admin.id, csrf_token, SESSION_LIFETIME),
        )
    return token, Session(admin.id, admin.account_id, admin.account_name, csrf_token)


def load_session(conn: psycopg.Connection[Any], token: str) -> Session | None:
    row = conn.execute(
        "SELECT k.id, k.account_id, a.name, s.csrf_token FROM web_sessions s"
        " JOIN admin_keys k ON k.id = s.admin_key_id AND k.revoked_at IS NULL"
        " JOIN accounts a ON a.id = k.account_id"
        " WHERE s.token_hash = %s AND s.expires_at > now()",
        (_digest(token),),
    ).fetchone()
    if row is None:
        return None
    return Session(int(row[0]), int(row[1]), str(row[2]), str(row[3]))


def close_session(conn: psycopg.Connection[Any], token: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE token_hash = %s", (_digest(token),))
