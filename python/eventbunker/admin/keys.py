"""API key secrets: generation, typed prefixes and the hash we store."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

KeyKind = Literal["write", "query", "delete"]
KEY_KINDS: tuple[KeyKind, ...] = ("write", "query", "delete")

# A key says what it is at a glance (and to secret scanners).
PREFIX_BY_KIND: dict[KeyKind, str] = {"write": "ebw_", "query": "ebq_", "delete": "ebd_"}
# An account admin key manages the account's projects (admin API, web app).
ADMIN_PREFIX = "eba_"

# How much of a secret is kept in clear to recognise it in key lists.
DISPLAY_PREFIX_LENGTH = 10


def generate_secret(kind: KeyKind) -> str:
    return PREFIX_BY_KIND[kind] + secrets.token_urlsafe(24)


def generate_admin_secret() -> str:
    return ADMIN_PREFIX + secrets.token_urlsafe(24)


def hash_secret(secret: str) -> bytes:
    # Secrets carry 192 random bits, so a plain SHA-256 is enough: there is
    # nothing to brute-force, and the hot path can afford it on every request.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]
