"""The seeds' spellings, each a thin adapter over a :class:`~conveyor.Conveyor` runtime.

``run_durable_workflow``, ``get_workflow_status``, ``retry_workflow``, ``start_workflow`` and
``run_by_name`` take a backend (or none) where the runtime takes it once; each finds the runtime for that
backend and calls the one method that does the work. Without a backend they use the default runtime, on
``$CONVEYOR_BACKEND`` or ``sqlite:///conveyor.db``: the one default everywhere. ``run_workflow`` runs in
memory, as seed 003's in-memory runner does.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from typing import Any

from conveyor.backends.base import Backend
from conveyor.backends.memory import InMemoryBackend
from conveyor.definition.registry import Registry as WorkflowCatalog
from conveyor.definition.workflow import Workflow
from conveyor.engine.checks import check_backend, check_workflow, check_workflow_id
from conveyor.engine.clock import Clock
from conveyor.engine.executor import shared_executor
from conveyor.engine.handles import RunHandle, run_failed_error
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import InvalidArgumentError
from conveyor.runtime.app import Conveyor, IfRunning

_lock = threading.Lock()
_default: Conveyor | None = None
_RUNTIMES = "_conveyor_runtimes"
"""The attribute of a backend object that keeps its runtimes by clock: on the backend itself, so that they
go with it (a weak-keyed table would keep it alive, since each runtime holds its backend)."""
_by_backend: weakref.WeakKeyDictionary[Backend, dict[Clock | None, Conveyor]] = weakref.WeakKeyDictionary()
"""The runtimes of backends that take no attribute (a custom backend with ``__slots__``)."""


_last: tuple[Any, Any, Conveyor | None] = (None, None, None)
"""The backend, clock and runtime of the last lookup (kept by weak reference otherwise)."""


def _remember(backend: Backend, clock: Clock | None, runtime: Conveyor) -> None:
    global _last
    _last = (backend, clock, runtime)


def default_runtime() -> Conveyor:
    """The runtime the adapters use when given no backend (opened on first use, closed at exit)."""
    global _default
    with _lock:
        if _default is None:
            _default = Conveyor()
            atexit.register(_default.close)
        return _default


def runtime_for(backend: Backend | None, clock: Clock | None = None) -> Conveyor:
    """The runtime over ``backend`` (the default runtime's when ``None``), with ``clock`` if given.

    One runtime per backend object and clock is kept while the backend lives; it never closes the backend.
    """
    if backend is None:
        if clock is None:
            return default_runtime()
        backend = default_runtime().backend
    last = _last
    if last[0] is backend and last[1] is clock and last[2] is not None:  # one backend, call after call
        return last[2]
    runtimes = _runtimes_of(check_backend(backend))
    runtime = runtimes.get(clock)
    if runtime is None:
        with _lock:
            runtime = runtimes.get(clock)
            if runtime is None:
                runtime = runtimes[clock] = Conveyor(backend, clock=clock)
    _remember(backend, clock, runtime)
    return runtime


def _runtimes_of(backend: Backend) -> dict[Clock | None, Conveyor]:
    runtimes: dict[Clock | None, Conveyor] | None = getattr(backend, _RUNTIMES, None)
    if runtimes is not None:
        return runtimes
    with _lock:
        runtimes = getattr(backend, _RUNTIMES, None)
        if runtimes is None:
            runtimes = _by_backend.get(backend)
        if runtimes is None:
            runtimes = {}
            try:
                setattr(backend, _RUNTIMES, runtimes)
            except AttributeError:
                _by_backend[backend] = runtimes
        return runtimes


def run_durable_workflow(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
    clock: Clock | None = None,
    if_running: IfRunning = "wait",
) -> WorkflowStatus:
    """Run ``workflow`` as the run ``workflow_id``, checkpointing every step in ``backend``; wait for its end.

    :meth:`Conveyor.run` on the runtime over ``backend``: a run that exists never starts twice (an ended
    run is returned as it is, an abandoned one resumes, one another caller drives is waited for). Returns
    the run's :class:`WorkflowStatus`, whether it completed or not.
    """
    return runtime_for(backend, clock).run(
        check_workflow(workflow),
        initial_input,
        workflow_id=workflow_id,  # checked by the runtime
        correlation_id=correlation_id,
        if_running=if_running,
    )


async def run_durable_workflow_async(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
    clock: Clock | None = None,
    if_running: IfRunning = "wait",
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
        if_running=if_running,
    )


def run_workflow(workflow: Workflow, initial_input: Any = None, *, clock: Clock | None = None) -> Any:
    """Run ``workflow`` in memory and return its output.

    Steps retry and compensate exactly as in a durable run, but nothing outlives the process. If the run
    does not complete, raises :class:`~conveyor.errors.WorkflowFailedError` naming the step that failed.
    """
    with Conveyor(InMemoryBackend(), clock=clock, executor=shared_executor()) as runtime:
        status = runtime.run(check_workflow(workflow), initial_input)
    if status.is_completed():
        return status.output()
    failure = status.error()
    cause = status.exceptions.get(failure.step_name) if failure is not None else None
    raise run_failed_error(status, f"workflow {status.workflow_name!r}") from cause


def get_workflow_status(
    workflow_id: str, backend: Backend | None = None, workflow: Workflow | None = None
) -> WorkflowStatus:
    """Read the run ``workflow_id`` from ``backend`` (from any process); :meth:`Conveyor.status`.

    Pass ``workflow`` to get ``output()`` back as the declared type rather than plain JSON values.
    Raises :class:`~conveyor.errors.RunNotFoundError` if there is no such run.
    """
    return runtime_for(backend).status(
        workflow_id, workflow=None if workflow is None else check_workflow(workflow)
    )


def send_signal(workflow_id: str, name: str, payload: Any = None, backend: Backend | None = None) -> int:
    """Send the signal ``name`` with ``payload`` to the run ``workflow_id``; :meth:`Conveyor.send_signal`."""
    return runtime_for(backend).send_signal(workflow_id, name, payload)


def cancel_workflow(
    workflow_id: str,
    backend: Backend | str | None = None,
    reason: str | Backend | None = None,
    cancelled_by: str | None = None,
) -> WorkflowStatus:
    """Cancel the run from any process, for ``reason``; :meth:`Conveyor.cancel` (``cancelled_by`` is its
    ``by``).

    Sayiir's order, ``cancel_workflow(workflow_id, backend, reason=..., cancelled_by=...)``; the reason may
    come before the backend too (``cancel_workflow(workflow_id, "customer asked", backend)``): text is taken
    as the reason, a backend as the backend.
    """
    if isinstance(backend, str) or (reason is not None and not isinstance(reason, str)):
        backend, reason = reason, backend  # (workflow_id, reason, backend)
    if isinstance(backend, str) or (reason is not None and not isinstance(reason, str)):
        raise InvalidArgumentError("cancel_workflow takes one reason and one backend", argument="backend")
    return runtime_for(backend).cancel(workflow_id, reason or "", by=cancelled_by)


def compensate_workflow(workflow_id: str, reason: str = "", backend: Backend | None = None) -> WorkflowStatus:
    """Undo the run, even a completed one, from any process; :meth:`Conveyor.compensate`."""
    return runtime_for(backend).compensate(workflow_id, reason)


def pause_workflow(
    workflow_id: str, backend: Backend | None = None, reason: str | None = None, paused_by: str | None = None
) -> WorkflowStatus:
    """Pause the run from any process (Sayiir's name); :meth:`Conveyor.pause`."""
    return runtime_for(backend).pause(workflow_id, by=paused_by, reason=reason or "")


def unpause_workflow(workflow_id: str, backend: Backend | None = None) -> WorkflowStatus:
    """Lift a run's pause (Sayiir's name): a worker goes on with it; :meth:`Conveyor.unpause`."""
    return runtime_for(backend).unpause(workflow_id)


def resume_workflow(
    workflow: Workflow | str,
    workflow_id: str | None = None,
    backend: Backend | None = None,
    *,
    by: str | None = None,
    reason: str = "",
    clock: Clock | None = None,
) -> WorkflowStatus:
    """Drive here, to its end, a run whose process died; :meth:`Conveyor.resume`.

    Sayiir's spelling, ``resume_workflow(workflow, workflow_id, backend)``; ``resume_workflow(workflow_id,
    backend=...)`` works when the runtime over ``backend`` has the workflow registered.
    """
    if isinstance(workflow, str):
        if workflow_id is not None:
            raise InvalidArgumentError(
                "resume_workflow takes (workflow, workflow_id, backend) or (workflow_id, backend=...), "
                f"not two ids ({workflow!r}, {workflow_id!r})",
                argument="workflow",
            )
        return runtime_for(backend, clock).resume(workflow, by=by, reason=reason)
    if workflow_id is None:
        raise InvalidArgumentError("resume_workflow needs the workflow_id of the run", argument="workflow_id")
    return runtime_for(backend, clock).resume(
        workflow_id, workflow=check_workflow(workflow), by=by, reason=reason
    )


def retry_workflow(
    workflow: Workflow,
    workflow_id: str,
    backend: Backend | None = None,
    *,
    from_step: str | None = None,
    by: str | None = None,
    reason: str = "",
    clock: Clock | None = None,
) -> WorkflowStatus:
    """Run a failed run again once its fault is fixed (from ``from_step``, if given), and wait for its end;
    :meth:`Conveyor.retry`."""
    return runtime_for(backend, clock).retry(
        workflow_id, workflow=check_workflow(workflow), from_step=from_step, by=by, reason=reason
    )


def skip_workflow_step(
    workflow: Workflow,
    workflow_id: str,
    step: str,
    result: Any = None,
    backend: Backend | None = None,
    *,
    by: str | None = None,
    reason: str = "",
    clock: Clock | None = None,
) -> WorkflowStatus:
    """Complete the failed ``step`` with ``result`` and drive the run on, here; :meth:`Conveyor.skip_step`."""
    return runtime_for(backend, clock).skip_step(
        workflow_id, step, result, workflow=check_workflow(workflow), by=by, reason=reason
    )


def complete_workflow(
    workflow_id: str,
    output: Any = None,
    backend: Backend | None = None,
    *,
    by: str | None = None,
    reason: str = "",
) -> WorkflowStatus:
    """Mark a run that has not completed as completed with ``output``; :meth:`Conveyor.complete_by_hand`."""
    return runtime_for(backend).complete_by_hand(workflow_id, output, by=by, reason=reason)


def start_workflow(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any = None,
    backend: Backend | None = None,
    *,
    correlation_id: str | None = None,
    clock: Clock | None = None,
) -> RunHandle:
    """Record a run for a worker to execute and return its handle at once; :meth:`Conveyor.start`.

    The run is durable when this returns. Starting a ``workflow_id`` that exists returns a handle on that
    run; nothing starts twice. A ``conveyor worker`` process that knows the workflow runs it.
    """
    workflow = check_workflow(workflow)
    if backend is None:
        raise InvalidArgumentError(
            "start_workflow needs the backend the workers read, e.g. SqliteBackend('conveyor.db')",
            argument="backend",
        )
    return runtime_for(backend, clock).start(
        workflow, initial_input, workflow_id=check_workflow_id(workflow_id), correlation_id=correlation_id
    )


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


class Registry(WorkflowCatalog):
    """Workflows by (namespace, name, version), with the seed spellings that start them by name.

    ``run``, ``start`` and ``retry`` are adapters over :class:`Conveyor`: ``Conveyor(backend,
    registry=registry)`` is the one way, and what workers and the CLI use.
    """

    def run(
        self,
        name: str,
        input: Any = None,
        *,
        backend: Backend | None = None,
        workflow_id: str | None = None,
        version: str | None = None,
        namespace: str | None = None,
        correlation_id: str | None = None,
        clock: Clock | None = None,
    ) -> WorkflowStatus:
        """Run the registered workflow ``name`` (newest version unless ``version``) and wait for its end."""
        return run_by_name(
            name,
            input,
            registry=self,
            backend=backend,
            workflow_id=workflow_id,
            version=version,
            namespace=namespace,
            correlation_id=correlation_id,
            clock=clock,
        )

    def start(
        self,
        name: str,
        input: Any = None,
        *,
        backend: Backend,
        workflow_id: str | None = None,
        version: str | None = None,
        namespace: str | None = None,
        correlation_id: str | None = None,
    ) -> RunHandle:
        """Record a run of the registered workflow ``name`` for a worker to execute; return its handle."""
        return runtime_for(check_backend(backend)).start(
            self.get(name, version, namespace),
            input,
            workflow_id=workflow_id,
            correlation_id=correlation_id,
        )

    def retry(
        self, workflow_id: str, *, backend: Backend | None = None, clock: Clock | None = None
    ) -> WorkflowStatus:
        """Retry the failed run ``workflow_id`` with the registered workflow it recorded."""
        runtime = runtime_for(backend, clock)
        record = runtime.status(workflow_id)
        workflow = self.for_run(record.workflow_name, record.workflow_version)
        return runtime.retry(workflow_id, workflow=workflow)


def run_by_name(
    name: str,
    input: Any = None,
    *,
    registry: WorkflowCatalog,
    backend: Backend | None = None,
    workflow_id: str | None = None,
    version: str | None = None,
    namespace: str | None = None,
    correlation_id: str | None = None,
    clock: Clock | None = None,
) -> WorkflowStatus:
    """Start a workflow of ``registry`` by name and wait for its end (seed 002's ``run_task``)."""
    return runtime_for(backend, clock).run(
        registry.get(name, version, namespace),
        input,
        workflow_id=workflow_id,
        correlation_id=correlation_id,
    )
