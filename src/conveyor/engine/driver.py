"""Drives one run to its end: asks :func:`~conveyor.core.decide` what to do, does it, checkpoints it.

The common case, a chain of sync steps without timeouts, runs on the calling thread with no event loop and
no thread hand-off: the per-step cost is the call, the JSON encoding and one checkpoint. Anything else
(async steps, fork branches running together, timeouts) switches the rest of the run to an event loop.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import queue
import random
from collections.abc import Callable
from typing import Any

from conveyor.backends.base import Backend
from conveyor.codec import encode
from conveyor.core.decide import (
    Action,
    decide,
    merge_checkpoints,
    recover,
    settle_compensation_failure,
    settle_compensation_success,
    settle_failure,
    settle_success,
)
from conveyor.core.records import Checkpoint, Failure, RunRecord
from conveyor.core.states import RunState, StepState
from conveyor.definition.task import CallableShape, StepContext
from conveyor.definition.workflow import StepSpec, Workflow
from conveyor.engine.calls import (
    DeadlinePassed,
    PoolCall,
    call_step,
    offer_to_pool,
    run_coroutine,
    take_back_from_pool,
)
from conveyor.engine.clock import Clock
from conveyor.engine.context import current_step_context, reset_context, set_context
from conveyor.errors import EncodingError, EngineError, NonRetryableError, StepTimeoutError

_Outcome = tuple[Any, Exception | None, float, float]
"""What one call of a step function gave: its value or error, and when it started and finished."""


class RunDriver:
    """Runs the steps of one run the backend has handed this process, until the run ends."""

    def __init__(
        self,
        workflow: Workflow,
        run: RunRecord,
        backend: Backend,
        clock: Clock,
        *,
        random_unit: Callable[[], float] = random.random,
        record_checkpoint: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        self.workflow = workflow
        self.run = run
        self.backend = backend
        self.clock = clock
        self.random_unit = random_unit
        self.record_checkpoint = record_checkpoint or backend.record_checkpoint
        """Writes one checkpoint: the backend's own, or a group committer's shared with other runs."""
        self.release_on_wait = False
        self._inline_spec: StepSpec | None = None
        self.waiting_until: float | None = None
        """Set when the drive stopped early to wait for a timer (see ``release_on_wait``)."""
        self.errors: dict[str, BaseException] = {}
        """The last exception each failed step raised in this process (for chaining, not stored)."""
        self.results: dict[str, str] = {
            name: record.result
            for name, record in run.steps.items()
            if record.state is StepState.COMPLETED and record.result is not None
        }

    # -- the loop ---------------------------------------------------------------------------------

    def drive(self, *, release_on_wait: bool = False) -> RunRecord:
        """Run until the run ends and return its record.

        With ``release_on_wait`` (how workers drive runs), stop instead when the run must wait for a
        timer, leaving the due time in :attr:`waiting_until`, so that the wait holds no worker slot.
        """
        self.release_on_wait = release_on_wait
        checkpoint = recover(self.workflow, self.run, self.clock.now())
        if checkpoint is not None:
            self.record_checkpoint(checkpoint)
        workflow, run, clock = self.workflow, self.run, self.clock
        record_checkpoint = self.record_checkpoint
        while True:
            now = clock.now()
            decision = decide(workflow, run, now)
            action = decision.action
            if action is Action.RUN_STEPS:
                steps = decision.steps
                if len(steps) == 1 and steps[0].runs_inline:
                    record_checkpoint(self._attempt_inline(steps[0], now))
                    continue
                if all(spec.runs_inline for spec in steps):
                    self._drive_on_threads(steps)
                    continue
            elif action is Action.RUN_COMPENSATION:
                spec = decision.steps[0]
                shape = spec.task.compensation
                assert shape is not None
                if not shape.is_async and spec.timeout_seconds is None:
                    self.record_checkpoint(self._compensate_inline(spec, shape))
                    continue
            elif action is Action.WAIT_UNTIL:
                assert decision.at is not None
                if release_on_wait:
                    self.waiting_until = decision.at
                    return run
                clock.sleep(decision.at - clock.now())
                continue
            elif action is Action.FINISHED:
                return run
            run_coroutine(self._drive_async())
            return run

    def _drive_on_threads(self, ready: tuple[StepSpec, ...]) -> None:
        """Run sync steps side by side, settling each here as it ends, until none is left.

        Fork branches of plain sync steps take this path, with no event loop. The first ready step runs on
        this thread while the others are offered to pool threads; when it ends, every step no pool thread
        has picked up yet is taken back and run here too. Short branches so finish without a single thread
        hand-off and share one checkpoint, while a slow branch still has the others running beside it.
        Steps that become ready meanwhile join in if they are sync too; anything else waits for the outer
        loop, once every step started here has been settled.
        """
        workflow, run, clock = self.workflow, self.run, self.clock
        running: dict[PoolCall, StepSpec] = {}
        finished: queue.SimpleQueue[PoolCall] = queue.SimpleQueue()
        while True:
            checkpoints = []
            if ready:
                here, *offered = ready
                for spec in ready:
                    run.in_flight.add(spec.name)
                for spec in offered:
                    running[offer_to_pool(functools.partial(self._call_on_thread, spec), finished.put)] = spec
                checkpoints.append(self._settle(here, self._call_on_thread(here)))
                for call, spec in list(running.items()):
                    if take_back_from_pool(call):  # no pool thread has started it: run it here instead
                        del running[call]
                        checkpoints.append(self._settle(spec, self._call_on_thread(spec)))
            elif not running:
                return
            else:
                timeout = None
                decision = decide(workflow, run, clock.now())
                if decision.action is Action.WAIT_UNTIL and decision.at is not None:
                    timeout = clock.real_seconds(decision.at - clock.now())
                done = []
                try:
                    done.append(finished.get(timeout=timeout))
                    while not finished.empty():
                        done.append(finished.get_nowait())
                except queue.Empty:
                    if decision.at is not None:
                        clock.sleep(decision.at - clock.now())  # a fake clock's time passes only this way
                for call in done:
                    spec = running.pop(call)
                    if call.error is not None:  # not an Exception: _call_on_thread returns those
                        raise call.error
                    checkpoints.append(self._settle(spec, call.value))
            if checkpoints:
                self.record_checkpoint(merge_checkpoints(checkpoints))
            decision = decide(workflow, run, clock.now())
            ready = ()
            if decision.action is Action.RUN_STEPS and all(spec.runs_inline for spec in decision.steps):
                ready = decision.steps

    def _settle(self, spec: StepSpec, outcome: _Outcome) -> Checkpoint:
        value, error, started, finished = outcome
        if error is not None:
            return self._failed(spec, error, started, finished)
        return self._succeeded(spec, value, started, finished)

    def _call_on_thread(self, spec: StepSpec) -> _Outcome:
        shape = spec.task.shape
        context = self._context(spec, self.run.steps[spec.name].attempts + 1)
        token = set_context(context)
        started = self.clock.now()
        try:
            args, kwargs = spec.build_arguments(self.run.input, self.results)
            if shape.context_parameter is not None:
                kwargs[shape.context_parameter] = context
            value = shape.fn(*args, **kwargs)
        except Exception as exc:
            return None, exc, started, self.clock.now()
        finally:
            reset_context(token)
        return value, None, started, self.clock.now()

    async def _drive_async(self) -> None:
        workflow, run, clock = self.workflow, self.run, self.clock
        tasks: dict[asyncio.Task[Checkpoint], str] = {}
        try:
            while True:
                decision = decide(workflow, run, clock.now())
                action = decision.action
                if action is Action.FINISHED:
                    return
                if action is Action.RUN_STEPS:
                    for spec in decision.steps:
                        run.in_flight.add(spec.name)
                        tasks[asyncio.ensure_future(self._attempt_async(spec))] = spec.name
                    continue
                if action is Action.RUN_COMPENSATION:
                    spec = decision.steps[0]
                    run.in_flight.add(spec.name)
                    tasks[asyncio.ensure_future(self._compensate_async(spec))] = spec.name
                    continue
                timeout: float | None = None
                if action is Action.WAIT_UNTIL:
                    assert decision.at is not None
                    wait = decision.at - clock.now()
                    if not tasks:
                        if self.release_on_wait:
                            self.waiting_until = decision.at
                            return
                        await clock.sleep_async(wait)
                        continue
                    timeout = clock.real_seconds(wait)
                done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if action is Action.WAIT_UNTIL and timeout == 0:
                        assert decision.at is not None
                        await clock.sleep_async(decision.at - clock.now())
                    continue
                checkpoints = []
                for finished in done:
                    del tasks[finished]
                    checkpoints.append(finished.result())
                self.record_checkpoint(merge_checkpoints(checkpoints))
        finally:
            for pending in tasks:
                pending.cancel()

    # -- one attempt ------------------------------------------------------------------------------

    def _context(self, spec: StepSpec, attempt: int, *, compensation: bool = False) -> StepContext:
        run = self.run
        return StepContext(
            workflow_id=run.workflow_id,
            workflow_name=run.workflow_name,
            step_name=spec.name,
            attempt=attempt,
            correlation_id=run.correlation_id,
            is_compensation=compensation,
            generation=run.generation,
        )

    def _inline_context(self) -> StepContext:
        spec = self._inline_spec
        assert spec is not None
        return self._context(spec, self.run.steps[spec.name].attempts + 1)

    # -- settling outcomes: every call to core's settle_* functions is in this section ---------------

    def _succeeded(
        self, spec: StepSpec, value: Any, started: float, finished: float | None = None
    ) -> Checkpoint:
        if finished is None:
            finished = self.clock.now()
        timeout = spec.timeout_seconds
        if timeout is not None and finished - started > timeout:
            return self._failed(spec, _timeout_error(spec), started, finished)
        try:
            result = encode(value, what=f"the result of step {spec.name!r}")
        except EncodingError as exc:
            return self._failed(spec, exc, started, finished)
        except Exception as exc:  # the codec's own failure, not the value's
            error = _engine_error(spec, "store the result of", exc)
            return self._failed_for_good(spec, error, started, finished)
        self.results[spec.name] = result
        try:
            return settle_success(self.workflow, self.run, spec, result, started, finished)
        except Exception as exc:
            error = _engine_error(spec, "record the result of", exc)
            return self._failed_for_good(spec, error, started, finished)

    def _failed(
        self, spec: StepSpec, error: Exception, started: float, finished: float | None = None
    ) -> Checkpoint:
        if finished is None:
            finished = self.clock.now()
        self.errors[spec.name] = error
        saved = _Saved(self.run, spec.name)
        try:
            return settle_failure(
                self.workflow,
                self.run,
                spec,
                error,
                retryable=not isinstance(error, NonRetryableError | EncodingError),
                started=started,
                finished=finished,
                random_unit=self.random_unit(),
            )
        except Exception as exc:  # the retry policy raised, say: the step fails for good instead
            saved.restore()
            engine_error = _engine_error(spec, "record the failure of", exc, error)
            return self._failed_for_good(spec, engine_error, started, finished)

    def _failed_for_good(
        self, spec: StepSpec, error: EngineError, started: float, finished: float
    ) -> Checkpoint:
        self.errors[spec.name] = error
        try:
            return settle_failure(
                self.workflow, self.run, spec, error, retryable=False, started=started, finished=finished
            )
        except Exception as exc:
            return self._dead_lettered(spec, error, exc, finished)

    def _compensated(self, spec: StepSpec, error: Exception | None) -> Checkpoint:
        finished = self.clock.now()
        if error is None:
            try:
                return settle_compensation_success(self.workflow, self.run, spec, finished)
            except Exception as exc:
                engine_error = _engine_error(spec, "record the undo of", exc)
                return self._undo_failed_for_good(spec, engine_error, finished)
        saved = _Saved(self.run, spec.name)
        try:
            return settle_compensation_failure(
                self.workflow,
                self.run,
                spec,
                error,
                retryable=not isinstance(error, NonRetryableError),
                finished=finished,
                random_unit=self.random_unit(),
            )
        except Exception as exc:  # the compensation retry policy raised: the undo fails for good
            saved.restore()
            engine_error = _engine_error(spec, "record the failure of the undo of", exc, error)
            return self._undo_failed_for_good(spec, engine_error, finished)

    def _undo_failed_for_good(self, spec: StepSpec, error: EngineError, finished: float) -> Checkpoint:
        try:
            return settle_compensation_failure(
                self.workflow, self.run, spec, error, retryable=False, finished=finished
            )
        except Exception as exc:
            return self._dead_lettered(spec, error, exc, finished)

    def _dead_lettered(
        self, spec: StepSpec, error: EngineError, exc: Exception, finished: float
    ) -> Checkpoint:
        """The last resort, when even failing the step (or its undo) for good raised: end the run here.

        The run is dead-lettered (a person must look; it can be retried by hand once the cause is fixed)
        with the engine's error, and no step record is written: each stays as last recorded.
        """
        run = self.run
        run.in_flight.discard(spec.name)
        record = run.steps[spec.name]
        cause = EngineError(
            f"{error.message}; failing it for good failed too: {_describe(exc)}", step_name=spec.name
        )
        cause.__cause__ = exc
        run.error = Failure.from_exception(spec.name, cause, record.attempts, retryable=False)
        run.state = RunState.DEAD_LETTERED
        run.wake_at = None
        run.updated_at = finished
        return Checkpoint(
            workflow_id=run.workflow_id,
            epoch=run.epoch,
            steps=(),
            state=run.state,
            output=run.output,
            error=run.error,
            wake_at=None,
            at=finished,
            generation=run.generation,
        )

    def _attempt_inline(self, spec: StepSpec, started: float) -> Checkpoint:
        shape = spec.task.shape
        # The context is built only if the step asks for it (most steps never do).
        self._inline_spec = spec
        token = current_step_context.set(self._inline_context)
        try:
            args, kwargs = spec.build_arguments(self.run.input, self.results)
            if shape.context_parameter is not None:
                kwargs[shape.context_parameter] = self._inline_context()
            value = shape.fn(*args, **kwargs)
        except Exception as exc:
            return self._failed(spec, exc, started)
        finally:
            current_step_context.reset(token)
        return self._succeeded(spec, value, started)

    async def _attempt_async(self, spec: StepSpec) -> Checkpoint:
        shape = spec.task.shape
        context = self._context(spec, self.run.steps[spec.name].attempts + 1)
        started = self.clock.now()
        try:
            args, kwargs = spec.build_arguments(self.run.input, self.results)
            value = await call_step(shape, args, kwargs, context, spec.timeout_seconds)
        except DeadlinePassed:
            return self._failed(spec, _timeout_error(spec), started)
        except Exception as exc:
            return self._failed(spec, exc, started)
        return self._succeeded(spec, value, started)

    # -- one undo ---------------------------------------------------------------------------------

    def _compensation_arguments(self, spec: StepSpec, shape: CallableShape) -> list[Any]:
        record = self.run.steps[spec.name]
        assert record.result is not None
        arguments: list[Any] = [spec.task.shape.returns.decode(record.result)]
        if len(shape.parameters) >= 2:
            step_args, step_kwargs = spec.build_arguments(self.run.input, self.results)
            arguments.append(step_args[0] if step_args else step_kwargs)
        return arguments

    def _compensate_inline(self, spec: StepSpec, shape: CallableShape) -> Checkpoint:
        record = self.run.steps[spec.name]
        context = self._context(spec, record.compensation_attempts + 1, compensation=True)
        token = set_context(context)
        try:
            kwargs: dict[str, Any] = {}
            if shape.context_parameter is not None:
                kwargs[shape.context_parameter] = context
            shape.fn(*self._compensation_arguments(spec, shape), **kwargs)
        except Exception as exc:
            return self._compensated(spec, exc)
        finally:
            reset_context(token)
        return self._compensated(spec, None)

    async def _compensate_async(self, spec: StepSpec) -> Checkpoint:
        shape = spec.task.compensation
        assert shape is not None
        record = self.run.steps[spec.name]
        context = self._context(spec, record.compensation_attempts + 1, compensation=True)
        try:
            arguments = self._compensation_arguments(spec, shape)
            await call_step(shape, tuple(arguments), {}, context, spec.timeout_seconds)
        except DeadlinePassed:
            return self._compensated(spec, _timeout_error(spec))
        except Exception as exc:
            return self._compensated(spec, exc)
        return self._compensated(spec, None)


class _Saved:
    """A step's record and the run's own fields as they were before a settle that may fail halfway.

    The ``settle_*`` functions change the record before they consult the retry policy, which may raise;
    :meth:`restore` puts back what they changed, so that failing the step for good starts from the truth.
    """

    __slots__ = ("fields", "record", "run", "saved")

    def __init__(self, run: RunRecord, step_name: str) -> None:
        self.run = run
        self.record = run.steps[step_name]
        self.saved = copy.copy(self.record)
        self.fields = (run.state, run.completed_count, run.error, run.wake_at, run.output)

    def restore(self) -> None:
        """Put the record and the run's fields back as they were."""
        for field in dataclasses.fields(self.saved):
            setattr(self.record, field.name, getattr(self.saved, field.name))
        run = self.run
        run.state, run.completed_count, run.error, run.wake_at, run.output = self.fields


def _describe(error: BaseException) -> str:
    """``Type: message`` for an error, even one whose ``str()`` raises."""
    try:
        message = str(error)
    except Exception:
        message = "<str() failed>"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _engine_error(
    spec: StepSpec, doing: str, exc: Exception, outcome: BaseException | None = None
) -> EngineError:
    """The error ``spec`` fails with for good when conveyor could not ``doing`` it (it raised ``exc``)."""
    what = f"step {spec.name!r}" if outcome is None else f"step {spec.name!r} ({_describe(outcome)})"
    error = EngineError(f"conveyor could not {doing} {what}: {_describe(exc)}", step_name=spec.name)
    error.__cause__ = exc
    return error


def _timeout_error(spec: StepSpec) -> StepTimeoutError:
    return StepTimeoutError(
        f"step {spec.name!r} ran past its timeout of {spec.timeout_seconds:g} s",
        step_name=spec.name,
    )
