"""The Flow builder: ``Flow("orders").then(a).fork().branch(b).branch(c).join(d).build()``.

Each step receives the previous step's result (the first receives the workflow input). ``fork()`` starts
branches that run concurrently, each receiving the same value; ``join(d)`` gives ``d`` a dict keyed by each
branch's name (a branch's name is the name given to ``branch(..., name=)``, else its last task's name).
``route(key_fn, branches={...}, default=...)`` runs one branch of several, by the key ``key_fn`` computes
from the value it receives; the next step receives the chosen branch's result (see
:mod:`conveyor.definition.control`). ``map(fn, max_concurrency=4)`` calls ``fn`` once per element of the
list it receives (see :mod:`conveyor.definition.maps`). Every method returns a new builder, so a partly
built flow can be shared and extended safely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from conveyor.definition.binding import Binding, FromBranches, FromPrevious, pydantic_input_validator
from conveyor.definition.children import child_run
from conveyor.definition.control import DEFAULT_BRANCH, FromRoute, Route
from conveyor.definition.loops import OnMax, check_loop, loop_task
from conveyor.definition.maps import DEFAULT_MAX_CONCURRENCY, map_task
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

    __slots__ = ("_input", "_options", "_steps", "_tail", "name")

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
            "input_schema": input_schema,
            "step_settings": check_hook(step_settings, f"flow {self.name!r}"),
        }
        self._steps: tuple[StepDefinition, ...] = ()
        self._tail: str | None = None
        self._input: Binding | None = None
        """What the next step receives when it is not the previous step's result (after a route)."""

    def _extend(self, *steps: StepDefinition, tail: str | None, next_input: Binding | None = None) -> Flow:
        extended = object.__new__(Flow)
        extended.name = self.name
        extended._options = self._options
        extended._steps = self._steps + steps
        extended._tail = tail
        extended._input = next_input
        return extended

    def _next_input(self) -> Binding:
        """What the next step receives: the previous step's result, or the chosen branch's after a route."""
        return self._input if self._input is not None else FromPrevious(self._tail)

    def then(self, fn: Callable[..., Any], *, name: str | None = None) -> Flow:
        """Add a step that receives the previous step's result (or the workflow input, if it is first)."""
        spec = _spec(fn, name)
        return self._extend(StepDefinition(spec.name, spec, self._next_input()), tail=spec.name)

    def route(
        self,
        key: Callable[..., Any],
        branches: Mapping[str, Branch],
        *,
        default: str | Branch = None,
        name: str | None = None,
    ) -> Flow:
        """Add a route: ``key`` (a step like any other, called ``name`` or its own name) computes a key from
        the value it receives, and the branch of ``branches`` under that key runs; the others' steps are
        ``skipped``. A branch is a task, a list of tasks (each receiving the previous one's result), or
        None (nothing to do); its first step receives the value the route received. ``default`` is the
        branch for a key that names none: one of the keys, or a branch of its own (called ``"default"``);
        without it, such a key fails the route step (:class:`~conveyor.errors.RouteKeyError`, naming the
        key and the known keys). The route step's result is the chosen branch's name; the next step
        receives that branch's result."""
        spec = _spec(key, name)
        where = f"route {spec.name!r} of flow {self.name!r}"
        if not isinstance(branches, Mapping) or not branches:
            raise DefinitionError(f"{where} needs branches: a dict of key to task, list of tasks or None")
        declared = {
            check_name(branch_key, f"a branch key of {where}"): fns for branch_key, fns in branches.items()
        }
        default_key: str | None = None
        if isinstance(default, str):
            if default not in declared:
                raise DefinitionError(
                    f"the default of {where} is {default!r}, which is none of its branches "
                    f"({', '.join(map(repr, declared))})"
                )
            default_key = default
        elif default is not None:
            if DEFAULT_BRANCH in declared:
                raise DefinitionError(
                    f"{where} has a branch called {DEFAULT_BRANCH!r} and a default branch of its own; "
                    f"name the default by its key instead (default={DEFAULT_BRANCH!r})"
                )
            declared[DEFAULT_BRANCH] = default
            default_key = DEFAULT_BRANCH
        received = self._next_input()
        steps: list[StepDefinition] = [StepDefinition(spec.name, spec, received)]
        keyed: list[tuple[str, tuple[str, ...]]] = []
        choices: list[tuple[str, str | None]] = []
        for branch_key, fns in declared.items():
            specs = _branch_specs(fns, f"branch {branch_key!r} of {where}")
            if not specs and not isinstance(received, FromPrevious):
                raise DefinitionError(
                    f"branch {branch_key!r} of {where} is empty, right after another route; give it a step"
                )
            previous: str | None = None
            for branch_spec in specs:
                binding = received if previous is None else FromPrevious(previous)
                steps.append(StepDefinition(branch_spec.name, branch_spec, binding, depends_on=(spec.name,)))
                previous = branch_spec.name
            keyed.append((branch_key, tuple(branch_spec.name for branch_spec in specs)))
            if previous is None:
                assert isinstance(received, FromPrevious)
                previous = received.source
            choices.append((branch_key, previous))
        steps[0] = StepDefinition(
            spec.name, replace(spec, control=Route(tuple(keyed), default_key)), received
        )
        return self._extend(*steps, tail=None, next_input=FromRoute(spec.name, tuple(choices)))

    def loop(
        self,
        body: Callable[..., Any],
        *,
        max_iterations: int,
        on_max: OnMax = "fail",
        name: str | None = None,
    ) -> Flow:
        """Add a loop: ``body`` (called ``name``, else its own name) returns ``LoopResult.again(value)`` to be
        called again with ``value``, or ``LoopResult.done(value)`` to end with ``value`` as the step's result.
        The first iteration receives the previous step's result. Each iteration is checkpointed (a crash
        resumes at the iteration that was running, never one that finished) and has an idempotency key of
        its own (the step's, then ``:n``, n from 0). A failing iteration is retried by the step's policy.
        After ``max_iterations`` calls that asked for more, ``on_max="fail"`` fails the step
        (:class:`~conveyor.errors.LoopLimitError`) and ``"exit"`` completes it with the last value."""
        spec = _spec(body, name)
        where = f"loop {spec.name!r} of flow {self.name!r}"
        spec = loop_task(spec, check_loop(max_iterations, on_max, where), where)
        return self._extend(StepDefinition(spec.name, spec, self._next_input()), tail=spec.name)

    def map(
        self,
        fn: Callable[..., Any],
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        name: str | None = None,
    ) -> Flow:
        """Add a map (a fan-out): the previous step's result must be a list, and ``fn`` (a step called
        ``name``, else its own name) is called once per element, up to ``max_concurrency`` at once. The
        step's result, which the next step receives, is the list of ``fn``'s results in the order of the
        input (an empty list gives ``[]``). Each element's result is checkpointed on its own (a crash runs
        only the unfinished elements again), each element has an idempotency key of its own (the step's,
        then ``:i``; ``StepContext.index`` is ``i``) and is retried by the step's policy on its own. An
        element that fails for good fails the step once the elements still running have ended; the step's
        undo then runs once per element that succeeded, newest first, with that element's result. A result
        that is not a list fails the step at once, naming the type it got."""
        spec = _spec(fn, name)
        where = f"map {spec.name!r} of flow {self.name!r}"
        spec = map_task(spec, max_concurrency, self._next_input(), None, where)
        return self._extend(StepDefinition(spec.name, spec, self._next_input()), tail=spec.name)

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

    def then_flow(
        self, child: Workflow | type | str, *, name: str | None = None, version: str | int | None = None
    ) -> Flow:
        """Add a step that runs ``child`` (a built workflow, a workflow class, or a registered workflow's
        name, resolved when the step starts: ``version`` of it, else its newest) as a child run, with the
        previous step's result as its input; the step's result is the child's output (Sayiir's name).

        The child run gets the id ``<parent id>/<step name>``, so a crash never starts two; it runs on any
        worker like any run, while this run waits for it holding no worker slot. A child that does not
        complete fails the step for good (``ChildWorkflowError``, naming the child and its error).
        Cancelling or compensating this run reaches the child: a waiting child is cancelled, a completed
        one is undone (``compensate_workflow``). The step is called ``name``, else the child's name.
        """
        run = child_run(child, version, what=f"then_flow({child!r}) of flow {self.name!r}")
        step_name = check_name(name if name is not None else run.name, "a step name")
        return self._wait_step(step_name, run)

    def _wait_step(self, name: str, wait: Wait, *, retries: RetryPolicy | None = None) -> Flow:
        spec = wait_task(name, wait, retries=retries)
        return self._extend(StepDefinition(name, spec, self._next_input()), tail=name)

    def fork(self) -> Fork:
        """Start branches that run concurrently; close them with :meth:`Fork.join`."""
        return Fork(self)

    def build(self) -> Workflow:
        """Check the flow and return the immutable workflow (a :class:`DefinitionError` if it is wrong)."""
        if not self._steps:
            raise DefinitionError(f"flow {self.name!r} has no steps; add some with .then(task)")
        if self._input is not None:
            raise DefinitionError(
                f"flow {self.name!r} ends in a route; add the step that receives the chosen branch's result "
                "with .then(task)"
            )
        return build_workflow(self.name, self._steps, output_step=self._tail, **self._options)

    def __repr__(self) -> str:
        return f"<Flow {self.name!r} steps={[step.name for step in self._steps]}>"


Branch = Callable[..., Any] | Sequence[Callable[..., Any]] | None
"""A branch of a route: a task, a chain of tasks, or None for nothing to do."""


def _branch_specs(fns: Branch, what: str) -> tuple[TaskSpec, ...]:
    """The task specs of a route's branch (none for ``None``); a DefinitionError for anything else."""
    if fns is None:
        return ()
    if callable(fns):
        return (_spec(fns, None),)
    if isinstance(fns, Sequence) and not isinstance(fns, str) and fns and all(callable(fn) for fn in fns):
        return tuple(_spec(fn, None) for fn in fns)
    raise DefinitionError(f"{what} must be a task, a non-empty list of tasks, or None, not {fns!r}")


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
        received = self._flow._next_input()
        steps: list[StepDefinition] = []
        tails: list[tuple[str, str]] = []
        for key, specs in self._branches:
            previous: str | None = None
            for spec in specs:
                binding = received if previous is None else FromPrevious(previous)
                steps.append(StepDefinition(spec.name, spec, binding))
                previous = spec.name
            assert previous is not None
            tails.append((key, previous))
        joined = _spec(fn, name)
        steps.append(StepDefinition(joined.name, joined, FromBranches(tuple(tails))))
        return self._flow._extend(*steps, tail=joined.name)

    def build(self) -> Workflow:
        """Refuse to build: a fork must be closed with :meth:`join` first."""
        raise DefinitionError(f"flow {self._flow.name!r} ends in a fork; close it with .join(task)")
