"""The web app at ``/``: sign in with an account admin key, see and manage projects.

Server-rendered Jinja2 pages (Litestar templates), plus ``/static``.

Security, all in these handlers (nothing here touches ``/v1/*`` or the other
operational routes, and no app-wide middleware is added):

- a server-side session (:mod:`eventbunker.web.sessions`); the cookie is
  HttpOnly, SameSite=Lax, and Secure when the page is served over https;
- every POST is checked before its handler runs: a same-origin ``Origin``
  (when the browser sends one) and the session's CSRF token in the form's
  ``csrf_token`` field; the sign-in form, which has no session yet, carries
  a token bound to a short-lived cookie (double submit);
- pages are ``no-store`` and framed by nobody, and a CSP allows only our
  own stylesheet and script.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import MediaType, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from eventbunker import _native
from eventbunker.admin import accounts, usage
from eventbunker.admin.accounts import AdminKey, AdminKeyStatus, NotFound
from eventbunker.admin.keys import KEY_KINDS
from eventbunker.admin.projects import AdminError
from eventbunker.admin.store import AdminStore, StorageUnavailable
from eventbunker.errors import ErrorCode, Refusal, error_document
from eventbunker.query.builder import Scope
from eventbunker.query.request import InvalidRequest
from eventbunker.web import explore, sessions
from eventbunker.web.chart import daily_chart
from eventbunker.web.sessions import Session

HERE = Path(__file__).parent
SESSION_COOKIE = "eventbunker_session"
LOGIN_COOKIE = "eventbunker_login_csrf"
LOGIN_COOKIE_MAX_AGE_S = 3600
CSRF_FIELD = "csrf_token"
CHART_DAYS = 30
LATEST_EVENTS = 20
NO_STORE = {"Cache-Control": "no-store"}

# The query layer's entry point (QueryApi.answer): a body and a scope in,
# {"result": ...} out, InvalidRequest or Refusal raised.
Answer = Callable[[Any, Scope], Awaitable[dict[str, Any]]]

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class NotSignedIn(Exception):
    """The page needs a session."""


# --- Rendering -------------------------------------------------------------------


def _number(value: int | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = _number
    environment.filters["when"] = _when
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def page(
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    session: Session | None = None,
) -> Template:
    return Template(
        template_name=name,
        context={"session": session, "csrf_field": CSRF_FIELD, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
        media_type=MediaType.HTML,
    )


def error_page(status: int, title: str, message: str, session: Session | None = None) -> Template:
    return page("error.html", {"title": title, "message": message}, status, session)


# --- Requests ---------------------------------------------------------------------


class WebApp:
    def __init__(
        self,
        store: AdminStore,
        proxies: _native.Enricher,
        answer: Answer,
        reads: AdminStore | None = None,
    ) -> None:
        self._store = store
        # Events and usage may come from a streaming replica (--query-database-url);
        # accounts, keys and sessions stay on the primary, which they are written to.
        self._reads = reads or store
        self._proxies = proxies  # whose X-Forwarded-Proto/-Host is believed
        self._answer = answer

    def is_https(self, request: Request[Any, Any, Any]) -> bool:
        if request.url.scheme == "https":
            return True
        client = request.client.host if request.client else None
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return forwarded == "https" and self._proxies.trusts(client)

    def _forwarded_host(self, request: Request[Any, Any, Any]) -> str | None:
        """The host the browser asked for, as a trusted proxy reports it."""
        host = request.headers.get("x-forwarded-host")
        client = request.client.host if request.client else None
        if host and self._proxies.trusts(client):
            return host.split(",")[0].strip()
        return None

    def _set_cookie(
        self,
        response: Response[Any],
        request: Request[Any, Any, Any],
        name: str,
        value: str,
        **kw: Any,
    ) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="lax",
            secure=self.is_https(request),
            **kw,
        )

    async def _before(self, request: Request[Any, Any, Any]) -> Any:
        """Load the session; refuse a POST without the right origin and CSRF token."""
        token = request.cookies.get(SESSION_COOKIE)
        session = await self._store.run(sessions.load_session, token) if token else None
        request.state.web_session = session
        if request.method != "POST":
            return None
        if not _same_origin(request, self._forwarded_host(request)):
            return error_page(403, "Refused", "This form was posted from another site.", session)
        form = await request.form()
        given = form.get(CSRF_FIELD)
        if request.url.path == "/login":
            expected = request.cookies.get(LOGIN_COOKIE)
        elif session is None:
            return Redirect("/login", status_code=303)
        else:
            expected = session.csrf_token
        if not (
            isinstance(given, str)
            and expected
            and hmac.compare_digest(given.encode(), expected.encode())
        ):
            return error_page(
                403,
                "Refused",
                "The form's security token is missing or stale. Go back, reload and try again.",
                session,
            )
        return None

    def handlers(self) -> list[HTTPRouteHandler]:
        """Plain handlers (a Router would be deep-copied, connection pool and all)."""
        store, reads = self._store, self._reads
        app = self
        common: dict[str, Any] = {
            "before_request": self._before,
            "exception_handlers": {
                NotSignedIn: lambda _r, _e: Redirect("/login", status_code=303),
                NotFound: _not_found,
                StorageUnavailable: _unavailable,
                HTTPException: _http_error,
            },
            "include_in_schema": False,
        }

        def signed_in(request: Request[Any, Any, Any]) -> Session:
            session: Session | None = request.state.web_session
            if session is None:
                raise NotSignedIn
            return session

        async def form(request: Request[Any, Any, Any]) -> dict[str, str]:
            data = await request.form()
            return {k: v for k, v in data.items() if isinstance(v, str)}

        @get("/login", **common)
        async def login_page(request: Request[Any, Any, Any]) -> Response[Any]:
            if request.state.web_session is not None:
                return Redirect("/", status_code=303)
            return self._login_form(request)

        @post("/login", **common)
        async def login(request: Request[Any, Any, Any]) -> Response[Any]:
            secret = (await form(request)).get("admin_key", "").strip()
            result = await store.run(accounts.authenticate_admin, secret) if secret else None
            if not isinstance(result, AdminKey):
                message = {
                    AdminKeyStatus.PROJECT_KEY: "That is a project key; sign in with an account"
                    " admin key (eba_…).",
                    AdminKeyStatus.REVOKED: "This admin key was revoked.",
                }.get(result or "", "Unknown admin key.")
                return self._login_form(request, message, 401)
            previous = request.cookies.get(SESSION_COOKIE)
            if previous:
                await store.run(sessions.close_session, previous)
            token, _ = await store.run(sessions.open_session, result)
            response: Response[Any] = Redirect("/", status_code=303)
            self._set_cookie(
                response,
                request,
                SESSION_COOKIE,
                token,
                max_age=int(sessions.SESSION_LIFETIME.total_seconds()),
            )
            response.delete_cookie(LOGIN_COOKIE, path="/login")
            return response

        @post("/logout", **common)
        async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
            token = request.cookies.get(SESSION_COOKIE)
            if token:
                await store.run(sessions.close_session, token)
            response: Response[Any] = Redirect("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE)
            return response

        @get("/", **common)
        async def projects(request: Request[Any, Any, Any]) -> Template:
            session = signed_in(request)
            return await app._projects_page(session)

        @post("/projects", **common)
        async def create_project(request: Request[Any, Any, Any]) -> Template:
            session = signed_in(request)
            name = (await form(request)).get("name", "")
            try:
                created = await store.run(
                    accounts.create_project_in_account, session.account_id, name
                )
            except NotFound:
                raise
            except AdminError as exc:
                return await app._projects_page(session, error=str(exc), status=400)
            new_keys = [{"kind": kind, "key": created["keys"][kind]} for kind in KEY_KINDS]
            return await app._project_page(session, created["id"], new_keys=new_keys, status=201)

        @get("/projects/{project_id:int}", **common)
        async def project(request: Request[Any, Any, Any], project_id: int) -> Template:
            return await app._project_page(signed_in(request), project_id)

        @get("/projects/{project_id:int}/live", media_type=MediaType.JSON, **common)
        async def live(request: Request[Any, Any, Any], project_id: int) -> Response[Any]:
            session = request.state.web_session
            if session is None:
                return _signed_out()
            events = await reads.run(
                accounts.latest_events, session.account_id, project_id, LATEST_EVENTS
            )
            billed = await reads.run(usage.billed_today, project_id)
            return Response(
                {
                    "billed_today": billed,
                    "at_ms": time.time_ns() // 1_000_000,
                    "events": [_event_json(e) for e in events],
                },
                headers=NO_STORE,
            )

        @get("/projects/{project_id:int}/explore", **common)
        async def explore_page(request: Request[Any, Any, Any], project_id: int) -> Template:
            session = signed_in(request)
            names = await store.run(explore.names, session.account_id, project_id)
            project = await store.run(accounts.get_project, session.account_id, project_id)
            choices = explore.Choices.from_params(request.query_params, names[0] if names else "")
            context = {
                "project": project,
                "names": names,
                "choices": choices,
                # Exactly these choices (defaults included), so the answer is the shown query's.
                "result_url": f"/projects/{project_id}/explore/result?"
                + urlencode(dataclasses.asdict(choices)),
                "query_json": orjson.dumps(
                    explore.query_body(choices), option=orjson.OPT_INDENT_2
                ).decode(),
                "analyses": explore.ANALYSES,
                "timeframes": explore.TIMEFRAMES,
                "intervals": explore.INTERVALS,
                "group_by_suggestions": explore.GROUP_BY_SUGGESTIONS,
            }
            return page("explore.html", context, session=session)

        @get("/projects/{project_id:int}/explore/result", media_type=MediaType.JSON, **common)
        async def explore_result(request: Request[Any, Any, Any], project_id: int) -> Response[Any]:
            session = request.state.web_session
            if session is None:
                return _signed_out()
            try:
                await store.run(accounts.get_project, session.account_id, project_id)
            except NotFound as exc:
                return Refusal(ErrorCode.NOT_FOUND, str(exc)).response(NO_STORE)
            body = explore.query_body(explore.Choices.from_params(request.query_params))
            try:
                # The rights of the project's unscoped query key; no key leaves the server.
                answer = await app._answer(body, Scope(project_id, None))
            except Refusal as refusal:
                return refusal.response(NO_STORE)
            except InvalidRequest as exc:
                invalid = Refusal(ErrorCode.INVALID_QUERY, str(exc), exc.details())
                return invalid.response(NO_STORE)
            return Response(
                orjson.dumps(explore.presented(body, answer["result"])),
                media_type=MediaType.JSON,
                headers=NO_STORE,
            )

        @post("/projects/{project_id:int}/retention", **common)
        async def set_retention(request: Request[Any, Any, Any], project_id: int) -> Response[Any]:
            session = signed_in(request)
            text = (await form(request)).get("retention_days", "").strip()
            days: object = None if text in ("", "forever") else text
            if isinstance(days, str) and days.isdecimal():
                days = int(days)
            try:
                await store.run(accounts.set_retention, session.account_id, project_id, days)
            except NotFound:
                raise
            except AdminError as exc:
                return await app._project_page(session, project_id, error=str(exc), status=400)
            return Redirect(f"/projects/{project_id}#retention", status_code=303)

        @post("/projects/{project_id:int}/keys", **common)
        async def create_key(request: Request[Any, Any, Any], project_id: int) -> Template:
            session = signed_in(request)
            data = await form(request)
            try:
                created = await store.run(
                    accounts.create_key_in_account,
                    session.account_id,
                    project_id,
                    data.get("kind", ""),
                    data.get("customer_identifier"),
                    data.get("name"),
                )
            except NotFound:
                raise
            except AdminError as exc:
                return await app._project_page(session, project_id, error=str(exc), status=400)
            new_keys = [{"kind": created["kind"], "key": created["key"]}]
            return await app._project_page(session, project_id, new_keys=new_keys, status=201)

        @post("/projects/{project_id:int}/keys/{key_id:int}/revoke", **common)
        async def revoke_key(
            request: Request[Any, Any, Any], project_id: int, key_id: int
        ) -> Response[Any]:
            session = signed_in(request)
            await store.run(accounts.revoke_key_in_account, session.account_id, project_id, key_id)
            return Redirect(f"/projects/{project_id}#keys", status_code=303)

        @post("/projects/{project_id:int}/rename", **common)
        async def rename_project(request: Request[Any, Any, Any], project_id: int) -> Response[Any]:
            session = signed_in(request)
            name = (await form(request)).get("name", "")
            try:
                await store.run(accounts.rename_project, session.account_id, project_id, name)
            except NotFound:
                raise
            except AdminError as exc:
                return await app._project_page(session, project_id, error=str(exc), status=400)
            return Redirect(f"/projects/{project_id}", status_code=303)

        @post("/projects/{project_id:int}/delete", **common)
        async def delete_project(request: Request[Any, Any, Any], project_id: int) -> Response[Any]:
            session = signed_in(request)
            project = await store.run(accounts.get_project, session.account_id, project_id)
            if (await form(request)).get("confirm_name", "") != project["name"]:
                return await app._project_page(
                    session,
                    project_id,
                    error="Type the project's name exactly to delete it.",
                    status=400,
                )
            await store.run(accounts.delete_project, session.account_id, project_id)
            return Redirect("/", status_code=303)

        return [
            login_page,
            login,
            logout,
            projects,
            create_project,
            project,
            live,
            explore_page,
            explore_result,
            set_retention,
            create_key,
            revoke_key,
            rename_project,
            delete_project,
        ]

    def _login_form(
        self, request: Request[Any, Any, Any], error: str | None = None, status: int = 200
    ) -> Template:
        token = request.cookies.get(LOGIN_COOKIE) or sessions.new_token()
        response = page("login.html", {"csrf_token": token, "error": error}, status)
        self._set_cookie(
            response, request, LOGIN_COOKIE, token, max_age=LOGIN_COOKIE_MAX_AGE_S, path="/login"
        )
        return response

    async def _projects_page(
        self, session: Session, error: str | None = None, status: int = 200
    ) -> Template:
        rows = await self._store.run(accounts.list_projects, session.account_id)
        today = usage.today_utc()
        context = {
            "projects": rows,
            "error": error,
            "today": today,
            "month": today.strftime("%B %Y"),
            "total_today": sum(p["billed_today"] for p in rows),
            "total_month": sum(p["billed_this_month"] for p in rows),
        }
        return page("projects.html", context, status, session)

    async def _project_page(
        self,
        session: Session,
        project_id: int,
        *,
        new_keys: list[dict[str, str]] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Template:
        run = self._store.run
        project = await run(accounts.get_project, session.account_id, project_id)
        today = usage.today_utc()
        start = today - timedelta(days=CHART_DAYS - 1)
        report = await self._reads.run(usage.usage, session.account_id, start, today, project_id)
        days = report["projects"][0]["days"]
        keys = await run(accounts.list_keys, session.account_id, project_id)
        events = await self._reads.run(
            accounts.latest_events, session.account_id, project_id, LATEST_EVENTS
        )
        context = {
            "project": project,
            "chart": daily_chart([(date.fromisoformat(d["day"]), d["events"]) for d in days]),
            "today": days[-1],
            "total": report["projects"][0]["total"],
            "chart_days": CHART_DAYS,
            "keys": keys,
            "kinds": KEY_KINDS,
            "events": events,
            "new_keys": new_keys or [],
            "error": error,
        }
        return page("project.html", context, status, session)


def _same_origin(request: Request[Any, Any, Any], forwarded_host: str | None) -> bool:
    """A browser's ``Origin`` (when sent) names this host; ``null`` is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = forwarded_host or request.headers.get("host") or ""
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


def _event_json(event: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v)
        for k, v in event.items()
    }


def _signed_out() -> Response[Any]:
    return Response(
        error_document(ErrorCode.SIGNED_OUT, ErrorCode.SIGNED_OUT.default_message),
        status_code=401,
        headers=NO_STORE,
    )


def _session_of(request: Request[Any, Any, Any]) -> Session | None:
    return getattr(request.state, "web_session", None)


def _not_found(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    return error_page(
        404, "Not found", "There is no such project or key here.", _session_of(request)
    )


def _unavailable(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    response = error_page(
        503,
        "Database unavailable",
        "The database cannot answer now; retry in a moment.",
        _session_of(request),
    )
    response.headers["Retry-After"] = "1"
    return response


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return error_page(exc.status_code, "Error", exc.detail, _session_of(request))


def web_handlers(
    store: AdminStore,
    proxies: _native.Enricher,
    answer: Answer,
    reads: AdminStore | None = None,
) -> list[Any]:
    """The web app's router and its static files (``/static``, public, cacheable);
    ``answer`` runs the Explore page's queries (``QueryApi.answer``); ``reads``:
    where events and usage are read (a streaming replica), else ``store``."""
    return [
        *WebApp(store, proxies, answer, reads).handlers(),
        create_static_files_router(
            path="/static", directories=[HERE / "static"], include_in_schema=False
        ),
    ]
