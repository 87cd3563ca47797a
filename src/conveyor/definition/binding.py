"""How a step's arguments are made from the workflow input and earlier steps' results.

Results cross checkpoints as JSON text, so a binding works on text: it hands each parameter the JSON of its
source, decoded into the type the parameter declares. Each binding is compiled once, when the workflow is
built, into an :data:`ArgumentBuilder` that does only that work per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import pydantic

from conveyor.definition.task import CallableShape, Parameter
from conveyor.errors import DefinitionError, InvalidInputError, StepInputError

ArgumentBuilder = Callable[[str, Mapping[str, str]], tuple[tuple[Any, ...], dict[str, Any]]]
"""``(workflow_input_json, results_json_by_step) -> (args, kwargs)`` for one step."""


class Binding(Protocol):
    """Where a step's arguments come from; compiled once into an :data:`ArgumentBuilder`."""

    @property
    def sources(self) -> tuple[str, ...]:
        """The steps whose results the arguments are made from (the step depends on each)."""
        ...

    def compile(self, shape: CallableShape, step_name: str) -> ArgumentBuilder:
        """Check ``shape`` can take these arguments and return the builder that makes them."""
        ...


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """Name each field a pydantic validation error is about, and what was wrong with it."""
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item.get("loc", ())) or "(the value itself)"
        parts.append(f"field {location!r}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def decode_argument(parameter: Parameter, text: str, step_name: str) -> Any:
    """Decode one argument of ``step_name``, turning a type mismatch into a :class:`StepInputError`."""
    try:
        return parameter.codec.decode(text)
    except pydantic.ValidationError as exc:
        raise StepInputError(
            f"the input of step {step_name!r} does not fit parameter {parameter.name!r} "
            f"({getattr(parameter.codec.annotation, '__name__', parameter.codec.annotation)}): "
            f"{describe_validation_error(exc)}",
            step_name=step_name,
        ) from exc


def _one_parameter(shape: CallableShape, step_name: str, what: str) -> Parameter | None:
    """The single data parameter a step of a chain takes, or ``None`` if it takes no input."""
    if len(shape.required) > 1:
        names = ", ".join(p.name for p in shape.required)
        raise DefinitionError(
            f"step {step_name!r} takes {len(shape.required)} arguments ({names}), but it receives one "
            f"value: {what}. Give the other parameters defaults, or take one value and unpack it."
        )
    return shape.parameters[0] if shape.parameters else None


@dataclass(frozen=True, slots=True)
class FromPrevious:
    """The step receives one value: the result of ``source``, or the workflow input when it is ``None``."""

    source: str | None

    @property
    def sources(self) -> tuple[str, ...]:
        """The steps whose results this binding reads."""
        return () if self.source is None else (self.source,)

    def compile(self, shape: CallableShape, step_name: str) -> ArgumentBuilder:
        """Return the argument builder for ``step_name``."""
        what = "the workflow input" if self.source is None else f"the result of {self.source!r}"
        parameter = _one_parameter(shape, step_name, what)
        source = self.source
        if parameter is None:
            return lambda _input, _results: ((), {})
        if not parameter.codec.converts:  # plain JSON values: nothing can fail to fit, so decode directly
            if source is None:
                return lambda workflow_input, _results: ((orjson.loads(workflow_input),), {})
            return lambda _input, results: ((orjson.loads(results[source]),), {})
        if source is None:
            return lambda workflow_input, _results: (
                (decode_argument(parameter, workflow_input, step_name),),
                {},
            )
        return lambda _input, results: (
            (decode_argument(parameter, results[source], step_name),),
            {},
        )


@dataclass(frozen=True, slots=True)
class FromBranches:
    """The step receives one dict: each branch's key mapped to the result of that branch's last step."""

    branches: tuple[tuple[str, str], ...]

    @property
    def sources(self) -> tuple[str, ...]:
        """The steps whose results this binding reads."""
        return tuple(step for _key, step in self.branches)

    def compile(self, shape: CallableShape, step_name: str) -> ArgumentBuilder:
        """Return the argument builder for ``step_name``."""
        parameter = _one_parameter(shape, step_name, "a dict of the branches' results")
        if parameter is None:
            return lambda _input, _results: ((), {})
        keys = tuple((orjson.dumps(key).decode() + ":", step) for key, step in self.branches)

        def build(_input: str, results: Mapping[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            text = "{" + ",".join(key + results[step] for key, step in keys) + "}"
            return (decode_argument(parameter, text, step_name),), {}

        return build


def pydantic_input_validator(annotation: Any) -> Callable[[Any], Any]:
    """An input validator checking the workflow input against ``annotation`` (a pydantic model, say)."""
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
    name = getattr(annotation, "__name__", repr(annotation))

    def validate(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            fields = [".".join(str(part) for part in item.get("loc", ())) for item in exc.errors()]
            raise InvalidInputError(
                f"the workflow input does not fit {name}: {describe_validation_error(exc)}",
                fields=fields,
            ) from exc

    return validate
