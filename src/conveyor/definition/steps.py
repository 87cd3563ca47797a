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

from conveyor.definition.arguments import Arguments, Named, Source
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
    docstring).
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
        )

    if fn is not None:
        return declare(fn)
    return declare
