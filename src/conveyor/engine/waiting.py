"""How the driver takes a wait step (durable sleep, wait for a signal) one move further.

Nothing here is on the path of runs without wait steps: the driver comes here only for a step whose spec
``waits``. Each move is one checkpoint (or none):

- a sleep that has not begun records its wake time (now + its duration, once) and the run waits for it;
  a sleep that is due completes, its result the value it received;
- a signal wait looks for the oldest signal of its names the run has not consumed: one there completes
  the step, and the same transaction marks the signal consumed
  (:meth:`~conveyor.backends.base.Backend.record_checkpoint_consuming`); none there records that the wait
  began (once) and hands the run back until its timeout, or until a signal wakes it; past the timeout the
  step fails with :class:`~conveyor.errors.SignalTimeoutError`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from conveyor.core.settle import StepSucceeded, settle
from conveyor.core.states import StepState
from conveyor.core.waits import WAIT_FOREVER, begin_wait
from conveyor.definition.binding import FromPrevious
from conveyor.definition.children import ChildRun
from conveyor.definition.waits import SignalWait, Sleep
from conveyor.definition.workflow import StepSpec
from conveyor.errors import SignalTimeoutError

if TYPE_CHECKING:
    from conveyor.engine.driver import RunDriver

_WAITING = StepState.WAITING


class StillWaiting:
    """A wait step that cannot move yet: wake the run at ``at`` or when one of ``signals`` comes."""

    __slots__ = ("at", "signals")

    def __init__(self, at: float, signals: tuple[str, ...] = ()) -> None:
        self.at = at
        self.signals = signals


def move_wait(driver: RunDriver, spec: StepSpec, now: float) -> StillWaiting | None:
    """Take the wait step ``spec`` one move further; :class:`StillWaiting` if it must wait on, else None."""
    wait = spec.waits
    if isinstance(wait, ChildRun):
        from conveyor.engine.children import move_child  # engine.children builds on this module

        return move_child(driver, spec, now)
    record = driver.run.steps[spec.name]
    if isinstance(wait, Sleep):
        if record.state is not _WAITING:
            settled = begin_wait(driver.workflow, driver.run, spec, now, now + wait.seconds)
            driver.write(driver.took(settled))
            return None
        assert record.started_at is not None
        result = driver.results[spec.name] = _received(driver, spec)
        outcome = StepSucceeded(result, record.started_at, now)
        driver.write(driver.took(settle(driver.workflow, driver.run, spec, outcome, driver.in_flight)))
        return None
    assert isinstance(wait, SignalWait)
    signal = driver.backend.next_signal(driver.run.workflow_id, wait.names)
    started = record.started_at if record.state is _WAITING else now
    assert started is not None
    if signal is not None:
        result = signal.payload
        if wait.first_of:
            result = '{"signal":' + orjson.dumps(signal.name).decode() + ',"payload":' + signal.payload + "}"
        driver.results[spec.name] = result
        if driver.run.wake_at is not None:  # woken by its timeout or a take-over: that wake-up is spent
            driver.run = replace(driver.run, wake_at=None)
        settled = settle(
            driver.workflow, driver.run, spec, StepSucceeded(result, started, now), driver.in_flight
        )
        checkpoint = driver.took(settled)
        driver.check_lease()
        driver.backend.record_checkpoint_consuming(checkpoint, signal.signal_id)
        return None
    deadline = None if wait.timeout_seconds is None else started + wait.timeout_seconds
    if deadline is not None and now >= deadline:
        error = SignalTimeoutError(
            f"step {spec.name!r} waited {wait.timeout_seconds:g} s for "
            + " or ".join(repr(name) for name in wait.names)
            + ", which did not come",
            step_name=spec.name,
            signals=wait.names,
        )
        driver.write(driver.failed(spec, error, started, now))
        return None
    if record.state is not _WAITING:
        driver.write(driver.took(begin_wait(driver.workflow, driver.run, spec, now, None)))
    return StillWaiting(WAIT_FOREVER if deadline is None else deadline, wait.names)


def _received(driver: RunDriver, spec: StepSpec) -> str:
    """The JSON a sleep passes on: the value it received (the previous result or the input), else null."""
    binding = spec.binding
    if isinstance(binding, FromPrevious):
        if binding.source is None:
            return driver.run.input
        return driver.results.get(binding.source, "null")
    return "null"
