"""Starting a run for a worker to execute, and waiting on it from any process."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.backends.base import Backend
from conveyor.codec import max_value_bytes
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import new_run, same_workflow_or_raise
from conveyor.engine.checks import check_backend, check_workflow, check_workflow_id
from conveyor.engine.clock import Clock, SystemClock
from conveyor.engine.reading import get_workflow_status, wait_for_run
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import InvalidArgumentError, WorkflowFailedError


class RunHandle:
    """A run started with :func:`start_workflow`: check on it, or wait for its result, from any process."""

    def __init__(self, workflow_id: str, backend: Backend, workflow: Workflow | None = None) -> None:
        self.workflow_id = workflow_id
        self.backend = backend
        self.workflow = workflow

    def status(self) -> WorkflowStatus:
        """The run as it stands now."""
        return get_workflow_status(self.workflow_id, self.backend, self.workflow)

    def wait(self, timeout: float | None = None) -> WorkflowStatus:
        """Wait until the run ends (at most ``timeout`` seconds) and return its status."""
        return wait_for_run(self.workflow_id, self.backend, timeout_seconds=timeout, workflow=self.workflow)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run's output; raises :class:`WorkflowFailedError` if it ends without completing."""
        status = self.wait(timeout)
        if status.is_completed():
            return status.output()
        failure = status.error()
        raise WorkflowFailedError(
            f"run {self.workflow_id!r} ended {status.state.value}: {failure}",
            workflow_id=self.workflow_id,
            step_name=failure.step_name if failure else None,
            attempts=failure.attempts if failure else 0,
            status=status,
        )

    async def result_async(self, timeout_seconds: float | None = None) -> Any:
        """:meth:`result` for async code (waits on a worker thread)."""
        return await asyncio.to_thread(self.result, timeout_seconds)

    def __repr__(self) -> str:
        return f"<RunHandle {self.workflow_id!r}>"


def start_workflow(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
    clock: Clock | None = None,
) -> RunHandle:
    """Record a run for a worker to execute and return its handle at once.

    The run is durable when this returns. Starting a ``workflow_id`` that exists returns a handle on that
    run; nothing starts twice. A ``conveyor worker`` process that knows the workflow runs it.
    """
    workflow = check_workflow(workflow)
    workflow_id = check_workflow_id(workflow_id)
    if backend is None:
        raise InvalidArgumentError(
            "start_workflow needs the backend the workers read, e.g. SqliteBackend('conveyor.db')"
        )
    backend = check_backend(backend)
    recorded = new_run(
        workflow, workflow_id, initial_input, correlation_id, max_bytes=max_value_bytes(backend)
    )
    record, created = backend.submit_run(recorded, now=(clock or SystemClock()).now())
    if not created:
        same_workflow_or_raise(record, workflow)
    return RunHandle(workflow_id, backend, workflow)


async def start_workflow_async(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
) -> RunHandle:
    """:func:`start_workflow` for async code (the write happens on a worker thread)."""
    return await asyncio.to_thread(
        start_workflow, workflow, workflow_id, initial_input, backend, correlation_id=correlation_id
    )
