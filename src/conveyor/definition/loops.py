"""Loops: a step whose function is called again and again, each iteration checkpointed.

``Flow.loop(body, max_iterations=10)`` (or ``@loop(...)`` in a workflow class) adds a step whose ``body``
returns :meth:`LoopResult.again` (call me again with this value) or :meth:`LoopResult.done` (the step's
result). The first iteration receives what any step would; each later one the value the previous iteration
passed on. Each iteration that asks for another is one checkpoint: the step's ``progress`` holds the number
of iterations done and the value, so after a crash the loop resumes at the iteration that was running.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

from conveyor.codec import TypedCodec
from conveyor.definition.binding import ArgumentBuilder, decode_argument
from conveyor.definition.task import TaskSpec
from conveyor.errors import DefinitionError

T = TypeVar("T")

OnMax = Literal["fail", "exit"]
"""What a loop does when its last allowed iteration asks for another: fail the step, or end with the value."""


@dataclass(frozen=True, slots=True)
class LoopResult(Generic[T]):
    """What a loop's body returns: :meth:`again` to be called once more with ``value``, :meth:`done` to end
    the loop with ``value`` as the step's result."""

    value: T
    is_done: bool

    @classmethod
    def again(cls, value: T) -> LoopResult[T]:
        """Call the body again, with ``value``."""
        return cls(value, False)

    @classmethod
    def done(cls, value: T) -> LoopResult[T]:
        """End the loop: ``value`` is the step's result."""
        return cls(value, True)


@dataclass(frozen=True, slots=True)
class Loop:
    """A loop step: at most ``max_iterations`` calls; ``on_max`` says what happens when the last one asks for
    another (``"fail"``: the step fails with ``LoopLimitError``; ``"exit"``: it completes with the value)."""

    max_iterations: int
    on_max: OnMax = "fail"

    def describe(self) -> list[Any]:
        """What the definition hash sees of it."""
        return ["loop", self.max_iterations, self.on_max]


def check_loop(max_iterations: object, on_max: object, what: str) -> Loop:
    """The :class:`Loop` declared; a DefinitionError naming ``what`` for a bad option."""
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise DefinitionError(
            f"max_iterations of {what} must be a whole number, at least 1, not {max_iterations!r}"
        )
    if on_max not in ("fail", "exit"):
        raise DefinitionError(f"on_max of {what} must be 'fail' or 'exit', not {on_max!r}")
    return Loop(max_iterations, on_max)


def loop_task(spec: TaskSpec, loop: Loop, what: str) -> TaskSpec:
    """``spec`` made a loop step: its result is the value of ``LoopResult.done``, typed as ``LoopResult[T]``
    says (anything JSON if it says nothing)."""
    if not spec.shape.parameters:
        raise DefinitionError(
            f"the body of {what} takes no value; it receives the value each iteration passes on"
        )
    annotation = spec.shape.returns.annotation
    inner: Any = Any
    if typing.get_origin(annotation) is LoopResult:
        (inner,) = typing.get_args(annotation)
    elif annotation is not LoopResult and annotation is not Any:
        raise DefinitionError(
            f"the body of {what} is declared to return {annotation!r}; a loop's body returns "
            "LoopResult.again(value) or LoopResult.done(value)"
        )
    return replace(spec, shape=replace(spec.shape, returns=TypedCodec(inner)), control=loop)


def carried_key(step_name: str) -> str:
    """Where, among the results a step's arguments are built from, the value carried into a loop's next
    iteration is (a NUL, which no step name holds, keeps it apart from every step's result)."""
    return step_name + "\0carried"


def carried_arguments(build: ArgumentBuilder, spec: TaskSpec, step_name: str) -> ArgumentBuilder:
    """A loop's argument builder: ``build``'s, with the first value replaced by the carried one if any."""
    first = spec.shape.parameters[0]
    key = carried_key(step_name)

    def arguments(workflow_input: str, results: Mapping[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = build(workflow_input, results)
        carried = results.get(key)
        if carried is not None:
            value = decode_argument(first, carried, step_name)
            if args:
                args = (value, *args[1:])
            else:
                kwargs[first.name] = value
        return args, kwargs

    return arguments
