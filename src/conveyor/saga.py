"""Running workflow classes: :class:`Saga`, the class users subclass, and how its runs end.

A :class:`Saga` subclass declares a workflow (see :mod:`conveyor.definition.workflow_class`); this module
adds what runs it: :meth:`Saga.run` (in process, or handed to workers when the class is ``asynchronous``)
and :meth:`Saga.retry`, and the :class:`SagaResult` and :class:`SagaHandle` they return. It sits above the
engine, which it calls; the definition layer below knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.definition.workflow import Workflow
from conveyor.definition.workflow_class import WorkflowClass
from conveyor.errors import InvalidArgumentError
from conveyor.runtime.adapters import runtime_for
from conveyor.runtime.app import Conveyor

if TYPE_CHECKING:
    from conveyor.backends.base import Backend
    from conveyor.core.records import Failure
    from conveyor.core.states import RunState
    from conveyor.engine.clock import Clock
    from conveyor.engine.handles import RunHandle
    from conveyor.engine.status import WorkflowStatus


class SagaResult:
    """How a saga run ended: ``success``, ``completed_steps``, ``step_results`` and, on failure, ``error``."""

    def __init__(self, status: WorkflowStatus, workflow: Workflow) -> None:
        self.status = status
        """The run's full :class:`~conveyor.WorkflowStatus`."""
        self.workflow_id = status.workflow_id
        self._workflow = workflow

    @property
    def state(self) -> RunState:
        """The run's final state (completed, failed, compensated, compensation_failed)."""
        return self.status.state

    @property
    def success(self) -> bool:
        """Whether every step completed."""
        return self.status.is_completed()

    @property
    def completed_steps(self) -> tuple[str, ...]:
        """The steps that completed and were not undone, in completion order."""
        return self.status.completed_steps

    @property
    def error(self) -> Failure | None:
        """The failure that ended the run (``step_name``, ``message``, ``attempts``), or ``None``."""
        return self.status.error()

    @cached_property
    def step_results(self) -> dict[str, Any]:
        """The result of every step that produced one (undone steps included), as its declared type."""
        results = {}
        for status in self.status.steps:
            if status.result_json is not None:
                codec = self._workflow.step(status.name).task.shape.returns
                results[status.name] = codec.decode(status.result_json)
        return results

    def __repr__(self) -> str:
        return f"<SagaResult {self.workflow_id!r} {self.state.value}>"


class SagaHandle:
    """A saga run handed to workers (``asynchronous = True``): check on it later, or wait for it.

    ``status`` is ``"running"`` until the run ends, then ``"success"`` or ``"failed"``; ``result`` is the
    :class:`SagaResult` once it ended (else ``None``) and ``error`` its failure.
    """

    def __init__(self, handle: RunHandle, workflow: Workflow) -> None:
        self.handle = handle
        self.workflow_id = handle.workflow_id
        self._workflow = workflow

    @property
    def status(self) -> str:
        """``"running"``, ``"success"`` or ``"failed"``, as the run stands now."""
        current = self.handle.status()
        if current.is_running():
            return "running"
        return "success" if current.is_completed() else "failed"

    @property
    def result(self) -> SagaResult | None:
        """How the run ended, or ``None`` while it runs."""
        current = self.handle.status()
        return None if current.is_running() else SagaResult(current, self._workflow)

    @property
    def error(self) -> Failure | None:
        """The failure that ended the run, or ``None``."""
        return self.handle.status().error()

    def wait(self, timeout: float | None = None) -> SagaResult:
        """Wait until the run ends (at most ``timeout`` seconds) and return how it ended."""
        return SagaResult(self.handle.wait(timeout), self._workflow)

    def __repr__(self) -> str:
        return f"<SagaHandle {self.workflow_id!r}>"


class Saga(WorkflowClass, abstract=True):
    """Subclass it to declare a workflow; see :mod:`conveyor.definition.workflow_class`.

    Class attributes: ``workflow_name`` (default: the class name), ``namespace``, ``version``,
    ``input_schema`` (a pydantic model the input must fit, checked before anything runs), ``retry_defaults``,
    ``compensation_retry_defaults`` and ``asynchronous``. Class keyword: ``abstract=True`` for a base class
    that is not a workflow itself. ``run`` and ``retry`` go through the runtime over the backend they are
    given (the default runtime without one); register the class with a runtime to run it by name.
    """

    asynchronous: ClassVar[bool] = False
    """When True (seed 000's ``async true``), ``run`` records the run for workers and returns a handle."""

    @classmethod
    def run(
        cls,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        backend: Backend | None = None,
        workflow_id: str | None = None,
        clock: Clock | None = None,
        correlation_id: str | None = None,
        runtime: Conveyor | None = None,
        **fields: Any,
    ) -> Any:
        """Run the workflow with the input ``fields`` (or the mapping ``inputs``) and wait for its end.

        With ``asynchronous = True`` on the class, record the run for a worker to execute instead, and
        return a :class:`SagaHandle` at once.

        :meth:`Conveyor.run <conveyor.Conveyor.run>` (or ``start``) on ``runtime`` (whose resources the
        steps get), else on the runtime over ``backend``: the default runtime's when none is given
        (``$CONVEYOR_BACKEND``, else ``./conveyor.db``), as for every other spelling. The run is
        identified by ``workflow_id`` (a new id when none is given). Raises
        :class:`~conveyor.errors.InvalidInputError` if the input does not fit ``input_schema``; a failed
        step is reported in the result, not raised.
        """
        workflow = cls._compiled()
        if inputs is not None and not isinstance(inputs, Mapping):
            raise InvalidArgumentError(
                f"{cls.__name__}.run() takes keyword fields or a mapping, not {inputs!r}", argument="inputs"
            )
        runtime = _runtime(cls, runtime, backend, clock)
        payload = {**(inputs or {}), **fields}
        if cls.asynchronous:
            handle = runtime.start(workflow, payload, workflow_id=workflow_id, correlation_id=correlation_id)
            return SagaHandle(handle, workflow)
        status = runtime.run(workflow, payload, workflow_id=workflow_id, correlation_id=correlation_id)
        return SagaResult(status, workflow)

    @classmethod
    def retry(
        cls,
        workflow_id: str,
        *,
        backend: Backend | None = None,
        clock: Clock | None = None,
        runtime: Conveyor | None = None,
    ) -> SagaResult:
        """Run a failed run again once its fault is fixed; completed steps are kept (``Conveyor.retry``)."""
        workflow = cls._compiled()
        chosen = _runtime(cls, runtime, backend, clock)
        return SagaResult(chosen.retry(workflow_id, workflow=workflow), workflow)


def _runtime(cls: type, runtime: Conveyor | None, backend: Backend | None, clock: Clock | None) -> Conveyor:
    """The runtime a class method runs on: the one given, else the one over ``backend`` (and ``clock``)."""
    if runtime is None:
        return runtime_for(backend, clock)
    if not isinstance(runtime, Conveyor):
        raise InvalidArgumentError(
            f"{cls.__name__}: runtime must be a Conveyor, not {runtime!r}", argument="runtime"
        )
    if backend is not None or clock is not None:
        raise InvalidArgumentError(
            f"{cls.__name__}: give a runtime or a backend and clock, not both (the runtime has its own)",
            argument="runtime",
        )
    return runtime
