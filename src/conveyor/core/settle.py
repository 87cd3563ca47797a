"""The pure heart of the engine, second half: what an outcome changes.

:func:`settle` takes one outcome of an attempt at a step or its undo (:class:`StepSucceeded`,
:class:`StepFailed`, :class:`UndoSucceeded`, :class:`UndoFailed`) and returns the run's new record and the
:class:`~conveyor.core.records.Checkpoint` to write; :func:`recover`, :func:`reopen_for_retry` and
:func:`dead_letter` do the same for a take-over, a retry by hand and the last resort. Nothing here changes
what it is given, so a call that raises halfway has changed nothing. The counters of a record
(``completed_count``, ``last_completion_order``) are computed in one place, :func:`_settled`, from the old
record's and the changed step (and from scratch by :func:`~conveyor.core.records.completion_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import NamedTuple

import orjson

from conveyor.core.decide import undos_left
from conveyor.core.map_progress import reopened
from conveyor.core.records import Checkpoint, Failure, RunRecord, StepRecord, completion_counts
from conveyor.core.states import RunState, StepState, check_run_transition, check_step_transition
from conveyor.definition.control import Route
from conveyor.definition.maps import Map
from conveyor.definition.workflow import StepSpec, Workflow
from conveyor.errors import InvalidTransitionError

_PENDING = StepState.PENDING
_RETRYING = StepState.RETRYING
_COMPLETED = StepState.COMPLETED
_FAILED = StepState.FAILED
_COMPENSATING = StepState.COMPENSATING
_RUNNING = RunState.RUNNING
_RUN_COMPENSATING = RunState.COMPENSATING
_NOTHING: frozenset[str] = frozenset()


# -- outcomes ----------------------------------------------------------------------------------------------


class StepSucceeded(NamedTuple):
    """An attempt at a step returned ``result`` (JSON text); it ran from ``started`` to ``finished``."""

    result: str
    started: float
    finished: float


class StepFailed(NamedTuple):
    """An attempt at a step raised ``error``: retried by its policy, or failed for good if not ``retryable``.

    ``random_unit``, in [0, 1), drives the jitter of the delay before the next attempt.
    """

    error: BaseException
    retryable: bool
    started: float
    finished: float
    random_unit: float = 0.5


class UndoSucceeded(NamedTuple):
    """The undo of a step returned at ``finished``."""

    finished: float


class UndoFailed(NamedTuple):
    """An attempt at a step's undo raised ``error``: retried by the step's compensation policy, or given up
    on if not ``retryable``. ``random_unit``, in [0, 1), drives the jitter of the delay before the next one.
    """

    error: BaseException
    retryable: bool
    finished: float
    random_unit: float = 0.5


class RouteChosen(NamedTuple):
    """A route step's attempt chose a branch: ``result`` (its name, as JSON text) completes the step, and the
    steps of the other branches, ``skipped``, are marked so in the same checkpoint."""

    result: str
    started: float
    finished: float
    skipped: tuple[str, ...]


class StepProgressed(NamedTuple):
    """An iteration of a loop (from ``started`` to ``finished``) asked for another: ``progress`` (JSON text)
    says how far it has come. The step stays pending, with a fresh count of attempts for what comes next."""

    progress: str
    started: float
    finished: float


Outcome = StepSucceeded | StepFailed | UndoSucceeded | UndoFailed | RouteChosen | StepProgressed
"""What one attempt at a step or an undo came to."""


Settled = tuple[RunRecord, Checkpoint]
"""What :func:`settle` and its kin return: the run's new record, and the checkpoint that writes what changed.

A plain pair (``run, checkpoint = settle(...)``): building a named tuple for it would cost a fifth of what
the whole settle of a step costs.
"""

# Records are built here with ``tuple.__new__(cls, (field, ...))``, every field given in order: a named
# tuple's own constructor goes through a Python function and costs twice as much.


def settle(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    outcome: Outcome,
    in_flight: AbstractSet[str] = _NOTHING,
) -> Settled:
    """Apply ``outcome`` of an attempt at ``spec`` (or its undo) to ``run``: its new record and checkpoint.

    ``in_flight`` names the run's other steps still running (not ``spec``): while any is, a step that failed
    for good does not start the compensation yet. ``run`` is left as it was, whatever happens; a retry
    policy that raises, or an outcome the step's state does not allow
    (:class:`~conveyor.errors.InvalidTransitionError`), raises before anything is built.
    """
    name = spec.name
    steps = run.steps
    old = steps[name]
    if type(outcome) is StepSucceeded:
        state = old.state
        if state is not _PENDING and state is not _RETRYING:
            check_step_transition(state, _COMPLETED, step_name=name)
        result, started, finished = outcome
        order = run.last_completion_order + 1
        record = tuple.__new__(
            StepRecord,
            (
                name,
                _COMPLETED,
                old.attempts + 1,
                result,
                None,
                None,
                started,
                finished,
                order,
                old.compensation_attempts,
                old.compensation_error,
                None,
            ),
        )
        completed = run.completed_count + 1  # the step was not completed before: that is no transition
        if run.error is None and run.state is _RUNNING:
            # the common case, written out: the run runs on (or completes with this step), and only its
            # record and this step change
            steps = steps.copy()
            steps[name] = record
            if completed == len(workflow.steps):
                run_state = RunState.COMPLETED
                output: str | None = _output(workflow, steps)
                wake_at = None
            else:
                run_state = _RUNNING
                output = None  # a running run has no output
                wake_at = run.wake_at if old.next_attempt_at is None else _earliest_due(_RUNNING, steps)
            workflow_id, epoch, generation = run.workflow_id, run.epoch, run.generation
            new = RunRecord(
                workflow_id,
                run.workflow_name,
                run.workflow_version,
                run_state,
                run.input,
                run.correlation_id,
                run.step_names,
                steps,
                run.created_at,
                finished,
                epoch,
                run.recoveries,
                generation,
                output,
                None,
                wake_at,
                run.leased_until,
                run.owner,
                run.definition_hash,
                completed,
                order,
            )
            checkpoint = tuple.__new__(
                Checkpoint,
                (
                    workflow_id,
                    epoch,
                    (record,),
                    run_state,
                    output,
                    None,
                    wake_at,
                    finished,
                    generation,
                    run_state is _RUNNING and wake_at == run.wake_at,
                    _RUNNING,
                ),
            )
            return new, checkpoint
        return _settled(workflow, run, old, record, run.error, in_flight, finished)
    if type(outcome) is StepFailed:
        return _step_failed(workflow, run, spec, old, outcome, in_flight)
    if type(outcome) is UndoSucceeded:
        check_step_transition(old.state, StepState.COMPENSATED, step_name=spec.name)
        record = tuple.__new__(
            StepRecord,
            (
                spec.name,
                StepState.COMPENSATED,
                old.attempts,
                old.result,
                old.error,
                None,
                old.started_at,
                old.finished_at,
                old.completion_order,
                old.compensation_attempts + 1,
                old.compensation_error,
                old.progress,
            ),
        )
        return _settled(workflow, run, old, record, run.error, in_flight, outcome.finished)
    if type(outcome) is UndoFailed:
        return _undo_failed(workflow, run, spec, old, outcome, in_flight)
    if type(outcome) is RouteChosen:
        return _route_chosen(workflow, run, old, outcome, in_flight)
    if type(outcome) is StepProgressed:
        check_step_transition(old.state, _PENDING, step_name=name)
        record = StepRecord(
            name,
            _PENDING,
            0,
            None,
            None,
            None,
            outcome.started,
            outcome.finished,
            None,
            old.compensation_attempts,
            old.compensation_error,
            outcome.progress,
        )
        return _settled(workflow, run, old, record, run.error, in_flight, outcome.finished)
    raise TypeError(f"not an outcome: {outcome!r}")


def _step_failed(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    old: StepRecord,
    outcome: StepFailed,
    in_flight: AbstractSet[str],
) -> Settled:
    attempts = old.attempts + 1
    error = outcome.error
    retry = outcome.retryable and spec.retries.allows_retry(attempts, error)
    failure = Failure.from_exception(spec.name, error, attempts, retryable=retry)
    if retry:
        check_step_transition(old.state, _RETRYING, step_name=spec.name)
        new_state = _RETRYING
        due: float | None = outcome.finished + spec.retries.delay_after(attempts, outcome.random_unit)
        run_error = run.error
    else:
        check_step_transition(old.state, _FAILED, step_name=spec.name)
        new_state = _FAILED
        due = None
        run_error = failure if run.error is None else run.error
    record = tuple.__new__(
        StepRecord,
        (
            spec.name,
            new_state,
            attempts,
            old.result,
            failure,
            due,
            outcome.started,
            outcome.finished,
            old.completion_order,
            old.compensation_attempts,
            old.compensation_error,
            old.progress,
        ),
    )
    return _settled(workflow, run, old, record, run_error, in_flight, outcome.finished)


def _undo_failed(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    old: StepRecord,
    outcome: UndoFailed,
    in_flight: AbstractSet[str],
) -> Settled:
    attempts = old.compensation_attempts + 1
    policy = spec.compensation_retries
    error = outcome.error
    retry = outcome.retryable and policy.allows_retry(attempts, error)
    failure = Failure.from_exception(spec.name, error, attempts, retryable=retry)
    new_state = _COMPENSATING if retry else StepState.COMPENSATION_FAILED
    check_step_transition(old.state, new_state, step_name=spec.name)
    due = outcome.finished + policy.delay_after(attempts, outcome.random_unit) if retry else None
    record = tuple.__new__(
        StepRecord,
        (
            spec.name,
            new_state,
            old.attempts,
            old.result,
            old.error,
            due,
            old.started_at,
            old.finished_at,
            old.completion_order,
            attempts,
            failure,
            old.progress,
        ),
    )
    return _settled(workflow, run, old, record, run.error, in_flight, outcome.finished)


def _route_chosen(
    workflow: Workflow, run: RunRecord, old: StepRecord, outcome: RouteChosen, in_flight: AbstractSet[str]
) -> Settled:
    """The route step completes with the chosen branch; the other branches' steps are skipped, at once."""
    check_step_transition(old.state, _COMPLETED, step_name=old.name)
    order = run.last_completion_order + 1
    record = StepRecord(
        old.name,
        _COMPLETED,
        old.attempts + 1,
        outcome.result,
        None,
        None,
        outcome.started,
        outcome.finished,
        order,
        old.compensation_attempts,
        old.compensation_error,
    )
    changed = [record]
    for name in outcome.skipped:
        skipped = run.steps[name]
        check_step_transition(skipped.state, StepState.SKIPPED, step_name=name)
        changed.append(StepRecord(name, StepState.SKIPPED))
    steps = run.steps.copy()
    for each in changed:
        steps[each.name] = each
    done = run.completed_count + len(changed)
    at = outcome.finished
    state = _implied_state(workflow, run.state, steps, done, run.error, in_flight)
    output = _output(workflow, steps) if state is RunState.COMPLETED else run.output
    wake_at = _earliest_due(state, steps)
    new = _new_record(run, steps, state, output, run.error, wake_at, at, done, order)
    return new, _checkpoint(new, tuple(changed), at, run.state)


# -- building the new record ---------------------------------------------------------------------------------


def _settled(
    workflow: Workflow,
    run: RunRecord,
    old: StepRecord,
    record: StepRecord,
    error: Failure | None,
    in_flight: AbstractSet[str],
    at: float,
) -> Settled:
    """``run`` with ``record`` in place of ``old``, in the state its steps now imply; and its checkpoint.

    The one place a record is built from an old one and a changed step, so the one place (besides
    :func:`~conveyor.core.records.completion_counts`) that says what the counters are.
    """
    steps = run.steps.copy()
    steps[record.name] = record
    completed = run.completed_count
    if record.state is _COMPLETED:
        completed += 1
    if old.state is _COMPLETED:
        completed -= 1
    last_order = run.last_completion_order
    order = record.completion_order
    if order is not None and order > last_order:
        last_order = order
    state = _implied_state(workflow, run.state, steps, completed, error, in_flight)
    if state is not run.state or old.next_attempt_at is not None or record.next_attempt_at is not None:
        wake_at = _earliest_due(state, steps)  # the state or a timer changed
    else:
        wake_at = run.wake_at
    # A step's success completes a run on settle's own path; here, only a map's last element does.
    output = _output(workflow, steps) if state is RunState.COMPLETED else run.output
    new = _new_record(run, steps, state, output, error, wake_at, at, completed, last_order)
    return new, _checkpoint(new, (record,), at, run.state)


def settle_record(
    workflow: Workflow,
    run: RunRecord,
    record: StepRecord,
    error: Failure | None,
    in_flight: AbstractSet[str],
    at: float,
) -> Settled:
    """``run`` with ``record`` in place of its step's, in the state its steps now imply (``error`` the run's
    error), and the checkpoint that writes it: how :mod:`conveyor.core.maps` settles a map's elements."""
    return _settled(workflow, run, run.steps[record.name], record, error, in_flight, at)


def _implied_state(
    workflow: Workflow,
    state: RunState,
    steps: Mapping[str, StepRecord],
    completed: int,
    error: Failure | None,
    in_flight: AbstractSet[str],
) -> RunState:
    """The state a run in ``state`` moves to with these steps: completed, compensating, failed or compensated.

    Each move here is one the table of run transitions allows, by the tests that lead to it.
    """
    if state is _RUNNING:
        if completed == len(workflow.steps):
            return RunState.COMPLETED
        if error is None or in_flight:
            return state
        if not undos_left(
            workflow, steps
        ):  # steps with an undo, a map's succeeded elements, a child to cancel
            return RunState.FAILED
        state = _RUN_COMPENSATING
    if state is _RUN_COMPENSATING and not undos_left(workflow, steps):
        if any(record.state is StepState.COMPENSATION_FAILED for record in steps.values()):
            return RunState.COMPENSATION_FAILED
        if error is not None and error.error_type == "Cancelled":  # core.steering's cancellation
            return RunState.CANCELLED
        return RunState.COMPENSATED
    return state


def _earliest_due(state: RunState, steps: Mapping[str, StepRecord]) -> float | None:
    """When a run in ``state`` wakes: the next retry of a step (running) or of an undo (compensating)."""
    if state is _RUNNING:
        waiting = _RETRYING
        sleeping = StepState.WAITING  # a durable sleep's wake time is a timer too
    elif state is _RUN_COMPENSATING:
        waiting = sleeping = _COMPENSATING
    else:
        return None
    dues = [
        r.next_attempt_at
        for r in steps.values()
        if (r.state is waiting or r.state is sleeping) and r.next_attempt_at is not None
    ]
    return min(dues) if dues else None


def _output(workflow: Workflow, steps: Mapping[str, StepRecord]) -> str:
    """A completed run's output: its output step's result, else every step's result by name."""
    if workflow.output_step is not None:
        result = steps[workflow.output_step].result
        assert result is not None
        return result
    return (
        "{"
        + ",".join(
            orjson.dumps(spec.name).decode() + ":" + (steps[spec.name].result or "null")
            for spec in workflow.steps
        )
        + "}"
    )


def _new_record(
    run: RunRecord,
    steps: dict[str, StepRecord],
    state: RunState,
    output: str | None,
    error: Failure | None,
    wake_at: float | None,
    at: float,
    completed: int,
    last_order: int,
    generation: int | None = None,
) -> RunRecord:
    """``run`` with what a settle changes; its fields in the order :class:`RunRecord` declares them."""
    return RunRecord(
        run.workflow_id,
        run.workflow_name,
        run.workflow_version,
        state,
        run.input,
        run.correlation_id,
        run.step_names,
        steps,
        run.created_at,
        at,
        run.epoch,
        run.recoveries,
        run.generation if generation is None else generation,
        output,
        error,
        wake_at,
        run.leased_until,
        run.owner,
        run.definition_hash,
        completed,
        last_order,
    )


def _checkpoint(
    run: RunRecord, records: tuple[StepRecord, ...], at: float, before: RunState | None
) -> Checkpoint:
    """The write that takes the stored run (in state ``before``) to ``run``, changing ``records``."""
    return tuple.__new__(
        Checkpoint,
        (
            run.workflow_id,
            run.epoch,
            records,
            run.state,
            run.output,
            run.error,
            run.wake_at,
            at,
            run.generation,
            False,
            before,
        ),
    )


# -- take-overs, retries by hand, the last resort ------------------------------------------------------------


def recover(workflow: Workflow, run: RunRecord, now: float) -> Settled | None:
    """After a run is taken over, the state change its previous driver did not live to write (None if none).

    Nothing of the run is in flight any more: the step that failed for good while others ran, say, now
    starts the compensation those others held up.
    """
    state = _implied_state(workflow, run.state, run.steps, run.completed_count, run.error, _NOTHING)
    if state is run.state:
        return None
    steps = run.steps.copy()
    output = _output(workflow, steps) if state is RunState.COMPLETED else run.output
    new = _new_record(
        run,
        steps,
        state,
        output,
        run.error,
        _earliest_due(state, steps),
        now,
        run.completed_count,
        run.last_completion_order,
    )
    return new, _checkpoint(new, (), now, run.state)


def dead_letter(run: RunRecord, error: Failure, now: float) -> Settled:
    """Set the run aside with ``error`` (a person must look; it can be retried by hand): no step changes.

    The last resort, when even failing a step for good could not be settled; it checks nothing, so that it
    cannot fail too.
    """
    new = _new_record(
        run,
        run.steps.copy(),
        RunState.DEAD_LETTERED,
        run.output,
        error,
        None,
        now,
        run.completed_count,
        run.last_completion_order,
    )
    return new, _checkpoint(new, (), now, run.state)


def merge_checkpoints(checkpoints: list[Checkpoint]) -> Checkpoint:
    """Fold the checkpoints of outcomes that settled together into one write (the last run state wins)."""
    last = checkpoints[-1]
    if len(checkpoints) == 1:
        return last
    steps: dict[str, StepRecord] = {}
    for checkpoint in checkpoints:
        for record in checkpoint.steps:
            steps[record.name] = record
    return Checkpoint(
        workflow_id=last.workflow_id,
        epoch=last.epoch,
        steps=tuple(steps.values()),
        state=last.state,
        output=last.output,
        error=last.error,
        wake_at=last.wake_at,
        at=last.at,
        generation=last.generation,
        same_state_and_timer=all(checkpoint.same_state_and_timer for checkpoint in checkpoints),
        previous_state=checkpoints[0].previous_state,
    )


RETRYABLE_RUN_STATES = frozenset(
    {RunState.FAILED, RunState.COMPENSATED, RunState.COMPENSATION_FAILED, RunState.DEAD_LETTERED}
)
_RERUN_STEP_STATES = frozenset(
    {
        StepState.RETRYING,
        StepState.WAITING,  # a sleep or a wait cut short by the failure starts over (a fresh timeout)
        StepState.FAILED,
        StepState.COMPENSATING,
        StepState.COMPENSATED,
        StepState.COMPENSATION_FAILED,
    }
)


def reopen_for_retry(
    workflow: Workflow, run: RunRecord, now: float, rerun: AbstractSet[str] = _NOTHING
) -> Settled:
    """Reopen a failed run so it runs again: completed steps are kept; failed and undone steps start over.

    The steps named in ``rerun`` start over too, completed or not (a retry from a named step: see
    :func:`conveyor.core.operator.reopen_from_step`). The run's ``generation`` goes up by one, so steps that
    run again get fresh idempotency keys (a payment gateway would otherwise answer a retried charge with the
    stored decline).
    """
    if run.state is RunState.COMPLETED and not rerun:  # nothing would run again
        raise InvalidTransitionError(
            f"run {run.workflow_id!r} cannot go from 'completed' to 'running' but from a named step",
            workflow_id=run.workflow_id,
        )
    check_run_transition(run.state, _RUNNING, workflow_id=run.workflow_id)
    steps = {
        name: StepRecord(name, started_at=record.started_at, finished_at=record.finished_at)
        if record.state in _RERUN_STEP_STATES or name in rerun
        else record
        for name, record in run.steps.items()
    }
    for spec in workflow.steps:  # a route that runs again may choose another branch: its skipped ones open
        control = spec.control
        if isinstance(control, Route) and steps[spec.name] is not run.steps[spec.name]:
            for name in control.step_names:
                if steps[name].state is StepState.SKIPPED:
                    steps[name] = StepRecord(name)
        elif isinstance(control, Map):  # a map that was not undone keeps its succeeded elements
            record = run.steps[spec.name]
            if record.state is not _COMPLETED and record.progress is not None:
                steps[spec.name] = reopened(record)
    reset = tuple(record for name, record in steps.items() if record is not run.steps[name])
    completed, last_order = completion_counts(steps.values())
    new = _new_record(
        run, steps, _RUNNING, None, None, None, now, completed, last_order, generation=run.generation + 1
    )
    return new, _checkpoint(new, reset, now, run.state)
