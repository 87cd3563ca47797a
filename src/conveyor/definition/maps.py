"""Maps: a step whose function is called once per element of a list computed at run time (fan-out).

``Flow.map(reserve_line, max_concurrency=4)`` (or ``@map_step(over=..., max_concurrency=4)`` in a workflow
class) adds a step that receives a list and calls its function once per element, up to ``max_concurrency``
at once; the step's result is the list of the elements' results, in the order of the input. Each element's
result is checkpointed on its own, in the step's ``progress`` (see :mod:`conveyor.core.map_progress`), so a
crash runs again only the elements that had not finished; each element has an idempotency key of its own
(the step's, then ``:i``); an undo runs once per element that succeeded, newest first.

What the front ends build here: the :class:`Map` a step's spec carries as its ``control``, with the two
argument builders the engine uses, both compiled once when the workflow is declared: ``items`` reads the
list, ``arguments`` makes an element's call (the element is handed to it among the results, under
:func:`element_key`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.codec import TypedCodec
from conveyor.definition.binding import ArgumentBuilder, Binding, FromPrevious
from conveyor.definition.task import CallableShape, Parameter, TaskSpec
from conveyor.errors import DefinitionError

DEFAULT_MAX_CONCURRENCY = 10
"""How many elements of a map run at once when its declaration does not say."""


def _no_call() -> None:  # pragma: no cover - the list reader's shape is never called
    return None


_ITEMS_SHAPE = CallableShape(
    fn=_no_call,
    is_async=False,
    parameters=(Parameter("items", TypedCodec(Any), False),),
    context_parameter=None,
    accepts_var_keyword=False,
    returns=TypedCodec(Any),
)
"""A one-parameter shape taking any JSON value: what the list is read with, before it is checked."""

ITEMS_PARAMETER = "items"
"""The parameter name the list is read under, for a binding by name (a workflow class's ``over=``)."""


@dataclass(frozen=True, slots=True)
class Map:
    """A map step: at most ``max_concurrency`` elements at once. ``element`` decodes one element's result
    (for its undo); ``items`` reads the list the step maps over, ``arguments`` builds an element's call."""

    max_concurrency: int
    element: TypedCodec = field(compare=False, repr=False)
    items: ArgumentBuilder = field(compare=False, repr=False)
    arguments: ArgumentBuilder = field(compare=False, repr=False)

    def read_items(self, workflow_input: str, results: typing.Mapping[str, str]) -> Any:
        """The value the step maps over (plain JSON values; the engine checks it is a list)."""
        args, kwargs = self.items(workflow_input, results)
        return args[0] if args else kwargs[ITEMS_PARAMETER]

    def describe(self) -> list[Any]:
        """What the definition hash sees of it."""
        return ["map", self.max_concurrency]


def check_max_concurrency(max_concurrency: object, what: str) -> int:
    """``max_concurrency`` if it is a whole number of at least 1; else a DefinitionError naming ``what``."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise DefinitionError(
            f"max_concurrency of {what} must be a whole number, at least 1, not {max_concurrency!r}"
        )
    return max_concurrency


def element_key(step_name: str) -> str:
    """Where, among the results an element's arguments are built from, the element is (a NUL, which no step
    name holds, keeps it apart from every step's result)."""
    return step_name + "\0element"


def element_flight(step_name: str, index: int) -> str:
    """The name an element's call is in flight under (``in_flight`` of the driver, decide and settle)."""
    return f"{step_name}\0{index}"


def flying_elements(step_name: str, in_flight: typing.AbstractSet[str]) -> set[int]:
    """The elements of the map ``step_name`` whose calls are in flight."""
    prefix = step_name + "\0"
    return {int(name[len(prefix) :]) for name in in_flight if name.startswith(prefix)}


def map_task(
    spec: TaskSpec, max_concurrency: int, over: Binding, each: Binding | None, what: str
) -> TaskSpec:
    """``spec`` made a map step over the list ``over`` reads: its function takes one element in its first
    parameter (``each`` binds its arguments with the element under :func:`element_key`; by default the
    element is its one value), and the step's result is a list of what it returns."""
    shape = spec.shape
    if not shape.parameters:
        raise DefinitionError(f"the function of {what} takes no value; it receives one element of the list")
    if each is None:
        if len(shape.required) > 1:
            names = ", ".join(p.name for p in shape.required)
            raise DefinitionError(
                f"the function of {what} takes {len(shape.required)} arguments ({names}), but it receives "
                "one element of the list at a time; give the others defaults"
            )
        each = FromPrevious(element_key(spec.name))
    returns = shape.returns.annotation
    element = shape.returns
    control = Map(
        check_max_concurrency(max_concurrency, what),
        element=element,
        items=over.compile(_ITEMS_SHAPE, spec.name),
        arguments=each.compile(shape, spec.name),
    )
    listed = TypedCodec(Any if returns is Any else list[returns])  # type: ignore[valid-type]
    return replace(spec, shape=replace(shape, returns=listed), control=control)
