"""Drives one run: asks :func:`~conveyor.core.decide` what to do, has it done, checkpoints the outcome.

Each attempt at a step or an undo is a :class:`~conveyor.engine.calls.StepCall`, run by a
:class:`~conveyor.engine.executor.StepExecutor`. The common case, a chain of sync steps without timeouts,
runs on the calling thread with no event loop and no thread hand-off: the per-step cost is the call, the
JSON encoding and one checkpoint. Calls that run side by side (fork branches, async steps, steps with a
timeout) are started on the executor, the driving thread runs the first one that may run anywhere itself,
and each is settled here as it ends.

:meth:`RunDriver.drive` returns when the run has ended (:data:`FINISHED`) or must wait for a timer
(:class:`WaitUntil`), so that a worker holds no slot through the wait; :meth:`RunDriver.drive_to_end`
sleeps through the waits instead.
"""

from __future__ import annotations

import queue
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import Backend
from conveyor.backends.notes import appended
from conveyor.codec import encode, max_value_bytes
from conveyor.core.decide import Action, Decision, decide
from conveyor.core.records import Checkpoint, Failure, RunRecord
from conveyor.core.settle import (
    Settled,
    StepFailed,
    StepSucceeded,
    UndoFailed,
    UndoSucceeded,
    dead_letter,
    merge_checkpoints,
    recover,
    settle,
)
from conveyor.core.states import StepState
from conveyor.core.steering import DEADLINE_REASON, cancel_run
from conveyor.definition.settings import workflow_for_run
from conveyor.definition.workflow import StepSpec, Workflow
from conveyor.engine.calls import NO_RESOURCES, StepCall, timeout_error
from conveyor.engine.children import ChildRuns, undo_child
from conveyor.engine.clock import Clock
from conveyor.engine.control import control_calls, settle_control
from conveyor.engine.executor import CallRunner, StepExecutor, shared_executor
from conveyor.engine.lease import Lease
from conveyor.engine.waiting import StillWaiting, move_wait
from conveyor.errors import Cancelled, EncodingError, EngineError, NonRetryableError, UnknownResourceError

if TYPE_CHECKING:
    from conveyor.observe.tracing import RunTracer

_RUN_STEPS = Action.RUN_STEPS
_RUN_COMPENSATION = Action.RUN_COMPENSATION
_WAIT_UNTIL = Action.WAIT_UNTIL
_FINISHED = Action.FINISHED
_SKIPPED = StepState.SKIPPED


SIGNAL_POLL_SECONDS = 0.1
"""How often a run driven in-process (``drive_to_end``) looks again for the signal it waits for."""

_NOT_RETRYABLE = (NonRetryableError, EncodingError, UnknownResourceError)
"""Errors that fail a step (or undo) at once: another attempt would meet the same."""


class Finished:
    """The drive stopped because the run has ended."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FINISHED"


FINISHED = Finished()
"""What :meth:`RunDriver.drive` returns when the run has ended."""


class Paused:
    """The drive stopped because the run is paused: hand it back; it is driven again once resumed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSED"


PAUSED = Paused()
"""What :meth:`RunDriver.drive` returns when the run was paused (a running step finished first)."""


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """The drive stopped because the run waits for a timer: drive it again at ``at`` (epoch seconds).

    With ``signals``, the run waits for one of these signals too: drive it again as soon as one comes.
    """

    at: float
    signals: tuple[str, ...] = ()


DriveOutcome = Finished | WaitUntil | Paused
"""Why a drive returned: the run ended, it waits until a time, or it was paused."""


class RunDriver:
    """Runs the steps of one run the backend has handed this process, until the run ends or must wait.

    Step and undo calls run on ``executor`` (by default, the process's shared one). With a ``lease`` (the
    one its claim made and its heartbeat renews), the driver stops with
    :class:`~conveyor.errors.LeaseLostError` once the lease is marked lost: it starts no step and writes no
    checkpoint after that. With a ``tracer``, each drive is a span and each step attempt a span within it
    (see :mod:`conveyor.observe.tracing`).
    """

    def __init__(
        self,
        workflow: Workflow,
        run: RunRecord,
        backend: Backend,
        clock: Clock,
        *,
        executor: StepExecutor | None = None,
        resources: Mapping[str, Any] = NO_RESOURCES,
        random_unit: Callable[[], float] = random.random,
        record_checkpoint: Callable[[Checkpoint], None] | None = None,
        lease: Lease | None = None,
        children: ChildRuns | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        if workflow.step_settings is not None:  # once per drive, in every process: this run's settings
            workflow = workflow_for_run(workflow, run.input)
        self.workflow = workflow
        self.run = run
        """The run's latest record: each settled outcome replaces it with the one core returns."""
        self.in_flight: set[str] = set()
        """The steps whose calls are running now: this driver's own state, told to decide and settle."""
        self.backend = backend
        self.clock = clock
        self.tracer = tracer
        """Makes the spans of this run's drives and step attempts; None when tracing is off."""
        self.executor: CallRunner = executor or shared_executor()
        if tracer is not None:  # each call then runs inside its attempt's span
            self.executor = tracer.executor(self.executor)
        self.resources = resources
        self.max_value_bytes = max_value_bytes(backend)
        """The most JSON a step's result may take in this backend (read once, not per step)."""
        """What steps may ask for by name (the runtime's resources)."""
        self.random_unit = random_unit
        self.lease = lease or Lease(run.workflow_id, run.epoch, "its caller")
        """The run's lease, shared with the claim that took it (without one, a lease only this driver has,
        never marked lost: the caller answers for the run)."""
        self.record_checkpoint = record_checkpoint or backend.record_checkpoint
        """Writes one checkpoint: the backend's own, or a group committer's shared with other runs."""
        self.errors: dict[str, BaseException] = {}
        """The last exception each failed step raised in this process (for chaining, not stored)."""
        self.results: dict[str, str] = _completed_results(run)
        """The JSON result of each completed step, by name: what later steps are called with."""
        self.children = children
        """How child steps find their workflows by name (and, in process, drive a child here)."""
        self.notes: tuple[str | None, str | None] = (run.operator_log, run.annotations)
        """The run's operator log and annotations as read (settled records leave them out): what
        :meth:`drive_to_end` puts back on the record it returns."""
        self.control_state: dict[str, Any] = {}
        """What engine.control keeps of the steering steps it runs while this driver drives (a map's list)."""

    # -- the loop ---------------------------------------------------------------------------------

    def drive(self) -> DriveOutcome:
        """Run the run's steps until it ends (:data:`FINISHED`) or must wait for a timer (:class:`WaitUntil`).

        A wait for a timer while other calls of the run are in flight is waited out here; a wait with
        nothing in flight returns, so that (in a worker) the wait holds no slot.
        """
        tracer = self.tracer
        if tracer is None:
            return self._drive(self.lease)
        return tracer.drive(self, partial(self._drive, self.lease))

    def _drive(self, lease: Lease) -> DriveOutcome:
        self._recover()
        run = self.run
        if run.deadline_at is not None or run.cancel_reason is not None or run.paused or lease.deadline_at:
            self._steer_from_record()
        workflow, clock, executor = self.workflow, self.clock, self.executor
        record_checkpoint = self.record_checkpoint
        results = self.results
        while True:
            if lease.halted and self._halt():  # before the next step starts: lost, cancelled or paused
                return PAUSED
            now = clock.now()
            run = self.run
            decision = decide(workflow, run, now)
            action = decision.action
            if action is _RUN_STEPS:
                steps = decision.steps
                if len(steps) == 1 and steps[0].runs_inline:  # the fast path: here, at once
                    call = StepCall(steps[0], run, results, clock, now, False, self.resources, lease)
                    executor.run_here(call)
                    if call.error is None:  # _settle, written out for the common case
                        checkpoint = self._succeeded(call.spec, call.value, now, call.finished)
                    else:
                        checkpoint = self._settle(call)
                    # halted: lost (raise), or annotations to write with the checkpoint (written then)
                    if lease.halted and self._before_write(checkpoint) is None:
                        continue
                    record_checkpoint(checkpoint)
                elif any(spec.waits is not None for spec in steps):  # a sleep or a wait for a signal
                    waiting = self._move_waits(steps, now)
                    if waiting is not None:
                        deadline = lease.deadline_at
                        if deadline is not None and deadline < waiting.at:  # wake for the deadline
                            return WaitUntil(deadline, waiting.signals)
                        return waiting
                else:
                    self._run_together(self._calls(decision, now))
                continue
            if action is _RUN_COMPENSATION:
                spec = decision.steps[0]
                if spec.runs_child:  # its undo undoes the child run (engine.children)
                    still = undo_child(self, spec, now)
                    if still is not None:
                        return WaitUntil(still.at, still.signals)
                    continue
                if spec.control is None:
                    call = StepCall(spec, run, results, clock, now, True, self.resources, lease)
                else:  # a map undoes one element at a time
                    call = control_calls(self, spec, now, True)[0]
                if call.runs_here:
                    executor.run_here(call)
                    self._write_settled(self._settle(call))
                else:
                    self._run_together([call])
                continue
            if action is _WAIT_UNTIL:
                assert decision.at is not None
                deadline = lease.deadline_at
                if deadline is not None and deadline < decision.at:  # wake for the deadline, to cancel
                    return WaitUntil(deadline)
                return WaitUntil(decision.at)
            if action is _FINISHED:
                return FINISHED
            raise RuntimeError(  # WAIT_FOR_IN_FLIGHT with nothing in flight here: a bug
                f"run {run.workflow_id!r} waits for steps no call is running: {sorted(self.in_flight)}"
            )

    def drive_to_end(self) -> RunRecord:
        """Drive the run until it ends (or is paused), sleeping through each wait; return its record.

        A wait for a signal is looked at again every :data:`SIGNAL_POLL_SECONDS` (up to its timeout). Traced,
        the whole of it is one drive's span.
        """
        tracer = self.tracer
        if tracer is None:
            return self._drive_to_end()
        return tracer.drive(self, self._drive_to_end)

    def _drive_to_end(self) -> RunRecord:
        clock, lease = self.clock, self.lease
        while isinstance(outcome := self._drive(lease), WaitUntil):
            pause = outcome.at - clock.now()
            if outcome.signals:
                pause = min(pause, SIGNAL_POLL_SECONDS)
            clock.sleep(pause)
        run = self.run
        run.operator_log, run.annotations = self.notes
        return run

    def _move_waits(self, steps: tuple[StepSpec, ...], now: float) -> WaitUntil | None:
        """Move each wait step of ``steps`` on and run the others; the wait to return if nothing moved."""
        waiting: list[StillWaiting] = []
        for spec in steps:
            if spec.waits is not None:
                still = move_wait(self, spec, now)
                if still is not None:
                    waiting.append(still)
        others = [spec for spec in steps if spec.waits is None]
        if others:
            self._run_together(self._calls(Decision(_RUN_STEPS, tuple(others)), now))
            return None
        if len(waiting) < sum(spec.waits is not None for spec in steps) or not waiting:
            return None  # a wait moved: decide again
        signals = tuple(dict.fromkeys(name for still in waiting for name in still.signals))
        return WaitUntil(min(still.at for still in waiting), signals)

    # -- what a wait step (engine.waiting) writes through ---------------------------------------------

    def write(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` unless the lease was lost."""
        self._check_lease()
        self.record_checkpoint(checkpoint)

    def took(self, settled: Settled) -> Checkpoint:
        """Keep a settled record as the run's latest; return its checkpoint to write."""
        return self._took(settled)

    def check_lease(self) -> None:
        """Raise LeaseLostError if the run's lease was marked lost."""
        self._check_lease()

    def failed(self, spec: StepSpec, error: Exception, started: float, finished: float) -> Checkpoint:
        """The checkpoint of a step failing with ``error`` (retried by its policy, else for good)."""
        return self._failed(spec, error, started, finished)

    def failed_for_good(
        self, spec: StepSpec, doing: str, exc: Exception, started: float, finished: float
    ) -> Checkpoint:
        """The checkpoint of a step failing for good because conveyor could not ``doing`` it (``exc``)."""
        return self._failed_for_good(spec, _engine_error(spec, doing, exc), started, finished)

    def undo_failed_for_good(self, spec: StepSpec, doing: str, exc: Exception, finished: float) -> Checkpoint:
        """The checkpoint of an undo failing for good because conveyor could not ``doing`` it (``exc``)."""
        return self._undo_failed_for_good(spec, _engine_error(spec, doing, exc), finished)

    # -- steering: cancel, pause, deadline ---------------------------------------------------------

    def _steer_from_record(self) -> None:
        """Carry what the run's record says of cancel, pause and deadline onto the lease the driver reads."""
        run, lease = self.run, self.lease
        if run.deadline_at is not None:
            lease.deadline_at = run.deadline_at
        if lease.deadline_at is not None and self.clock.now() >= lease.deadline_at:
            lease.request_cancel(DEADLINE_REASON)
        if run.cancel_reason is not None:
            lease.request_cancel(run.cancel_reason)
        if run.paused:
            lease.request_pause()

    def _halt(self) -> bool:
        """Act on a halted lease before the next step: raise if lost, apply a cancel; True to pause."""
        lease = self.lease
        if lease.lost:
            raise lease.lost_error()
        if lease.cancel_reason is not None:
            self._cancel(lease.cancel_reason)
            lease.paused = False  # a cancelled run is not paused: its undos run now
            lease.halted = False
            return False
        if lease.paused:
            return True
        lease.halted = False
        return False

    def _cancel(self, reason: str, step_name: str = "") -> None:
        """Record the cancel: the run compensates its completed steps (or ends cancelled at once)."""
        cancelled = cancel_run(self.workflow, self.run, reason, self.clock.now(), step_name)
        if cancelled is not None:
            self._check_lease()
            self.record_checkpoint(self._took(cancelled))

    def _calls(self, decision: Decision, now: float) -> list[StepCall]:
        """The calls a decision to run steps (or one undo) asks for."""
        run, results, clock = self.run, self.results, self.clock
        undo = decision.action is _RUN_COMPENSATION
        resources = self.resources
        calls = []
        for spec in decision.steps:
            if spec.waits is not None:  # a wait step is moved on by drive, once nothing runs beside it
                continue
            if spec.control is not None:  # a route: engine.control makes its calls
                calls.extend(control_calls(self, spec, now, undo))
                continue
            calls.append(StepCall(spec, run, results, clock, now, undo, resources, self.lease))
        return calls

    def _run_together(self, ready: list[StepCall]) -> None:
        """Run calls side by side, settling each here as it ends, until none is left in flight.

        Every call is started on the executor but the first that may run on any thread, which runs on this
        one; when it ends, every call no pool thread has picked up yet is taken back and run here too. Short
        fork branches so finish without a single thread hand-off and share one checkpoint, while a slow
        branch still has the others running beside it. Calls that become ready meanwhile join in.
        """
        workflow, clock, executor, in_flight = self.workflow, self.clock, self.executor, self.in_flight
        running: dict[StepCall, None] = {}  # in the order they were started
        finished: queue.SimpleQueue[StepCall] = queue.SimpleQueue()
        timer_due: float | None = None  # when nothing is ready: the next timer, if one is due
        lease = self.lease
        try:
            while True:
                checkpoints = []
                if ready and lease.halted:  # before more steps start: lost, cancelled or paused
                    if lease.lost:
                        raise lease.lost_error()
                    if lease.cancel_reason is not None or lease.paused:  # (not for annotations)
                        ready = []  # the drive's loop cancels or pauses once the running calls are settled
                if ready:
                    here = next((call for call in ready if call.runs_here), None)
                    for call in ready:
                        in_flight.add(call.flight)
                    for call in ready:
                        if call is not here:
                            executor.start(call, finished.put)
                            running[call] = None
                    if here is not None:
                        executor.run_here(here)
                        checkpoints.append(self._settle(here))
                        for call in list(running):
                            if executor.take_back(call):  # no pool thread started it: run it here instead
                                del running[call]
                                call.started = clock.now()
                                executor.run_here(call)
                                checkpoints.append(self._settle(call))
                else:
                    timeout = None if timer_due is None else clock.real_seconds(timer_due - clock.now())
                    try:
                        done = [finished.get(timeout=timeout)]
                        while not finished.empty():
                            done.append(finished.get_nowait())
                    except queue.Empty:  # the timer is due
                        assert timer_due is not None
                        clock.sleep(timer_due - clock.now())  # a fake clock's time passes only so
                        done = []
                    for call in done:
                        del running[call]
                        checkpoints.append(self._settle(call))
                if checkpoints:
                    self._write_settled(merge_checkpoints(checkpoints))
                if not running:
                    return
                now = clock.now()
                decision = decide(workflow, self.run, now, in_flight)
                action = decision.action
                ready = []
                if action is _RUN_STEPS or action is _RUN_COMPENSATION:
                    ready = self._calls(decision, now)
                timer_due = decision.at if action is _WAIT_UNTIL else None
        finally:
            for call in running:  # only when leaving on an exception: nothing waits for these any more
                executor.abandon(call)

    # -- settling outcomes: every call of core's settle, recover and dead_letter is in this section --

    def _settle(self, call: StepCall) -> Checkpoint:
        """The checkpoint of a call's outcome (an error that is not an Exception is re-raised here)."""
        if call.spec.control is not None:  # a route: engine.control settles what is its own
            checkpoint = settle_control(self, call)
            if checkpoint is not None:
                return checkpoint
        self.in_flight.discard(call.flight)
        error = call.error
        if error is None:
            if call.is_undo:
                return self._compensated(call.spec, None, call.finished)
            return self._succeeded(call.spec, call.value, call.started, call.finished)
        if not isinstance(error, Exception):
            reason = self.lease.cancel_reason
            if isinstance(error, Cancelled) and reason is not None and not call.is_undo:
                # the step stopped as it was told: it is recorded neither done nor failed; the run cancels
                cancelled = cancel_run(self.workflow, self.run, reason, call.finished, call.spec.name)
                if cancelled is not None:
                    self.lease.halted = self.lease.lost
                    return self._took(cancelled)
            raise error
        if call.is_undo:
            return self._compensated(call.spec, error, call.finished)
        return self._failed(call.spec, error, call.started, call.finished)

    def _recover(self) -> None:
        """Write a state change the run's previous driver did not live to write, if there is one."""
        self.in_flight.clear()  # a drive starts with nothing in flight (an earlier one may have left some)
        settled = recover(self.workflow, self.run, self.clock.now())
        if settled is not None:
            self._check_lease()
            self.record_checkpoint(self._took(settled))

    def _took(self, settled: Settled) -> Checkpoint:
        """Keep the settled record as the run's latest; return its checkpoint to write."""
        self.run, checkpoint = settled
        return checkpoint

    def _write_settled(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint of settled outcomes, with the annotations their steps recorded, if any."""
        if self.lease.halted:
            written = self._before_write(checkpoint)
            if written is None:
                return
        self.record_checkpoint(checkpoint)

    def _before_write(self, checkpoint: Checkpoint) -> Checkpoint | None:
        """Before a write, with the lease halted: raise if it was lost; write the checkpoint here with the
        annotations of the attempts it records (then return None), else return it to be written."""
        lease = self.lease
        if lease.lost:
            raise lease.lost_error()
        if lease.notes is not None:
            notes = lease.take_notes(checkpoint.steps, checkpoint.at)
            if notes is not None:
                self.backend.record_checkpoint_annotated(checkpoint, notes)
                operator_log, annotations = self.notes
                self.notes = (operator_log, appended(annotations, notes))
                return None
        return checkpoint

    def _check_lease(self) -> None:
        """Raise LeaseLostError if the run's lease was marked lost (then the driver must write nothing)."""
        lease = self.lease
        if lease.lost:
            raise lease.lost_error()

    def _succeeded(self, spec: StepSpec, value: Any, started: float, finished: float) -> Checkpoint:
        timeout = spec.timeout_seconds
        if timeout is not None and finished - started > timeout:
            return self._failed(spec, timeout_error(spec), started, finished)
        try:
            what = _RESULT_OF.get(spec.name) or _result_of(spec.name)
            result = encode(value, what=what, max_bytes=self.max_value_bytes)
        except EncodingError as exc:
            return self._failed(spec, exc, started, finished)
        except Exception as exc:  # the codec's own failure, not the value's
            error = _engine_error(spec, "store the result of", exc)
            return self._failed_for_good(spec, error, started, finished)
        self.results[spec.name] = result
        try:
            # StepSucceeded(result, started, finished), built as core builds records: at half the cost
            outcome = tuple.__new__(StepSucceeded, (result, started, finished))
            self.run, checkpoint = settle(self.workflow, self.run, spec, outcome, self.in_flight)
        except Exception as exc:
            error = _engine_error(spec, "record the result of", exc)
            return self._failed_for_good(spec, error, started, finished)
        return checkpoint

    def _failed(self, spec: StepSpec, error: Exception, started: float, finished: float) -> Checkpoint:
        self.errors[spec.name] = error
        retryable = not isinstance(error, _NOT_RETRYABLE)
        outcome = StepFailed(error, retryable, started, finished, self.random_unit())
        try:
            settled = settle(self.workflow, self.run, spec, outcome, self.in_flight)
        except Exception as exc:  # the retry policy raised, say: the step fails for good instead
            engine_error = _engine_error(spec, "record the failure of", exc, error)
            return self._failed_for_good(spec, engine_error, started, finished)
        return self._took(settled)

    def _failed_for_good(
        self, spec: StepSpec, error: EngineError, started: float, finished: float
    ) -> Checkpoint:
        self.errors[spec.name] = error
        try:
            settled = settle(
                self.workflow, self.run, spec, StepFailed(error, False, started, finished), self.in_flight
            )
        except Exception as exc:
            return self._dead_lettered(spec, error, exc, finished)
        return self._took(settled)

    def _compensated(self, spec: StepSpec, error: Exception | None, finished: float) -> Checkpoint:
        if error is None:
            try:
                settled = settle(self.workflow, self.run, spec, UndoSucceeded(finished), self.in_flight)
            except Exception as exc:
                engine_error = _engine_error(spec, "record the undo of", exc)
                return self._undo_failed_for_good(spec, engine_error, finished)
            return self._took(settled)
        retryable = not isinstance(error, _NOT_RETRYABLE)
        outcome = UndoFailed(error, retryable, finished, self.random_unit())
        try:
            settled = settle(self.workflow, self.run, spec, outcome, self.in_flight)
        except Exception as exc:  # the compensation retry policy raised: the undo fails for good
            engine_error = _engine_error(spec, "record the failure of the undo of", exc, error)
            return self._undo_failed_for_good(spec, engine_error, finished)
        return self._took(settled)

    def _undo_failed_for_good(self, spec: StepSpec, error: EngineError, finished: float) -> Checkpoint:
        try:
            settled = settle(
                self.workflow, self.run, spec, UndoFailed(error, False, finished), self.in_flight
            )
        except Exception as exc:
            return self._dead_lettered(spec, error, exc, finished)
        return self._took(settled)

    def _dead_lettered(
        self, spec: StepSpec, error: EngineError, exc: Exception, finished: float
    ) -> Checkpoint:
        """The last resort, when even failing the step (or its undo) for good raised: end the run here.

        The run is dead-lettered (a person must look; it can be retried by hand once the cause is fixed)
        with the engine's error, and no step record is written: each stays as last recorded.
        """
        cause = EngineError(
            f"{error.message}; failing it for good failed too: {_describe(exc)}", step_name=spec.name
        )
        cause.__cause__ = exc
        attempts = self.run.steps[spec.name].attempts
        failure = Failure.from_exception(spec.name, cause, attempts, retryable=False)
        return self._took(dead_letter(self.run, failure, finished))


def _completed_results(run: RunRecord) -> dict[str, str]:
    """The results of the run's completed steps by name; a fresh run is not walked (0.7 us a run)."""
    if not run.completed_count:
        return {}
    results = {
        name: record.result
        for name, record in run.steps.items()
        if record.state is StepState.COMPLETED and record.result is not None
    }
    if len(results) < run.completed_count:  # steps skipped by a route: null to a step reading them all
        results.update((name, "null") for name, record in run.steps.items() if record.state is _SKIPPED)
    return results


_RESULT_OF: dict[str, str] = {}
_MOST_RESULT_LABELS = 4096


def _result_of(step_name: str) -> str:
    """``result of step 'name'``, what a step's result is called in an error: built once per name, not per
    step (it is only read when the result cannot be stored)."""
    label = _RESULT_OF.get(step_name)
    if label is None:
        if len(_RESULT_OF) >= _MOST_RESULT_LABELS:  # names made up at run time: keep the memo small
            _RESULT_OF.clear()
        label = _RESULT_OF[step_name] = f"result of step {step_name!r}"
    return label


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
