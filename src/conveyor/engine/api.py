"""Running workflows: ``run_workflow``, ``run_durable_workflow`` and ``get_workflow_status``."""

from __future__ import annotations

import asyncio
import os
import re
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
from conveyor.definition.flow import Flow
from conveyor.definition.workflow import Workflow
from conveyor.engine.clock import Clock, SystemClock
from conveyor.engine.driver import RunDriver
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import (
    InvalidArgumentError,
    RunNotFoundError,
    RunNotRetryableError,
    WorkflowFailedError,
    WorkflowMismatchError,
)

MAX_WORKFLOW_ID_LENGTH = 255
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
"""How this process names itself as the owner of the runs it drives."""

_SYSTEM_CLOCK = SystemClock()
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_KNOWN_BACKENDS = (InMemoryBackend, SqliteBackend)


def check_workflow_id(workflow_id: object) -> str:
    """Return ``workflow_id`` if it is usable, else raise :class:`InvalidArgumentError` saying why."""
    if not isinstance(workflow_id, str):
        raise InvalidArgumentError(
            f"workflow_id must be a string, not {type(workflow_id).__name__}",
            argument="workflow_id",
        )
    if not workflow_id.strip():
        raise InvalidArgumentError("workflow_id must not be empty", argument="workflow_id")
    if len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        raise InvalidArgumentError(
            f"workflow_id is {len(workflow_id)} characters long; the limit is {MAX_WORKFLOW_ID_LENGTH}",
            argument="workflow_id",
        )
    if _CONTROL_CHARACTERS.search(workflow_id):
        raise InvalidArgumentError("workflow_id must not contain control characters", argument="workflow_id")
    return workflow_id


def _check_workflow(workflow: object) -> Workflow:
    if isinstance(workflow, Workflow):
        return workflow
    if isinstance(workflow, Flow):
        raise InvalidArgumentError(
            f"got the unbuilt flow {workflow.name!r}; pass flow.build() instead",
            argument="workflow",
        )
    raise InvalidArgumentError(
        f"workflow must be a built Workflow, not {type(workflow).__name__}", argument="workflow"
    )


def _check_backend(backend: object) -> Backend:
    if type(backend) in _KNOWN_BACKENDS:
        return backend  # type: ignore[return-value]
    if not isinstance(backend, Backend):
        raise InvalidArgumentError(
            f"backend must be a conveyor backend (InMemoryBackend, SqliteBackend, ...), "
            f"not {type(backend).__name__}",
            argument="backend",
        )
    return backend


def _new_run(workflow: Workflow, workflow_id: str, initial_input: Any, correlation_id: str | None) -> NewRun:
    """Check the input against the workflow's schema and encode it, before anything is stored."""
    if workflow.input_validator is not None:
        initial_input = workflow.input_validator(initial_input)
    return NewRun(
        workflow_id=workflow_id,
        workflow_name=workflow.name,
        workflow_version=workflow.version,
        input=encode(initial_input, what="initial_input"),
        correlation_id=correlation_id or secrets.token_hex(16),
        step_names=workflow.step_names,
    )


def _check_same_workflow(record: RunRecord, workflow: Workflow) -> None:
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
    workflow = _check_workflow(workflow)
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
    backend = _check_backend(backend)
    clock = clock or _SYSTEM_CLOCK
    new_run = _new_run(workflow, workflow_id, initial_input, correlation_id)
    # The start need not reach the disk on its own: the first checkpoint flushes it too, and until then a
    # power cut loses nothing the caller was told about.
    record, created = backend.start_run(new_run, owner=OWNER, now=clock.now(), durable=False)
    if not created:
        _check_same_workflow(record, workflow)
    if not record.is_final:
        RunDriver(workflow, record, backend, clock).drive()
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
    workflow = _check_workflow(workflow)
    backend = InMemoryBackend()
    workflow_id = f"{workflow.name}-{uuid.uuid4().hex}"
    new_run = _new_run(workflow, workflow_id, initial_input, None)
    clock = clock or _SYSTEM_CLOCK
    record, _ = backend.start_run(new_run, owner=OWNER, now=clock.now())
    driver = RunDriver(workflow, record, backend, clock)
    driver.drive()
    status = WorkflowStatus(record, workflow.output_codec)
    if status.is_completed():
        return status.output()
    failure = status.error()
    cause = driver.errors.get(failure.step_name) if failure is not None else None
    raise WorkflowFailedError(
        f"workflow {workflow.name!r} ended {status.state.value}: {failure}",
        workflow_id=workflow_id,
        step_name=failure.step_name if failure else None,
        attempts=failure.attempts if failure else 0,
        status=status,
    ) from cause


def get_workflow_status(
    workflow_id: str, backend: Backend, workflow: Workflow | None = None
) -> WorkflowStatus:
    """Read the run ``workflow_id`` from ``backend`` (from any process).

    Pass ``workflow`` to get ``output()`` back as the declared type rather than plain JSON values.
    Raises :class:`~conveyor.errors.RunNotFoundError` if there is no such run.
    """
    workflow_id = check_workflow_id(workflow_id)
    record = _check_backend(backend).load_run(workflow_id)
    if record is None:
        raise RunNotFoundError(f"no run {workflow_id!r} in {backend!r}", workflow_id=workflow_id)
    return WorkflowStatus(record, workflow.output_codec if workflow is not None else None)


def retry_workflow(
    workflow: Workflow, workflow_id: str, backend: Backend, *, clock: Clock | None = None
) -> WorkflowStatus:
    """Run a failed run again, once its fault is fixed, and wait for its end.

    Completed steps are kept and never run again; the step that failed, any steps that were undone, and
    everything after them run again, with fresh idempotency keys. Only a run that ended failed,
    compensated or compensation_failed can be retried (else :class:`RunNotRetryableError`).
    """
    workflow = _check_workflow(workflow)
    workflow_id = check_workflow_id(workflow_id)
    backend = _check_backend(backend)
    clock = clock or _SYSTEM_CLOCK
    record = backend.load_run(workflow_id)
    if record is None:
        raise RunNotFoundError(f"no run {workflow_id!r} in {backend!r}", workflow_id=workflow_id)
    _check_same_workflow(record, workflow)
    if record.state not in RETRYABLE_RUN_STATES:
        raise RunNotRetryableError(
            f"run {workflow_id!r} is {record.state.value}; only a failed, compensated or "
            "compensation_failed run can be retried",
            workflow_id=workflow_id,
        )
    backend.record_checkpoint(reopen_for_retry(workflow, record, clock.now()))
    return run_durable_workflow(workflow, workflow_id, None, backend, clock=clock)
