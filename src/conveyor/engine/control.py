"""How the driver runs and settles a step that steers the run: a route, a loop, a map.

Nothing here is on the path of runs without such steps: the driver comes here only for a step whose spec
has a ``control`` (see :mod:`conveyor.definition.control`). Their failures are settled as any step's.

- A route step is called like any step (its function computes the key); its success completes the step
  with the chosen branch and skips the other branches' steps, in one checkpoint
  (:class:`~conveyor.core.settle.RouteChosen`); a key that names no branch fails it
  (:class:`~conveyor.errors.RouteKeyError`, not retried).
- A loop step is called once per iteration (:class:`LoopCall`), with the value its ``progress`` holds
  after the first; an iteration asking for another is one checkpoint
  (:class:`~conveyor.core.settle.StepProgressed`), the last one completes the step.
- A map step is called once per element, side by side (see :mod:`conveyor.engine.maps`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from conveyor.codec import encode
from conveyor.core.records import Checkpoint
from conveyor.core.settle import RouteChosen, StepProgressed, StepSucceeded, settle
from conveyor.definition.control import Route
from conveyor.definition.loops import Loop, LoopResult, carried_key
from conveyor.definition.maps import Map
from conveyor.definition.task import StepContext
from conveyor.definition.workflow import StepSpec
from conveyor.engine.calls import RefusedCall, StepCall, timeout_error
from conveyor.engine.maps import map_calls, settle_map_call
from conveyor.errors import EncodingError, LoopLimitError, NonRetryableError, RouteKeyError

if TYPE_CHECKING:
    from conveyor.engine.driver import RunDriver


class ControlCall(StepCall):
    """A call of a steering step's function: run on the driving thread when it is sync without a timeout."""

    __slots__ = ()

    @property
    def runs_here(self) -> bool:
        """Sync, with no timeout: it may run on whichever thread asks, the driving one included."""
        shape = self.shape
        return not shape.is_async and self.spec.timeout_seconds is None


class LoopCall(ControlCall):
    """One iteration of a loop: ``iteration`` (0 first) and the value ``carried`` over from the one before
    (JSON text; None for the first, which gets its arguments as any step does)."""

    __slots__ = ("carried", "iteration")

    def __init__(self, *args: Any, iteration: int, carried: str | None) -> None:
        super().__init__(*args)
        self.iteration = iteration
        self.carried = carried

    def __call__(self) -> StepContext:
        """The step context of this iteration: its :attr:`~StepContext.index` is the iteration."""
        context = super().__call__()
        if not self.is_undo:
            context.index = self.iteration
        return context


def control_calls(driver: RunDriver, spec: StepSpec, now: float, undo: bool) -> list[StepCall]:
    """The calls a decision to run ``spec`` (or its undo) asks for."""
    if isinstance(spec.control, Map):
        return map_calls(driver, spec, spec.control, now, undo)
    made = (spec, driver.run, driver.results, driver.clock, now, undo, driver.resources, driver.lease)
    if isinstance(spec.control, Loop) and not undo:
        iteration, carried = _loop_progress(driver.run.steps[spec.name].progress)
        if iteration < 0:
            return [RefusedCall(*made, error=_bad_progress(spec, carried))]
        key = carried_key(spec.name)
        if carried is None:
            driver.results.pop(key, None)
        else:  # what the step's arguments take their first value from (see definition.loops)
            driver.results[key] = carried
        return [LoopCall(*made, iteration=iteration, carried=carried)]
    return [ControlCall(*made)]


def _bad_progress(spec: StepSpec, progress: str | None) -> NonRetryableError:
    return NonRetryableError(
        f"loop {spec.name!r} cannot go on: its stored progress {progress!r} says no iteration and value",
        step_name=spec.name,
    )


def _loop_progress(progress: str | None) -> tuple[int, str | None]:
    """The iteration a loop is at and the value carried into it, from its step's ``progress`` (a progress
    that says neither makes the iteration -1: its call fails, naming it)."""
    if progress is None:
        return 0, None
    data = orjson.loads(progress)
    if type(data) is not dict or type(data.get("iteration")) is not int or "value" not in data:
        return -1, progress
    return data["iteration"], orjson.dumps(data["value"]).decode()


def loop_progress(iteration: int, value: str) -> str:
    """The ``progress`` of a loop about to run ``iteration`` with ``value`` (JSON text)."""
    return '{"iteration":' + str(iteration) + ',"value":' + value + "}"


def settle_control(driver: RunDriver, call: StepCall) -> Checkpoint | None:
    """The checkpoint of a steering call's outcome, or None where it settles as any step's call does."""
    spec = call.spec
    control = spec.control
    if isinstance(control, Map):
        return settle_map_call(driver, call)
    if call.error is not None or call.is_undo:
        return None
    if isinstance(control, Route):
        return _settle_route(driver, call, spec, control)
    if isinstance(control, Loop) and isinstance(call, LoopCall):
        return _settle_iteration(driver, call, spec, control)
    return None


def _settle_iteration(driver: RunDriver, call: LoopCall, spec: StepSpec, loop: Loop) -> Checkpoint:
    """An iteration returned: the loop goes on (one checkpoint of progress) or ends (the step completes)."""
    driver.in_flight.discard(spec.name)
    started, finished = call.started, call.finished
    timeout = spec.timeout_seconds
    if timeout is not None and finished - started > timeout:
        return driver.failed(spec, timeout_error(spec), started, finished)
    returned = call.value
    if not isinstance(returned, LoopResult):
        error = NonRetryableError(
            f"the body of loop {spec.name!r} returned {type(returned).__name__}, not "
            "LoopResult.again(value) or LoopResult.done(value)",
            step_name=spec.name,
        )
        return driver.failed(spec, error, started, finished)
    try:
        value = encode(
            returned.value, what=f"the value of loop {spec.name!r}", max_bytes=driver.max_value_bytes
        )
    except EncodingError as exc:
        return driver.failed(spec, exc, started, finished)
    iterations = call.iteration + 1
    done = returned.is_done
    if not done and iterations >= loop.max_iterations:
        if loop.on_max == "fail":
            error = LoopLimitError(
                f"loop {spec.name!r} asked for another iteration after {iterations} of "
                f"max_iterations={loop.max_iterations}",
                step_name=spec.name,
                max_iterations=loop.max_iterations,
            )
            return driver.failed(spec, error, started, finished)
        done = True  # on_max="exit": the last value is the result
    outcome: StepSucceeded | StepProgressed
    if done:
        driver.results.pop(carried_key(spec.name), None)
        driver.results[spec.name] = value
        outcome = StepSucceeded(value, started, finished)
    else:
        outcome = StepProgressed(loop_progress(iterations, value), started, finished)
    try:
        settled = settle(driver.workflow, driver.run, spec, outcome, driver.in_flight)
    except Exception as exc:
        return driver.failed_for_good(spec, "record an iteration of", exc, started, finished)
    return driver.took(settled)


def _settle_route(driver: RunDriver, call: StepCall, spec: StepSpec, route: Route) -> Checkpoint:
    """The route chose a branch: the step completes with its name, the other branches are skipped."""
    driver.in_flight.discard(spec.name)
    started, finished = call.started, call.finished
    timeout = spec.timeout_seconds
    if timeout is not None and finished - started > timeout:
        return driver.failed(spec, timeout_error(spec), started, finished)
    try:
        branch = route.choose(call.value, spec.name)
    except RouteKeyError as error:
        return driver.failed(spec, error, started, finished)
    results = driver.results
    result = results[spec.name] = orjson.dumps(branch).decode()
    skipped = route.skipped_by(branch)
    for name in skipped:  # a skipped step's result, to a step that reads every step upstream, is null
        results[name] = "null"
    outcome = RouteChosen(result, started, finished, skipped)
    try:
        settled = settle(driver.workflow, driver.run, spec, outcome, driver.in_flight)
    except Exception as exc:
        return driver.failed_for_good(spec, "record the branch chosen by", exc, started, finished)
    return driver.took(settled)
