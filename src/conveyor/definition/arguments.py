"""Named arguments for a step, each taken from the workflow input or from another step's result.

``Arguments(order=from_result("validate_order", "order"), order_id=from_input("order_id"))`` gives the
step ``order`` (the field ``order`` of the result of ``validate_order``) and ``order_id`` (the field
``order_id`` of the workflow input). A source names the whole value (``from_input()``,
``from_result("validate_order")``) or one top-level field of it, ``from_results("a", "b")`` gives
``{"a": result of a, "b": result of b}``, and ``from_route("shipping")`` the result of the branch the
route step ``shipping`` chose. Every step a source reads becomes a dependency of the step.

Each value is decoded into the type its parameter declares. A field that is absent leaves the parameter's
default; without a default, the step fails at once with a :class:`~conveyor.errors.StepInputError` naming
the field. The binding is compiled once per step into a builder that only fetches and decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import pydantic

from conveyor.codec import TypedCodec
from conveyor.definition.binding import ArgumentBuilder, decode_argument, describe_validation_error
from conveyor.definition.control import FromRoute
from conveyor.definition.task import CallableShape, Parameter
from conveyor.errors import DefinitionError, StepInputError


class Named(Protocol):
    """Anything with a step name: a task, or a step method of a saga class."""

    @property
    def name(self) -> str:
        """The step's name."""
        ...


@dataclass(frozen=True, slots=True)
class FromInput:
    """The workflow input, or its top-level ``field``."""

    field: str | None = None

    def describe(self) -> str:
        """Say, for error messages, what this source reads."""
        return "the workflow input" if self.field is None else f"field {self.field!r} of the workflow input"


@dataclass(frozen=True, slots=True)
class FromResult:
    """The result of ``step``, or its top-level ``field``."""

    step: str
    field: str | None = None

    def describe(self) -> str:
        """Say, for error messages, what this source reads."""
        whole = f"the result of {self.step!r}"
        return whole if self.field is None else f"field {self.field!r} of {whole}"


@dataclass(frozen=True, slots=True)
class FromResults:
    """A dict of the results of ``steps``, keyed by step name."""

    steps: tuple[str, ...]

    def describe(self) -> str:
        """Say, for error messages, what this source reads."""
        return "the results of " + ", ".join(repr(step) for step in self.steps)


@dataclass(frozen=True, slots=True)
class FromRouteResult:
    """The result of the branch the route step ``route`` chose (its last step's), or its ``field``.

    ``choices`` (each branch's key and last step) is filled in when the workflow class is compiled.
    """

    route: str
    field: str | None = None
    choices: tuple[tuple[str, str | None], ...] = ()

    def describe(self) -> str:
        """Say, for error messages, what this source reads."""
        whole = f"the result of the branch route {self.route!r} chose"
        return whole if self.field is None else f"field {self.field!r} of {whole}"


Source = FromInput | FromResult | FromResults | FromRouteResult
"""Where one argument comes from."""


def _step_name(step: str | Named, what: str) -> str:
    name = step if isinstance(step, str) else getattr(step, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(f"{what} needs a step name or a step, not {step!r}")
    return name


def _field_name(field: str | None, what: str) -> str | None:
    if field is not None and (not isinstance(field, str) or not field):
        raise DefinitionError(f"the field of {what} must be a non-empty string, not {field!r}")
    return field


def from_input(field: str | None = None) -> FromInput:
    """The workflow input (``from_input()``) or one of its top-level fields (``from_input("order_id")``)."""
    return FromInput(_field_name(field, "from_input()"))


def from_result(step: str | Named, field: str | None = None) -> FromResult:
    """The result of ``step`` (a name, a task or a step method), or one of its top-level fields."""
    name = _step_name(step, "from_result()")
    return FromResult(name, _field_name(field, f"from_result({name!r})"))


def from_results(*steps: str | Named) -> FromResults:
    """A dict holding the result of each of ``steps``, keyed by step name."""
    names = tuple(_step_name(step, "from_results()") for step in steps)
    if not names:
        raise DefinitionError("from_results() needs at least one step")
    return FromResults(tuple(dict.fromkeys(names)))


def from_route(route: str | Named, field: str | None = None) -> FromRouteResult:
    """The result of the branch the route step ``route`` chose (a name or the route's step method), or one
    of its top-level fields: what a step after a route reads, whichever branch ran."""
    name = _step_name(route, "from_route()")
    return FromRouteResult(name, _field_name(field, f"from_route({name!r})"))


def _convert(parameter: Parameter, value: Any, step_name: str, source: Source) -> Any:
    """Convert an already decoded JSON value for ``parameter``, as :func:`decode_argument` does for text."""
    try:
        return parameter.codec.convert(value)
    except pydantic.ValidationError as exc:
        raise StepInputError(
            f"{source.describe()} does not fit parameter {parameter.name!r} of step {step_name!r}: "
            f"{describe_validation_error(exc)}",
            step_name=step_name,
        ) from exc


@dataclass(frozen=True, slots=True)
class _Fetch:
    """How one argument is fetched: from which text, which field, decoded for which parameter."""

    parameter: Parameter
    source: Source
    step: str | None
    """The step whose result is read; ``None`` for the workflow input."""
    field: str | None
    joined: tuple[tuple[str, str], ...] = ()
    """For :class:`FromResults`: the JSON key prefix of each step's result, and the step."""
    route: FromRoute | None = None
    """For :class:`FromRouteResult`: how the chosen branch's result is found."""


class Arguments:
    """A binding that gives a step keyword arguments, each from the input or another step's result.

    ``Arguments(order=from_result("validate_order", "order"))``; a mapping may be passed positionally
    instead, for parameter names that are not valid keywords.
    """

    __slots__ = ("by_parameter",)

    def __init__(self, mapping: Mapping[str, Source] | None = None, /, **sources: Source) -> None:
        merged = {**(mapping or {}), **sources}
        for name, source in merged.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise DefinitionError(f"an argument name must be a Python identifier, not {name!r}")
            if not isinstance(source, FromInput | FromResult | FromResults | FromRouteResult):
                raise DefinitionError(
                    f"argument {name!r} needs a source made by from_input(), from_result(), "
                    f"from_results() or from_route(), not {source!r}"
                )
        self.by_parameter: tuple[tuple[str, Source], ...] = tuple(merged.items())

    @property
    def sources(self) -> tuple[str, ...]:
        """The steps whose results the arguments read (the step depends on each)."""
        steps: list[str] = []
        for _name, source in self.by_parameter:
            if isinstance(source, FromResult):
                steps.append(source.step)
            elif isinstance(source, FromResults):
                steps.extend(source.steps)
            elif isinstance(source, FromRouteResult):
                steps.extend((source.route, *(step for _key, step in source.choices if step is not None)))
        return tuple(dict.fromkeys(steps))

    def compile(self, shape: CallableShape, step_name: str) -> ArgumentBuilder:
        """Check every parameter of ``shape`` has a source and return the builder of its arguments."""
        parameters = {parameter.name: parameter for parameter in shape.parameters}
        bound = dict(self.by_parameter)
        for name in bound:
            if name not in parameters and not shape.accepts_var_keyword:
                known = ", ".join(parameters) or "none"
                raise DefinitionError(
                    f"step {step_name!r} binds argument {name!r}, but its function has no parameter "
                    f"{name!r} (its parameters: {known})"
                )
        unbound = [p.name for p in shape.required if p.name not in bound]
        if unbound:
            raise DefinitionError(
                f"step {step_name!r} has no source for parameter(s) {', '.join(map(repr, unbound))}; bind "
                "each with from_input(...) or from_result(...), or give it a default"
            )
        fetches = tuple(
            _plan(parameters.get(name) or Parameter(name, TypedCodec(Any), False), source)
            for name, source in bound.items()
        )
        return _builder(fetches, step_name)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={source!r}" for name, source in self.by_parameter)
        return f"Arguments({inner})"


def _plan(parameter: Parameter, source: Source) -> _Fetch:
    if isinstance(source, FromInput):
        return _Fetch(parameter, source, None, source.field)
    if isinstance(source, FromResult):
        return _Fetch(parameter, source, source.step, source.field)
    if isinstance(source, FromRouteResult):
        if not source.choices:
            raise DefinitionError(f"{source.describe()}: {source.route!r} is not a route step with branches")
        return _Fetch(parameter, source, None, source.field, route=FromRoute(source.route, source.choices))
    keys = tuple((orjson.dumps(step).decode() + ":", step) for step in source.steps)
    return _Fetch(parameter, source, None, None, joined=keys)


def _builder(fetches: tuple[_Fetch, ...], step_name: str) -> ArgumentBuilder:
    """Make the per-step builder: whole values are decoded from their text; fields from it parsed once."""

    def build(workflow_input: str, results: Mapping[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        parsed: dict[str | None, Any] = {}
        for fetch in fetches:
            parameter = fetch.parameter
            if fetch.joined:
                text = "{" + ",".join(key + results[step] for key, step in fetch.joined) + "}"
                kwargs[parameter.name] = decode_argument(parameter, text, step_name)
                continue
            if fetch.route is not None:
                text = fetch.route.pick(workflow_input, results, step_name)
            else:
                text = workflow_input if fetch.step is None else results[fetch.step]
            if fetch.field is None:
                kwargs[parameter.name] = decode_argument(parameter, text, step_name)
                continue
            if fetch.route is not None:
                document = orjson.loads(text)
            elif fetch.step in parsed:
                document = parsed[fetch.step]
            else:
                document = parsed[fetch.step] = orjson.loads(text)
            if not isinstance(document, dict):
                whole: Source = FromInput() if fetch.step is None else FromResult(fetch.step)
                if fetch.route is not None:
                    whole = FromRouteResult(fetch.route.route)
                raise StepInputError(
                    f"step {step_name!r} reads {fetch.source.describe()}, but {whole.describe()} is "
                    f"{type(document).__name__}, not an object",
                    step_name=step_name,
                )
            if fetch.field not in document:
                if parameter.has_default:
                    continue
                raise StepInputError(
                    f"step {step_name!r} needs {fetch.source.describe()} for parameter "
                    f"{parameter.name!r}, and there is no such field (fields: "
                    f"{', '.join(map(repr, document)) or 'none'})",
                    step_name=step_name,
                )
            kwargs[parameter.name] = _convert(parameter, document[fetch.field], step_name, fetch.source)
        return (), kwargs

    return build
