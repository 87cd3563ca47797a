"""A run's event history: what kinds of event there are, what one event says, and which events a write makes.

Every transition of a run and of each attempt at its steps is an :class:`Event`, written by the backend in
the same transaction as the state change it describes (no commit of its own), numbered per run by ``seq``.
:func:`checkpoint_events` derives a checkpoint's events from the checkpoint alone, without I/O: the step
records it writes say what their attempts came to, and its ``previous_state`` says whether the run moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from conveyor.core.records import Checkpoint
from conveyor.core.states import RunState, StepState


class EventKind(StrEnum):
    """The kinds of event a run's history holds; subscribers name them by value (``"step.failed"``)."""

    RUN_STARTED = "run.started"
    """The run was recorded (pending for a worker, or running in the caller's process)."""
    RUN_TAKEN_OVER = "run.taken_over"
    """A process took the run from an owner whose lease had run out (it died, or stopped renewing)."""
    RUN_RETRIED = "run.retried"
    """A person reopened the run to run again (a retry by hand)."""
    RUN_COMPENSATING = "run.compensating"
    """A step failed for good (or the run was cancelled): the undos of completed steps begin."""
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_COMPENSATED = "run.compensated"
    RUN_COMPENSATION_FAILED = "run.compensation_failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_DEAD_LETTERED = "run.dead_lettered"
    RUN_CANCEL_REQUESTED = "run.cancel_requested"
    RUN_COMPENSATION_REQUESTED = "run.compensation_requested"
    RUN_PAUSED = "run.paused"
    RUN_RESUMED = "run.resumed"
    """A paused run was unpaused."""
    STEP_STARTED = "step.started"
    """An attempt at a step began (written with what the attempt came to: see docs/observability.md)."""
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    """An attempt failed: ``data["final"]`` says whether the step failed for good or will be retried."""
    STEP_TIMED_OUT = "step.timed_out"
    """An attempt ran past its timeout (followed by its ``step.failed``)."""
    STEP_RETRY_SCHEDULED = "step.retry_scheduled"
    """The next attempt is due at ``data["due_at"]``."""
    STEP_WAITING = "step.waiting"
    """A durable sleep or a wait for a signal began."""
    STEP_PROGRESSED = "step.progressed"
    """A loop's iteration, or some of a map's elements, finished; the step goes on."""
    STEP_SKIPPED = "step.skipped"
    """A route chose another branch: the step never runs."""
    STEP_RESET = "step.reset"
    """A retry by hand set the step back to pending."""
    UNDO_COMPLETED = "undo.completed"
    UNDO_FAILED = "undo.failed"
    """An attempt at a step's undo failed: ``data["final"]`` says whether it will be retried."""
    SIGNAL_RECEIVED = "signal.received"
    OPERATOR_ACTION = "operator.action"
    """A person acted on the run by hand (skip a step, complete it, resume it...): ``data["action"]``."""


EVENT_ALIASES: Mapping[str, EventKind] = {
    "task.started": EventKind.RUN_STARTED,
    "task.completed": EventKind.RUN_COMPLETED,
    "task.failed": EventKind.RUN_FAILED,
    "task.cancelled": EventKind.RUN_CANCELLED,
    "workflow.started": EventKind.RUN_STARTED,
    "workflow.completed": EventKind.RUN_COMPLETED,
    "workflow.failed": EventKind.RUN_FAILED,
    "step.succeeded": EventKind.STEP_COMPLETED,
}
"""Other spellings of event kinds (a task is a run), accepted wherever a kind is named."""


def event_kind(name: str | EventKind) -> EventKind:
    """The kind ``name`` spells (an alias included), or a ValueError naming the kinds there are."""
    if isinstance(name, EventKind):
        return name
    alias = EVENT_ALIASES.get(name)
    if alias is not None:
        return alias
    try:
        return EventKind(name)
    except ValueError:
        known = ", ".join(kind.value for kind in EventKind)
        raise ValueError(f"unknown event kind {name!r}; the kinds are: {known}") from None


class Event(NamedTuple):
    """One entry of a run's history: a value that never changes.

    ``seq`` numbers a run's events from 1 in the order they were written; ``id`` (the run's id and ``seq``)
    is unique across runs and the same in every delivery, so a consumer that may see an event twice (a
    durable subscriber, a webhook receiver) drops the repeat by it. A named tuple rather than a frozen
    dataclass: every write builds one per event for the listeners, at a third of the cost.
    """

    workflow_id: str
    seq: int
    kind: str
    """One of :class:`EventKind`'s values (kept as text: a history written by a newer version still reads)."""
    at: float
    """When it happened, in epoch seconds (for ``step.started``, when the attempt began)."""
    workflow_name: str
    correlation_id: str
    step: str | None = None
    attempt: int | None = None
    """Which attempt at the step (or at its undo, for ``undo.*``) the event is about."""
    worker: str | None = None
    """The process whose write it was (the run's owner), None for a request from outside (a cancel...)."""
    data: Mapping[str, Any] = MappingProxyType({})
    """What else the kind says (an error's type and message, when a retry is due...): JSON values."""

    @property
    def id(self) -> str:
        """``"<workflow_id>#<seq>"``: the same in every delivery of this event, and unique."""
        return f"{self.workflow_id}#{self.seq}"

    @property
    def error_message(self) -> str | None:
        """The error's message, for a ``*.failed`` or ``*.timed_out`` event; None otherwise."""
        message = self.data.get("message")
        return message if isinstance(message, str) else None

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (what a webhook posts, what ``--json`` prints)."""
        return {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "seq": self.seq,
            "kind": self.kind,
            "at": self.at,
            "workflow_name": self.workflow_name,
            "correlation_id": self.correlation_id,
            "step": self.step,
            "attempt": self.attempt,
            "worker": self.worker,
            "data": dict(self.data),
        }


EventRow = tuple[str, str | None, int | None, float, dict[str, Any] | None]
"""An event as a write carries it before the backend numbers it: (kind, step, attempt, at, data)."""

_RUN_EVENTS: Mapping[RunState, EventKind] = {
    RunState.COMPENSATING: EventKind.RUN_COMPENSATING,
    RunState.COMPLETED: EventKind.RUN_COMPLETED,
    RunState.FAILED: EventKind.RUN_FAILED,
    RunState.COMPENSATED: EventKind.RUN_COMPENSATED,
    RunState.COMPENSATION_FAILED: EventKind.RUN_COMPENSATION_FAILED,
    RunState.CANCELLED: EventKind.RUN_CANCELLED,
    RunState.DEAD_LETTERED: EventKind.RUN_DEAD_LETTERED,
}
FINISHED_KINDS = frozenset(
    kind.value
    for kind in (
        EventKind.RUN_COMPLETED,
        EventKind.RUN_FAILED,
        EventKind.RUN_COMPENSATED,
        EventKind.RUN_COMPENSATION_FAILED,
        EventKind.RUN_CANCELLED,
        EventKind.RUN_DEAD_LETTERED,
    )
)
"""The kinds that end a run: a backend adds the run's ``duration_seconds`` to their data."""

_STARTED = EventKind.STEP_STARTED.value
_COMPLETED = EventKind.STEP_COMPLETED.value
_TIMEOUT_ERRORS = frozenset({"StepTimeoutError"})


def checkpoint_events(checkpoint: Checkpoint) -> list[EventRow]:
    """The events ``checkpoint`` writes: what each step record it carries came to, then the run's move.

    A step record is the outcome of one attempt (or of a retry by hand, a route, a loop's iteration); its
    attempt's start is an event of its own, dated when it began, written with the outcome because writing
    it when it began would cost a transaction per step.
    """
    rows: list[EventRow] = []
    for record in checkpoint.steps:
        state = record.state
        name = record.name
        if state is StepState.COMPLETED:
            started, finished = record.started_at, record.finished_at
            if started is not None and finished is not None:
                rows.append((_STARTED, name, record.attempts, started, None))
                rows.append(
                    (_COMPLETED, name, record.attempts, finished, {"duration_seconds": finished - started})
                )
            else:  # completed by a person, not by an attempt
                rows.append((_COMPLETED, name, record.attempts, checkpoint.at, None))
        elif state is StepState.RETRYING or state is StepState.FAILED:
            _failed_attempt(
                rows,
                record.name,
                record.attempts,
                record.started_at,
                record.finished_at,
                checkpoint.at,
                record.error,
                record.next_attempt_at,
                final=state is StepState.FAILED,
            )
        elif state is StepState.WAITING:
            rows.append(
                (
                    EventKind.STEP_WAITING.value,
                    name,
                    record.attempts,
                    checkpoint.at,
                    {"until": record.next_attempt_at},
                )
            )
        elif state is StepState.SKIPPED:
            rows.append((EventKind.STEP_SKIPPED.value, name, None, checkpoint.at, None))
        elif state is StepState.PENDING:
            kind = EventKind.STEP_RESET if record.progress is None else EventKind.STEP_PROGRESSED
            rows.append((kind.value, name, None, checkpoint.at, None))
        elif state is StepState.COMPENSATED:
            rows.append(
                (EventKind.UNDO_COMPLETED.value, name, record.compensation_attempts, checkpoint.at, None)
            )
        else:  # compensating (an undo failed, and will be retried) or compensation_failed
            error = record.compensation_error
            data: dict[str, Any] = {"final": state is StepState.COMPENSATION_FAILED}
            if error is not None:
                data["error_type"] = error.error_type
                data["message"] = error.message
            if record.next_attempt_at is not None:
                data["due_at"] = record.next_attempt_at
            rows.append(
                (EventKind.UNDO_FAILED.value, name, record.compensation_attempts, checkpoint.at, data)
            )
    previous = checkpoint.previous_state
    if previous is not None and previous is not checkpoint.state:
        _run_moved(rows, previous, checkpoint)
    return rows


def _failed_attempt(
    rows: list[EventRow],
    name: str,
    attempt: int,
    started: float | None,
    finished: float | None,
    at: float,
    error: Any,
    due: float | None,
    *,
    final: bool,
) -> None:
    if started is not None:
        rows.append((_STARTED, name, attempt, started, None))
    when = at if finished is None else finished
    data: dict[str, Any] = {"final": final}
    if error is not None:
        data["error_type"] = error.error_type
        data["message"] = error.message
        data["retryable"] = error.retryable
        if error.error_type in _TIMEOUT_ERRORS:
            rows.append((EventKind.STEP_TIMED_OUT.value, name, attempt, when, {"message": error.message}))
    if started is not None and finished is not None:
        data["duration_seconds"] = finished - started
    rows.append((EventKind.STEP_FAILED.value, name, attempt, when, data))
    if due is not None and not final:
        rows.append((EventKind.STEP_RETRY_SCHEDULED.value, name, attempt + 1, when, {"due_at": due}))


def _run_moved(rows: list[EventRow], previous: RunState, checkpoint: Checkpoint) -> None:
    state = checkpoint.state
    kind = _RUN_EVENTS.get(state)
    if kind is None:
        if state is RunState.RUNNING and previous is not RunState.PENDING:
            rows.append(
                (
                    EventKind.RUN_RETRIED.value,
                    None,
                    None,
                    checkpoint.at,
                    {"generation": checkpoint.generation},
                )
            )
        return
    data: dict[str, Any] | None = None
    error = checkpoint.error
    if error is not None and state is not RunState.COMPLETED:
        data = {"step": error.step_name, "error_type": error.error_type, "message": error.message}
    rows.append((kind.value, None, None, checkpoint.at, data))


def run_event(kind: EventKind, at: float, data: dict[str, Any] | None = None) -> EventRow:
    """An event about the run as a whole (a start, a take-over, a pause...), for a write to carry."""
    return (kind.value, None, None, at, data)
