"""What the outcome of one element of a map step changes: pure, as :mod:`conveyor.core.settle` is.

Each element of a map is called on its own (``Flow.map``); its outcome is settled here into the step's
record and its ``progress`` (see :mod:`conveyor.core.map_progress`), one checkpoint per outcome:

- an element that succeeds adds its result; the last one completes the step, whose result is every
  element's result in the order of the list;
- an element that fails is retried by the step's policy (its own count of attempts, its own due time); one
  that fails for good fails the step and the run stops starting anything, but the elements still running
  end and are recorded first (their names are in ``in_flight``);
- the step's undo runs once per element that succeeded, newest first: each undone element is recorded, so
  a crash mid-compensation never undoes one twice; an element whose undo gives up is recorded and the
  others are still undone (the step then ends ``compensation_failed``).

While a map has not ended its state says what decide needs: ``pending`` while an element can start now,
``retrying`` (due at the earliest retry) when the only elements left wait for a retry, ``failed`` once an
element failed for good, ``completed`` when every one succeeded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set as AbstractSet
from typing import NamedTuple

import orjson

from conveyor.core.map_progress import MapProgress
from conveyor.core.records import Failure, RunRecord, StepRecord
from conveyor.core.settle import Settled, settle_record
from conveyor.core.states import STEP_TRANSITIONS, StepState
from conveyor.definition.maps import flying_elements
from conveyor.definition.workflow import StepSpec, Workflow
from conveyor.errors import InvalidTransitionError

_PENDING = StepState.PENDING
_RETRYING = StepState.RETRYING
_COMPLETED = StepState.COMPLETED
_FAILED = StepState.FAILED
_COMPENSATING = StepState.COMPENSATING
_UNDOING = (_COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED)

MAP_STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    **STEP_TRANSITIONS,
    # a map that did not complete has its succeeded elements undone
    _PENDING: STEP_TRANSITIONS[_PENDING].union(_UNDOING),
    _RETRYING: STEP_TRANSITIONS[_RETRYING].union(_UNDOING),
    _FAILED: STEP_TRANSITIONS[_FAILED].union(_UNDOING),
}
"""The step transitions a map step may make: any step's, and its undos from a state short of completed.
(A map staying in its state, an element recorded, is no transition.)"""


def check_map_transition(current: StepState, new: StepState, *, step_name: str) -> None:
    """Raise :class:`InvalidTransitionError` unless a map step may go from ``current`` to ``new``."""
    if new not in MAP_STEP_TRANSITIONS[current]:
        raise InvalidTransitionError(
            f"map step {step_name!r} cannot go from {current.value!r} to {new.value!r}", step_name=step_name
        )


class ElementSucceeded(NamedTuple):
    """Element number ``element`` returned ``result`` (JSON text); its call ran from ``started`` to
    ``finished``."""

    element: int
    result: str
    started: float
    finished: float


class ElementFailed(NamedTuple):
    """Element number ``element`` raised ``error``: retried by the step's policy, or failed for good if not
    ``retryable``; ``random_unit`` in [0, 1) drives the jitter of the delay."""

    element: int
    error: BaseException
    retryable: bool
    started: float
    finished: float
    random_unit: float = 0.5


class ElementUndone(NamedTuple):
    """The undo of element number ``element`` returned at ``finished``."""

    element: int
    finished: float


class ElementUndoFailed(NamedTuple):
    """The undo of element number ``element`` raised ``error``: retried by the step's compensation policy,
    or given up on if not ``retryable``."""

    element: int
    error: BaseException
    retryable: bool
    finished: float
    random_unit: float = 0.5


ElementOutcome = ElementSucceeded | ElementFailed | ElementUndone | ElementUndoFailed
"""What one call of a map's element (or of its undo) came to."""


def map_progress(record: StepRecord, count: int) -> MapProgress:
    """The progress of the map step ``record`` (a fresh one for ``count`` elements if it has none)."""
    if record.progress is None:
        return MapProgress(count)
    return MapProgress.read(record.progress, record.name)


def settle_element(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    outcome: ElementOutcome,
    count: int,
    in_flight: AbstractSet[str],
) -> Settled:
    """Apply ``outcome`` of one element of the map ``spec`` (of ``count`` elements) to ``run``.

    ``in_flight`` names the calls of the run still running, not this one's: the elements of this map among
    them keep a failed map from compensating yet, and decide which state it is in. ``run`` is left as it
    was; a policy that raises, or an outcome its state does not allow, raises before anything is built.
    """
    old = run.steps[spec.name]
    progress = map_progress(old, count)
    if type(outcome) is ElementSucceeded or type(outcome) is ElementFailed:
        return _element_ran(workflow, run, spec, old, progress, outcome, in_flight)
    assert type(outcome) is ElementUndone or type(outcome) is ElementUndoFailed
    return _element_undo_ran(workflow, run, spec, old, progress, outcome, in_flight)


def empty_map(
    workflow: Workflow, run: RunRecord, spec: StepSpec, at: float, in_flight: AbstractSet[str]
) -> Settled:
    """The map ``spec`` was given an empty list: it completes at once with an empty one."""
    old = run.steps[spec.name]
    check_map_transition(old.state, _COMPLETED, step_name=spec.name)
    record = StepRecord(
        spec.name,
        _COMPLETED,
        0,
        "[]",
        None,
        None,
        at,
        at,
        run.last_completion_order + 1,
        old.compensation_attempts,
        old.compensation_error,
        MapProgress(0).text(),
    )
    return settle_record(workflow, run, record, run.error, in_flight, at)


def _element_failure(
    error: BaseException, spec: StepSpec, index: int, count: int, attempts: int, retry: bool
) -> Failure:
    failure = Failure.from_exception(spec.name, error, attempts, retryable=retry)
    return dataclasses.replace(failure, message=f"element {index} of {count}: {failure.message}")


def _element_ran(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    old: StepRecord,
    progress: MapProgress,
    outcome: ElementSucceeded | ElementFailed,
    in_flight: AbstractSet[str],
) -> Settled:
    index = outcome.element
    if index in progress.results or index in progress.failed or not 0 <= index < progress.count:
        raise ValueError(
            f"element {index} of map {spec.name!r} has already ended, or is not one of its elements"
        )
    attempts = progress.attempts[index] = progress.attempts.get(index, 0) + 1
    progress.retry_at.pop(index, None)
    error = old.error
    run_error = run.error
    if isinstance(outcome, ElementSucceeded):
        progress.results[index] = orjson.loads(outcome.result)
        progress.done.append(index)
    else:
        failure_error = outcome.error
        retry = outcome.retryable and spec.retries.allows_retry(attempts, failure_error)
        error = _element_failure(failure_error, spec, index, progress.count, attempts, retry)
        if retry:
            progress.retry_at[index] = outcome.finished + spec.retries.delay_after(
                attempts, outcome.random_unit
            )
        else:
            progress.failed.append(index)
            if run_error is None:
                run_error = error
    result: str | None = None
    due: float | None = None
    order = old.completion_order
    if progress.failed:
        state = _FAILED
    elif len(progress.done) == progress.count:
        state = _COMPLETED
        result = progress.list_text()
        error = None
        order = run.last_completion_order + 1
    else:
        flying = flying_elements(spec.name, in_flight)
        idle = [i for i in progress.unfinished() if i not in flying and i not in progress.retry_at]
        if idle or not progress.retry_at:
            state = _PENDING
        else:  # only retries are left to start: the step waits for the first (a timer, as any retry's)
            state = _RETRYING
            due = min(progress.retry_at.values())
    if state is not old.state:
        check_map_transition(old.state, state, step_name=spec.name)
    started = outcome.started if old.started_at is None else min(old.started_at, outcome.started)
    record = StepRecord(
        spec.name,
        state,
        sum(progress.attempts.values()),
        result,
        error,
        due,
        started,
        outcome.finished,
        order,
        old.compensation_attempts,
        old.compensation_error,
        progress.text(),
    )
    return settle_record(workflow, run, record, run_error, in_flight, outcome.finished)


def _element_undo_ran(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    old: StepRecord,
    progress: MapProgress,
    outcome: ElementUndone | ElementUndoFailed,
    in_flight: AbstractSet[str],
) -> Settled:
    index = outcome.element
    if index not in progress.results or index in progress.undone or index in progress.undo_failed:
        raise ValueError(f"element {index} of map {spec.name!r} has no result left to undo")
    attempts = progress.undo_attempts[index] = progress.undo_attempts.get(index, 0) + 1
    compensation_error = old.compensation_error
    due: float | None = None
    if isinstance(outcome, ElementUndone):
        progress.undone.append(index)
    else:
        policy = spec.compensation_retries
        retry = outcome.retryable and policy.allows_retry(attempts, outcome.error)
        compensation_error = _element_failure(outcome.error, spec, index, progress.count, attempts, retry)
        if retry:
            due = outcome.finished + policy.delay_after(attempts, outcome.random_unit)
        else:
            progress.undo_failed.append(index)
    if due is not None or progress.next_undo() is not None:
        state = _COMPENSATING
    elif progress.undo_failed:
        state = StepState.COMPENSATION_FAILED
    else:
        state = StepState.COMPENSATED
    if state is not old.state:
        check_map_transition(old.state, state, step_name=spec.name)
    record = StepRecord(
        spec.name,
        state,
        old.attempts,
        old.result,
        old.error,
        due,
        old.started_at,
        old.finished_at,
        old.completion_order,
        old.compensation_attempts + 1,
        compensation_error,
        progress.text(),
    )
    return settle_record(workflow, run, record, run.error, in_flight, outcome.finished)
