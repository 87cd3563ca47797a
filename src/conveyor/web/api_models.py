"""What the REST API answers and accepts: pydantic models, so that its OpenAPI schema is exact.

Times are ISO 8601 datetimes in UTC. Values a run holds (inputs, results, outputs, payloads) are plain JSON.
A value a workflow marks secret (pydantic's ``SecretStr``, ``SecretBytes``, ``Secret``) is never stored
(see :mod:`conveyor.unstorable`), so no answer can hold one.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from conveyor.core.history import Event
from conveyor.core.records import Failure, RunPage, RunSummary
from conveyor.core.states import RunState, StepState
from conveyor.engine.status import StepStatus, WorkflowStatus

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _time(epoch: float | None) -> dt.datetime | None:
    """The UTC datetime of ``epoch``, cut (not rounded) to the microsecond: a time read here and passed
    back as ``created_after`` keeps the run it was read from. (``epoch * 1e6`` may round up across a whole
    microsecond, about one time in 170 for times of this century: then the microsecond before is the cut.)"""
    if epoch is None:
        return None
    moment = _EPOCH + dt.timedelta(microseconds=math.floor(epoch * 1_000_000))
    if moment.timestamp() > epoch:
        moment -= dt.timedelta(microseconds=1)
    return moment


class Body(BaseModel):
    """A request body: unknown fields are refused (a misspelt one is named, never ignored)."""

    model_config = ConfigDict(extra="forbid")


# -- runs -------------------------------------------------------------------------------------------------


class RunSummaryOut(BaseModel):
    """One run of a list: who it is, where it stands, its error's message if it has one."""

    workflow_id: str
    workflow_name: str
    workflow_version: str
    state: RunState | None = Field(description="None only when the stored state cannot be read")
    correlation_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    error_message: str | None
    problem: str | None = Field(description="set when part of the stored run cannot be read")

    @classmethod
    def of(cls, summary: RunSummary) -> RunSummaryOut:
        """The model of a listed run."""
        return cls(
            workflow_id=summary.workflow_id,
            workflow_name=summary.workflow_name,
            workflow_version=summary.workflow_version,
            state=summary.state,
            correlation_id=summary.correlation_id,
            created_at=_time(summary.created_at),
            updated_at=_time(summary.updated_at),
            error_message=summary.error_message,
            problem=summary.problem,
        )


class RunPageOut(BaseModel):
    """A page of runs, newest first; ``next_page`` asks for the next one (None after the last)."""

    runs: list[RunSummaryOut]
    next_page: str | None

    @classmethod
    def of(cls, page: RunPage) -> RunPageOut:
        """The model of a page of runs."""
        return cls(runs=[RunSummaryOut.of(summary) for summary in page], next_page=page.next_page)


class FailureOut(BaseModel):
    """Why a step (or its undo, or the run) failed: the step, the error's type and message, the attempts."""

    step_name: str
    error_type: str
    message: str
    attempts: int
    retryable: bool
    traceback: str = Field(description="the step's own traceback, as recorded (empty if none)")

    @classmethod
    def of(cls, failure: Failure | None) -> FailureOut | None:
        """The model of a stored failure (None for None)."""
        if failure is None:
            return None
        return cls(
            step_name=failure.step_name,
            error_type=failure.error_type,
            message=failure.message,
            attempts=failure.attempts,
            retryable=failure.retryable,
            traceback=failure.traceback,
        )


class StepOut(BaseModel):
    """One step of a run: its state, attempts, timing, result or error, and the run's correlation id."""

    name: str
    state: StepState
    attempts: int
    duration_seconds: float | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    next_attempt_at: dt.datetime | None = Field(description="when a retry or a durable sleep is due")
    result: JsonValue = Field(description="the step's result (null until it completed)")
    error: FailureOut | None
    compensation_attempts: int
    compensation_error: FailureOut | None
    progress: JsonValue = Field(description="how far a loop or a map has come (null for other steps)")
    elements: dict[str, int] | None = Field(description="a map step's element counts (null otherwise)")
    child_id: str | None = Field(description="the child run a child step starts")
    correlation_id: str

    @classmethod
    def of(cls, step: StepStatus, correlation_id: str) -> StepOut:
        """The model of one step's status."""
        return cls(
            name=step.name,
            state=step.state,
            attempts=step.attempts,
            duration_seconds=step.duration_seconds,
            started_at=step.started_at,
            finished_at=step.finished_at,
            next_attempt_at=step.next_attempt_at,
            result=step.result,
            error=FailureOut.of(step.error),
            compensation_attempts=step.compensation_attempts,
            compensation_error=FailureOut.of(step.compensation_error),
            progress=step.progress,
            elements=step.elements,
            child_id=step.child_id,
            correlation_id=correlation_id,
        )


class OperatorActionOut(BaseModel):
    """What a person did to the run by hand: the action, who, why, when, and the step if one."""

    action: str
    by: str
    reason: str
    at: dt.datetime | None
    step: str | None


class AnnotationOut(BaseModel):
    """A note a step recorded on its run."""

    name: str
    content: JsonValue
    step: str | None
    at: dt.datetime | None


class RunOut(BaseModel):
    """A run as it stands: its fields, its output or error, and every step."""

    workflow_id: str
    workflow_name: str
    workflow_version: str
    state: RunState
    correlation_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    recoveries: int
    parent_id: str | None
    cancel_reason: str | None
    paused: bool
    deadline_at: dt.datetime | None
    output: JsonValue = Field(description="the output of a completed run (null otherwise)")
    error: FailureOut | None
    steps: list[StepOut]
    operator_actions: list[OperatorActionOut]
    annotations: list[AnnotationOut]

    @classmethod
    def of(cls, status: WorkflowStatus) -> RunOut:
        """The model of a run's status."""
        whole = status.to_dict()
        return cls(
            workflow_id=status.workflow_id,
            workflow_name=status.workflow_name,
            workflow_version=status.workflow_version,
            state=status.state,
            correlation_id=status.correlation_id,
            created_at=status.created_at,
            updated_at=status.updated_at,
            recoveries=status.recoveries,
            parent_id=status.parent_id,
            cancel_reason=status.cancel_reason,
            paused=status.paused,
            deadline_at=status.deadline_at,
            output=whole["output"],
            error=FailureOut.of(status.error()),
            steps=[StepOut.of(step, status.correlation_id) for step in status.steps],
            operator_actions=[OperatorActionOut(**action.to_dict()) for action in status.operator_actions],
            annotations=[AnnotationOut(**annotation.to_dict()) for annotation in status.annotations],
        )


class StepsOut(BaseModel):
    """A run's steps (seed 002's ``/tasks/:id/steps``), in the workflow's order."""

    workflow_id: str
    correlation_id: str
    steps: list[StepOut]


class EventOut(BaseModel):
    """One entry of a run's history (see docs/observability.md for the kinds and their data)."""

    id: str = Field(description="'<workflow_id>#<seq>': unique, the same in every delivery")
    seq: int
    kind: str
    at: dt.datetime
    workflow_id: str
    workflow_name: str
    correlation_id: str
    step: str | None
    attempt: int | None
    worker: str | None
    data: dict[str, JsonValue]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        """The model of one event."""
        return cls(
            id=event.id,
            seq=event.seq,
            kind=event.kind,
            at=_time(event.at),
            workflow_id=event.workflow_id,
            workflow_name=event.workflow_name,
            correlation_id=event.correlation_id,
            step=event.step,
            attempt=event.attempt,
            worker=event.worker,
            data=dict(event.data),
        )


class HistoryOut(BaseModel):
    """A run's events, oldest first; ``next_after`` reads on from the last (None when it was all)."""

    workflow_id: str
    events: list[EventOut]
    next_after: int | None

    @classmethod
    def of(cls, workflow_id: str, events: Sequence[Event], limit: int) -> HistoryOut:
        """The model of one read of a run's history, of at most ``limit`` events."""
        return cls(
            workflow_id=workflow_id,
            events=[EventOut.of(event) for event in events],
            next_after=events[-1].seq if len(events) >= limit else None,
        )


# -- actions ------------------------------------------------------------------------------------------------


class StartRun(Body):
    """Start a run of a registered workflow: by name (and version), with its input."""

    workflow: str = Field(min_length=1, max_length=200, description="the registered workflow's name")
    version: str | None = Field(default=None, min_length=1, max_length=200, description="newest if none")
    namespace: str | None = Field(
        default=None, min_length=1, max_length=200, description="where the name is in several namespaces"
    )
    input: JsonValue = Field(default=None, description="checked against the workflow's input schema")
    workflow_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="the run's id (a new one if none)"
    )
    correlation_id: str | None = Field(default=None, min_length=1, max_length=200)


class SendSignal(Body):
    """A signal for the run: kept until a ``wait_for_signal`` step of it takes it."""

    name: str = Field(min_length=1, max_length=200)
    payload: JsonValue = None


class Resume(Body):
    """Who asks (stored in the run's operator log)."""

    by: str | None = Field(default=None, min_length=1, max_length=200, description="who asks (default: api)")


class Steer(Resume):
    """Who asks, and why (stored in the run's operator log)."""

    reason: str = Field(default="", max_length=2000)


class Retry(Steer):
    """Retry a run: from where it failed, or from ``from_step`` (that step and what depends on it)."""

    from_step: str | None = Field(default=None, min_length=1, max_length=200)


# -- definitions ------------------------------------------------------------------------------------------


class StepDefinitionOut(BaseModel):
    """One step of a workflow's graph: what it depends on and how it is retried."""

    name: str
    depends_on: list[str]
    description: str
    kind: str = Field(description="'task', 'wait' (a sleep, a signal, a child run) or 'control' (a route)")
    max_attempts: int
    timeout_seconds: float | None
    has_compensation: bool
    runs_child: bool


class WorkflowOut(BaseModel):
    """A registered workflow version: its step graph and the schema its input must fit."""

    namespace: str
    name: str = Field(description="the name it is registered and started by")
    recorded_name: str = Field(description="the name its runs record (namespace.name outside 'default')")
    version: str
    description: str
    definition_hash: str
    output_step: str | None
    input_schema: dict[str, Any] | None = Field(description="JSON Schema of the input, if it declares one")
    steps: list[StepDefinitionOut]


class WorkflowsOut(BaseModel):
    """Every registered workflow version (seed 002's ``/handlers``)."""

    workflows: list[WorkflowOut]


class WorkflowVersionsOut(BaseModel):
    """One registered workflow: each of its versions, oldest first."""

    name: str
    namespace: str
    versions: list[WorkflowOut]


# -- health -----------------------------------------------------------------------------------------------


class HealthOut(BaseModel):
    """Whether the server and its backend answer."""

    status: str = Field(description="'ok', or 'unavailable' when the backend does not answer")
    backend: str = Field(description="the kind of backend: sqlite, postgresql or memory")
