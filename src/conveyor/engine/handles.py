"""A handle on a run recorded for a worker to execute: check on it, or wait for it, from any process."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.backends.base import Backend
from conveyor.definition.workflow import Workflow
from conveyor.engine.reading import read_status, wait_for_run
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import WorkflowFailedError


class RunHandle:
    """A run started with :func:`start_workflow`: check on it, or wait for its result, from any process."""

    def __init__(self, workflow_id: str, backend: Backend, workflow: Workflow | None = None) -> None:
        self.workflow_id = workflow_id
        self.backend = backend
        self.workflow = workflow

    def status(self) -> WorkflowStatus:
        """The run as it stands now."""
        return read_status(self.workflow_id, self.backend, self.workflow)

    def wait(self, timeout: float | None = None) -> WorkflowStatus:
        """Wait until the run ends (at most ``timeout`` seconds) and return its status."""
        return wait_for_run(self.workflow_id, self.backend, timeout_seconds=timeout, workflow=self.workflow)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run's output; raises :class:`WorkflowFailedError` if it ends without completing."""
        status = self.wait(timeout)
        if status.is_completed():
            return status.output()
        raise run_failed_error(status, f"run {self.workflow_id!r}")

    async def result_async(self, timeout_seconds: float | None = None) -> Any:
        """:meth:`result` for async code (waits on a worker thread)."""
        return await asyncio.to_thread(self.result, timeout_seconds)

    def __repr__(self) -> str:
        return f"<RunHandle {self.workflow_id!r}>"


def run_failed_error(status: WorkflowStatus, what: str) -> WorkflowFailedError:
    """The error for a run that ended without completing: ``what`` (the run, or the workflow) and why."""
    failure = status.error()
    return WorkflowFailedError(
        f"{what} ended {status.state.value}: {failure}",
        workflow_id=status.workflow_id,
        step_name=failure.step_name if failure else None,
        attempts=failure.attempts if failure else 0,
        status=status,
    )
