"""The REST API: a FastAPI application to mount in your own app at any prefix, or to serve alone.

::

    from conveyor.web import ApiTokens, api_app

    web = FastAPI()
    web.mount("/tasker", api_app(app, ApiTokens.from_environment()))

It is an application of its own, not a router, so that it carries its own error answers
(``application/problem+json``, :mod:`conveyor.web.problems`), its body limit (:mod:`conveyor.web.limits`),
its token check (:mod:`conveyor.web.api_access`) and its OpenAPI schema (``GET /openapi.json``, with a
token), whatever app it is mounted in. Its routes: runs (:mod:`~conveyor.web.api_runs`), actions
(:mod:`~conveyor.web.api_actions`), definitions (:mod:`~conveyor.web.api_definitions`), analytics
(:mod:`~conveyor.web.api_analytics`), ``/metrics`` and ``/healthz`` (the one route without a token).
See docs/api.md.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from conveyor.errors import ConfigurationError
from conveyor.runtime.app import Conveyor
from conveyor.web.api_access import SECURED, TokenGate
from conveyor.web.api_actions import add_action_routes
from conveyor.web.api_analytics import add_analytics_routes
from conveyor.web.api_definitions import add_definition_routes
from conveyor.web.api_models import HealthOut
from conveyor.web.api_runs import add_runs_routes
from conveyor.web.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit, check_max_body_bytes
from conveyor.web.problems import PROBLEM_RESPONSES, install_problem_handlers
from conveyor.web.tokens import ApiTokens

LOGGER = logging.getLogger("conveyor.web")
HEALTH_PATH = "/healthz"
"""The one route that needs no token."""
_BACKEND_KINDS = {"SqliteBackend": "sqlite", "PostgresBackend": "postgresql", "InMemoryBackend": "memory"}


def _version() -> str:
    try:
        return importlib.metadata.version("conveyor")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def health(app: Conveyor) -> JSONResponse:
    """Whether the backend answers: 200 ``ok``, or 503 ``unavailable`` (the log says why)."""
    try:
        backend = app.backend
    except Exception:  # it cannot even be opened
        LOGGER.warning("health check: the backend cannot be opened", exc_info=True)
        return JSONResponse(HealthOut(status="unavailable", backend="unknown").model_dump(), status_code=503)
    kind = _backend_kind(backend)
    try:
        app.runs(limit=1)
    except Exception:  # whatever the backend's failure, the check's answer is the same
        LOGGER.warning("health check: the backend does not answer", exc_info=True)
        return JSONResponse(HealthOut(status="unavailable", backend=kind).model_dump(), status_code=503)
    return JSONResponse(HealthOut(status="ok", backend=kind).model_dump())


def _backend_kind(backend: object) -> str:
    name = type(backend).__name__
    return _BACKEND_KINDS.get(name, name)


HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthOut, "description": "the backend answers"},
    503: {"model": HealthOut, "description": "the backend does not answer"},
}


def _add_observation_routes(api: FastAPI, app: Conveyor) -> None:
    @api.get(
        "/metrics",
        tags=["observation"],
        summary="The runtime's Prometheus metrics (text exposition)",
        response_class=Response,
        dependencies=SECURED,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
            **{status: PROBLEM_RESPONSES[status] for status in (401, 403)},
        },
    )
    def metrics() -> Response:
        return Response(app.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @api.get(
        HEALTH_PATH,
        tags=["observation"],
        summary="Whether the backend answers (no token needed)",
        responses=HEALTH_RESPONSES,
        response_model=HealthOut,
    )
    def healthz() -> JSONResponse:
        return health(app)


def api_app(app: Conveyor, tokens: ApiTokens, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The REST API over ``app``: every route but ``/healthz`` needs a bearer token of ``tokens`` (a read
    token to read, an admin token to act); bodies over ``max_body_bytes`` (1 MiB) are refused with 413."""
    if not isinstance(app, Conveyor):
        raise ConfigurationError(f"api_app needs a conveyor.Conveyor, not {type(app).__name__}")
    if not isinstance(tokens, ApiTokens):
        raise ConfigurationError(
            "api_app needs its tokens as conveyor.web.ApiTokens (ApiTokens.from_environment(), or "
            f"ApiTokens(admin=[...], read=[...])), not {type(tokens).__name__}"
        )
    limit = check_max_body_bytes(max_body_bytes)
    api = FastAPI(
        title="conveyor",
        version=_version(),
        summary="Runs, their steps and history; start, signal, cancel, pause, resume and retry them.",
        openapi_url=None,  # served below, behind a token
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(api)
    add_runs_routes(api, app)
    add_action_routes(api, app)
    add_definition_routes(api, app)
    add_analytics_routes(api, app)
    _add_observation_routes(api, app)

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(api.openapi())

    api.add_middleware(BodyLimit, max_bytes=limit)
    api.add_middleware(TokenGate, tokens=tokens, open_paths=(HEALTH_PATH,))  # outermost: checked first
    app.metrics  # noqa: B018 (the metrics count from now on)
    return api
