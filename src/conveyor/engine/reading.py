"""Reading runs back from a backend, from any process: their status, and waiting for their end."""

from __future__ import annotations

import time

from conveyor.backends.base import Backend
from conveyor.definition.workflow import Workflow
from conveyor.engine.checks import check_backend, check_workflow_id
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import RunNotFoundError


def read_status(workflow_id: str, backend: Backend, workflow: Workflow | None = None) -> WorkflowStatus:
    """Read the run ``workflow_id`` from ``backend`` (from any process).

    Pass ``workflow`` to get ``output()`` back as the declared type rather than plain JSON values.
    Raises :class:`~conveyor.errors.RunNotFoundError` if there is no such run.
    """
    record = check_backend(backend).load_run(check_workflow_id(workflow_id))
    if record is None:
        raise RunNotFoundError(f"no run {workflow_id!r} in {backend!r}", workflow_id=workflow_id)
    return WorkflowStatus(record, workflow.output_codec if workflow is not None else None)


_FIRST_POLL_SECONDS = 0.002
_LONGEST_POLL_SECONDS = 0.25


def wait_for_run(
    workflow_id: str,
    backend: Backend,
    *,
    timeout_seconds: float | None = None,
    workflow: Workflow | None = None,
) -> WorkflowStatus:
    """Wait until the run ``workflow_id`` ends (from any process) and return its status.

    Reads the run every few milliseconds at first, backing off to a quarter of a second. Raises
    ``TimeoutError`` if ``timeout_seconds`` pass first.
    """
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    pause = _FIRST_POLL_SECONDS
    while True:
        status = read_status(workflow_id, backend, workflow)
        if not status.is_running():
            return status
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"run {workflow_id!r} is still {status.state.value} after {timeout_seconds} s")
        time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, _LONGEST_POLL_SECONDS)
