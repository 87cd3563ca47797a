"""The ``@step`` declaration: :func:`step` marks a method of a workflow class as one of its steps.

::

    @step(order=from_result("validate_order", "order"), retries=RetryPolicy(max_attempts=2))
    def process_payment(self, order: Order) -> dict[str, str]: ...

    @process_payment.undo
    def refund_payment(self, payment_id: str, **_: Any) -> None: ...

The decorator only records what the method declares (its bindings, options and undo) in a
:class:`StepMethod`; the class is turned into a workflow when it is defined (see
:mod:`conveyor.definition.class_compiler`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, overload

from conveyor.definition.arguments import (
    Arguments,
    FromInput,
    FromResult,
    FromResults,
    FromRouteResult,
    Named,
    Source,
)
from conveyor.definition.loops import Loop, OnMax, check_loop
from conveyor.definition.maps import DEFAULT_MAX_CONCURRENCY, check_max_concurrency
from conveyor.definition.retry import RetryPolicy
from conveyor.errors import DefinitionError


class StepMethod:
    """A method declared as a step with :func:`step`. Read from an instance, it is the plain method."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        bindings: Mapping[str, Source],
        after: tuple[str, ...],
        parallel: bool,
        retries: RetryPolicy | None,
        timeout_secs: float | timedelta | None,
        compensation_retries: RetryPolicy | None,
        description: str | None,
        when: object = None,
    ) -> None:
        if not inspect.isfunction(fn):
            raise DefinitionError(f"@step decorates a method defined with def, not {fn!r}")
        self.fn = fn
        self.bindings = Arguments(dict(bindings)).by_parameter
        self.after = after
        if not isinstance(parallel, bool):
            raise DefinitionError(f"parallel= of step {fn.__name__!r} must be a bool, not {parallel!r}")
        self.parallel = parallel
        self.retries = retries
        self.timeout_secs = timeout_secs
        self.compensation_retries = compensation_retries
        self.description = description
        self.when = _when(when, fn.__name__)
        """``(route step, key)``: the step runs only when that route chooses that branch."""
        self.undo_name: str | None = None
        self.owner: type | None = None

    @property
    def name(self) -> str:
        """The step's name: the method's name."""
        return self.fn.__name__

    def undo(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Declare the method ``fn`` as this step's undo (used as ``@reserve_inventory.undo``)."""
        if self.owner is not None:
            raise DefinitionError(
                f"the undo of step {self.name!r} is declared in {self.owner.__name__}; a subclass changes it "
                "by overriding the undo method, not with .undo"
            )
        if not inspect.isfunction(fn):
            raise DefinitionError(f"the undo of step {self.name!r} must be a method defined with def")
        self.undo_name = fn.__name__
        return fn

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.fn.__name__:
            raise DefinitionError(f"step {self.fn.__name__!r} is assigned to {name!r}; keep one name")
        self.owner = owner

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return self.fn.__get__(instance, owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name!r}>"


def _when(when: object, name: str) -> tuple[str, str] | None:
    """Check ``when=("route_step", "key")`` (the route may be given as its step method)."""
    if when is None:
        return None
    if isinstance(when, tuple | list) and len(when) == 2 and isinstance(when[1], str) and when[1]:
        route = when[0] if isinstance(when[0], str) else getattr(when[0], "name", None)
        if isinstance(route, str) and route:
            return (route, when[1])
    raise DefinitionError(
        f"when= of step {name!r} must be (route step, branch key), such as ('shipping', 'express'), "
        f"not {when!r}"
    )


def _names(after: str | Named | Sequence[str | Named]) -> tuple[str, ...]:
    items = [after] if isinstance(after, str) or not isinstance(after, Sequence) else list(after)
    names = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"after= takes step names or steps, not {item!r}")
        names.append(name)
    return tuple(names)


@overload
def step(fn: Callable[..., Any], /) -> StepMethod: ...
@overload
def step(
    *,
    after: str | Named | Sequence[str | Named] = (),
    parallel: bool = False,
    retries: RetryPolicy | None = None,
    timeout_secs: float | timedelta | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    arguments: Mapping[str, Source] | None = None,
    when: tuple[str | Named, str] | None = None,
    **bindings: Source,
) -> Callable[[Callable[..., Any]], StepMethod]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    after: str | Named | Sequence[str | Named] = (),
    parallel: bool = False,
    retries: RetryPolicy | None = None,
    timeout_secs: float | timedelta | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    arguments: Mapping[str, Source] | None = None,
    when: tuple[str | Named, str] | None = None,
    **bindings: Source,
) -> Any:
    """Declare a method of a workflow class (a :class:`~conveyor.Saga`) as a step.

    A step runs after every step declared before it. With ``parallel=True`` it waits only for the steps
    it reads and those it names in ``after``, so it may run alongside the steps declared just before it;
    the next step without ``parallel`` waits for all of them again.

    Keyword arguments bind parameters: ``@step(order=from_result("validate_order", "order"))``; a parameter
    whose name is one of the options below is bound with ``arguments={"retries": from_input()}`` instead.
    Options: ``after`` (steps to wait for without reading them), ``parallel``, ``retries`` (overrides the
    class's ``retry_defaults``), ``timeout_secs``, ``compensation_retries``, ``description`` (else the
    docstring), ``when=("shipping", "express")`` (the step runs only when the route step ``shipping``
    chooses the branch ``express``; else it is ``skipped``; see :func:`route`).
    """

    def declare(function: Callable[..., Any]) -> StepMethod:
        return StepMethod(
            function,
            bindings={**(arguments or {}), **bindings},
            after=_names(after),
            parallel=parallel,
            retries=retries,
            timeout_secs=timeout_secs,
            compensation_retries=compensation_retries,
            description=description,
            when=when,
        )

    if fn is not None:
        return declare(fn)
    return declare


class RouteStepMethod(StepMethod):
    """A method declared as a route with :func:`route`: it returns the key of the branch to run."""

    def __init__(self, fn: Callable[..., Any], *, default: str | None, **options: Any) -> None:
        super().__init__(fn, **options)
        if default is not None and (not isinstance(default, str) or not default):
            raise DefinitionError(f"default= of route {self.name!r} must be a branch key, not {default!r}")
        self.default = default

    def __repr__(self) -> str:
        return f"<route {self.name!r}>"


def route(
    *,
    default: str | None = None,
    after: str | Named | Sequence[str | Named] = (),
    retries: RetryPolicy | None = None,
    timeout_secs: float | timedelta | None = None,
    description: str | None = None,
    arguments: Mapping[str, Source] | None = None,
    **bindings: Source,
) -> Callable[[Callable[..., Any]], RouteStepMethod]:
    """Declare a method of a workflow class as a route: it returns the key of the branch to run.

    A branch is the steps declared ``@step(when=(route, key))``, in order; the steps of the other branches
    are ``skipped`` when the route step completes (its result is the chosen key). ``default`` names the
    branch for a key that names none; without it such a key fails the route step
    (:class:`~conveyor.errors.RouteKeyError`). A step after the branches reads the chosen branch's result
    with :func:`~conveyor.from_route`. Its parameters are bound as a ``@step``'s are.
    """

    def declare(function: Callable[..., Any]) -> RouteStepMethod:
        return RouteStepMethod(
            function,
            default=default,
            bindings={**(arguments or {}), **bindings},
            after=_names(after),
            parallel=False,
            retries=retries,
            timeout_secs=timeout_secs,
            compensation_retries=None,
            description=description,
        )

    return declare


class LoopStepMethod(StepMethod):
    """A method declared as a loop with :func:`loop`: it returns ``LoopResult.again`` or ``.done``."""

    def __init__(self, fn: Callable[..., Any], *, loop: Loop, **options: Any) -> None:
        super().__init__(fn, **options)
        self.loop = loop

    def __repr__(self) -> str:
        return f"<loop {self.name!r}>"


def loop(
    *,
    max_iterations: int,
    on_max: OnMax = "fail",
    after: str | Named | Sequence[str | Named] = (),
    parallel: bool = False,
    retries: RetryPolicy | None = None,
    timeout_secs: float | timedelta | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    arguments: Mapping[str, Source] | None = None,
    **bindings: Source,
) -> Callable[[Callable[..., Any]], LoopStepMethod]:
    """Declare a method of a workflow class as a loop: it returns ``LoopResult.again(value)`` to be called
    again, or ``LoopResult.done(value)`` (the step's result).

    Its parameters are bound as a ``@step``'s are for the first iteration; each later iteration gets the
    value passed on in its first parameter (the others bound as before). Options as for :func:`step`, and
    ``max_iterations`` / ``on_max`` as for :meth:`conveyor.Flow.loop`. An undo (``@name.undo``) gets the
    loop's final result.
    """
    checked = check_loop(max_iterations, on_max, "a loop step")

    def declare(function: Callable[..., Any]) -> LoopStepMethod:
        return LoopStepMethod(
            function,
            loop=checked,
            bindings={**(arguments or {}), **bindings},
            after=_names(after),
            parallel=parallel,
            retries=retries,
            timeout_secs=timeout_secs,
            compensation_retries=compensation_retries,
            description=description,
        )

    return declare


class MapStepMethod(StepMethod):
    """A method declared as a map with :func:`map_step`: called once per element of the list ``over`` names,
    the element in its first parameter (bound to ``over`` here, so the class sees what the step reads)."""

    def __init__(self, fn: Callable[..., Any], *, over: Source, max_concurrency: int, **options: Any) -> None:
        parameters = list(inspect.signature(fn).parameters) if inspect.isfunction(fn) else []
        name = getattr(fn, "__name__", repr(fn))
        if len(parameters) < 2:
            raise DefinitionError(
                f"map step {name!r} takes no element; its first parameter after self gets one"
            )
        self.element_parameter = parameters[1]
        """The parameter each element of the list is given in."""
        bindings = dict(options.pop("bindings"))
        if self.element_parameter in bindings:
            raise DefinitionError(
                f"map step {name!r} binds {self.element_parameter!r}, the parameter each element of over= is "
                "given in; bind only its other parameters"
            )
        super().__init__(fn, bindings={self.element_parameter: over, **bindings}, **options)
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        return f"<map step {self.name!r}>"


def map_step(
    *,
    over: Source,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    after: str | Named | Sequence[str | Named] = (),
    parallel: bool = False,
    retries: RetryPolicy | None = None,
    timeout_secs: float | timedelta | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    arguments: Mapping[str, Source] | None = None,
    **bindings: Source,
) -> Callable[[Callable[..., Any]], MapStepMethod]:
    """Declare a method of a workflow class as a map (a fan-out): it is called once per element of the list
    ``over`` names (``from_result("validate", "lines")``, ``from_input("lines")``...), the element in its
    first parameter, up to ``max_concurrency`` at once; the step's result is the list of its results, in
    the order of the list.

    Its other parameters are bound as a ``@step``'s are; options as for :func:`step`, and
    ``max_concurrency`` as for :meth:`conveyor.Flow.map`. Each element is checkpointed, keyed (``:i``) and
    retried on its own; an undo (``@name.undo``) runs once per element that succeeded, newest first, with
    that element's result (its fields by name) and the step's arguments, the element included.
    """
    limit = check_max_concurrency(max_concurrency, "a map step")
    if not isinstance(over, FromInput | FromResult | FromResults | FromRouteResult):
        raise DefinitionError(
            "over= of a map step names the list it maps over: from_input(), from_result(), from_results() or "
            f"from_route(), not {over!r}"
        )

    def declare(function: Callable[..., Any]) -> MapStepMethod:
        return MapStepMethod(
            function,
            over=over,
            max_concurrency=limit,
            bindings={**(arguments or {}), **bindings},
            after=_names(after),
            parallel=parallel,
            retries=retries,
            timeout_secs=timeout_secs,
            compensation_retries=compensation_retries,
            description=description,
        )

    return declare
