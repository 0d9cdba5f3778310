"""The admin API's request and answer bodies, as msgspec Structs: Litestar
validates the requests against them and documents both.

The answers are the dicts ``admin/accounts.py`` and ``admin/usage.py`` build
(shared with the CLI), converted with ``answer``: a field they add appears
in the answer only once it is declared here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from eventbunker.admin.accounts import MAX_RATE_LIMIT, MAX_RETENTION_DAYS
from eventbunker.admin.keys import KeyKind

_Answer = TypeVar("_Answer", bound=msgspec.Struct)


def answer(value: Any, shape: type[_Answer]) -> _Answer:
    """``value`` (a dict of the store's) as the Struct ``shape``."""
    return msgspec.convert(value, shape)


# --- Requests ---------------------------------------------------------------


class ProjectName(msgspec.Struct):
    name: Annotated[str, Meta(description="leading and trailing spaces are dropped")]


class NewKey(msgspec.Struct):
    kind: KeyKind
    customer_identifier: (
        Annotated[str, Meta(description="the key then sees and writes only this customer's")] | None
    ) = None
    name: str | None = None


class Retention(msgspec.Struct):
    """``retention_days`` is required; null keeps the events forever."""

    retention_days: Annotated[int, Meta(ge=1, le=MAX_RETENTION_DAYS)] | None


class RateLimit(msgspec.Struct, forbid_unknown_fields=True):
    """A project's own rate limit for its write keys and customers (null: the server's)."""

    events_per_second: Annotated[float, Meta(gt=0, le=MAX_RATE_LIMIT)] | None = None
    burst: Annotated[int, Meta(ge=1, le=MAX_RATE_LIMIT)] | None = None


# --- Answers ----------------------------------------------------------------


class Project(msgspec.Struct):
    id: int
    name: str
    created_at: datetime
    retention_days: Annotated[int | None, Meta(description="null: kept forever")]
    rate_limit: RateLimit


class ProjectSummary(Project):
    billed_today: int
    billed_this_month: int


class ProjectList(msgspec.Struct):
    projects: list[ProjectSummary]


class ProjectKeys(msgspec.Struct):
    write: str
    query: str
    delete: str


class CreatedProject(Project):
    keys: Annotated[ProjectKeys, Meta(description="the secrets, shown only here")]


class ProjectRetention(msgspec.Struct):
    id: int
    retention_days: int | None


class ProjectRateLimit(msgspec.Struct):
    id: int
    rate_limit: RateLimit


class DeletedProject(msgspec.Struct):
    id: int
    deleted: bool
    events_deleted: int


class Key(msgspec.Struct):
    id: int
    project_id: int
    kind: KeyKind
    prefix: Annotated[str, Meta(description="the secret's first characters")]
    name: str | None
    customer_identifier: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool


class KeyList(msgspec.Struct):
    keys: list[Key]


class CreatedKey(Key):
    key: Annotated[str, Meta(description="the secret, shown only here")]


class RevokedKey(msgspec.Struct):
    id: int
    revoked: bool


class UsageFigures(msgspec.Struct):
    events: Annotated[int, Meta(description="billed writes: the events stored")]
    rejected: Annotated[dict[str, int], Meta(description="refused requests by error code")]
    latency_ms_mean: float | None
    latency_ms_max: float | None


class UsageDay(UsageFigures):
    day: Annotated[str, Meta(description="YYYY-MM-DD, UTC")]


class ProjectUsage(msgspec.Struct):
    project_id: int
    name: str
    total: UsageFigures
    days: list[UsageDay]


class UsageReport(msgspec.Struct):
    start: str
    end: str
    timezone: str
    projects: list[ProjectUsage]
