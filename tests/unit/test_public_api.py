"""The public API is exactly what ``conveyor.__all__`` names, sorted, and every name is importable."""

from __future__ import annotations

import conveyor

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    """__all__ lists exactly the public names, in sorted order (a change here is an API change)."""
    assert conveyor.__all__ == EXPECTED
    assert sorted(conveyor.__all__) == conveyor.__all__


def test_every_public_name_exists_and_has_a_docstring() -> None:
    """Each exported name resolves and documents itself."""
    for name in conveyor.__all__:
        value = getattr(conveyor, name)
        assert (getattr(value, "__doc__", None) or "").strip(), f"{name} has no docstring"


def test_every_exception_descends_from_conveyor_error() -> None:
    """All errors share one root, so `except ConveyorError` catches anything conveyor raises."""
    for name in conveyor.__all__:
        value = getattr(conveyor, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, conveyor.ConveyorError), name
