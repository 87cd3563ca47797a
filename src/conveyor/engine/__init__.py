"""Drives core decisions against a backend: runs step functions, timeouts, retries, compensation."""

from conveyor.engine.clock import Clock, FakeClock, SystemClock
from conveyor.engine.context import current_context
from conveyor.engine.handles import RunHandle
from conveyor.engine.reading import wait_for_run
from conveyor.engine.status import StepStatus, WorkflowStatus

__all__ = [
    "Clock",
    "FakeClock",
    "RunHandle",
    "StepStatus",
    "SystemClock",
    "WorkflowStatus",
    "current_context",
    "wait_for_run",
]
