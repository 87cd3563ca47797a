"""Sayiir's Python names, for a program written against Sayiir to run on conveyor with its import swapped::

    from conveyor.sayiir import Flow, InMemoryBackend, Worker, WorkflowClient, task  # was: from sayiir

Every name is conveyor's own object under the name Sayiir publishes for the same concept (one way to do each
thing; these are aliases, documented with the objects themselves). ``Worker`` here is Sayiir's worker
(``Worker(worker_id, backend).start(workflows)``, :class:`conveyor.runtime.client.Worker`), not
:class:`conveyor.Worker`. Where Sayiir's spelling contradicts seed 003's, the seed's wins: ``status.output()``
and ``status.error()`` are methods. ``resume_workflow`` of a run that ended raises ``RunFinishedError``
(there is nothing to resume), where Sayiir returns its status.
"""

from conveyor.backends import InMemoryBackend, PostgresBackend
from conveyor.definition import Flow, RetryPolicy, Workflow, task
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import BackendError, TaskError, WorkflowError
from conveyor.runtime.adapters import (
    cancel_workflow,
    get_workflow_status,
    pause_workflow,
    resume_workflow,
    run_durable_workflow,
    run_workflow,
    send_signal,
    unpause_workflow,
)
from conveyor.runtime.client import Worker, WorkerHandle, WorkflowClient

__all__ = [
    "BackendError",
    "Flow",
    "InMemoryBackend",
    "PostgresBackend",
    "RetryPolicy",
    "TaskError",
    "Worker",
    "WorkerHandle",
    "Workflow",
    "WorkflowClient",
    "WorkflowError",
    "WorkflowStatus",
    "cancel_workflow",
    "get_workflow_status",
    "pause_workflow",
    "resume_workflow",
    "run_durable_workflow",
    "run_workflow",
    "send_signal",
    "task",
    "unpause_workflow",
]
