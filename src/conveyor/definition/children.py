"""Child workflows: a step that runs another workflow as a run of its own and waits for its result.

``Flow.then_flow(shipping)`` (Sayiir's name) adds such a step to a flow: the child's input is the previous
step's result, and the step's result is the child's output. In a workflow class, ``ship = child("shipping",
version="2", input=from_result("pack"))`` does the same by name (the runtime's registry finds it when the
step starts; without ``version``, its newest version then). Like a sleep or a wait for a signal, the step is
a :class:`~conveyor.definition.workflow.StepSpec` whose ``waits`` is set, and the engine moves it (see
:mod:`conveyor.engine.children`): it starts the child run, under an id made from the parent's id and the
step's name (so a crash never starts two), and hands the parent back until the child ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.definition.arguments import FromInput, FromResult, FromResults, Source, from_input
from conveyor.definition.names import check_name
from conveyor.errors import DefinitionError

if TYPE_CHECKING:
    from conveyor.definition.workflow import Workflow

CHILD_INPUT = "value"
"""The one parameter a child step's input is bound to (the value the child run is started with)."""


@dataclass(frozen=True, slots=True)
class ChildRun:
    """What a child step runs: the workflow ``name`` (``version`` of it, else the newest when it starts).

    ``workflow`` is set when the step was given the workflow itself (``then_flow(shipping)``); else the
    runtime's registry (or the worker's workflows) resolves the name when the step starts.
    """

    name: str
    version: str | None
    workflow: Workflow | None = field(default=None, compare=False)

    def describe(self) -> list[Any]:
        """What the definition hash sees of it: the child's name and the version asked for."""
        return ["child", self.name, self.version]


def child_run_id(parent_id: str, step_name: str, generation: int = 0) -> str:
    """The id of the child run that step ``step_name`` of run ``parent_id`` starts: the same every time the
    step is moved (a crash never starts two); a parent retried by hand (``generation``) starts a new one."""
    suffix = f"~retry{generation}" if generation else ""
    return f"{parent_id}/{step_name}{suffix}"


def child_run(workflow: Any, version: str | int | None, *, what: str) -> ChildRun:
    """Check what a child step names: a built workflow, a workflow class, or a registered name."""
    built = getattr(workflow, "workflow", workflow)
    version_text = None if version is None else check_name(str(version), f"the version asked for by {what}")
    if isinstance(workflow, str):
        return ChildRun(check_name(workflow, f"the workflow {what} runs"), version_text)
    from conveyor.definition.workflow import Workflow

    if not isinstance(built, Workflow):
        raise DefinitionError(
            f"{what} runs a built workflow, a workflow class or a registered workflow's name, "
            f"not {workflow!r}"
        )
    if version_text is not None and version_text != built.version:
        raise DefinitionError(
            f"{what} is given workflow {built.name!r} v{built.version}, but asks for version {version_text!r}"
        )
    return ChildRun(built.name, built.version, built)


def child_steps(workflow: Workflow | None) -> tuple[str, ...]:
    """The names of ``workflow``'s child steps (none without a workflow)."""
    return () if workflow is None else workflow.child_step_names


def with_children(workflows: Iterable[Workflow]) -> list[Workflow]:
    """``workflows`` and every workflow their child steps were given (not by name), theirs too, once each."""
    found: dict[tuple[str, str], Workflow] = {}
    pending = list(workflows)
    while pending:
        workflow = pending.pop(0)
        key = (workflow.name, workflow.version)
        if key in found:
            continue
        found[key] = workflow
        pending.extend(
            spec.waits.workflow
            for spec in workflow.steps
            if isinstance(spec.waits, ChildRun) and spec.waits.workflow is not None
        )
    return list(found.values())


def child_input_source(input: Source | None, what: str) -> Source:
    """The source a class's child step takes its child's input from (the workflow input by default)."""
    if input is None:
        return from_input()
    if not isinstance(input, FromInput | FromResult | FromResults):
        raise DefinitionError(
            f"input= of {what} takes from_input(), from_result() or from_results(), not {input!r}"
        )
    return input
