"""Compiling a workflow class into a :class:`~conveyor.definition.workflow.Workflow`, once, when defined.

:func:`compile_class` collects the steps a class declares and inherits (base classes' first; a subclass
that overrides a step keeps its place), checks the class can be created with no arguments, and builds one
step per ``@step`` method: its function (the method called on a fresh instance), its undo, its options, and
its arguments (a parameter left unbound takes the same-named field of the workflow input).

The steps run in the order they are declared: each waits for every step declared before it (it depends on
the steps that nothing declared after them waits for yet, which is the one before it when none is
parallel). A ``parallel=True`` step waits only for what it reads and its ``after=``. Either way a step may
wait only for steps declared before it, so the graph follows the page and cannot have a cycle.

A route (``@route``) and the steps declared ``@step(when=(route, key))`` after it make the route's
branches, each the steps of one key in declaration order; a step of a branch always waits for its route,
and only steps of the same branch may read its results (others read ``from_route(route)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from conveyor.definition.arguments import Arguments, FromResult, Source, from_input
from conveyor.definition.binding import pydantic_input_validator
from conveyor.definition.class_routes import class_routes, resolve_route_source
from conveyor.definition.control import Route
from conveyor.definition.loops import loop_task
from conveyor.definition.maps import ITEMS_PARAMETER, element_key, map_task
from conveyor.definition.method_calls import step_caller, undo_caller
from conveyor.definition.registry import qualified_name
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.steps import LoopStepMethod, MapStepMethod, StepMethod
from conveyor.definition.task import make_task_spec
from conveyor.definition.waits import WaitStepMethod, wait_task
from conveyor.definition.workflow import StepDefinition, Workflow, build_workflow
from conveyor.errors import DefinitionError

if TYPE_CHECKING:
    from conveyor.definition.workflow_class import WorkflowClass


def compile_class(cls: type[WorkflowClass]) -> Workflow:
    """Turn the steps ``cls`` declares and inherits into a :class:`Workflow`."""
    where = f"saga {cls.__name__}"
    _check_instantiable(cls, where)
    for option in ("retry_defaults", "compensation_retry_defaults"):
        value = getattr(cls, option)
        if value is not None and not isinstance(value, RetryPolicy):
            raise DefinitionError(f"{option} of {where} must be a RetryPolicy, not {value!r}")
    declared = declarations(cls)
    methods = [step for step, _ in declared.values()]
    order = declaration_order(cls, methods)
    routes = class_routes(cls, methods)
    steps = [_step_definition(cls, step, undo, order[step.name], routes) for step, undo in declared.values()]
    if not steps:
        raise DefinitionError(f"{where} declares no steps; decorate its step methods with @step")
    name = cls.workflow_name or cls.__name__
    schema = cls.input_schema
    return build_workflow(
        qualified_name(cls.namespace, name),
        steps,
        version=str(cls.version),
        retries=cls.retry_defaults,
        compensation_retries=cls.compensation_retry_defaults,
        description=inspect.cleandoc(cls.__doc__ or ""),
        input_validator=None if schema is None else pydantic_input_validator(schema),
        input_schema=schema,
        step_settings=_settings_hook(cls, where),
    )


def _settings_hook(cls: type, where: str) -> Callable[[Any], Any] | None:
    """``step_settings(self, input)`` of ``cls`` (or a base), called on a fresh instance; None if none."""
    function = inspect.getattr_static(cls, "step_settings", None)
    if function is None:
        return None
    if not inspect.isfunction(function):
        raise DefinitionError(
            f"step_settings of {where} must be a method defined with def, taking (self, input)"
        )
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        raise DefinitionError(f"step_settings of {where} must take (self, input)") from None
    if inspect.iscoroutinefunction(function):
        raise DefinitionError(
            f"step_settings of {where} must be a plain def (it runs before each drive), not async"
        )

    def step_settings(run_input: Any) -> Any:
        return function(cls(), run_input)

    return step_settings


def declarations(cls: type) -> dict[str, tuple[StepMethod, str | None]]:
    """Every step ``cls`` has, in declaration order (base classes' first), with the name of its undo method.

    A step redeclared or overridden in a subclass keeps the place it has in the base class. A step may not
    take the name of an attribute that a base class defines and that is not a step (``run``, ``workflow``,
    ``version``, a helper method ...): the step would hide it.
    """
    declared: dict[str, tuple[StepMethod, str | None]] = {}
    taken: dict[str, type] = {"workflow": cls}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, StepMethod):
                if name in taken:
                    raise DefinitionError(
                        f"a step of {klass.__name__} may not be called {name!r}: "
                        f"{taken[name].__name__} has an attribute of that name"
                    )
                inherited = declared[name][1] if name in declared else None
                declared[name] = (value, value.undo_name or inherited)
            elif name not in declared:
                taken.setdefault(name, klass)
    return declared


def declaration_order(cls: type, steps: list[StepMethod]) -> dict[str, tuple[str, ...]]:
    """What each of ``steps`` (in declaration order) waits for: the steps before it, unless it is parallel,
    and its ``after=``. Refuses a step that reads or waits for a step declared after it."""
    position = {step.name: index for index, step in enumerate(steps)}
    waits: dict[str, tuple[str, ...]] = {}
    before: dict[str, set[str]] = {}  # every step each one waits for, directly or not
    open_ends: list[str] = []  # the steps declared so far that none declared after them waits for
    for index, step in enumerate(steps):
        explicit = (*step.after, *Arguments(dict(step.bindings)).sources)
        for name in explicit:
            if position.get(name, -1) > index:
                raise DefinitionError(
                    f"step {step.name!r} of saga {cls.__name__} waits for {name!r}, which is declared after "
                    f"it; the steps of a class run in the order they are declared, so declare {name!r} first"
                )
        implicit = () if step.parallel else tuple(open_ends)
        waits[step.name] = tuple(dict.fromkeys((*implicit, *step.after)))
        known = [name for name in (*implicit, *explicit) if name in before]
        before[step.name] = set(known).union(*(before[name] for name in known))
        open_ends = [name for name in open_ends if name not in before[step.name]]
        open_ends.append(step.name)
    return waits


def _check_instantiable(cls: type, where: str) -> None:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise DefinitionError(
            f"{where} is created with no arguments for each step, but its __init__ requires {required}"
        )


def _method(cls: type, name: str, what: str) -> Callable[..., Any]:
    """The function ``cls`` has under ``name`` (a subclass's override wins)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            value = vars(klass)[name]
            function = value.fn if isinstance(value, StepMethod) else value
            if inspect.isfunction(function):
                return function
            raise DefinitionError(f"{what} must be a method defined with def, not {value!r}")
    raise DefinitionError(f"{what} ({name!r}) is not defined on {cls.__name__}")


def _step_definition(
    cls: type,
    declared: StepMethod,
    undo_name: str | None,
    waits_for: tuple[str, ...],
    routes: dict[str, Route],
) -> StepDefinition:
    name = declared.name
    if declared.when is not None:  # a step of a route's branch waits for its route, whatever it reads
        waits_for = tuple(dict.fromkeys((*waits_for, declared.when[0])))
    if isinstance(declared, WaitStepMethod):  # a sleep or a wait for a signal: nothing of the class is called
        if undo_name is not None:
            raise DefinitionError(f"wait step {name!r} of {cls.__name__} cannot have an undo")
        task = wait_task(name, declared.wait, retries=declared.retries)
        return StepDefinition(name, task, Arguments(dict(declared.bindings)), depends_on=waits_for)
    fn = _method(cls, name, f"step {name!r} of {cls.__name__}")
    undo = None
    if undo_name is not None:
        undo_fn = _method(cls, undo_name, f"the undo of step {name!r} of {cls.__name__}")
        undo = undo_caller(cls, name, undo_fn)
    spec = make_task_spec(
        step_caller(cls, name, fn),
        name=name,
        retries=declared.retries,
        timeout_secs=declared.timeout_secs,
        compensate=undo,
        compensation_retries=declared.compensation_retries,
        description=declared.description if declared.description is not None else inspect.getdoc(fn) or "",
    )
    if name in routes:
        spec = replace(spec, control=routes[name])
    if isinstance(declared, LoopStepMethod):
        spec = loop_task(spec, declared.loop, f"loop {name!r} of {cls.__name__}")
    bindings: dict[str, Source] = {
        parameter: resolve_route_source(source, routes, f"step {name!r} of {cls.__name__}")
        for parameter, source in declared.bindings
    }
    for parameter in spec.shape.parameters:
        bindings.setdefault(parameter.name, from_input(parameter.name))
    if isinstance(declared, MapStepMethod):  # the element comes in its first parameter, the list from over=
        element = declared.element_parameter
        over = Arguments({ITEMS_PARAMETER: bindings[element]})
        each = Arguments({**bindings, element: FromResult(element_key(name))})
        spec = map_task(spec, declared.max_concurrency, over, each, f"map step {name!r} of {cls.__name__}")
    return StepDefinition(name, spec, Arguments(bindings), depends_on=waits_for)
