"""The analytics over HTTP, with seed 002's query parameters (``namespace``, ``task_name``) and a window.

``GET /analytics/performance`` and ``GET /analytics/bottlenecks`` answer what
:meth:`conveyor.Conveyor.performance` and :meth:`conveyor.Conveyor.bottlenecks` compute in the database,
over the runs that finished in ``[since, until)`` (by default the 24 hours before now).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import AwareDatetime, BaseModel, Field

from conveyor.runtime.app import Conveyor
from conveyor.web.api_access import SECURED
from conveyor.web.problems import PROBLEM_RESPONSES


class WindowOut(BaseModel):
    """The time the figures are about: runs that finished at or after ``since``, before ``until``."""

    since: str = Field(description="ISO 8601, UTC")
    until: str = Field(description="ISO 8601, UTC")
    seconds: float


class RunDurationsOut(BaseModel):
    """Percentiles of how long runs took, from being recorded to finishing."""

    p50: float
    p95: float
    p99: float


class WorkflowPerformanceOut(BaseModel):
    """One workflow's runs finished in the window: how many, how they ended, how long they took."""

    workflow: str
    finished: int
    by_state: dict[str, int]
    success_rate: float
    failure_rate: float
    throughput_per_minute: float
    duration_seconds: RunDurationsOut
    step_executions: int
    retried_steps: int
    first_attempt_rate: float
    health_score: float


class PerformanceOut(BaseModel):
    """Every workflow's performance over the window, and the totals (None when no run finished)."""

    window: WindowOut
    finished: int
    success_rate: float | None
    failure_rate: float | None
    throughput_per_minute: float
    health_score: float | None = Field(description="0 to 100 (see docs/observability.md)")
    workflows: list[WorkflowPerformanceOut]


class StepDurationsOut(BaseModel):
    """A step's durations (None when no execution recorded its times)."""

    mean: float | None
    p50: float | None
    p95: float | None


class StepPerformanceOut(BaseModel):
    """One step of one workflow over the window's finished runs; rank 1 is the worst bottleneck."""

    rank: int
    workflow: str
    step: str
    executions: int
    attempts: int
    retries: int
    retried: int
    failed: int
    retry_rate: float
    failure_rate: float
    duration_seconds: StepDurationsOut
    total_seconds: float
    share_of_time: float | None
    waits: bool | None


class BottlenecksOut(BaseModel):
    """The steps of the window's finished runs, worst bottleneck first."""

    window: WindowOut
    steps: list[StepPerformanceOut]


Namespace = Annotated[
    str | None, Query(min_length=1, max_length=200, description="only the workflows of this namespace")
]
TaskName = Annotated[
    str | None, Query(min_length=1, max_length=200, description="only this workflow (seed 002's task_name)")
]
Since = Annotated[AwareDatetime | None, Query(description="ISO 8601; default: 24 hours before until")]
Until = Annotated[AwareDatetime | None, Query(description="ISO 8601; default: now")]


def add_analytics_routes(api: FastAPI, app: Conveyor) -> None:
    """Add to ``api`` the analytics routes (a read token is enough)."""
    shared: dict[str, Any] = {"tags": ["analytics"], "responses": PROBLEM_RESPONSES, "dependencies": SECURED}

    @api.get("/analytics/performance", summary="Throughput, success and failure, durations, health", **shared)
    def performance(
        namespace: Namespace = None, task_name: TaskName = None, since: Since = None, until: Until = None
    ) -> PerformanceOut:
        report = app.performance(since=since, until=until, workflow=task_name, namespace=namespace)
        return PerformanceOut.model_validate(report.to_dict())

    @api.get(
        "/analytics/bottlenecks", summary="Each step's durations, retries and failures, worst first", **shared
    )
    def bottlenecks(
        namespace: Namespace = None, task_name: TaskName = None, since: Since = None, until: Until = None
    ) -> BottlenecksOut:
        report = app.bottlenecks(since=since, until=until, workflow=task_name, namespace=namespace)
        return BottlenecksOut.model_validate(report.to_dict())
