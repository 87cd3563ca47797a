"""How the driver runs and settles a step that steers the run: a route.

Nothing here is on the path of runs without such steps: the driver comes here only for a step whose spec
has a ``control`` (see :mod:`conveyor.definition.control`). A route step is called like any step (its
function computes the key); what differs is how its success is settled: the chosen branch completes the
step and the other branches' steps are skipped, in one checkpoint
(:class:`~conveyor.core.settle.RouteChosen`). Its failures, and a key that names no branch
(:class:`~conveyor.errors.RouteKeyError`, not retried), are settled as any step's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from conveyor.core.records import Checkpoint
from conveyor.core.settle import RouteChosen, settle
from conveyor.definition.control import Route
from conveyor.definition.workflow import StepSpec
from conveyor.engine.calls import StepCall, timeout_error
from conveyor.errors import RouteKeyError

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


def control_calls(driver: RunDriver, spec: StepSpec, now: float, undo: bool) -> list[StepCall]:
    """The calls a decision to run ``spec`` (or its undo) asks for."""
    return [
        ControlCall(spec, driver.run, driver.results, driver.clock, now, undo, driver.resources, driver.lease)
    ]


def settle_control(driver: RunDriver, call: StepCall) -> Checkpoint | None:
    """The checkpoint of a steering call's outcome, or None where it settles as any step's call does."""
    spec = call.spec
    control = spec.control
    if isinstance(control, Route) and call.error is None and not call.is_undo:
        return _settle_route(driver, call, spec, control)
    return None


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
