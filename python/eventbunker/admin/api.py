"""The admin HTTP API: an account admin key manages its own projects and keys.

``Authorization: Bearer eba_...`` or ``X-Api-Key`` on every request (the
same rule as every key: ``X-Api-Key`` first, see ``ingest.auth.presented_secret``).

- ``GET/POST /v1/projects``, ``GET/PATCH/DELETE /v1/projects/{id}``
- ``PUT /v1/projects/{id}/retention``, ``PUT /v1/projects/{id}/rate_limit``
- ``GET/POST /v1/projects/{id}/keys``, ``DELETE /v1/projects/{id}/keys/{key_id}`` (revoke)
- ``GET /v1/usage?start=YYYY-MM-DD&end=YYYY-MM-DD[&project_id=N]``

Ordinary Litestar handlers: the router's guard authenticates the admin key
(before the body is read), Litestar validates the bodies against the Structs
of ``admin/schemas.py`` and documents them. A project of another account
answers 404, like one that does not exist; a project key (write, query,
delete) answers 403. Errors have the API's one shape,
``{"error": {"code", "message", "details"}}``. A new route is one more
handler in ``AdminApi._handlers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request, Router, delete, get, patch, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler

from eventbunker.admin import accounts, usage
from eventbunker.admin.accounts import AdminKey, AdminKeyStatus, NotFound
from eventbunker.admin.projects import AdminError
from eventbunker.admin.schemas import (
    CreatedKey,
    CreatedProject,
    DeletedProject,
    KeyList,
    NewKey,
    Project,
    ProjectList,
    ProjectName,
    ProjectRateLimit,
    ProjectRetention,
    RateLimit,
    Retention,
    RevokedKey,
    UsageReport,
    answer,
)
from eventbunker.admin.store import AdminStore, StorageUnavailable
from eventbunker.errors import ErrorCode, Refusal
from eventbunker.ingest.auth import connection_secret
from eventbunker.ops.openapi import RetryAfterDocumented, error_answers, key_security
from eventbunker.refusals import exception_handlers, strict_bodies

NO_STORE = {"Cache-Control": "no-store"}
CHALLENGE = 'Bearer realm="eventbunker-admin"'
ADMIN_STATE = "admin_key"  # where the guard leaves the authenticated admin key

_Result = TypeVar("_Result")

ERRORS = error_answers(
    {
        400: "An invalid request; the details name the field",
        401: "Missing or unknown admin key",
        403: "A revoked admin key, or a project key",
        404: "No such project or key in this account",
        413: "Body over the limit",
        503: "Storage unavailable; see Retry-After",
    }
)


async def authenticate(store: AdminStore, secret: str | None) -> AdminKey:
    if not secret:
        raise Refusal(ErrorCode.MISSING_KEY, "send an account admin key in Authorization: Bearer")
    result = await run(store, accounts.authenticate_admin, secret)
    if isinstance(result, AdminKey):
        return result
    if result == AdminKeyStatus.PROJECT_KEY:
        raise Refusal(
            ErrorCode.WRONG_KEY_KIND, "a project key cannot use the admin API: use an admin key"
        )
    if result == AdminKeyStatus.REVOKED:
        raise Refusal(ErrorCode.REVOKED_KEY, "this admin key was revoked")
    raise Refusal(ErrorCode.UNKNOWN_KEY, "this key does not exist")


async def run(store: AdminStore, action: Callable[..., _Result], *args: Any) -> _Result:
    """``action(conn, *args)`` on the store, its failures as refusals."""
    try:
        return await store.run(action, *args)
    except NotFound as exc:
        raise Refusal(ErrorCode.NOT_FOUND, str(exc)) from None
    except AdminError as exc:
        raise Refusal(ErrorCode.INVALID_REQUEST, str(exc)) from None
    except StorageUnavailable:
        raise Refusal(ErrorCode.STORAGE_UNAVAILABLE, "the database cannot answer now") from None


def _admin_key(request: Request[Any, Any, Any]) -> AdminKey:
    admin: AdminKey = request.state[ADMIN_STATE]
    return admin


class AdminApi:
    def __init__(self, store: AdminStore) -> None:
        self._store = store

    def router(self) -> Router:
        store = self._store  # (Litestar deep-copies a router: its guard must not hold self)

        async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
            connection.state[ADMIN_STATE] = await authenticate(store, connection_secret(connection))

        return Router(
            "/",
            route_handlers=self._handlers(),
            guards=[admin_guard],
            before_request=strict_bodies(ErrorCode.INVALID_REQUEST),
            dependencies={"admin": Provide(_admin_key, sync_to_thread=False)},
            exception_handlers=exception_handlers(
                ErrorCode.INVALID_REQUEST, NO_STORE, challenge=CHALLENGE
            ),
            response_headers=[ResponseHeader(name="Cache-Control", value="no-store")],
            security=key_security("admin"),
            tags=["admin"],
        )

    def _handlers(self) -> list[HTTPRouteHandler]:
        store = self._store
        common: dict[str, Any] = {"responses": ERRORS, "operation_class": RetryAfterDocumented}

        @get("/v1/projects", summary="List the account's projects", **common)
        async def list_projects(admin: AdminKey) -> ProjectList:
            projects = await run(store, accounts.list_projects, admin.account_id)
            return answer({"projects": projects}, ProjectList)

        @post("/v1/projects", summary="Create a project (and a key of each kind)", **common)
        async def create_project(admin: AdminKey, data: ProjectName) -> CreatedProject:
            created = await run(
                store, accounts.create_project_in_account, admin.account_id, data.name
            )
            return answer(created, CreatedProject)

        @get("/v1/projects/{project_id:int}", summary="One project", **common)
        async def get_project(admin: AdminKey, project_id: int) -> Project:
            project = await run(store, accounts.get_project, admin.account_id, project_id)
            return answer(project, Project)

        @patch("/v1/projects/{project_id:int}", summary="Rename a project", **common)
        async def rename_project(admin: AdminKey, project_id: int, data: ProjectName) -> Project:
            renamed = await run(
                store, accounts.rename_project, admin.account_id, project_id, data.name
            )
            return answer(renamed, Project)

        @put(
            "/v1/projects/{project_id:int}/retention",
            summary="Set how many days a project keeps its events (null: forever)",
            **common,
        )
        async def set_retention(
            admin: AdminKey, project_id: int, data: Retention
        ) -> ProjectRetention:
            days = data.retention_days
            result = await run(store, accounts.set_retention, admin.account_id, project_id, days)
            return answer(result, ProjectRetention)

        @put(
            "/v1/projects/{project_id:int}/rate_limit",
            summary="Set a project's rate limit: events per second and burst (null: the server's)",
            **common,
        )
        async def set_rate_limit(
            admin: AdminKey, project_id: int, data: RateLimit
        ) -> ProjectRateLimit:
            result = await run(
                store,
                accounts.set_rate_limit,
                admin.account_id,
                project_id,
                data.events_per_second,
                data.burst,
            )
            return answer(result, ProjectRateLimit)

        @delete(
            "/v1/projects/{project_id:int}",
            status_code=200,
            summary="Delete a project with its events and keys (billed counts stay)",
            **common,
        )
        async def delete_project(admin: AdminKey, project_id: int) -> DeletedProject:
            deleted = await run(store, accounts.delete_project, admin.account_id, project_id)
            return answer(deleted, DeletedProject)

        @get("/v1/projects/{project_id:int}/keys", summary="A project's keys", **common)
        async def list_keys(admin: AdminKey, project_id: int) -> KeyList:
            keys = await run(store, accounts.list_keys, admin.account_id, project_id)
            return answer({"keys": keys}, KeyList)

        @post("/v1/projects/{project_id:int}/keys", summary="Create a project key", **common)
        async def create_key(admin: AdminKey, project_id: int, data: NewKey) -> CreatedKey:
            created = await run(
                store,
                accounts.create_key_in_account,
                admin.account_id,
                project_id,
                data.kind,
                data.customer_identifier,
                data.name,
            )
            return answer(created, CreatedKey)

        @delete(
            "/v1/projects/{project_id:int}/keys/{key_id:int}",
            status_code=200,
            summary="Revoke a project key",
            **common,
        )
        async def revoke_key(admin: AdminKey, project_id: int, key_id: int) -> RevokedKey:
            revoked = await run(
                store, accounts.revoke_key_in_account, admin.account_id, project_id, key_id
            )
            return answer(revoked, RevokedKey)

        @get(
            "/v1/usage", summary="Billed writes, refusals and latency per project and day", **common
        )
        async def get_usage(
            admin: AdminKey,
            start: str | None = None,
            end: str | None = None,
            project_id: int | None = None,
        ) -> UsageReport:
            """``start`` and ``end``: YYYY-MM-DD, both included (default: the last 30 days)."""
            try:
                first, last = usage.parse_range(start, end)
            except AdminError as exc:
                raise Refusal(ErrorCode.INVALID_REQUEST, str(exc)) from None
            report = await run(store, usage.usage, admin.account_id, first, last, project_id)
            return answer(report, UsageReport)

        return [
            list_projects,
            create_project,
            get_project,
            rename_project,
            set_retention,
            set_rate_limit,
            delete_project,
            list_keys,
            create_key,
            revoke_key,
            get_usage,
        ]


def admin_router(store: AdminStore) -> Router:
    return AdminApi(store).router()
