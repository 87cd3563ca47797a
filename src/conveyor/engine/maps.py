"""How the driver runs a map step: one call per element, side by side, each settled on its own.

Each element's call (:class:`ElementCall`) is in flight under its own name
(:func:`~conveyor.definition.maps.element_flight`), not the step's, so decide offers the map again while
some of its elements run: :func:`map_calls` then starts the elements that may start now, up to the map's
``max_concurrency`` with those in flight. Elements that run side by side each run off the driving thread
(on a thread of their own), which only records them and starts the next. An element's call gets the
element in its first parameter, its index as :attr:`StepContext.index` (which its idempotency key ends
with), and its own count of attempts.
Its outcome is settled by :func:`conveyor.core.maps.settle_element`; compensation calls the step's undo
once per succeeded element, newest first, one at a time (in flight under the step's own name, as any undo).

The list is read once per drive (the result it comes from is final while the map runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from conveyor.codec import encode
from conveyor.core.maps import (
    ElementFailed,
    ElementOutcome,
    ElementSucceeded,
    ElementUndoFailed,
    ElementUndone,
    empty_map,
    map_progress,
    settle_element,
)
from conveyor.core.records import Checkpoint
from conveyor.definition.maps import Map, element_flight, element_key, flying_elements
from conveyor.definition.task import CallableShape, StepContext
from conveyor.definition.workflow import StepSpec
from conveyor.engine.calls import RefusedCall, StepCall, timeout_error
from conveyor.errors import EncodingError, EngineError, NonRetryableError

if TYPE_CHECKING:
    from conveyor.engine.driver import RunDriver

_NOT_RETRYABLE = (NonRetryableError, EncodingError)


class ElementCall(StepCall):
    """One attempt at one element of a map (or, with ``undo``, at that element's undo).

    ``results`` is the driver's with the element's JSON added under the map's
    :func:`~conveyor.definition.maps.element_key`, which the step's argument builder reads.
    """

    __slots__ = ("attempt", "count", "element_result", "index")

    def __init__(
        self,
        *args: Any,
        index: int,
        count: int,
        element: str,
        attempt: int,
        element_result: str | None = None,
    ) -> None:
        super().__init__(*args)
        self.index = index
        self.count = count
        self.attempt = attempt
        """This attempt's number (1 first) at the element, or at its undo."""
        self.element_result = element_result
        """For an undo: the JSON text of the element's result."""
        results = dict(self.results)
        results[element_key(self.spec.name)] = element
        self.results = results

    @property
    def flight(self) -> str:
        """An element runs under a name of its own; an undo (one at a time) under the step's."""
        return self.spec.name if self.is_undo else element_flight(self.spec.name, self.index)

    @property
    def runs_here(self) -> bool:
        """Whether it may run on the driving thread: an undo (one at a time) or an element of a map that
        runs one at a time, when sync without a timeout. Elements that run side by side never do: the
        driving thread stays free to record each as it ends and to start the next in its place (a long
        element run there would hold both up)."""
        if not self.is_undo:
            control = self.spec.control
            assert isinstance(control, Map)
            if control.max_concurrency > 1:
                return False
        return not self.shape.is_async and self.spec.timeout_seconds is None

    def __call__(self) -> StepContext:
        """The step context of this element: :attr:`~StepContext.index` is its place in the list."""
        context = super().__call__()
        context.index = self.index
        context.attempt = self.attempt
        return context

    def _undo_arguments(self, shape: CallableShape) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The undo gets the element's result and, if it takes a second parameter, the element's input."""
        spec = self.spec
        control = spec.control
        assert isinstance(control, Map)
        assert self.element_result is not None
        arguments: list[Any] = [control.element.decode(self.element_result)]
        if len(shape.parameters) >= 2:
            step_args, step_kwargs = spec.build_arguments(self.run.input, self.results)
            arguments.append(step_args[0] if step_args else step_kwargs)
        return tuple(arguments), {}


class _Empty(StepCall):
    """The map was given an empty list: there is nothing to call, and the step completes with ``[]``."""

    __slots__ = ()

    def _call(self) -> Any:
        return []

    @property
    def runs_here(self) -> bool:
        """Never on the driving thread: the pool thread's call of it goes through ``_call``."""
        return False


def _items(driver: RunDriver, spec: StepSpec, control: Map) -> list[Any] | Exception:
    """The list the map maps over (read once per drive and kept), or the error that says why it is none."""
    kept: dict[tuple[str, int], list[Any]] = driver.control_state.setdefault("map items", {})
    key = (spec.name, driver.run.generation)  # a retry by hand may have run the list's source again
    items = kept.get(key)
    if items is None:
        run = driver.run
        try:
            value = control.read_items(run.input, driver.results)
        except Exception as exc:
            return exc
        if type(value) is not list:
            return NonRetryableError(
                f"map {spec.name!r} maps over a list, and it received {type(value).__name__}: "
                f"{orjson.dumps(value).decode()[:200]}",
                step_name=spec.name,
            )
        items = kept[key] = value
    return items


def map_calls(driver: RunDriver, spec: StepSpec, control: Map, now: float, undo: bool) -> list[StepCall]:
    """The calls a decision to run the map ``spec`` (or its undo) asks for now."""
    made = (spec, driver.run, driver.results, driver.clock, now, undo, driver.resources, driver.lease)
    items = _items(driver, spec, control)
    if isinstance(items, Exception):
        return [RefusedCall(*made, error=items)]
    record = driver.run.steps[spec.name]
    try:
        progress = map_progress(record, len(items))
    except Exception as exc:
        return [RefusedCall(*made, error=NonRetryableError(str(exc), step_name=spec.name))]
    if progress.count != len(items):
        error: Exception = NonRetryableError(
            f"map {spec.name!r} recorded {progress.count} elements, and its list now has {len(items)}",
            step_name=spec.name,
        )
        return [RefusedCall(*made, error=error)]
    if undo:
        index = progress.next_undo()
        if index is None:  # decide offers an undo only while one is left
            return [RefusedCall(*made, error=EngineError(f"map {spec.name!r} has no element left to undo"))]
        attempt = progress.undo_attempts.get(index, 0) + 1
        element = orjson.dumps(items[index]).decode()
        result = progress.result_text(index)
        call = ElementCall(
            *made, index=index, count=len(items), element=element, attempt=attempt, element_result=result
        )
        return [call]
    if not items:
        return [_Empty(*made)]
    flying = flying_elements(spec.name, driver.in_flight)
    chosen = progress.to_start(flying, now, control.max_concurrency)
    if not chosen and not flying:  # decide offered the map: something must be startable
        error = EngineError(f"map {spec.name!r} was offered with no element to start", step_name=spec.name)
        return [RefusedCall(*made, error=error)]
    return [
        ElementCall(
            *made,
            index=index,
            count=len(items),
            element=orjson.dumps(items[index]).decode(),
            attempt=progress.attempts.get(index, 0) + 1,
        )
        for index in chosen
    ]


def settle_map_call(driver: RunDriver, call: StepCall) -> Checkpoint | None:
    """The checkpoint of a map's call, or None where it settles as any step's call does (a refusal, and an
    element that stopped because its run was cancelled)."""
    spec = call.spec
    if isinstance(call, _Empty):
        driver.in_flight.discard(call.flight)
        settled = empty_map(driver.workflow, driver.run, spec, call.finished, driver.in_flight)
        driver.results[spec.name] = "[]"
        return driver.took(settled)
    if not isinstance(call, ElementCall):
        return None
    error = call.error
    if error is not None and not isinstance(error, Exception):
        return None  # Cancelled: the driver cancels the run; the element is recorded as not run
    driver.in_flight.discard(call.flight)
    index, started, finished = call.index, call.started, call.finished
    outcome: ElementOutcome
    if call.is_undo:
        if error is None:
            outcome = ElementUndone(index, finished)
        else:
            outcome = ElementUndoFailed(
                index, error, not isinstance(error, _NOT_RETRYABLE), finished, driver.random_unit()
            )
    elif error is None:
        timeout = spec.timeout_seconds
        if timeout is not None and finished - started > timeout:
            outcome = ElementFailed(index, timeout_error(spec), True, started, finished, driver.random_unit())
        else:
            try:
                value = encode(
                    call.value,
                    what=f"the result of element {index} of map {spec.name!r}",
                    max_bytes=driver.max_value_bytes,
                )
            except EncodingError as exc:
                outcome = ElementFailed(index, exc, False, started, finished)
            else:
                outcome = ElementSucceeded(index, value, started, finished)
    else:
        retryable = not isinstance(error, _NOT_RETRYABLE)
        outcome = ElementFailed(index, error, retryable, started, finished, driver.random_unit())
    if isinstance(outcome, ElementFailed | ElementUndoFailed):
        driver.errors[spec.name] = outcome.error
    try:
        settled = settle_element(driver.workflow, driver.run, spec, outcome, call.count, driver.in_flight)
    except Exception as exc:
        if call.is_undo:
            return driver.undo_failed_for_good(spec, "record the undo of an element of", exc, finished)
        return driver.failed_for_good(spec, "record an element of", exc, started, finished)
    result = settled[0].steps[spec.name].result
    if result is not None and not call.is_undo:  # the last element: the map completed
        driver.results[spec.name] = result
    return driver.took(settled)
