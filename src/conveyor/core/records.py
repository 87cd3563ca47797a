"""What is recorded about a run and its steps, and the write-set of one checkpoint.

These are plain values: backends read and write them, the engine keeps the latest :class:`RunRecord` of
each run it drives, and :mod:`conveyor.core.decide` reads them and returns new ones, without any I/O.
Results are kept as the JSON text they are stored as, so what a run holds is cheap to keep and identical
before and after a crash.
"""

from __future__ import annotations

import traceback as traceback_module
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from conveyor.core.states import FINAL_RUN_STATES, RunState, StepState
from conveyor.errors import CorruptRunError

MAX_TRACEBACK_CHARS = 8000


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a step (or its undo) failed: which step, after how many attempts, and the error."""

    step_name: str
    error_type: str
    message: str
    attempts: int
    retryable: bool = True
    traceback: str = ""

    @classmethod
    def from_exception(
        cls, step_name: str, error: BaseException, attempts: int, *, retryable: bool
    ) -> Failure:
        """Describe ``error`` raised by attempt number ``attempts`` of ``step_name``."""
        text = "".join(traceback_module.format_exception(error))
        return cls(
            step_name=step_name,
            error_type=type(error).__name__,
            message=str(error) or type(error).__name__,
            attempts=attempts,
            retryable=retryable,
            traceback=text[-MAX_TRACEBACK_CHARS:],
        )

    def to_dict(self) -> dict[str, Any]:
        """The failure as a JSON-ready dict."""
        return {
            "step_name": self.step_name,
            "error_type": self.error_type,
            "message": self.message,
            "attempts": self.attempts,
            "retryable": self.retryable,
            "traceback": self.traceback,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        """Rebuild a failure stored with :meth:`to_dict`."""
        return cls(
            step_name=data["step_name"],
            error_type=data["error_type"],
            message=data["message"],
            attempts=data["attempts"],
            retryable=data.get("retryable", True),
            traceback=data.get("traceback", ""),
        )

    def __str__(self) -> str:
        plural = "attempt" if self.attempts == 1 else "attempts"
        return (
            f"step {self.step_name!r} failed after {self.attempts} {plural}: "
            f"{self.error_type}: {self.message}"
        )


class StepRecord(NamedTuple):
    """The recorded state of one step of one run: a value that never changes (a change is a new record).

    A named tuple rather than a frozen dataclass: it is built once per step outcome on the hot path, in
    0.28 us where a frozen dataclass takes 0.83 us (a mutable one 0.19 us).
    """

    name: str
    state: StepState = StepState.PENDING
    attempts: int = 0
    result: str | None = None
    """The step's result as JSON text, once it completed."""
    error: Failure | None = None
    next_attempt_at: float | None = None
    """When the next attempt (or the next attempt at its undo) is due, as epoch seconds."""
    started_at: float | None = None
    """When the last attempt started."""
    finished_at: float | None = None
    completion_order: int | None = None
    """1 for the first step of the run to complete, 2 for the next…; undos run in reverse of it."""
    compensation_attempts: int = 0
    compensation_error: Failure | None = None
    progress: str | None = None
    """JSON text of how far a loop or a map has come while the step is not done (a loop's iteration and
    value, a map's finished elements); a map keeps it once done, for its undo. None for other steps."""

    @property
    def duration_seconds(self) -> float | None:
        """How long the last attempt took."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


_PENDING_STEPS: dict[tuple[str, ...], dict[str, StepRecord]] = {}
_MOST_PENDING_SHAPES = 1024


def pending_steps(step_names: tuple[str, ...]) -> dict[str, StepRecord]:
    """A new dict with a pending record for each of ``step_names``, for a run that has not started.

    The records are values, so they are built once per list of names and shared by every run (building
    four of them costs more than a step's own settle); the dict is each caller's own.
    """
    steps = _PENDING_STEPS.get(step_names)
    if steps is None:
        if len(_PENDING_STEPS) >= _MOST_PENDING_SHAPES:  # names made up at run time: keep the memo small
            _PENDING_STEPS.clear()
        steps = _PENDING_STEPS[step_names] = {name: StepRecord(name) for name in step_names}
    return steps.copy()


def completion_counts(steps: Iterable[StepRecord]) -> tuple[int, int]:
    """How many of ``steps`` are done (completed, or skipped by a route), and the highest completion order
    among them (0 if none).

    What a :class:`RunRecord`'s ``completed_count`` and ``last_completion_order`` must say of its steps.
    """
    completed = 0
    last = 0
    for record in steps:
        if record.state is StepState.COMPLETED or record.state is StepState.SKIPPED:
            completed += 1
        order = record.completion_order
        if order is not None and order > last:
            last = order
    return completed, last


@dataclass(slots=True)
class NewRun:
    """A run about to be recorded for the first time."""

    workflow_id: str
    workflow_name: str
    workflow_version: str
    input: str
    correlation_id: str
    step_names: tuple[str, ...]
    state: RunState = RunState.RUNNING
    definition_hash: str | None = None
    """The hash of the workflow's definition (see ``Workflow.definition_hash``)."""
    deadline_at: float | None = None
    """When the whole run must have ended (epoch seconds), else it is cancelled; None for no deadline."""
    parent_id: str | None = None
    """The run whose step started this one (a child run), else None."""
    trace_context: str | None = None
    """The W3C trace context (a JSON object of ``traceparent`` and ``tracestate``) of the code that started
    the run, when tracing is on (see :mod:`conveyor.observe.tracing`); None otherwise."""


@dataclass(slots=True)
class RunRecord:
    """A run and its steps, as recorded.

    :mod:`conveyor.core.decide` never changes a record: it returns a new one. The two counters are derived
    from ``steps``: a backend computes them with :func:`completion_counts` when it builds a record from
    rows, and ``core.decide`` computes them from the old record's where it builds a new record from an old
    one and a changed step (two integer operations, where counting on every read would walk every step
    twice per step outcome).
    """

    workflow_id: str
    workflow_name: str
    workflow_version: str
    state: RunState
    input: str
    correlation_id: str
    step_names: tuple[str, ...]
    steps: dict[str, StepRecord]
    created_at: float
    updated_at: float
    epoch: int = 0
    """Bumped each time a process takes the run; a write carrying an older epoch is refused."""
    recoveries: int = 0
    """How many times in a row the run was taken over after the process driving it stopped (or its drive
    failed) without a step recorded since: a checkpoint that records a step sets it back to 0."""
    generation: int = 0
    """How many times the run was retried by hand; steps run again after a retry get new idempotency keys."""
    output: str | None = None
    error: Failure | None = None
    wake_at: float | None = None
    leased_until: float | None = None
    """Set when a process holds the run under a lease that has not expired (as last read)."""
    owner: str | None = None
    """Who last took the run (a worker's or a runtime's name), as last read; None if nobody holds it."""
    definition_hash: str | None = None
    """The hash of the definition the run was recorded by; None for runs recorded before there was one."""
    completed_count: int = 0
    """How many steps are done: completed, or skipped by a route (derived from ``steps``; see
    :func:`completion_counts`). The run completes when every step is."""
    last_completion_order: int = 0
    """The highest ``completion_order`` among the steps (derived, like ``completed_count``)."""
    corruption: CorruptRunError | None = None
    """Set when the stored run could not be read: the record then stands for it as ``failed`` with this
    error (see :func:`conveyor.backends.rows.run_from_rows`), and nothing may drive or retry it."""
    cancel_reason: str | None = None
    """Set once someone asked for the run to be cancelled (as read; see ``cancel_workflow``)."""
    paused: bool = False
    """Whether the run is paused (as read): no new step starts until it is resumed."""
    deadline_at: float | None = None
    """When the whole run must have ended (epoch seconds), else it is cancelled; None for no deadline."""
    parent_id: str | None = None
    """The run whose step started this one (a child run), as read; None for a run started otherwise."""
    operator_log: str | None = None
    """What people did to the run by hand, as read: a JSON list of ``{action, by, reason, at, step}``
    (see :mod:`conveyor.runtime.operator`); None when nobody did anything."""
    annotations: str | None = None
    """What the run's steps recorded with ``StepContext.annotate``, as read: a JSON list of
    ``{name, content, step, at}``; None when none did. (The driver's records leave both None.)"""
    trace_context: str | None = None
    """The trace context of the code that started the run (see ``NewRun.trace_context``), as read: what
    the run's spans continue; None when it was started without tracing."""

    @property
    def is_final(self) -> bool:
        """Whether the run has ended."""
        return self.state in FINAL_RUN_STATES


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of a list of runs: who it is, where it stands, and the message of its error if it has one."""

    workflow_id: str
    workflow_name: str
    workflow_version: str
    state: RunState | None
    """None only when the stored state could not be read (``problem`` says why)."""
    correlation_id: str
    created_at: float
    """When the run was recorded, in epoch seconds."""
    updated_at: float
    error_message: str | None = None
    problem: str | None = None
    """Set when part of the stored run cannot be read: the run's own status names the whole fault."""

    def to_dict(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict."""
        return {
            "workflow_id": self.workflow_id,
            "workflow_name": self.workflow_name,
            "workflow_version": self.workflow_version,
            "state": None if self.state is None else self.state.value,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error_message": self.error_message,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of a list of runs, newest first, and the token that asks for the next (None at the end)."""

    runs: tuple[RunSummary, ...]
    next_page: str | None = None

    def __iter__(self) -> Iterator[RunSummary]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)


class Checkpoint(NamedTuple):
    """Everything one step completion (or failure) changes, written by a backend in one transaction.

    The write is fenced: it is refused unless the run's epoch is still ``epoch``. A value, built once per
    step outcome: a named tuple, like :class:`StepRecord`, for what it costs to build.
    """

    workflow_id: str
    epoch: int
    steps: tuple[StepRecord, ...]
    state: RunState
    output: str | None
    error: Failure | None
    wake_at: float | None
    at: float
    generation: int = 0
    same_state_and_timer: bool = False
    """True when the run keeps the state and wake-up time its record had before this write (settle's common
    path says so): a backend may then leave those two columns as stored, and the indexes over them alone
    (SQLite rewrites an index entry whenever an UPDATE assigns one of its columns, even to the same value)."""
    previous_state: RunState | None = None
    """The run's state before this write, where the writer knows it: the run's history records a move
    (``run.completed``, ``run.compensating``...) when it differs from ``state``; None records none."""
