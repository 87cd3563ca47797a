"""The web dashboard: the runs, a run's steps and history with its actions, the definitions, the analytics.

Server-rendered HTML (Jinja2, escaped), SVG charts drawn on the server, one stylesheet and one small
script (for live refresh only: every page reads fine without JavaScript), a strict Content-Security-Policy
on every response. Every page needs a token of :mod:`conveyor.web.tokens`; see docs/dashboard.md::

    from conveyor.web.dashboard import dashboard_app
    web = dashboard_app(app, ApiTokens.from_environment())   # an ASGI app: uvicorn, or mount it
"""

from conveyor.web.dashboard.app import Dashboard, dashboard_app

__all__ = ["Dashboard", "dashboard_app"]
