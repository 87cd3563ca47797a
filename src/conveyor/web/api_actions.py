"""Steering runs over HTTP: start, signal, cancel, pause, resume, retry; each answers with the run.

Nothing here drives a run inside the request: a start is recorded for a worker, a retry reopens the run
and leaves it to one (``app.retry(..., wait=False)``), a resume lifts a pause (``app.unpause``). Every
refusal (a bad body, an input that breaks the workflow's schema, an unknown run, a run that cannot do it
now) is checked before anything is written, so a refused request leaves the backend as it was.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Response, status

from conveyor.errors import RunNotFoundError
from conveyor.runtime.app import Conveyor
from conveyor.web.api_access import SECURED
from conveyor.web.api_models import Resume, Retry, RunOut, SendSignal, StartRun, Steer
from conveyor.web.problems import PROBLEM_RESPONSES

DEFAULT_BY = "api"
"""Who an action is logged as when its body names nobody."""

RunId = Annotated[str, Path(min_length=1, max_length=200, description="the run's workflow_id")]
Optional = Body(description="optional")


def add_action_routes(api: FastAPI, app: Conveyor) -> None:
    """Add to ``api`` the routes that change runs (an admin token is needed)."""
    shared: dict[str, Any] = {"tags": ["actions"], "responses": PROBLEM_RESPONSES, "dependencies": SECURED}

    @api.post(
        "/runs",
        status_code=status.HTTP_201_CREATED,
        summary="Start a run of a registered workflow (for a worker to drive)",
        tags=["actions"],
        dependencies=SECURED,
        responses={
            **PROBLEM_RESPONSES,
            200: {"model": RunOut, "description": "a run with this workflow_id exists: that run"},
        },
    )
    def start_run(body: StartRun, response: Response) -> RunOut:
        workflow = app.registry.get(body.workflow, body.version, body.namespace)
        existed = body.workflow_id is not None and _exists(app, body.workflow_id)
        handle = app.start(
            workflow, body.input, workflow_id=body.workflow_id, correlation_id=body.correlation_id
        )
        if existed:
            response.status_code = status.HTTP_200_OK
        response.headers["Location"] = f"runs/{handle.workflow_id}"
        return RunOut.of(app.status(handle.workflow_id))

    @api.post("/runs/{workflow_id}/signal", summary="Send a signal to a run", **shared)
    def signal_run(workflow_id: RunId, body: SendSignal) -> RunOut:
        app.send_signal(workflow_id, body.name, body.payload)
        return RunOut.of(app.status(workflow_id))

    @api.post("/runs/{workflow_id}/cancel", summary="Cancel a run: its completed steps are undone", **shared)
    def cancel_run(workflow_id: RunId, body: Annotated[Steer | None, Optional] = None) -> RunOut:
        body = body or Steer()
        return RunOut.of(app.cancel(workflow_id, body.reason, by=body.by or DEFAULT_BY))

    @api.post("/runs/{workflow_id}/pause", summary="Pause a run: no new step starts", **shared)
    def pause_run(workflow_id: RunId, body: Annotated[Steer | None, Optional] = None) -> RunOut:
        body = body or Steer()
        return RunOut.of(app.pause(workflow_id, by=body.by or DEFAULT_BY, reason=body.reason))

    @api.post("/runs/{workflow_id}/resume", summary="Lift a run's pause: a worker goes on with it", **shared)
    def resume_run(workflow_id: RunId, body: Annotated[Resume | None, Optional] = None) -> RunOut:
        body = body or Resume()
        return RunOut.of(app.unpause(workflow_id, by=body.by or DEFAULT_BY))

    @api.post(
        "/runs/{workflow_id}/retry",
        summary="Retry a run from where it failed (or from a step), by a worker",
        **shared,
    )
    def retry_run(workflow_id: RunId, body: Annotated[Retry | None, Optional] = None) -> RunOut:
        body = body or Retry()
        retried = app.retry(
            workflow_id, from_step=body.from_step, by=body.by or DEFAULT_BY, reason=body.reason, wait=False
        )
        return RunOut.of(retried)


def _exists(app: Conveyor, workflow_id: str) -> bool:
    try:
        app.status(workflow_id)
    except RunNotFoundError:
        return False
    return True
