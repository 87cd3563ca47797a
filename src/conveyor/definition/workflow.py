"""The immutable workflow graph every front end compiles to, and the checks made when it is built."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.codec import TypedCodec
from conveyor.definition.binding import ArgumentBuilder, Binding
from conveyor.definition.children import ChildRun
from conveyor.definition.loops import Loop, carried_arguments
from conveyor.definition.maps import Map
from conveyor.definition.names import check_name
from conveyor.definition.retry import DEFAULT_COMPENSATION_RETRIES, NO_RETRIES, RetryPolicy
from conveyor.definition.settings import StepSettingsHook, check_hook
from conveyor.definition.task import TaskSpec
from conveyor.errors import DefinitionError

if TYPE_CHECKING:
    from conveyor.definition.control import Control
    from conveyor.definition.waits import Wait

InputValidator = Callable[[Any], Any]
"""Takes the workflow input, returns it (possibly converted), or raises InvalidInputError naming the field."""


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """A step as a front end declares it, before the graph is checked: its task, dependencies, binding."""

    name: str
    task: TaskSpec
    binding: Binding
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of a built workflow, with everything resolved that can be resolved before it runs."""

    name: str
    index: int
    task: TaskSpec
    depends_on: tuple[str, ...]
    binding: Binding
    build_arguments: ArgumentBuilder = field(repr=False)
    retries: RetryPolicy
    compensation_retries: RetryPolicy
    timeout_seconds: float | None
    runs_inline: bool
    """Sync with no timeout: the engine may call it directly on the thread that drives the run."""
    waits: Wait | None = None
    """Set for a wait step (a durable sleep, a wait for a signal, a child run): the engine waits instead of
    calling it."""
    control: Control | None = None
    """Set for a step that steers the run (a route): :mod:`conveyor.engine.control` settles its calls."""
    runs_child: bool = False
    """Set for a child step (``waits`` is a ``ChildRun``): its undo is the engine's, which undoes the child
    run; while it waits, a compensation of the parent cancels the child first."""

    @property
    def has_compensation(self) -> bool:
        """Whether the step declares an undo (a child step always has one: its child run is undone)."""
        return self.task.compensation is not None or self.runs_child


@dataclass(frozen=True, slots=True)
class Workflow:
    """A validated, immutable graph of steps, built by :class:`~conveyor.Flow` or another front end."""

    name: str
    version: str
    steps: tuple[StepSpec, ...]
    """Every step, in an order where each comes after the steps it depends on."""
    output_step: str | None
    """The step whose result is the workflow's output; ``None`` means a dict of every step's result."""
    description: str = ""
    by_name: Mapping[str, StepSpec] = field(default_factory=dict, repr=False)
    step_names: tuple[str, ...] = ()
    """The names of the steps, dependencies first."""
    is_chain: bool = False
    """Whether each step depends on exactly the one before it (the engine takes a shortcut then)."""
    input_validator: InputValidator | None = field(default=None, repr=False)
    """Checks (and may convert) the workflow input before a run is recorded; raises InvalidInputError."""
    input_schema: Any = field(default=None, repr=False)
    """What the input was declared to fit, as declared: a pydantic model (or any type pydantic validates),
    or a template's JSON Schema (a dict); None when undeclared. Shown by the REST API's definitions."""
    definition_hash: str = ""
    """A stable hash of the graph (step names, order, dependencies, how each step takes its input, what a
    wait waits for, a route's branches, the output step), computed once when built. Each run stores it,
    and refuses another definition of its workflow on its id
    (:class:`~conveyor.errors.DefinitionChangedError`). Step code is not part of it."""
    step_settings: StepSettingsHook | None = field(default=None, repr=False)
    """Adjusts steps' timeout and retries from each run's input (see :mod:`conveyor.definition.settings`);
    None for none, and then no run pays for it. Not part of the definition hash, as timeouts are not."""
    child_step_names: tuple[str, ...] = ()
    """The names of the steps that run a child workflow (found once, when built)."""

    def step(self, name: str) -> StepSpec:
        """Return the step called ``name``."""
        try:
            return self.by_name[name]
        except KeyError:
            raise DefinitionError(f"workflow {self.name!r} has no step {name!r}") from None

    def new_run_id(self) -> str:
        """A fresh ``workflow_id`` for a run of this workflow: its name and a random suffix."""
        return f"{self.name}-{uuid.uuid4().hex}"

    @property
    def output_codec(self) -> TypedCodec | None:
        """How the output is decoded: the output step's declared return type."""
        if self.output_step is None:
            return None
        return self.by_name[self.output_step].task.shape.returns

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} v{self.version} steps={list(self.step_names)}>"


def definition_hash(steps: Sequence[StepSpec], output_step: str | None) -> str:
    """The hash of a built graph: 16 hex digits of SHA-256 over its steps' names, dependencies and input
    kinds, in order, and its output step. The same definition has the same hash in every process."""
    graph = {
        "steps": [
            [step.name, list(step.depends_on), type(step.binding).__name__, list(step.binding.sources)]
            + ([] if step.waits is None else [step.waits.describe()])  # a wait step says what it waits for
            + ([] if step.control is None else [step.control.describe()])  # a route names its branches
            for step in steps
        ],
        "output": output_step,
    }
    return hashlib.sha256(orjson.dumps(graph)).hexdigest()[:16]


def _arguments(step: StepDefinition) -> ArgumentBuilder:
    """The step's argument builder, compiled once (a loop's takes its carried value after the first; a
    map's, compiled when it was declared, takes one element)."""
    if isinstance(step.task.control, Map):
        return step.task.control.arguments
    built = step.binding.compile(step.task.shape, step.name)
    if isinstance(step.task.control, Loop):
        return carried_arguments(built, step.task, step.name)
    return built


def _topological_order(workflow_name: str, steps: Sequence[StepDefinition]) -> list[StepDefinition]:
    """Order steps so each follows its dependencies, keeping declaration order where the graph allows."""
    by_name = {step.name: step for step in steps}
    remaining = {step.name: set(step.depends_on) for step in steps}
    ordered: list[StepDefinition] = []
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps]
        if not ready:
            raise DefinitionError(
                f"workflow {workflow_name!r} has a dependency cycle: {_describe_cycle(remaining)}"
            )
        for name in ready:
            ordered.append(by_name[name])
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return ordered


def _describe_cycle(remaining: Mapping[str, set[str]]) -> str:
    start = next(iter(remaining))
    path = [start]
    while True:
        following = next(iter(sorted(remaining[path[-1]])))
        if following in path:
            cycle = [*path[path.index(following) :], following]
            return " -> ".join(cycle)
        path.append(following)


def build_workflow(
    name: str,
    steps: Sequence[StepDefinition],
    *,
    version: str = "1",
    output_step: str | None = None,
    retries: RetryPolicy | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str = "",
    input_validator: InputValidator | None = None,
    step_settings: StepSettingsHook | None = None,
    input_schema: Any = None,
) -> Workflow:
    """Check ``steps`` form a valid graph and return the immutable :class:`Workflow`.

    Raises :class:`~conveyor.errors.DefinitionError` for an empty workflow, a duplicate or unknown step
    name, a cycle, or a step whose function cannot take the arguments it will be given; and for a
    ``step_settings`` that is not a function.
    """
    step_settings = check_hook(step_settings, f"workflow {name!r}")
    check_name(name, "a workflow's name")
    version = check_name(str(version), f"the version of workflow {name!r}")
    if not steps:
        raise DefinitionError(f"workflow {name!r} has no steps")
    seen: set[str] = set()
    for step in steps:
        check_name(step.name, f"a step name in workflow {name!r}")
        if step.name in seen:
            raise DefinitionError(
                f"step {step.name!r} appears twice in workflow {name!r}; give one of them another "
                "name (name=...)"
            )
        seen.add(step.name)
    definitions = []
    for step in steps:
        depends_on = tuple(dict.fromkeys((*step.depends_on, *step.binding.sources)))
        for dependency in depends_on:
            if dependency not in seen:
                raise DefinitionError(
                    f"step {step.name!r} of workflow {name!r} depends on {dependency!r}, "
                    "which the workflow does not have"
                )
            if dependency == step.name:
                raise DefinitionError(f"step {step.name!r} of workflow {name!r} depends on itself")
        definitions.append(StepDefinition(step.name, step.task, step.binding, depends_on))
    if output_step is not None and output_step not in seen:
        raise DefinitionError(f"the output step {output_step!r} is not a step of workflow {name!r}")
    default_retries = retries or NO_RETRIES
    default_compensation_retries = compensation_retries or DEFAULT_COMPENSATION_RETRIES
    built = tuple(
        StepSpec(
            name=step.name,
            index=index,
            task=step.task,
            depends_on=step.depends_on,
            binding=step.binding,
            build_arguments=_arguments(step),
            retries=step.task.retries or default_retries,
            compensation_retries=step.task.compensation_retries or default_compensation_retries,
            timeout_seconds=step.task.timeout_seconds,
            runs_inline=(
                not step.task.shape.is_async
                and step.task.timeout_seconds is None
                and step.task.waits is None
                and step.task.control is None
            ),
            waits=step.task.waits,
            control=step.task.control,
            runs_child=isinstance(step.task.waits, ChildRun),
        )
        for index, step in enumerate(_topological_order(name, definitions))
    )
    return Workflow(
        name=name,
        version=version,
        steps=built,
        output_step=output_step,
        description=description,
        by_name=MappingProxyType({step.name: step for step in built}),
        step_names=tuple(step.name for step in built),
        input_validator=input_validator,
        input_schema=input_schema,
        definition_hash=definition_hash(built, output_step),
        step_settings=step_settings,
        child_step_names=tuple(step.name for step in built if step.runs_child),
        is_chain=all(
            step.depends_on == ((built[index - 1].name,) if index else ()) for index, step in enumerate(built)
        ),
    )
