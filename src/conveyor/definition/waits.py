"""Steps that wait instead of calling a function: a durable sleep, and a wait for a signal.

A wait step is declared with :meth:`conveyor.Flow.delay` / :meth:`conveyor.Flow.wait_for_signal`, or in a
workflow class with :func:`delay` / :func:`wait_for_signal` among its steps. It is a step like any other in
the graph (its result is what the next step receives), but the engine never calls its function: it records
when the sleep ends (or since when the run waits for a signal) in the step's checkpoint and hands the run
back, so that the wait holds no worker slot. See :mod:`conveyor.engine.waiting`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from conveyor.definition.arguments import Source
from conveyor.definition.children import CHILD_INPUT, ChildRun, child_input_source, child_run
from conveyor.definition.names import check_name
from conveyor.definition.retry import RetryPolicy, seconds
from conveyor.definition.steps import StepMethod
from conveyor.definition.task import TaskSpec, describe_callable
from conveyor.errors import DefinitionError

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


@dataclass(frozen=True, slots=True)
class Sleep:
    """A durable sleep of ``seconds``: the wake time is fixed when the sleep starts."""

    seconds: float

    def describe(self) -> list[Any]:
        """What the definition hash sees of it."""
        return ["sleep", self.seconds]


@dataclass(frozen=True, slots=True)
class SignalWait:
    """A wait for the first signal named one of ``names`` (``timeout_seconds`` after it starts, it fails).

    With one name the step's result is the signal's payload; with several (``first_of``) it is
    ``{"signal": name, "payload": payload}``, so the next step knows which came.
    """

    names: tuple[str, ...]
    timeout_seconds: float | None
    first_of: bool

    def describe(self) -> list[Any]:
        """What the definition hash sees of it."""
        return ["signal", list(self.names), self.first_of]


Wait = Sleep | SignalWait | ChildRun
"""What a wait step waits for: a time, a signal, or a child run's end."""


def parse_duration(value: object, *, what: str) -> float:
    """Seconds in ``value``: a ``timedelta``, a number of seconds, or text such as ``"5m"``, ``"1h30m"``,
    ``"2d"``, ``"1.5s"`` or ``"250ms"``; anything else is a :class:`DefinitionError` naming ``what``."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "").lower()
        if _is_parts(text):
            return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
        raise DefinitionError(
            f"{what} must be a timedelta, a number of seconds or text such as '30s', '5m', '1h30m' or '2d', "
            f"not {value!r}"
        )
    if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
        found = seconds(value, what=what)
        assert found is not None
        return found
    raise DefinitionError(
        f"{what} must be a timedelta, a number of seconds or text such as '5m', not {value!r}"
    )


def _is_parts(text: str) -> bool:
    """Whether ``text`` is one or more ``<number><unit>`` parts and nothing else."""
    return bool(text) and "".join(number + unit for number, unit in _PART.findall(text)) == text


def _never_called(value: Any = None) -> Any:
    """The function of a wait step: the engine waits instead of calling it."""
    raise AssertionError("a wait step is never called")  # pragma: no cover


def wait_task(name: str, wait: Wait, *, retries: RetryPolicy | None = None) -> TaskSpec:
    """The task of a wait step called ``name``."""
    return TaskSpec(
        name=check_name(name, "a step name"),
        shape=describe_callable(_never_called, what=f"wait step {name!r}"),
        retries=retries,
        waits=wait,
    )


def signal_wait(
    names: str | Sequence[str], timeout: float | timedelta | str | None, *, what: str
) -> SignalWait:
    """Check what a wait for signals declares; ``what`` names it in errors."""
    if isinstance(names, str):
        listed: tuple[str, ...] = (names,)
        first_of = False
    elif isinstance(names, Sequence) and names and all(isinstance(name, str) for name in names):
        listed = tuple(dict.fromkeys(names))
        first_of = True
    else:
        raise DefinitionError(f"{what} waits for a signal name or a list of them, not {names!r}")
    for name in listed:
        check_name(name, f"a signal name of {what}")
    timeout_seconds = None if timeout is None else parse_duration(timeout, what=f"the timeout of {what}")
    if timeout_seconds == 0:
        raise DefinitionError(f"the timeout of {what} must be more than zero")
    return SignalWait(listed, timeout_seconds, first_of)


class WaitStepMethod(StepMethod):
    """A wait declared among a workflow class's steps: ``approved = wait_for_signal("approved")``.

    The step's name is the attribute's; it runs after the steps declared before it, like any step, and
    its result (the signal's payload) is read by later steps with ``from_result("approved")``.
    """

    def __init__(
        self, wait: Wait, *, retries: RetryPolicy | None = None, bindings: dict[str, Source] | None = None
    ) -> None:
        def waiting(self: Any) -> Any:
            """A wait step: never called."""
            raise AssertionError("a wait step is never called")  # pragma: no cover

        super().__init__(
            waiting,
            bindings=bindings or {},
            after=(),
            parallel=False,
            retries=retries,
            timeout_secs=None,
            compensation_retries=None,
            description=None,
        )
        self.wait = wait

    def __set_name__(self, owner: type, name: str) -> None:
        self.fn.__name__ = self.fn.__qualname__ = check_name(name, "a step name")
        self.owner = owner

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        return self

    def __repr__(self) -> str:
        return f"<wait step {self.name!r}: {self.wait}>"


def wait_for_signal(
    names: str | Sequence[str],
    *,
    timeout: float | timedelta | str | None = None,
    retries: RetryPolicy | None = None,
) -> WaitStepMethod:
    """Declare, among a workflow class's steps, a wait for the signal ``names`` (or the first of several).

    ``approved = wait_for_signal("approved", timeout="2d")``: the step's result is the signal's payload.
    A timeout fails the step (``SignalTimeoutError``), retried or compensated like any failure.
    """
    return WaitStepMethod(signal_wait(names, timeout, what=f"wait_for_signal({names!r})"), retries=retries)


def delay(duration: float | timedelta | str) -> WaitStepMethod:
    """Declare, among a workflow class's steps, a durable sleep: ``cool_off = delay("1h")``."""
    return WaitStepMethod(Sleep(parse_duration(duration, what=f"delay({duration!r})")))


def child(workflow: Any, *, version: str | int | None = None, input: Source | None = None) -> WaitStepMethod:
    """Declare, among a workflow class's steps, a child workflow: ``ship = child("shipping", version="2")``.

    When the step starts, the workflow (a registered name, resolved by the runtime that drives the run, a
    built workflow, or a workflow class) runs as a child run of its own, on any worker, with the input
    ``input`` (``from_result("pack")``, ``from_input("order")``; the workflow input by default). The step
    waits for it without holding a worker slot, and its result is the child's output. A child that does
    not complete fails the step for good (``ChildWorkflowError``). See ``docs/guide.md``, Child workflows.
    """
    what = f"child({workflow!r})"
    return WaitStepMethod(
        child_run(workflow, version, what=what),
        bindings={CHILD_INPUT: child_input_source(input, what)},
    )
