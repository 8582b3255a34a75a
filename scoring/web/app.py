"""The dashboard application: ``create_app`` wires the pages, the API and the login around one context.

``csat serve`` runs it in a thread beside the survey server (``scoring.web.server``); tests use
FastAPI's TestClient on the same factory. Sessions are signed cookies (itsdangerous via Starlette),
HttpOnly and SameSite=Lax, Secure when ``[web] secure_cookies``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from starlette.middleware.sessions import SessionMiddleware

from ivr.db import make_engine
from ivr.settings import Settings
from scoring.web.deps import (
    CsrfFailed,
    Forbidden,
    LoginRequired,
    RuntimeStatus,
    WebContext,
    check_csrf,
    context,
    optional_viewer,
    render,
)
from scoring.web.security import LoginRateLimit
from scoring.web.users import authenticate

HERE = Path(__file__).parent


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce the user to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(
    settings: Settings, engine: Engine | None = None, runtime: RuntimeStatus | None = None
) -> FastAPI:
    app = FastAPI(
        title="csat",
        summary="Post-call IVR survey scores: reports, agents, calls, answers and alerts.",
        version="1",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape is on for .html
    app.state.ctx = WebContext(
        settings=settings,
        engine=engine or make_engine(settings.resolved_database_url),
        templates=templates,
        limiter=LoginRateLimit(settings.web.login_attempts_per_minute),
        runtime=runtime or RuntimeStatus(),
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.web.secret_key,
        session_cookie="csat_session",
        max_age=settings.web.session_max_age_s,
        same_site="lax",
        https_only=settings.web.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": "sign in or send an API token (Authorization: Bearer …)"}, 401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": exc.message}, 403)
        return render(request, "error.html", 403, title="Not allowed", message=exc.message)

    @app.exception_handler(CsrfFailed)
    async def _csrf_failed(request: Request, _exc: CsrfFailed) -> Response:
        message = "The form expired or did not come from this site. Reload the page and try again."
        if _is_api(request):
            return JSONResponse({"detail": "missing or wrong X-CSRF-Token"}, 403)
        return render(request, "error.html", 403, title="Form expired", message=message)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str | None = None) -> Response:
        if optional_viewer(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False, dependencies=[Depends(check_csrf)])
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        ctx = context(request)
        client = request.client.host if request.client else "?"
        if ctx.limiter.blocked(username, client):
            return render(
                request, "login.html", 429, next=_safe_next(next), error="Too many attempts. Wait a minute."
            )
        who = authenticate(ctx.engine, username, password)
        if who is None:
            ctx.limiter.failed(username, client)
            return render(request, "login.html", 401, next=_safe_next(next), error="Wrong name or password.")
        ctx.limiter.succeeded(username)
        request.session.clear()  # a new session on sign-in: no fixation
        request.session["user"] = who.name
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout", include_in_schema=False, dependencies=[Depends(check_csrf)])
    def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    _include_routers(app)
    return app


def _include_routers(app: FastAPI) -> None:
    """Routers live in their own modules: pages, alerts, the JSON API, /metrics and the live feed."""
    from scoring.web import alert_routes, api, live, metrics, pages

    for module in (pages, alert_routes, api, metrics, live):
        app.include_router(module.router)
