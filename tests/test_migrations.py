from __future__ import annotations

from typing import Any

import psycopg

from eventbunker.storage.migrate import available_migrations, migrate


def test_migrations_are_versioned_and_idempotent(
    database_url: str, db: psycopg.Connection[Any]
) -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert migrate(database_url) == []  # already applied by the fixture
    recorded = [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert recorded == versions
