"""Every exception conveyor raises, in one shallow tree.

Each exception's docstring is its default message. Each carries the context a person needs to act on it
(``workflow_id``, ``step_name``, ``attempt``) and chains its cause::

    ConveyorError
    ├── DefinitionError          a workflow or task declared wrongly (found when it is built)
    │   ├── TemplateError        a YAML template that cannot be loaded (names the file, line, field)
    │   └── UnknownWorkflowError no registered workflow has this name (and version)
    ├── InvalidArgumentError     a bad value handed to conveyor (workflow_id, input, URL)
    │   ├── InvalidInputError    a workflow input that breaks the workflow's input schema
    │   └── EncodingError        a value that cannot cross a checkpoint as JSON
    ├── RunError                 about one run
    │   ├── RunNotFoundError
    │   ├── WorkflowMismatchError
    │   │   └── DefinitionChangedError the run was recorded by another definition of its workflow
    │   ├── CorruptRunError      a stored row of the run cannot be read; the run fails alone
    │   ├── RunNotRetryableError   retry asked of a run that did not fail
    │   ├── RunAlreadyRunningError another caller is driving this run (asked not to wait)
    │   ├── RunFinishedError     a signal, cancel or pause sent to a run that has ended
    │   ├── InvalidTransitionError
    │   └── WorkflowFailedError  raised by run_workflow when the run did not complete
    ├── StepError                raised inside a step, recorded as its failure
    │   ├── NonRetryableError    raise it (or a subclass) to fail the step at once
    │   │   ├── StepInputError   the step's input did not match its annotation
    │   │   ├── RouteKeyError    a route's key names no branch, and the route has no default
    │   │   ├── LoopLimitError   a loop asked for another iteration after its last allowed one
    │   │   └── ChildWorkflowError a child run did not complete: the step waiting for it fails
    │   ├── StepTimeoutError     the attempt ran past the step's timeout
    │   └── EngineError          conveyor failed handling the step's outcome; the step fails for good
    ├── BackendError             the durable store refused or failed
    │   └── LeaseLostError       another process took the run over; this one must stop
    ├── ConfigurationError       conveyor is not set up for what was asked (a missing extra, say)
    │   └── UnknownResourceError a step asked for a resource the runtime does not have
    └── WebhookError             about a webhook request
        ├── WebhookDeliveryError a POST that failed in a way worth trying again (retried with backoff)
        └── WebhookSignatureError a request whose signature or timestamp does not check out

Sayiir's names are aliases, not classes of their own: ``WorkflowError`` is :class:`ConveyorError` (the base
of every error) and ``TaskError`` is :class:`WorkflowFailedError` (what ``run_workflow`` raises when a
task failed).

Outside the tree, derived from ``BaseException`` so that a step's ``except Exception`` cannot swallow it:
``Cancelled``, what a step of a cancelled run is stopped with (as ``asyncio.CancelledError``).
"""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    """Something went wrong in conveyor."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip()
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)
        super().__init__(self.message)


class DefinitionError(ConveyorError):
    """The workflow or task is declared wrongly."""


class InvalidArgumentError(ConveyorError, ValueError):
    """An argument handed to conveyor is not valid."""

    argument: str | None
    """The name of the argument at fault, when one is."""


class InvalidInputError(InvalidArgumentError):
    """The workflow input does not match the workflow's input schema."""

    fields: list[str]
    """The fields of the input at fault (dotted paths)."""


class EncodingError(InvalidArgumentError, TypeError):
    """A value cannot be stored as JSON."""


class RunError(ConveyorError):
    """Something is wrong with a workflow run."""

    workflow_id: str


class RunNotFoundError(RunError, LookupError):
    """No run with this workflow_id exists in the backend."""


class RunFinishedError(RunError):
    """The run has ended, so it cannot take what was sent to it (a signal, a cancel, a pause)."""

    state: str
    """The state it ended in."""


class WorkflowMismatchError(RunError):
    """A run with this workflow_id exists but belongs to a different workflow."""


class DefinitionChangedError(WorkflowMismatchError):
    """A run with this workflow_id was recorded by a different definition of the same workflow."""

    workflow_name: str
    stored_hash: str
    """The definition hash the run recorded."""
    new_hash: str
    """The definition hash of the workflow it was asked to run under."""
    added_steps: tuple[str, ...]
    """Steps the new definition has that the recorded one did not."""
    removed_steps: tuple[str, ...]
    """Steps the recorded definition had that the new one does not."""


class CorruptRunError(RunError):
    """A stored row of this run cannot be read, so the run cannot go on; it fails alone."""

    column: str
    """Where the bad value is: ``conveyor_runs.<column>`` or ``conveyor_steps.<column>``."""
    step_name: str | None
    """The step whose row is at fault, when it is a step's."""


class RunNotRetryableError(RunError):
    """Only a run that failed (failed, compensated or compensation_failed) can be retried."""


class RunAlreadyRunningError(RunError):
    """Another caller (in this process or another) is driving this run, and the caller asked not to wait."""

    owner: str | None
    """Who drives it, when known."""


class InvalidTransitionError(RunError):
    """This state change is not allowed."""


class WorkflowFailedError(RunError):
    """The workflow run did not complete."""

    step_name: str | None
    """The step that failed for good."""
    attempts: int
    """How many attempts it made."""
    status: Any
    """The run's :class:`~conveyor.WorkflowStatus`."""


class StepError(ConveyorError):
    """A step failed."""

    step_name: str


class NonRetryableError(StepError):
    """The step failed and must not be retried."""


class ChildWorkflowError(NonRetryableError):
    """A child run did not complete (or could not start): the step that waits for it fails for good."""

    child_id: str
    """The child run's workflow_id."""


class StepInputError(NonRetryableError):
    """The step's input does not match the type its function declares."""


class RouteKeyError(NonRetryableError):
    """A route step's key names none of its branches, and the route has no default branch."""

    key: object
    """The key the route's function returned."""
    known: tuple[str, ...]
    """The keys of the route's branches."""


class LoopLimitError(NonRetryableError):
    """A loop's last allowed iteration asked for another (its ``on_max`` is ``"fail"``)."""

    max_iterations: int


class StepTimeoutError(StepError, TimeoutError):
    """The step ran past its timeout."""


class SignalTimeoutError(StepError, TimeoutError):
    """A wait for a signal ran past its timeout: the step fails, retried or compensated like any failure."""

    signals: tuple[str, ...]
    """The names it waited for."""


class EngineError(StepError):
    """conveyor itself failed while handling a step's outcome, so the step fails for good."""


class BackendError(ConveyorError):
    """The backend failed to read or write durable state."""


class LeaseLostError(BackendError):
    """Another process took this run over; this process's write was refused."""


class ConfigurationError(ConveyorError):
    """conveyor is not set up for what was asked of it (a missing optional dependency, say)."""


class UnknownResourceError(ConfigurationError, LookupError):
    """A step asked for a resource the runtime does not have."""


class WebhookError(ConveyorError):
    """A webhook request went wrong."""


class WebhookDeliveryError(WebhookError):
    """The webhook's receiver could not be reached, or answered that it could not take the event now."""

    retry_after_seconds: float | None = None
    """How long the receiver asked to be left alone (its ``Retry-After``), when it said."""


class WebhookSignatureError(WebhookError):
    """The webhook request is not signed with the shared secret, or is too old to trust."""


class Cancelled(BaseException):
    """The run was cancelled: the step should stop (raised by ``StepContext.raise_if_cancelled``).

    A ``BaseException``, as :class:`asyncio.CancelledError` is, so that a step's ``except Exception``
    does not swallow it. A step that lets it out is recorded neither completed nor failed: the run's
    completed steps are compensated and the run ends ``cancelled``.
    """

    def __init__(self, reason: str = "", *, workflow_id: str = "") -> None:
        self.reason = reason
        self.workflow_id = workflow_id
        super().__init__(f"run {workflow_id!r} was cancelled: {reason}" if workflow_id else reason)


WorkflowError = ConveyorError
"""Sayiir's name for the base of its errors: an alias of :class:`ConveyorError`."""

TaskError = WorkflowFailedError
"""Sayiir's name for the error ``run_workflow`` raises when a task failed: an alias of
:class:`WorkflowFailedError` (its ``step_name`` names the task, its cause is the task's exception)."""
