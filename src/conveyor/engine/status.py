"""What a caller sees of a run: its state, its output or error, and the record of every step."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from conveyor.codec import TypedCodec
from conveyor.core.records import Failure, RunRecord, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.core.steering import CANCELLED_ERROR_TYPE
from conveyor.definition.children import child_run_id
from conveyor.engine.notes import Annotation, OperatorAction, read_annotations, read_operator_actions

_RUNNING = frozenset({RunState.PENDING, RunState.RUNNING, RunState.COMPENSATING})
_FAILED = frozenset({RunState.FAILED, RunState.COMPENSATED, RunState.COMPENSATION_FAILED})


def _time(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


@dataclass(frozen=True, slots=True)
class StepStatus:
    """One step of a run: its state, attempts, timing, and its result or error."""

    name: str
    state: StepState
    attempts: int
    duration_seconds: float | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    error: Failure | None
    compensation_attempts: int
    compensation_error: Failure | None
    result_json: str | None
    progress: Any = None
    """How far a loop or a map has come (plain JSON values: a loop's ``iteration`` and ``value``, a map's
    finished elements); None for other steps."""
    child_id: str | None = None
    """For a child step (``then_flow``, ``child(...)``): the workflow_id of the child run it starts."""

    @classmethod
    def from_record(cls, record: StepRecord, child_id: str | None = None) -> StepStatus:
        """The status of a recorded step (``child_id``: the run a child step starts)."""
        return cls(
            name=record.name,
            state=record.state,
            attempts=record.attempts,
            duration_seconds=record.duration_seconds,
            started_at=_time(record.started_at),
            finished_at=_time(record.finished_at),
            next_attempt_at=_time(record.next_attempt_at),
            error=record.error,
            compensation_attempts=record.compensation_attempts,
            compensation_error=record.compensation_error,
            result_json=record.result,
            progress=None if record.progress is None else orjson.loads(record.progress),
            child_id=child_id,
        )

    @property
    def elements(self) -> dict[str, int] | None:
        """For a map step that has begun: how many elements its list has (``count``), and how many are
        ``done``, ``failed`` (for good), ``undone`` and ``undo_failed``; None for other steps."""
        progress = self.progress
        if type(progress) is not dict or "count" not in progress or "done" not in progress:
            return None
        return {
            "count": progress["count"],
            **{key: len(progress.get(key) or ()) for key in ("done", "failed", "undone", "undo_failed")},
        }

    @property
    def result(self) -> Any:
        """The step's result as plain JSON values (``None`` until it completed)."""
        return None if self.result_json is None else orjson.loads(self.result_json)

    def to_dict(self) -> dict[str, Any]:
        """The step's status as a JSON-ready dict."""
        return {
            "name": self.name,
            "state": self.state.value,
            "attempts": self.attempts,
            "duration_seconds": self.duration_seconds,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "next_attempt_at": self.next_attempt_at,
            "result": self.result,
            "error": None if self.error is None else self.error.to_dict(),
            "compensation_attempts": self.compensation_attempts,
            "compensation_error": (
                None if self.compensation_error is None else self.compensation_error.to_dict()
            ),
            "progress": self.progress,
            "child_id": self.child_id,
            "elements": self.elements,
        }


class WorkflowStatus:
    """A run as it stood when this status was read.

    ``is_completed()``, ``is_failed()`` (failed, compensated or compensation_failed) and ``is_running()``
    say where it is; ``output()`` gives the output of a completed run, ``error()`` says which step failed,
    after how many attempts, and why; ``steps`` holds each step's record.
    """

    def __init__(
        self,
        record: RunRecord,
        output_codec: TypedCodec | None = None,
        exceptions: dict[str, BaseException] | None = None,
        *,
        child_steps: Collection[str] = (),
    ) -> None:
        self._record = record
        self._child_steps = child_steps
        self.parent_id = record.parent_id
        """For a child run: the workflow_id of the run whose step started it (else None)."""
        self.exceptions: dict[str, BaseException] = exceptions or {}
        """When this process drove the run: the exception each failed step last raised (not stored)."""
        self._output_codec = output_codec
        self.workflow_id = record.workflow_id
        self.workflow_name = record.workflow_name
        self.workflow_version = record.workflow_version
        self.state = record.state
        self.correlation_id = record.correlation_id
        self.recoveries = record.recoveries

    @property
    def cancel_reason(self) -> str | None:
        """Why the run was asked to cancel (by ``cancel_workflow`` or its deadline); None if it was not."""
        record = self._record
        if record.cancel_reason is not None:
            return record.cancel_reason
        error = record.error
        return error.message if error is not None and error.error_type == CANCELLED_ERROR_TYPE else None

    @property
    def paused(self) -> bool:
        """Whether the run is paused: no new step starts until it is resumed."""
        return self._record.paused

    @property
    def deadline_at(self) -> dt.datetime | None:
        """When the run must have ended, else it is cancelled; None if it has no deadline."""
        return _time(self._record.deadline_at)

    @cached_property
    def operator_actions(self) -> tuple[OperatorAction, ...]:
        """What people did to the run by hand (retry, skip, complete, resume, cancel, pause...), oldest
        first, each with who did it, why and when."""
        return read_operator_actions(self._record.operator_log)

    @cached_property
    def annotations(self) -> tuple[Annotation, ...]:
        """What the run's steps recorded on it with ``StepContext.annotate``, in the order committed."""
        return read_annotations(self._record.annotations)

    def _last_by(self, action: str) -> str | None:
        return next((done.by for done in reversed(self.operator_actions) if done.action == action), None)

    @property
    def cancelled_by(self) -> str | None:
        """Who asked for the run to be cancelled (the last to), from its operator log; None if nobody did."""
        return self._last_by("cancel")

    @property
    def paused_by(self) -> str | None:
        """Who last paused the run, from its operator log; None if nobody did."""
        return self._last_by("pause")

    @property
    def created_at(self) -> dt.datetime:
        """When the run was first recorded."""
        created = _time(self._record.created_at)
        assert created is not None
        return created

    @property
    def updated_at(self) -> dt.datetime:
        """When the run last changed."""
        updated = _time(self._record.updated_at)
        assert updated is not None
        return updated

    @cached_property
    def steps(self) -> tuple[StepStatus, ...]:
        """Every step of the run, in the workflow's order; steps not yet run are ``pending``."""
        record, children = self._record, self._child_steps
        return tuple(
            StepStatus.from_record(
                step,
                child_run_id(record.workflow_id, step.name, record.generation)
                if step.name in children
                else None,
            )
            for step in record.steps.values()
        )

    def step(self, name: str) -> StepStatus:
        """The status of the step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"run {self.workflow_id!r} has no step {name!r}")

    @property
    def completed_steps(self) -> tuple[str, ...]:
        """The names of the steps that completed (and were not undone), in completion order."""
        done = [r for r in self._record.steps.values() if r.state is StepState.COMPLETED]
        return tuple(r.name for r in sorted(done, key=lambda r: r.completion_order or 0))

    def is_completed(self) -> bool:
        """Whether the run completed."""
        return self.state is RunState.COMPLETED

    def is_failed(self) -> bool:
        """Whether the run ended because a step failed (whether or not its undos succeeded)."""
        return self.state in _FAILED

    def is_running(self) -> bool:
        """Whether the run has not ended yet."""
        return self.state in _RUNNING

    def is_in_progress(self) -> bool:
        """Sayiir's name for :meth:`is_running`: whether the run has not ended yet."""
        return self.state in _RUNNING

    def is_cancelled(self) -> bool:
        """Whether the run was cancelled."""
        return self.state is RunState.CANCELLED

    def is_paused(self) -> bool:
        """Whether the run is paused (``pause_workflow``) and not yet resumed."""
        return self.paused and self.state in _RUNNING

    def needs_attention(self) -> bool:
        """Whether an undo kept failing, so a person must look at the run."""
        return self.state is RunState.COMPENSATION_FAILED

    def output(self) -> Any:
        """The output of a completed run, as its last step's declared type; ``None`` otherwise."""
        text = self._record.output
        if text is None or self.state is not RunState.COMPLETED:
            return None
        if self._output_codec is None:
            return orjson.loads(text)
        return self._output_codec.decode(text)

    def error(self) -> Failure | None:
        """Why the run did not complete: the step that failed for good, its attempts and its error."""
        return self._record.error

    def to_dict(self) -> dict[str, Any]:
        """The whole status as a JSON-ready dict."""
        return {
            "workflow_id": self.workflow_id,
            "workflow_name": self.workflow_name,
            "workflow_version": self.workflow_version,
            "state": self.state.value,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "recoveries": self.recoveries,
            "parent_id": self.parent_id,
            "cancel_reason": self.cancel_reason,
            "paused": self.paused,
            "deadline_at": self.deadline_at,
            "output": None if self._record.output is None else orjson.loads(self._record.output),
            "error": None if self._record.error is None else self._record.error.to_dict(),
            "steps": [step.to_dict() for step in self.steps],
            "waiting": [{"step": step.name, "until": step.next_attempt_at} for step in self.waiting],
            "operator_actions": [action.to_dict() for action in self.operator_actions],
            "annotations": [annotation.to_dict() for annotation in self.annotations],
        }

    @property
    def waiting(self) -> tuple[StepStatus, ...]:
        """The steps that wait now: a durable sleep (``next_attempt_at`` is its wake time) or a wait for a
        signal (``next_attempt_at`` is None; ``started_at`` is when the wait began)."""
        if self.state not in _RUNNING:
            return ()
        return tuple(step for step in self.steps if step.state is StepState.WAITING)

    def is_waiting(self) -> bool:
        """Whether the run sleeps or waits for a signal now (it holds no worker while it does)."""
        if self.state not in _RUNNING:  # a run completed by hand may leave a wait as it was
            return False
        return any(record.state is StepState.WAITING for record in self._record.steps.values())

    def __repr__(self) -> str:
        return f"<WorkflowStatus {self.workflow_id!r} {self.state.value}>"
