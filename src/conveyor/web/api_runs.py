"""Reading runs over HTTP: the list (filtered, a page at a time), one run with its steps, its history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from pydantic import AwareDatetime

from conveyor.core.states import RunState
from conveyor.errors import InvalidArgumentError
from conveyor.runtime.app import Conveyor
from conveyor.web.api_access import SECURED
from conveyor.web.api_models import HistoryOut, RunOut, RunPageOut, StepOut, StepsOut
from conveyor.web.problems import PROBLEM_RESPONSES, FieldProblem, ProblemError

MAX_HISTORY_PAGE = 10_000
"""The most events one read of a run's history returns."""

RunId = Annotated[str, Path(min_length=1, max_length=200, description="the run's workflow_id")]
Text = Annotated[str | None, Query(min_length=1, max_length=200)]


def add_runs_routes(api: FastAPI, app: Conveyor) -> None:
    """Add to ``api`` the routes that read runs (a read token is enough)."""
    shared: dict[str, Any] = {"tags": ["runs"], "responses": PROBLEM_RESPONSES, "dependencies": SECURED}

    @api.get("/runs", summary="List runs, newest first, a page at a time", **shared)
    def list_runs(
        workflow: Annotated[str | None, Query(min_length=1, max_length=200, description="its name")] = None,
        version: Text = None,
        state: Annotated[list[RunState] | None, Query(description="repeatable: any of these")] = None,
        correlation_id: Text = None,
        created_after: Annotated[AwareDatetime | None, Query(description="inclusive, ISO 8601")] = None,
        created_before: Annotated[AwareDatetime | None, Query(description="exclusive, ISO 8601")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        page: Annotated[
            str | None, Query(max_length=500, description="the next_page of the page before")
        ] = None,
    ) -> RunPageOut:
        try:
            found = app.runs(
                workflow,
                state=state,
                version=version,
                correlation_id=correlation_id,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                page=page,
            )
        except InvalidArgumentError as exc:
            if page is not None and "page token" in exc.message:
                problem = FieldProblem(field="query.page", message="is not a next_page this API gave")
                raise ProblemError(
                    422, "query.page is not a next_page this API gave", errors=[problem]
                ) from None
            raise
        return RunPageOut.of(found)

    @api.get("/runs/{workflow_id}", summary="One run: its fields, output or error, and every step", **shared)
    def show_run(workflow_id: RunId) -> RunOut:
        return RunOut.of(app.status(workflow_id))

    @api.get("/runs/{workflow_id}/steps", summary="A run's steps, in the workflow's order", **shared)
    def show_steps(workflow_id: RunId) -> StepsOut:
        status = app.status(workflow_id)
        steps = [StepOut.of(step, status.correlation_id) for step in status.steps]
        return StepsOut(workflow_id=status.workflow_id, correlation_id=status.correlation_id, steps=steps)

    @api.get("/runs/{workflow_id}/history", summary="A run's event history, oldest first", **shared)
    def show_history(
        workflow_id: RunId,
        after: Annotated[int, Query(ge=0, le=2**31, description="only events after this seq")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE)] = 1000,
    ) -> HistoryOut:
        events = app.history(workflow_id, after_seq=after, limit=limit)
        if not events and after:
            app.status(workflow_id)  # an unknown run is a 404 whatever ``after`` says
        return HistoryOut.of(workflow_id, events, limit)
