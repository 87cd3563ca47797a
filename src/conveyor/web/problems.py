"""Errors as ``application/problem+json`` (RFC 9457): what every conveyor door answers when it says no.

A problem names what is wrong, never how conveyor is built: no stack trace, no SQL, no file path, and no
value a caller sent (a secret in a rejected body is not repeated). Each conveyor error maps to a status:

====================================================  ======================================================
401 ``unauthorized``                                   no token, or one the server did not issue
403 ``forbidden``                                      a read token on a route that changes runs
404 ``not-found``                                      an unknown run, workflow or path
400 ``malformed-request``                              a body that is not JSON
413 ``body-too-large``                                 a body over the server's limit (see ``limits``)
422 ``invalid-request``                                a field that breaks the schema, an input that breaks
                                                       the workflow's (each field named in ``errors``)
409 ``conflict``                                       the run cannot do that now (it ended, it did not
                                                       fail, another process drives it, its workflow is
                                                       not registered here)
503 ``backend-unavailable``                            the backend failed; the server's log says why
500 ``internal-error``                                 a bug; the server's log has the traceback
====================================================  ======================================================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.definition.registry import UnknownWorkflowError
from conveyor.errors import (
    BackendError,
    ConfigurationError,
    ConveyorError,
    CorruptRunError,
    DefinitionError,
    EncodingError,
    InvalidArgumentError,
    InvalidInputError,
    RunError,
    RunNotFoundError,
)

PROBLEM_JSON = "application/problem+json"
"""The media type of every error a conveyor door answers."""
TYPE_BASE = "urn:conveyor:problem:"
"""What a problem's ``type`` starts with; the name after it is stable, for clients to switch on."""

LOGGER = logging.getLogger("conveyor.web")

_TITLES = {
    400: ("malformed-request", "The request is malformed"),
    401: ("unauthorized", "A valid bearer token is needed"),
    403: ("forbidden", "This token may not do that"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "The run cannot do that now"),
    413: ("body-too-large", "The request body is too large"),
    422: ("invalid-request", "The request does not fit the schema"),
    500: ("internal-error", "Internal error"),
    503: ("backend-unavailable", "The backend is unavailable"),
}


class FieldProblem(BaseModel):
    """One field at fault: its path (``body.input.card``, ``query.limit``) and what is wrong with it."""

    field: str
    message: str


class Problem(BaseModel):
    """An error, as ``application/problem+json``: its kind (``type``), status, and what is wrong."""

    type: str = Field(description="a URI naming the kind of problem; its last segment is stable")
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = Field(
        default=None, description="each field at fault, for a 422 (and a 400 of a body that is not JSON)"
    )


class ProblemError(Exception):
    """Raised by a route to answer with a problem (401, 403, 404...) instead of a result."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Sequence[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` response of a problem with ``status`` and ``detail``."""
    slug, title = _TITLES.get(status, ("error", "Error"))
    problem = Problem(
        type=TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        errors=list(errors) or None,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": _TITLES[status][1]}
    for status in (400, 401, 403, 404, 409, 413, 422, 503)
}
"""The error answers every route may give, for its OpenAPI (``responses=``)."""


def status_of(error: ConveyorError) -> int:
    """The HTTP status a conveyor error answers with."""
    if isinstance(error, RunNotFoundError | UnknownWorkflowError):
        return 404
    if isinstance(error, InvalidArgumentError | DefinitionError):  # a value, or a name that cannot be one
        return 422
    if isinstance(error, CorruptRunError):
        return 500
    if isinstance(error, RunError | ConfigurationError):
        return 409
    if isinstance(error, BackendError):
        return 503
    return 500


def field_problems(error: ConveyorError) -> list[FieldProblem]:
    """The fields a conveyor error names: an input's fields under ``body.input``, an argument by name."""
    if isinstance(error, InvalidInputError):
        return [
            FieldProblem(field=_joined("body", "input", field), message=_field_message(error, field))
            for field in getattr(error, "fields", None) or ()
        ]
    if isinstance(error, EncodingError):
        path = getattr(error, "path", None)
        if isinstance(path, str) and path:
            return [FieldProblem(field=_joined("body", path), message=error.message)]
    argument = getattr(error, "argument", None)
    if isinstance(error, InvalidArgumentError) and isinstance(argument, str):
        return [FieldProblem(field=argument, message=error.message)]
    return []


def _joined(*parts: str) -> str:
    return ".".join(part for part in parts if part and part != "(the input itself)")


def _field_message(error: InvalidInputError, field: str) -> str:
    """What the input validator said about ``field`` (its message names each field in turn)."""
    for part in error.message.replace(": field ", "; field ").split("; "):
        quoted = f"field {field!r}: "
        if part.startswith(quoted):
            return part[len(quoted) :]
    return "does not fit the workflow's input schema"


def _detail(error: ConveyorError) -> str:
    if isinstance(error, RunNotFoundError):  # its message names the backend, which is no caller's business
        return f"no run {getattr(error, 'workflow_id', None)!r}"
    if isinstance(error, CorruptRunError):
        run = getattr(error, "workflow_id", None)
        return f"run {run!r} is stored in a form that cannot be read; the server's log says how"
    if isinstance(error, BackendError):
        return "the backend failed to answer; the server's log says why"
    if status_of(error) == 500:
        return "conveyor failed handling the request; the server's log has the details"
    return error.message


def validation_problems(error: RequestValidationError) -> list[FieldProblem]:
    """Each field a request's validation failed on, by its path, without the value that failed."""
    found = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        message = str(item.get("msg", "is not valid"))
        if item.get("type") == "json_invalid":  # its location is (body, offset): the offset is the news
            reason = (item.get("ctx") or {}).get("error")
            offset = location[1] if len(location) > 1 else "?"
            location, message = location[:1], f"is not valid JSON at character {offset}: {reason or message}"
        found.append(FieldProblem(field=".".join(location) or "(the request)", message=message))
    return found


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error ``app`` answers a problem: its own, FastAPI's validation, conveyor's, a bug's."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = validation_problems(exc)
        if any(item.get("type") == "json_invalid" for item in exc.errors()):
            return problem_response(400, "the request body is not valid JSON", errors=problems)
        named = ", ".join(problem.field for problem in problems)
        return problem_response(422, f"the request does not fit the schema: {named}", errors=problems)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, ("", "Error"))[1]
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        return problem_response(exc.status_code, detail, headers=exc.headers)

    async def on_conveyor(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConveyorError)
        status = status_of(exc)
        if status >= 500:
            LOGGER.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem_response(status, _detail(exc), errors=field_problems(exc))

    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        LOGGER.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "conveyor failed handling the request; the server's log has the details")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ConveyorError, on_conveyor)
    app.add_exception_handler(Exception, on_bug)
