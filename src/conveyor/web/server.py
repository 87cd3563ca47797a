"""The server ``conveyor serve`` runs: the REST API at ``/api``, ``/healthz``, and the dashboard at ``/``.

::

    server = create_server(app, ApiTokens.from_environment())
    uvicorn.run(server, host="127.0.0.1", port=8000)

The dashboard is :mod:`conveyor.web.dashboard`'s ``dashboard_app(app, tokens)``; when this conveyor has
no such module (or ``dashboard=False``) the server holds the API and the health check only.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from conveyor.runtime.app import Conveyor
from conveyor.web.api import HEALTH_PATH, HEALTH_RESPONSES, api_app, health
from conveyor.web.api_models import HealthOut
from conveyor.web.limits import DEFAULT_MAX_BODY_BYTES
from conveyor.web.problems import install_problem_handlers
from conveyor.web.tokens import ApiTokens

API_PREFIX = "/api"
"""Where the server mounts the REST API."""
DASHBOARD_MODULE = "conveyor.web.dashboard"


def dashboard_for(app: Conveyor, tokens: ApiTokens) -> Any | None:
    """The dashboard's ASGI app over ``app``, or None when this conveyor has no dashboard module."""
    try:
        module = importlib.import_module(DASHBOARD_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == DASHBOARD_MODULE:
            return None
        raise
    return module.dashboard_app(app, tokens)


def create_server(
    app: Conveyor,
    tokens: ApiTokens,
    *,
    dashboard: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The whole server over ``app``: the API at ``/api``, ``/healthz`` (no token), and the dashboard at
    ``/`` unless ``dashboard=False``. Every other door needs a token of ``tokens``."""
    api = api_app(app, tokens, max_body_bytes=max_body_bytes)
    server = FastAPI(title="conveyor server", openapi_url=None, docs_url=None, redoc_url=None)
    install_problem_handlers(server)

    @server.get(HEALTH_PATH, responses=HEALTH_RESPONSES, response_model=HealthOut)
    def healthz() -> JSONResponse:
        return health(app)

    server.mount(API_PREFIX, api)
    board = dashboard_for(app, tokens) if dashboard else None
    if board is not None:
        server.mount("/", board)
    return server
