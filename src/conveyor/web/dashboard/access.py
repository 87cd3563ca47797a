"""Signing in and out, and who a request comes from (see :mod:`conveyor.web.dashboard.sessions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.web.dashboard.rendering import Templates
from conveyor.web.dashboard.sessions import COOKIE_NAME, Sessions, Visitor

if TYPE_CHECKING:
    from conveyor.web.dashboard.app import Dashboard

MAX_FORM_BYTES = 64 * 1024
"""The largest form the dashboard reads (a signal's payload is the biggest thing one holds)."""


class FormTooLargeError(Exception):
    """A form's body is larger than :data:`MAX_FORM_BYTES`."""


@dataclass(frozen=True, slots=True)
class Caller:
    """What a request says about who sent it: a visitor (None if no token or session was accepted), and
    whether it carried a bearer header (then a wrong token is a 401, not a way to the sign-in page)."""

    visitor: Visitor | None
    bearer: bool


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard a request came to (what its pages read)."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def caller_of(request: Request, sessions: Sessions) -> Caller:
    """Who sent ``request``: its bearer token's holder if it has an ``Authorization`` header, else its
    session cookie's."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        return Caller(sessions.bearer_visitor(authorization), bearer=True)
    return Caller(sessions.visitor(request.cookies.get(COOKIE_NAME)), bearer=False)


async def read_form(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (the first value of each), read at
    most :data:`MAX_FORM_BYTES` of (else :class:`FormTooLargeError`)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLargeError
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {name: values[0] for name, values in fields.items()}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this dashboard only (never another site), else the runs."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    return target


def signed_in(request: Request) -> Visitor | Response:
    """The visitor ``request`` comes from; else the answer to give: the sign-in page for a browser, 401
    for a bearer token that is nobody's."""
    caller = caller_of(request, request.app.state.dashboard.sessions)
    if caller.visitor is not None:
        return caller.visitor
    if caller.bearer:
        return Response(
            "That bearer token is not one this server accepts.",
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="conveyor"'},
        )
    return login_redirect(request)


def login_redirect(request: Request) -> RedirectResponse:
    """Send someone not signed in to the sign-in page, to come back here after."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    here = request.url.path[len(root) :] if request.url.path.startswith(root) else request.url.path
    if request.url.query:
        here += "?" + request.url.query
    return RedirectResponse(f"{root}/login?{urlencode({'next': here})}", status_code=303)


async def login_page(request: Request) -> Response:
    """``GET /login``: the form where a person pastes a token."""
    dashboard = request.app.state.dashboard
    caller = caller_of(request, dashboard.sessions)
    target = safe_next(request.query_params.get("next"))
    if caller.visitor is not None and not caller.bearer:
        return _go(request, target)
    return _login_form(dashboard.templates, request, target)


async def login(request: Request) -> Response:
    """``POST /login``: check the token; on success set the session cookie and go where asked."""
    dashboard = request.app.state.dashboard
    try:
        form = await read_form(request)
    except FormTooLargeError:
        return _login_form(dashboard.templates, request, "/runs", "That is not a token.", status_code=413)
    target = safe_next(form.get("next"))
    opened = dashboard.sessions.sign_in(form.get("token", ""))
    if opened is None:
        return _login_form(
            dashboard.templates,
            request,
            target,
            "That token is not one this server accepts.",
            status_code=401,
        )
    cookie, _ = opened
    response = _go(request, target)
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=int(dashboard.sessions.lifetime_seconds),
        path=_cookie_path(request),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def logout(request: Request) -> Response:
    """``POST /logout``: end the session (with its CSRF token) and clear the cookie."""
    dashboard = request.app.state.dashboard
    caller = caller_of(request, dashboard.sessions)
    if caller.visitor is None:
        return login_redirect(request)
    try:
        form = await read_form(request)
    except FormTooLargeError:
        form = {}
    if not caller.visitor.csrf_matches(form.get("csrf_token")):
        return Response("This form has expired: reload the page and try again.", status_code=403)
    dashboard.sessions.sign_out(request.cookies.get(COOKIE_NAME))
    response = _go(request, "/login")
    response.delete_cookie(
        COOKIE_NAME,
        path=_cookie_path(request),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


def _login_form(
    templates: Templates, request: Request, target: str, error: str | None = None, *, status_code: int = 200
) -> Response:
    return templates.page(
        request, "login.html", visitor=None, status_code=status_code, next_path=target, error=error
    )


def _go(request: Request, target: str) -> RedirectResponse:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(root + target, status_code=303)


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") or "/"
