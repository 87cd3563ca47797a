"""The Flow builder: ``Flow("orders").then(a).fork().branch(b).branch(c).join(d).build()``.

Each step receives the previous step's result (the first receives the workflow input). ``fork()`` starts
branches that run concurrently, each receiving the same value; ``join(d)`` gives ``d`` a dict keyed by each
branch's name (a branch's name is the name given to ``branch(..., name=)``, else its last task's name).
Every method returns a new builder, so a partly built flow can be shared and extended safely.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from conveyor.definition.binding import FromBranches, FromPrevious, pydantic_input_validator
from conveyor.definition.names import check_name
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.settings import StepSettingsHook, check_hook
from conveyor.definition.task import TaskSpec, make_task_spec
from conveyor.definition.waits import Sleep, Wait, parse_duration, signal_wait, wait_task
from conveyor.definition.workflow import StepDefinition, Workflow, build_workflow
from conveyor.errors import DefinitionError


def _spec(fn: Callable[..., Any], name: str | None) -> TaskSpec:
    spec = make_task_spec(fn)
    if name is not None:
        spec = replace(spec, name=check_name(name, "a step name"))
    return spec


class Flow:
    """Builds a :class:`~conveyor.definition.workflow.Workflow` one step at a time.

    ``retries`` is the policy of every step that declares none; ``input_schema`` (a pydantic model or any
    type pydantic validates) is checked against the workflow input before a run is recorded.
    ``step_settings`` adjusts steps' timeout and retries from each run's input (``lambda order: {"charge":
    {"timeout": 15, "retries": 1}} if order["priority"] == "express" else {}``; see
    :mod:`conveyor.definition.settings`).
    """

    __slots__ = ("_options", "_steps", "_tail", "name")

    def __init__(
        self,
        name: str,
        *,
        version: str | int = "1",
        description: str = "",
        retries: RetryPolicy | None = None,
        compensation_retries: RetryPolicy | None = None,
        input_schema: Any = None,
        step_settings: StepSettingsHook | None = None,
    ) -> None:
        self.name = check_name(name, "a flow's name")
        self._options: dict[str, Any] = {
            "version": str(version),
            "description": description,
            "retries": retries,
            "compensation_retries": compensation_retries,
            "input_validator": None if input_schema is None else pydantic_input_validator(input_schema),
            "step_settings": check_hook(step_settings, f"flow {self.name!r}"),
        }
        self._steps: tuple[StepDefinition, ...] = ()
        self._tail: str | None = None

    def _extend(self, *steps: StepDefinition, tail: str | None) -> Flow:
        extended = object.__new__(Flow)
        extended.name = self.name
        extended._options = self._options
        extended._steps = self._steps + steps
        extended._tail = tail
        return extended

    def then(self, fn: Callable[..., Any], *, name: str | None = None) -> Flow:
        """Add a step that receives the previous step's result (or the workflow input, if it is first)."""
        spec = _spec(fn, name)
        return self._extend(StepDefinition(spec.name, spec, FromPrevious(self._tail)), tail=spec.name)

    def delay(self, name: str, duration: float | timedelta | str) -> Flow:
        """Add a durable sleep called ``name``: ``duration`` is a ``timedelta``, seconds, or text such as
        ``"5m"``, ``"1h30m"`` or ``"2d"``. The wake time is fixed when the sleep starts and survives restarts;
        no worker slot is held meanwhile. The next step receives the value this one received."""
        step_name = check_name(name, "a step name")
        wait = Sleep(parse_duration(duration, what=f"the duration of delay {step_name!r}"))
        return self._wait_step(step_name, wait)

    def wait_for_signal(
        self,
        name: str | Sequence[str],
        *,
        timeout: float | timedelta | str | None = None,
        step_name: str | None = None,
        signal_name: str | Sequence[str] | None = None,
        retries: RetryPolicy | None = None,
    ) -> Flow:
        """Add a step that waits for the signal ``name`` (sent with ``send_signal``); its result, which the
        next step receives, is the signal's payload. With a list of names it waits for the first of them and
        its result is ``{"signal": name, "payload": payload}``. A signal sent before the run gets here is
        kept. After ``timeout`` the step fails with ``SignalTimeoutError`` (retried like any failure). The
        step is called ``step_name``, else the signal's name (the names joined by ``_or_``). Sayiir's
        spelling, ``wait_for_signal("approval", signal_name="manager_approval")``, names the step first and
        the signal with ``signal_name``."""
        if signal_name is not None:
            if not isinstance(name, str) or step_name is not None:
                raise DefinitionError(
                    f"wait_for_signal({name!r}, signal_name=...) of flow {self.name!r}: with signal_name, "
                    "the first argument is the step's name (one name), and step_name is not given"
                )
            step_name = name
            name = signal_name
        wait = signal_wait(name, timeout, what=f"wait_for_signal({name!r}) of flow {self.name!r}")
        called = step_name if step_name is not None else "_or_".join(wait.names)
        return self._wait_step(check_name(called, "a step name"), wait, retries=retries)

    def _wait_step(self, name: str, wait: Wait, *, retries: RetryPolicy | None = None) -> Flow:
        spec = wait_task(name, wait, retries=retries)
        return self._extend(StepDefinition(name, spec, FromPrevious(self._tail)), tail=name)

    def fork(self) -> Fork:
        """Start branches that run concurrently; close them with :meth:`Fork.join`."""
        return Fork(self)

    def build(self) -> Workflow:
        """Check the flow and return the immutable workflow (a :class:`DefinitionError` if it is wrong)."""
        if not self._steps:
            raise DefinitionError(f"flow {self.name!r} has no steps; add some with .then(task)")
        return build_workflow(self.name, self._steps, output_step=self._tail, **self._options)

    def __repr__(self) -> str:
        return f"<Flow {self.name!r} steps={[step.name for step in self._steps]}>"


class Fork:
    """Branches of a :class:`Flow` that run concurrently, until :meth:`join` brings them together."""

    __slots__ = ("_branches", "_flow")

    def __init__(self, flow: Flow, branches: tuple[tuple[str, tuple[TaskSpec, ...]], ...] = ()) -> None:
        self._flow = flow
        self._branches = branches

    def branch(self, *fns: Callable[..., Any], name: str | None = None) -> Fork:
        """Add a branch: one task, or a chain of tasks each receiving the previous one's result."""
        if not fns:
            raise DefinitionError(f"an empty branch in flow {self._flow.name!r}; give it at least one task")
        specs = tuple(_spec(fn, None) for fn in fns)
        key = check_name(name if name is not None else specs[-1].name, "a branch name")
        if any(existing == key for existing, _ in self._branches):
            raise DefinitionError(
                f"two branches of a fork in flow {self._flow.name!r} are both called {key!r}; "
                "the join receives one result per name, so name one of them (branch(..., name=...))"
            )
        return Fork(self._flow, (*self._branches, (key, specs)))

    def join(self, fn: Callable[..., Any], *, name: str | None = None) -> Flow:
        """Close the fork with a step that receives ``{branch name: that branch's result}``."""
        if not self._branches:
            raise DefinitionError(
                f"a fork in flow {self._flow.name!r} has no branches; add them with .branch(task)"
            )
        start = self._flow._tail
        steps: list[StepDefinition] = []
        tails: list[tuple[str, str]] = []
        for key, specs in self._branches:
            previous = start
            for spec in specs:
                steps.append(StepDefinition(spec.name, spec, FromPrevious(previous)))
                previous = spec.name
            assert previous is not None
            tails.append((key, previous))
        joined = _spec(fn, name)
        steps.append(StepDefinition(joined.name, joined, FromBranches(tuple(tails))))
        return self._flow._extend(*steps, tail=joined.name)

    def build(self) -> Workflow:
        """Refuse to build: a fork must be closed with :meth:`join` first."""
        raise DefinitionError(f"flow {self._flow.name!r} ends in a fork; close it with .join(task)")
