"""Sayiir's ``WorkflowClient`` and ``Worker`` pair: thin spellings over a :class:`~conveyor.Conveyor` runtime.

A client submits runs and steers them (status, cancel, pause, unpause, signals) without executing a step; a
worker started with ``Worker(worker_id, backend).start(workflows)`` executes them on a thread of its own
(a :class:`~conveyor.Worker` made by the runtime) until its handle's ``shutdown()``::

    client = WorkflowClient(backend)
    client.submit(workflow, "order-1", order)
    handle = Worker("worker-1", backend).start([workflow])
    client.send_signal("order-1", "approved", {"by": "ops"})
    ...
    handle.shutdown()
    handle.join()

Each method is one call of the runtime's (``submit`` is :meth:`Conveyor.start`, ``cancel`` is
:meth:`Conveyor.cancel` ...): there is one way to do each thing, and these are its Sayiir spellings.
:class:`~conveyor.Worker` itself stays conveyor's worker (``Worker(backend, workflows)``): Sayiir's is
``conveyor.sayiir.Worker``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from conveyor.backends.base import Backend
from conveyor.definition.workflow import Workflow
from conveyor.engine.checks import check_backend, check_workflow
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import InvalidArgumentError
from conveyor.runtime.adapters import runtime_for
from conveyor.runtime.app import Conveyor

CONFLICT_POLICIES = ("use_existing", "fail")
"""What ``submit`` does with an ``instance_id`` that has a run: return that run, or refuse."""


class WorkflowClient:
    """Submits runs for workers and steers them, from any process (Sayiir's client, over a runtime).

    ``conflict_policy`` is what :meth:`submit` does when ``instance_id`` already has a run:
    ``"use_existing"`` (conveyor's way, and the default: the existing run is returned, nothing starts
    twice) or ``"fail"`` (an :class:`~conveyor.errors.InvalidArgumentError`). Sayiir's
    ``"terminate_existing"`` is refused: conveyor never replaces a run (cancel it, and submit another id).
    """

    def __init__(self, backend: Backend, *, conflict_policy: str | None = None) -> None:
        if conflict_policy is not None and conflict_policy not in CONFLICT_POLICIES:
            raise InvalidArgumentError(
                f"conflict_policy must be one of {', '.join(CONFLICT_POLICIES)}, not {conflict_policy!r} "
                "(conveyor never replaces a run: cancel it and submit another instance_id)",
                argument="conflict_policy",
            )
        self.runtime: Conveyor = runtime_for(check_backend(backend))
        """The runtime every call goes through."""
        self.conflict_policy = conflict_policy or "use_existing"

    def submit(self, workflow: Workflow, instance_id: str, input: Any = None) -> WorkflowStatus:
        """Record a run of ``workflow`` as ``instance_id`` for a worker to execute; its status
        (:meth:`Conveyor.start`)."""
        runtime = self.runtime
        if self.conflict_policy == "fail" and runtime.backend.load_run(instance_id) is not None:
            raise InvalidArgumentError(
                f"a run {instance_id!r} exists already (conflict_policy='fail')", argument="instance_id"
            )
        return runtime.start(check_workflow(workflow), input, workflow_id=instance_id).status()

    def status(self, instance_id: str) -> WorkflowStatus:
        """The run's status (:meth:`Conveyor.status`)."""
        return self.runtime.status(instance_id)

    def get_task_result(self, instance_id: str, task_id: str) -> Any:
        """The result of the run's step ``task_id``, as plain JSON values; None until it completed."""
        return self.runtime.status(instance_id).step(task_id).result

    def cancel(
        self, instance_id: str, *, reason: str | None = None, cancelled_by: str | None = None
    ) -> WorkflowStatus:
        """Cancel the run (:meth:`Conveyor.cancel`, ``cancelled_by`` as its ``by``)."""
        return self.runtime.cancel(instance_id, reason or "", by=cancelled_by)

    def pause(
        self, instance_id: str, *, reason: str | None = None, paused_by: str | None = None
    ) -> WorkflowStatus:
        """Pause the run (:meth:`Conveyor.pause`)."""
        return self.runtime.pause(instance_id, by=paused_by, reason=reason or "")

    def unpause(self, instance_id: str) -> WorkflowStatus:
        """Lift the run's pause (:meth:`Conveyor.unpause`)."""
        return self.runtime.unpause(instance_id)

    def send_signal(self, instance_id: str, signal_name: str, payload: Any = None) -> int:
        """Send the signal ``signal_name`` to the run (:meth:`Conveyor.send_signal`); the signal's id."""
        return self.runtime.send_signal(instance_id, signal_name, payload)


class WorkerHandle:
    """A started :class:`Worker`: shut it down and wait for it, or steer runs through its runtime (whose
    worker it is, so a cancel or pause reaches a run it drives at once)."""

    def __init__(self, runtime: Conveyor, thread: threading.Thread, stop: Any) -> None:
        self._runtime = runtime
        self._thread = thread
        self._stop = stop

    def shutdown(self) -> None:
        """Ask the worker to stop (it finishes or hands back what it drives); returns at once."""
        self._stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker to stop (call :meth:`shutdown` first); then its runtime is closed (the
        backend, the caller's, is not)."""
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._runtime.close()

    def cancel_workflow(
        self, instance_id: str, *, reason: str | None = None, cancelled_by: str | None = None
    ) -> WorkflowStatus:
        """Cancel a run (:meth:`Conveyor.cancel`)."""
        return self._runtime.cancel(instance_id, reason or "", by=cancelled_by)

    def pause_workflow(
        self, instance_id: str, *, reason: str | None = None, paused_by: str | None = None
    ) -> WorkflowStatus:
        """Pause a run (:meth:`Conveyor.pause`)."""
        return self._runtime.pause(instance_id, by=paused_by, reason=reason or "")

    def unpause_workflow(self, instance_id: str) -> WorkflowStatus:
        """Lift a run's pause (:meth:`Conveyor.unpause`)."""
        return self._runtime.unpause(instance_id)

    def send_signal(self, instance_id: str, signal_name: str, payload: Any = None) -> int:
        """Send a signal to a run (:meth:`Conveyor.send_signal`)."""
        return self._runtime.send_signal(instance_id, signal_name, payload)


class Worker:
    """Sayiir's worker: ``Worker(worker_id, backend).start(workflows)`` runs a conveyor worker (named
    ``worker_id``, claiming every ``poll_interval`` seconds at the latest, under leases of ``claim_ttl``
    seconds) on a thread of its own, and returns its :class:`WorkerHandle`."""

    def __init__(
        self, worker_id: str, backend: Backend, *, poll_interval: float = 5.0, claim_ttl: float = 300.0
    ) -> None:
        if not isinstance(worker_id, str) or not worker_id.strip():
            raise InvalidArgumentError("worker_id must be a name, not blank", argument="worker_id")
        self.worker_id = worker_id
        self.backend = check_backend(backend)
        self.poll_interval = poll_interval
        self.claim_ttl = claim_ttl

    def start(self, workflows: Iterable[Workflow | type]) -> WorkerHandle:
        """Start claiming and driving runs of ``workflows`` on a daemon thread; the handle that stops it."""
        runtime = Conveyor(self.backend, workflows=workflows)
        worker = runtime.worker(
            name=self.worker_id, poll_interval_seconds=self.poll_interval, lease_seconds=self.claim_ttl
        )
        thread = threading.Thread(target=worker.run, name=f"conveyor-worker-{self.worker_id}", daemon=True)
        thread.start()
        return WorkerHandle(runtime, thread, worker.stop)
