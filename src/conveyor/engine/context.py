"""The running step's context, reachable from anywhere inside the step."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from conveyor.definition.task import StepContext
from conveyor.errors import ConveyorError

current_step_context: ContextVar[StepContext | Callable[[], StepContext]] = ContextVar(
    "conveyor_step_context"
)
"""The running step's context, or a function that builds it on demand (the driver's cheap default)."""


def current_context() -> StepContext:
    """Return the context of the step running now (in this thread or task).

    Raises :class:`~conveyor.errors.ConveyorError` when called outside a step.
    """
    try:
        context = current_step_context.get()
    except LookupError:
        raise ConveyorError(
            "current_context() was called outside a running step; call it from inside a task"
        ) from None
    return context if isinstance(context, StepContext) else context()


def set_context(context: StepContext) -> object:
    """Make ``context`` current; returns the token :func:`reset_context` takes."""
    return current_step_context.set(context)


def reset_context(token: object) -> None:
    """Restore the context that was current before :func:`set_context`."""
    current_step_context.reset(token)  # type: ignore[arg-type]
