"""The dashboard as one ASGI app: its routes, its static files and its security headers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from conveyor.runtime.app import Conveyor
from conveyor.web.dashboard import access, actions, definitions, figures, pages
from conveyor.web.dashboard.headers import SecurityHeaders
from conveyor.web.dashboard.rendering import Templates
from conveyor.web.dashboard.sessions import DEFAULT_SESSION_SECONDS, Sessions
from conveyor.web.tokens import ApiTokens

DEFAULT_REFRESH_SECONDS = 3.0
"""How often an open runs list, or the page of a run that has not ended, reloads its live parts."""
_STATIC = Path(__file__).parent / "static"


async def _not_found(request: Request, exc: Exception) -> Response:
    """A path the dashboard does not have: the not-found page (with the menu for a signed-in visitor)."""
    dashboard: Dashboard = request.app.state.dashboard
    visitor = access.caller_of(request, dashboard.sessions).visitor
    return dashboard.templates.page(
        request, "missing.html", visitor=visitor, status_code=404, what="The dashboard has no such page."
    )


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What every page reads: the runtime, the sign-in sessions and the templates."""

    app: Conveyor
    sessions: Sessions
    templates: Templates


def dashboard_app(
    app: Conveyor,
    tokens: ApiTokens,
    *,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    session_seconds: float = DEFAULT_SESSION_SECONDS,
) -> Starlette:
    """The web dashboard of ``app``'s runs, for the holders of ``tokens``, as an ASGI app to serve alone
    or mount (at ``/``, beside the REST API at ``/api``, as ``conveyor serve`` does).

    Every page needs a token: a person signs in at ``/login`` by pasting one (a session cookie follows),
    a script sends ``Authorization: Bearer <token>``. Read tokens see everything; acting on runs (retry,
    cancel, pause, unpause, signal) needs an admin token. ``refresh_seconds`` is how often open pages
    reload their live parts (with JavaScript; without it they are read as they were served);
    ``session_seconds`` how long a sign-in lasts.
    """
    dashboard = Dashboard(
        app=app,
        sessions=Sessions(tokens, lifetime_seconds=session_seconds),
        templates=Templates(refresh_seconds=refresh_seconds),
    )
    routes = [
        Route("/", pages.home, methods=["GET"], name="home"),
        Route("/login", access.login_page, methods=["GET"], name="login_page"),
        Route("/login", access.login, methods=["POST"], name="login"),
        Route("/logout", access.logout, methods=["POST"], name="logout"),
        Route("/runs", pages.runs_page, methods=["GET"], name="runs"),
        Route("/runs/{workflow_id:path}", pages.run_page, methods=["GET"], name="run"),
        Route("/runs/{workflow_id:path}", actions.act_on_run, methods=["POST"], name="act_on_run"),
        Route("/definitions", definitions.definitions_page, methods=["GET"], name="definitions"),
        Route("/start", actions.start_run, methods=["POST"], name="start_run"),
        Route("/analytics", figures.analytics_page, methods=["GET"], name="analytics"),
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
    ]
    web = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: _not_found},
    )
    web.state.dashboard = dashboard
    return web
