"""One call of a step's function, or of its undo: what to call, with which context, and what it gave.

The driver makes a :class:`StepCall` for each attempt; a :class:`~conveyor.engine.executor.StepExecutor`
runs it, here or elsewhere, and records in it the value or the error and when the call started and ended.
The driver then settles it, the same way for a step and for an undo.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from conveyor.core.records import RunRecord
from conveyor.definition.task import CallableShape, StepContext
from conveyor.definition.workflow import StepSpec
from conveyor.engine.clock import Clock
from conveyor.engine.context import current_step_context
from conveyor.engine.lease import Lease
from conveyor.errors import Cancelled, StepTimeoutError, UnknownResourceError


class _NoResources(Mapping[str, Any]):
    """The resources of a run driven without a runtime's: none, and a clear error when one is asked for."""

    def __getitem__(self, name: str) -> Any:
        raise UnknownResourceError(
            f"no resource named {name!r}: this run is driven without resources (give them to the Conveyor "
            "runtime or the Worker that drives it)",
            resource=name,
        )

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


NO_RESOURCES: Mapping[str, Any] = _NoResources()
"""The resources of a run driven without any."""


class StepCall:
    """One attempt at a step (or, with ``undo``, at its compensation) of one run.

    ``value`` (what the function returned) or ``error`` (what it raised, or the
    :class:`~conveyor.errors.StepTimeoutError` of the engine's deadline), ``started`` and ``finished`` are
    filled in by whoever runs it. ``ticket`` is the executor's own handle on a call it runs elsewhere.
    """

    __slots__ = (
        "clock",
        "error",
        "finished",
        "is_undo",
        "lease",
        "resources",
        "results",
        "run",
        "spec",
        "started",
        "ticket",
        "value",
    )

    # Filled in by whoever runs the call (left unset until then: the whole of a step costs microseconds).
    value: Any
    finished: float
    ticket: Any

    def __init__(
        self,
        spec: StepSpec,
        run: RunRecord,
        results: dict[str, str],
        clock: Clock,
        started: float,
        undo: bool = False,
        resources: Mapping[str, Any] = NO_RESOURCES,
        lease: Lease | None = None,
    ) -> None:
        self.spec = spec
        self.lease = lease
        """The lease the run is driven under: what the context reads to tell a step it was cancelled."""
        self.resources = resources
        """The runtime's resources, for the context and for parameters declared ``= resource(name)``."""
        self.run = run
        self.results = results
        self.clock = clock
        self.started = started
        """When the call was made; a pool thread or the event loop stamps when it begins the call instead."""
        self.is_undo = undo
        self.error: BaseException | None = None

    @property
    def flight(self) -> str:
        """The name this call is in flight under while it runs: its step's (a map's element has its own)."""
        return self.spec.name

    @property
    def shape(self) -> CallableShape:
        """The function this call calls: the step's, or its undo's."""
        task = self.spec.task
        if self.is_undo:
            assert task.compensation is not None
            return task.compensation
        return task.shape

    @property
    def is_async(self) -> bool:
        """Whether the function is ``async def`` (it must then be awaited on an event loop)."""
        return self.shape.is_async

    @property
    def timeout_seconds(self) -> float | None:
        """The step's timeout, which bounds its undo too."""
        return self.spec.timeout_seconds

    @property
    def runs_here(self) -> bool:
        """Sync, with no timeout: it may run on whichever thread asks, the driving one included."""
        if self.is_undo:
            return not self.shape.is_async and self.spec.timeout_seconds is None
        return self.spec.runs_inline

    def __call__(self) -> StepContext:
        """The step context of this attempt, built when asked for (most steps never ask).

        A call is its own context's factory: while it runs, ``current_step_context`` holds the call itself,
        which costs nothing until :func:`~conveyor.current_context` calls it.
        """
        run = self.run
        record = run.steps[self.spec.name]
        return StepContext(
            workflow_id=run.workflow_id,
            workflow_name=run.workflow_name,
            step_name=self.spec.name,
            attempt=(record.compensation_attempts if self.is_undo else record.attempts) + 1,
            correlation_id=run.correlation_id,
            is_compensation=self.is_undo,
            generation=run.generation,
            resources=self.resources,
            steering=self.lease,
        )

    def run_here(self) -> None:
        """Call a sync function on this thread and record what it returned or raised, and when it ended."""
        token = current_step_context.set(self)
        try:
            if self.is_undo:
                self.value = self._call()
            else:  # the hot path, written out
                spec = self.spec
                shape = spec.task.shape
                args, kwargs = spec.build_arguments(self.run.input, self.results)
                if shape.context_parameter is not None:
                    kwargs[shape.context_parameter] = self()
                if shape.resource_parameters:
                    self._add_resources(shape, kwargs)
                self.value = shape.fn(*args, **kwargs)
        except Exception as exc:
            self.error = exc
        except Cancelled as exc:  # the step stopped as its cancelled run told it to: the driver settles it
            self.error = exc
        finally:
            current_step_context.reset(token)
        self.finished = self.clock.now()

    def invoke(self) -> Any:
        """Call a sync function on this thread with the context current; return its value or raise."""
        token = current_step_context.set(self)
        try:
            return self._call()
        finally:
            current_step_context.reset(token)

    async def invoke_async(self) -> Any:
        """Await an async function in this task with the context current; return its value or raise."""
        current_step_context.set(self)  # the task runs in a copy of the context of its own
        return await self._call()

    def deadline_passed(self) -> None:
        """Record that the call ran past the step's timeout (the engine's deadline, not its own error)."""
        self.value = None
        self.error = timeout_error(self.spec)

    def _call(self) -> Any:
        spec = self.spec
        if self.is_undo:
            shape = self.shape
            args, kwargs = self._undo_arguments(shape)
        else:
            shape = spec.task.shape
            args, kwargs = spec.build_arguments(self.run.input, self.results)
        if shape.context_parameter is not None:
            kwargs[shape.context_parameter] = self()
        if shape.resource_parameters:
            self._add_resources(shape, kwargs)
        return shape.fn(*args, **kwargs)

    def _add_resources(self, shape: CallableShape, kwargs: dict[str, Any]) -> None:
        """Fill each parameter declared ``= resource(name)`` with the runtime's resource of that name."""
        resources = self.resources
        for parameter, name in shape.resource_parameters:
            kwargs[parameter] = resources[name]

    def _undo_arguments(self, shape: CallableShape) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The undo gets the step's result and, if it takes a second parameter, the step's input."""
        spec = self.spec
        result = self.run.steps[spec.name].result
        assert result is not None
        arguments: list[Any] = [spec.task.shape.returns.decode(result)]
        if len(shape.parameters) >= 2:
            step_args, step_kwargs = spec.build_arguments(self.run.input, self.results)
            arguments.append(step_args[0] if step_args else step_kwargs)
        return tuple(arguments), {}


class RefusedCall(StepCall):
    """A call that cannot be made (a loop's or a map's stored progress says it cannot go on, say): running
    it raises ``refusal`` at once, which the driver settles as the step's failure."""

    __slots__ = ("refusal",)

    def __init__(self, *args: Any, error: Exception) -> None:
        super().__init__(*args)
        self.refusal = error

    def _call(self) -> Any:
        raise self.refusal

    @property
    def runs_here(self) -> bool:
        """Never on the driving thread: the pool thread's call of it goes through ``_call``."""
        return False


def timeout_error(spec: StepSpec) -> StepTimeoutError:
    """The error of an attempt at ``spec`` (or its undo) that ran past the step's timeout."""
    return StepTimeoutError(
        f"step {spec.name!r} ran past its timeout of {spec.timeout_seconds:g} s", step_name=spec.name
    )
