"""Running workflows: ``run_workflow``, ``run_durable_workflow`` and ``get_workflow_status``."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import uuid
from typing import Any

from conveyor.backends.base import Backend
from conveyor.backends.memory import InMemoryBackend
from conveyor.backends.sqlite import SqliteBackend
from conveyor.codec import encode
from conveyor.core.decide import RETRYABLE_RUN_STATES, reopen_for_retry
from conveyor.core.records import NewRun, RunRecord
from conveyor.definition.workflow import Workflow
from conveyor.engine.checks import check_backend, check_workflow, check_workflow_id
from conveyor.engine.clock import Clock, SystemClock
from conveyor.engine.driver import RunDriver
from conveyor.engine.reading import wait_for_run
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import (
    RunNotFoundError,
    RunNotRetryableError,
    WorkflowFailedError,
    WorkflowMismatchError,
)


class _ProcessIdentity:
    """This process's owner name and correlation ids; renewed in a forked child, which is another process."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """How this process names itself as the owner of the runs it drives."""
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def correlation_id(self) -> str:
        """A new id, unique across processes: a random per-process prefix and a counter (32 hex digits).

        Much cheaper than 16 fresh random bytes per run, which cost more than a step in memory.
        """
        return f"{self._prefix}{next(self._counter):016x}"


_IDENTITY = _ProcessIdentity()

_SYSTEM_CLOCK = SystemClock()


def new_run(workflow: Workflow, workflow_id: str, initial_input: Any, correlation_id: str | None) -> NewRun:
    """Check the input against the workflow's schema and encode it, before anything is stored."""
    if workflow.input_validator is not None:
        initial_input = workflow.input_validator(initial_input)
    return NewRun(
        workflow_id=workflow_id,
        workflow_name=workflow.name,
        workflow_version=workflow.version,
        input=encode(initial_input, what="initial_input"),
        correlation_id=correlation_id or _IDENTITY.correlation_id(),
        step_names=workflow.step_names,
    )


def same_workflow_or_raise(record: RunRecord, workflow: Workflow) -> None:
    """Raise WorkflowMismatchError unless the stored run belongs to ``workflow`` (name, version, steps)."""
    workflow_id = record.workflow_id
    if record.workflow_name != workflow.name or record.workflow_version != workflow.version:
        raise WorkflowMismatchError(
            f"run {workflow_id!r} belongs to workflow {record.workflow_name!r} "
            f"v{record.workflow_version}, not {workflow.name!r} v{workflow.version}",
            workflow_id=workflow_id,
        )
    unknown = set(record.steps) - set(workflow.step_names)
    if unknown:
        raise WorkflowMismatchError(
            f"run {workflow_id!r} has steps {sorted(unknown)} that workflow {workflow.name!r} "
            f"v{workflow.version} does not declare; was the workflow changed without a new version?",
            workflow_id=workflow_id,
        )


def run_durable_workflow(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
    clock: Clock | None = None,
) -> WorkflowStatus:
    """Run ``workflow`` as the run ``workflow_id``, checkpointing every step in ``backend``; wait for its end.

    If the run already exists, nothing starts twice: a run that ended is returned as it is, and a run that
    had not ended (its process died) resumes from its last checkpoint; completed steps never run again.
    Returns the run's :class:`WorkflowStatus`, whether it completed or not. Without ``backend``, runs are
    kept in ``conveyor.db`` in the current directory.
    """
    workflow = check_workflow(workflow)
    workflow_id = check_workflow_id(workflow_id)
    if backend is None:
        default = SqliteBackend()
        try:
            return run_durable_workflow(
                workflow,
                workflow_id,
                initial_input,
                default,
                correlation_id=correlation_id,
                clock=clock,
            )
        finally:
            default.close()
    recorded = new_run(workflow, workflow_id, initial_input, correlation_id)
    return _start_and_drive(workflow, recorded, check_backend(backend), clock or _SYSTEM_CLOCK)


def _start_and_drive(workflow: Workflow, recorded: NewRun, backend: Backend, clock: Clock) -> WorkflowStatus:
    # The start need not reach the disk on its own: the first checkpoint flushes it too, and until then a
    # power cut loses nothing the caller was told about.
    record, created = backend.start_run(recorded, owner=_IDENTITY.owner, now=clock.now(), durable=False)
    if not created:
        same_workflow_or_raise(record, workflow)
        if record.leased_until is not None:  # a live worker is running it: wait for it, do not steal it
            return wait_for_run(recorded.workflow_id, backend, workflow=workflow)
    if not record.is_final:
        RunDriver(workflow, record, backend, clock).drive_to_end()
    return WorkflowStatus(record, workflow.output_codec)


async def run_durable_workflow_async(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
    clock: Clock | None = None,
) -> WorkflowStatus:
    """:func:`run_durable_workflow` for async code: the run is driven on a worker thread."""
    return await asyncio.to_thread(
        run_durable_workflow,
        workflow,
        workflow_id,
        initial_input,
        backend,
        correlation_id=correlation_id,
        clock=clock,
    )


def run_workflow(workflow: Workflow, initial_input: Any = None, *, clock: Clock | None = None) -> Any:
    """Run ``workflow`` in memory and return its output.

    Steps retry and compensate exactly as in a durable run, but nothing outlives the process. If the run
    does not complete, raises :class:`~conveyor.errors.WorkflowFailedError` naming the step that failed.
    """
    workflow = check_workflow(workflow)
    backend = InMemoryBackend()
    recorded = new_run(workflow, workflow.new_run_id(), initial_input, None)
    clock = clock or _SYSTEM_CLOCK
    record, _ = backend.start_run(recorded, owner=_IDENTITY.owner, now=clock.now())
    driver = RunDriver(workflow, record, backend, clock)
    driver.drive_to_end()
    status = WorkflowStatus(record, workflow.output_codec)
    if status.is_completed():
        return status.output()
    failure = status.error()
    cause = driver.errors.get(failure.step_name) if failure is not None else None
    raise WorkflowFailedError(
        f"workflow {workflow.name!r} ended {status.state.value}: {failure}",
        workflow_id=recorded.workflow_id,
        step_name=failure.step_name if failure else None,
        attempts=failure.attempts if failure else 0,
        status=status,
    ) from cause


def retry_workflow(
    workflow: Workflow, workflow_id: str, backend: Backend, *, clock: Clock | None = None
) -> WorkflowStatus:
    """Run a failed run again, once its fault is fixed, and wait for its end.

    Completed steps are kept and never run again; the step that failed, any steps that were undone, and
    everything after them run again, with fresh idempotency keys. Only a run that ended failed,
    compensated or compensation_failed can be retried (else :class:`RunNotRetryableError`).
    """
    workflow = check_workflow(workflow)
    workflow_id = check_workflow_id(workflow_id)
    backend = check_backend(backend)
    clock = clock or _SYSTEM_CLOCK
    record = backend.load_run(workflow_id)
    if record is None:
        raise RunNotFoundError(f"no run {workflow_id!r} in {backend!r}", workflow_id=workflow_id)
    same_workflow_or_raise(record, workflow)
    if record.state not in RETRYABLE_RUN_STATES:
        raise RunNotRetryableError(
            f"run {workflow_id!r} is {record.state.value}; only a failed, compensated or "
            "compensation_failed run can be retried",
            workflow_id=workflow_id,
        )
    backend.record_checkpoint(reopen_for_retry(workflow, record, clock.now()))
    stored = NewRun(
        workflow_id=workflow_id,
        workflow_name=record.workflow_name,
        workflow_version=record.workflow_version,
        input=record.input,  # checked when the run was first recorded
        correlation_id=record.correlation_id,
        step_names=workflow.step_names,
    )
    return _start_and_drive(workflow, stored, backend, clock)
