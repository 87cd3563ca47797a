"""conveyor: durable workflows and sagas for Python.

Declare steps with :func:`task`, compose them with :class:`Flow` (or a :class:`Saga` class, or a YAML
template), and run them through a :class:`Conveyor` runtime on a backend (:class:`SqliteBackend` by default,
:class:`PostgresBackend` for many machines, :class:`InMemoryBackend` for tests). Every finished step is
checkpointed, so a run that crashes resumes where it stopped; a step that keeps failing triggers the undo of
every completed step, newest first. The seeds' module functions (:func:`run_durable_workflow`,
:func:`get_workflow_status`, ...) are thin adapters over a runtime.
"""

from conveyor.backends import Backend, InMemoryBackend, PostgresBackend, SqliteBackend, open_backend
from conveyor.core import Failure, RunState, StepState
from conveyor.core.history import Event, EventKind
from conveyor.core.records import RunPage, RunSummary
from conveyor.definition import Flow, RetryPolicy, StepContext, Task, Workflow, task
from conveyor.definition.arguments import from_input, from_result, from_results, from_route
from conveyor.definition.loops import LoopResult
from conveyor.definition.registry import UnknownWorkflowError
from conveyor.definition.resources import resource
from conveyor.definition.steps import loop, map_step, route, step
from conveyor.definition.template_source import TemplateError
from conveyor.definition.templates import load_template, load_templates
from conveyor.definition.waits import child, delay, wait_for_signal
from conveyor.engine import FakeClock, RunHandle, StepStatus, WorkflowStatus, current_context, wait_for_run
from conveyor.engine.notes import Annotation, OperatorAction
from conveyor.engine.worker import Worker
from conveyor.errors import (
    BackendError,
    Cancelled,
    ChildWorkflowError,
    ConfigurationError,
    ConveyorError,
    CorruptRunError,
    DefinitionChangedError,
    DefinitionError,
    EncodingError,
    EngineError,
    InvalidArgumentError,
    InvalidInputError,
    LeaseLostError,
    LoopLimitError,
    NonRetryableError,
    RouteKeyError,
    RunAlreadyRunningError,
    RunError,
    RunFinishedError,
    RunNotFoundError,
    RunNotRetryableError,
    SignalTimeoutError,
    StepError,
    StepInputError,
    StepTimeoutError,
    TaskError,
    WebhookDeliveryError,
    WebhookError,
    WebhookSignatureError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowMismatchError,
)
from conveyor.observe.analytics import Bottlenecks, Performance, StepPerformance, WorkflowPerformance
from conveyor.runtime import Conveyor, Resources, UnknownResourceError
from conveyor.runtime.adapters import (
    Registry,
    cancel_workflow,
    compensate_workflow,
    complete_workflow,
    get_workflow_status,
    pause_workflow,
    resume_workflow,
    retry_workflow,
    run_by_name,
    run_durable_workflow,
    run_durable_workflow_async,
    run_workflow,
    send_signal,
    skip_workflow_step,
    start_workflow,
    start_workflow_async,
    unpause_workflow,
)
from conveyor.runtime.client import WorkflowClient
from conveyor.runtime.webhooks import verify_webhook
from conveyor.saga import Saga, SagaResult

__version__ = "0.1.0"

__all__ = [
    "Annotation",
    "Backend",
    "BackendError",
    "Bottlenecks",
    "Cancelled",
    "ChildWorkflowError",
    "ConfigurationError",
    "Conveyor",
    "ConveyorError",
    "CorruptRunError",
    "DefinitionChangedError",
    "DefinitionError",
    "EncodingError",
    "EngineError",
    "Event",
    "EventKind",
    "Failure",
    "FakeClock",
    "Flow",
    "InMemoryBackend",
    "InvalidArgumentError",
    "InvalidInputError",
    "LeaseLostError",
    "LoopLimitError",
    "LoopResult",
    "NonRetryableError",
    "OperatorAction",
    "Performance",
    "PostgresBackend",
    "Registry",
    "Resources",
    "RetryPolicy",
    "RouteKeyError",
    "RunAlreadyRunningError",
    "RunError",
    "RunFinishedError",
    "RunHandle",
    "RunNotFoundError",
    "RunNotRetryableError",
    "RunPage",
    "RunState",
    "RunSummary",
    "Saga",
    "SagaResult",
    "SignalTimeoutError",
    "SqliteBackend",
    "StepContext",
    "StepError",
    "StepInputError",
    "StepPerformance",
    "StepState",
    "StepStatus",
    "StepTimeoutError",
    "Task",
    "TaskError",
    "TemplateError",
    "UnknownResourceError",
    "UnknownWorkflowError",
    "WebhookDeliveryError",
    "WebhookError",
    "WebhookSignatureError",
    "Worker",
    "Workflow",
    "WorkflowClient",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowMismatchError",
    "WorkflowPerformance",
    "WorkflowStatus",
    "cancel_workflow",
    "child",
    "compensate_workflow",
    "complete_workflow",
    "current_context",
    "delay",
    "from_input",
    "from_result",
    "from_results",
    "from_route",
    "get_workflow_status",
    "load_template",
    "load_templates",
    "loop",
    "map_step",
    "open_backend",
    "pause_workflow",
    "resource",
    "resume_workflow",
    "retry_workflow",
    "route",
    "run_by_name",
    "run_durable_workflow",
    "run_durable_workflow_async",
    "run_workflow",
    "send_signal",
    "skip_workflow_step",
    "start_workflow",
    "start_workflow_async",
    "step",
    "task",
    "unpause_workflow",
    "verify_webhook",
    "wait_for_run",
    "wait_for_signal",
]
