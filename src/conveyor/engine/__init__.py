"""Drives core decisions against a backend: runs step functions, timeouts, retries, compensation."""

from conveyor.engine.api import (
    retry_workflow,
    run_durable_workflow,
    run_durable_workflow_async,
    run_workflow,
)
from conveyor.engine.clock import Clock, FakeClock, SystemClock
from conveyor.engine.context import current_context
from conveyor.engine.handles import RunHandle, start_workflow, start_workflow_async
from conveyor.engine.reading import get_workflow_status, wait_for_run
from conveyor.engine.status import StepStatus, WorkflowStatus

__all__ = [
    "Clock",
    "FakeClock",
    "RunHandle",
    "StepStatus",
    "SystemClock",
    "WorkflowStatus",
    "current_context",
    "get_workflow_status",
    "retry_workflow",
    "run_durable_workflow",
    "run_durable_workflow_async",
    "run_workflow",
    "start_workflow",
    "start_workflow_async",
    "wait_for_run",
]
