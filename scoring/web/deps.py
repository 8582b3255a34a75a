"""What every route needs: the shared context, the signed-in viewer, role checks, CSRF and rendering.

Pages and API share one rule: an anonymous request to a page is redirected to the login form, to the
API it gets 401; a signed-in viewer without the right gets 403 either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from ivr.settings import Settings
from scoring.web.access import Viewer
from scoring.web.security import LoginRateLimit, new_csrf_token, same_token
from scoring.web.users import viewer as load_viewer
from scoring.web.users import viewer_for_token


class LoginRequired(Exception):
    """Raised by dependencies; the app turns it into a redirect (pages) or a 401 (API)."""


class Forbidden(Exception):
    def __init__(self, message: str = "You do not have access to this page.") -> None:
        super().__init__(message)
        self.message = message


class CsrfFailed(Exception):
    pass


@dataclass
class RuntimeStatus:
    """What the running ``csat serve`` knows that the database does not (for /metrics and the header)."""

    ami_connected: Callable[[], bool] = lambda: False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class WebContext:
    settings: Settings
    engine: Engine
    templates: Jinja2Templates
    limiter: LoginRateLimit
    runtime: RuntimeStatus


def context(request: Request) -> WebContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def optional_viewer(request: Request) -> Viewer | None:
    ctx = context(request)
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return viewer_for_token(ctx.engine, auth[7:].strip())
    name = request.session.get("user")
    return load_viewer(ctx.engine, name) if isinstance(name, str) else None


def current_viewer(request: Request) -> Viewer:
    found = optional_viewer(request)
    if found is None:
        raise LoginRequired()
    request.state.viewer = found
    return found


def require(
    check: Callable[[Viewer], bool], message: str = "You do not have access to this page."
) -> Callable[..., Viewer]:
    """A dependency: the signed-in viewer, if ``check`` allows them, else 403."""

    def dependency(request: Request) -> Viewer:
        who = current_viewer(request)
        if not check(who):
            raise Forbidden(message)
        return who

    return dependency


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_csrf_token()
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Every state-changing request from a browser carries the session's token (form field or header).

    Bearer-token API calls carry no cookies, so a forged cross-site request cannot use them.
    """
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not same_token(request.session.get("csrf"), given):
        raise CsrfFailed()


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    ctx = context(request)
    who = getattr(request.state, "viewer", None) or optional_viewer(request)
    return ctx.templates.TemplateResponse(
        request,
        template,
        {"viewer": who, "csrf_token": csrf_token(request), "settings": ctx.settings, **values},
        status_code=status_code,
    )
