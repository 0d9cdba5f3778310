"""The admin HTTP API: an account admin key manages its own projects and keys.

``Authorization: Bearer eba_...`` (or ``X-Api-Key``) on every request.

- ``GET/POST /v1/projects``, ``GET/PATCH/DELETE /v1/projects/{id}``
- ``PUT /v1/projects/{id}/retention``, ``PUT /v1/projects/{id}/rate_limit``
- ``GET/POST /v1/projects/{id}/keys``, ``DELETE /v1/projects/{id}/keys/{key_id}`` (revoke)
- ``GET /v1/usage?start=YYYY-MM-DD&end=YYYY-MM-DD[&project_id=N]``

A project of another account answers 404, like one that does not exist; a
project key (write, query, delete) answers 403. Errors have the API's one
shape, ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from litestar import MediaType, Request, Response, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler

from eventbunker.admin import accounts, usage
from eventbunker.admin.accounts import AdminKey, AdminKeyStatus, NotFound
from eventbunker.admin.projects import AdminError
from eventbunker.admin.store import AdminStore, StorageUnavailable
from eventbunker.errors import ErrorCode, Refusal, field_detail

NO_STORE = {"Cache-Control": "no-store"}


def refused(refusal: Refusal) -> Response[bytes]:
    headers = dict(NO_STORE)
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="eventbunker-admin"'
    return refusal.response(headers)


def bearer_secret(request: Request[Any, Any, Any]) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def authenticate(store: AdminStore, secret: str | None) -> AdminKey:
    if not secret:
        raise Refusal(ErrorCode.MISSING_KEY, "send an account admin key in Authorization: Bearer")
    result = await store.run(accounts.authenticate_admin, secret)
    if isinstance(result, AdminKey):
        return result
    if result == AdminKeyStatus.PROJECT_KEY:
        raise Refusal(
            ErrorCode.WRONG_KEY_KIND, "a project key cannot use the admin API: use an admin key"
        )
    if result == AdminKeyStatus.REVOKED:
        raise Refusal(ErrorCode.REVOKED_KEY, "this admin key was revoked")
    raise Refusal(ErrorCode.UNKNOWN_KEY, "this key does not exist")


def _json(answer: Any, status: int = 200) -> Response[bytes]:
    return Response(
        orjson.dumps(answer), status_code=status, media_type=MediaType.JSON, headers=NO_STORE
    )


async def _object_body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise Refusal(
            ErrorCode.MALFORMED_JSON,
            f"the body is not valid JSON: {exc}",
            field_detail("body", f"the body is not valid JSON: {exc}"),
        ) from None
    if not isinstance(body, dict):
        raise Refusal(
            ErrorCode.INVALID_REQUEST,
            "the body must be a JSON object",
            field_detail("body", "the body must be a JSON object"),
        )
    return body


def _string(body: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Refusal(
            ErrorCode.INVALID_REQUEST,
            f"{field} must be a string",
            field_detail(field, f"{field} must be a string"),
        )
    return value


class AdminApi:
    def __init__(self, store: AdminStore) -> None:
        self._store = store
        self.handlers: list[HTTPRouteHandler] = self._make_handlers()

    async def _answer(
        self,
        request: Request[Any, Any, Any],
        action: Callable[[AdminKey], Awaitable[Any]],
        status: int = 200,
    ) -> Response[bytes]:
        try:
            admin = await authenticate(self._store, bearer_secret(request))
            return _json(await action(admin), status)
        except Refusal as refusal:
            return refused(refusal)
        except NotFound as exc:
            return refused(Refusal(ErrorCode.NOT_FOUND, str(exc)))
        except AdminError as exc:
            return refused(Refusal(ErrorCode.INVALID_REQUEST, str(exc)))
        except StorageUnavailable:
            return refused(Refusal(ErrorCode.STORAGE_UNAVAILABLE, "the database cannot answer now"))

    def _make_handlers(self) -> list[HTTPRouteHandler]:
        store = self._store
        common: dict[str, Any] = {"media_type": MediaType.JSON, "tags": ["admin"]}

        @get("/v1/projects", summary="List the account's projects", **common)
        async def list_projects(request: Request[Any, Any, Any]) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                return {"projects": await store.run(accounts.list_projects, admin.account_id)}

            return await self._answer(request, action)

        @post("/v1/projects", summary="Create a project (and a key of each kind)", **common)
        async def create_project(request: Request[Any, Any, Any]) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                name = _string(await _object_body(request), "name", required=True)
                assert name is not None
                return await store.run(accounts.create_project_in_account, admin.account_id, name)

            return await self._answer(request, action, 201)

        @get("/v1/projects/{project_id:int}", summary="One project", **common)
        async def get_project(request: Request[Any, Any, Any], project_id: int) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                return await store.run(accounts.get_project, admin.account_id, project_id)

            return await self._answer(request, action)

        @patch("/v1/projects/{project_id:int}", summary="Rename a project", **common)
        async def rename_project(
            request: Request[Any, Any, Any], project_id: int
        ) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                name = _string(await _object_body(request), "name", required=True)
                assert name is not None
                return await store.run(accounts.rename_project, admin.account_id, project_id, name)

            return await self._answer(request, action)

        @put(
            "/v1/projects/{project_id:int}/retention",
            summary="Set how many days a project keeps its events (null: forever)",
            **common,
        )
        async def set_retention(
            request: Request[Any, Any, Any], project_id: int
        ) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                body = await _object_body(request)
                if "retention_days" not in body:
                    raise AdminError("retention_days is required (null: keep forever)")
                days = body["retention_days"]
                return await store.run(accounts.set_retention, admin.account_id, project_id, days)

            return await self._answer(request, action)

        @put(
            "/v1/projects/{project_id:int}/rate_limit",
            summary="Set a project's rate limit: events per second and burst (null: the server's)",
            **common,
        )
        async def set_rate_limit(
            request: Request[Any, Any, Any], project_id: int
        ) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                body = await _object_body(request)
                unknown = sorted(set(body) - {"events_per_second", "burst"})
                if unknown:
                    raise AdminError(
                        f"unknown field {unknown[0]!r}: send events_per_second and burst"
                    )
                return await store.run(
                    accounts.set_rate_limit,
                    admin.account_id,
                    project_id,
                    body.get("events_per_second"),
                    body.get("burst"),
                )

            return await self._answer(request, action)

        @delete(
            "/v1/projects/{project_id:int}",
            status_code=200,
            summary="Delete a project with its events and keys (billed counts stay)",
            **common,
        )
        async def delete_project(
            request: Request[Any, Any, Any], project_id: int
        ) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                return await store.run(accounts.delete_project, admin.account_id, project_id)

            return await self._answer(request, action)

        @get("/v1/projects/{project_id:int}/keys", summary="A project's keys", **common)
        async def list_keys(request: Request[Any, Any, Any], project_id: int) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                keys = await store.run(accounts.list_keys, admin.account_id, project_id)
                return {"keys": keys}

            return await self._answer(request, action)

        @post("/v1/projects/{project_id:int}/keys", summary="Create a project key", **common)
        async def create_key(request: Request[Any, Any, Any], project_id: int) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                body = await _object_body(request)
                kind = _string(body, "kind", required=True)
                assert kind is not None
                return await store.run(
                    accounts.create_key_in_account,
                    admin.account_id,
                    project_id,
                    kind,
                    _string(body, "customer_identifier", required=False),
                    _string(body, "name", required=False),
                )

            return await self._answer(request, action, 201)

        @delete(
            "/v1/projects/{project_id:int}/keys/{key_id:int}",
            status_code=200,
            summary="Revoke a project key",
            **common,
        )
        async def revoke_key(
            request: Request[Any, Any, Any], project_id: int, key_id: int
        ) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                return await store.run(
                    accounts.revoke_key_in_account, admin.account_id, project_id, key_id
                )

            return await self._answer(request, action)

        @get(
            "/v1/usage", summary="Billed writes, refusals and latency per project and day", **common
        )
        async def get_usage(request: Request[Any, Any, Any]) -> Response[bytes]:
            async def action(admin: AdminKey) -> Any:
                params = request.query_params
                start, end = usage.parse_range(params.get("start"), params.get("end"))
                raw_project = params.get("project_id")
                project_id = None
                if raw_project:
                    if not raw_project.isdigit():
                        raise Refusal(
                            ErrorCode.INVALID_REQUEST,
                            "project_id must be an integer",
                            field_detail("project_id", "project_id must be an integer"),
                        )
                    project_id = int(raw_project)
                return await store.run(usage.usage, admin.account_id, start, end, project_id)

            return await self._answer(request, action)

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


def admin_handlers(store: AdminStore) -> list[HTTPRouteHandler]:
    return AdminApi(store).handlers
