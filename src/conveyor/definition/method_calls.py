"""Calling a workflow class's methods as steps and undos: each call gets a fresh instance of the class.

:func:`step_caller` turns a step method into the function a step runs: the method's parameters after
``self``, its annotations and docstring, called on a new instance. :func:`undo_caller` turns an undo method
into the compensation the engine calls with the step's result and arguments, passing the method what its
parameters name: an argument of the step, a field of its result, ``result`` itself, its context, or a
runtime resource (a parameter whose default is ``resource(name)``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from conveyor.codec import TypedCodec
from conveyor.definition.binding import describe_validation_error
from conveyor.definition.resources import ResourceRef
from conveyor.definition.task import StepContext
from conveyor.errors import DefinitionError, StepInputError


def _hints(fn: Callable[..., Any], what: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:
        raise DefinitionError(
            f"cannot resolve the type annotations of {what}: {exc}. Define the types it names before it."
        ) from exc


def _data_parameters(fn: Callable[..., Any], what: str) -> list[inspect.Parameter]:
    """The parameters of method ``fn`` after ``self``; refuses those a keyword call cannot fill."""
    parameters = list(inspect.signature(fn).parameters.values())
    if not parameters or parameters[0].kind not in (
        parameters[0].POSITIONAL_ONLY,
        parameters[0].POSITIONAL_OR_KEYWORD,
    ):
        raise DefinitionError(f"{what} must be a method taking self")
    rest = parameters[1:]
    for parameter in rest:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
            raise DefinitionError(
                f"{what} is called with keyword arguments; parameter {parameter.name!r} cannot take one"
            )
    return rest


def step_caller(cls: type, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A function with ``fn``'s parameters minus ``self``, calling ``fn`` on a fresh instance of ``cls``."""
    what = f"step {name!r} of {cls.__name__}"
    parameters = _data_parameters(fn, what)
    hints = _hints(fn, what)
    self_name = next(iter(inspect.signature(fn).parameters))

    if inspect.iscoroutinefunction(fn):

        async def call_step(**kwargs: Any) -> Any:
            return await fn(cls(), **kwargs)

        caller: Callable[..., Any] = call_step
    else:

        def call_step_sync(**kwargs: Any) -> Any:
            return fn(cls(), **kwargs)

        caller = call_step_sync
    caller.__signature__ = inspect.signature(fn).replace(parameters=parameters)  # type: ignore[attr-defined]
    caller.__annotations__ = {key: value for key, value in hints.items() if key != self_name}
    caller.__name__ = name
    caller.__qualname__ = f"{cls.__qualname__}.{name}"
    caller.__doc__ = fn.__doc__
    caller.__module__ = fn.__module__
    return caller


def _result_fields(result: Any) -> dict[str, Any]:
    """The fields of a step's result an undo may name: a dict's keys, a model's or dataclass's fields."""
    if isinstance(result, Mapping):
        return {key: value for key, value in result.items() if isinstance(key, str)}
    if isinstance(result, pydantic.BaseModel):
        return {key: getattr(result, key) for key in type(result).model_fields}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
    return {}


def undo_caller(cls: type, step_name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The compensation the engine calls with ``(result, arguments)``: it calls ``fn`` with what it names."""
    what = f"the undo of step {step_name!r} of {cls.__name__}"
    hints = _hints(fn, what)
    self_name = next(iter(inspect.signature(fn).parameters))
    context_name: str | None = None
    takes_the_rest = False
    wanted: list[tuple[str, TypedCodec, bool]] = []
    resources: list[tuple[str, str]] = []
    for parameter in _data_parameters(fn, what):
        if hints.get(parameter.name) is StepContext:
            context_name = parameter.name
        elif isinstance(parameter.default, ResourceRef):
            resources.append((parameter.name, parameter.default.name))
        elif parameter.kind is parameter.VAR_KEYWORD:
            takes_the_rest = True
        else:
            codec = TypedCodec(hints.get(parameter.name, Any))
            wanted.append((parameter.name, codec, parameter.default is not parameter.empty))

    def keyword_arguments(result: Any, arguments: Any, context: StepContext) -> dict[str, Any]:
        available = dict(arguments) if isinstance(arguments, Mapping) else {}
        available.update(_result_fields(result))
        available.setdefault("result", result)
        kwargs: dict[str, Any] = {}
        missing = []
        for name, codec, optional in wanted:
            if name in available:
                try:
                    kwargs[name] = codec.convert(available[name])
                except pydantic.ValidationError as exc:
                    raise StepInputError(
                        f"{what}: {name!r} does not fit its annotation: {describe_validation_error(exc)}",
                        step_name=step_name,
                    ) from exc
            elif not optional:
                missing.append(name)
        if missing:
            raise StepInputError(
                f"{what} needs {', '.join(map(repr, missing))}, which is neither an argument of the step nor "
                f"a field of its result (available: {', '.join(map(repr, available))})",
                step_name=step_name,
            )
        for name, resource_name in resources:
            kwargs[name] = context.resource(resource_name)
        if takes_the_rest:
            for name, value in available.items():
                if name not in (self_name, context_name):
                    kwargs.setdefault(name, value)
        if context_name is not None:
            kwargs[context_name] = context
        return kwargs

    if inspect.iscoroutinefunction(fn):

        async def undo(result: Any, arguments: Any, context: StepContext) -> Any:
            return await fn(cls(), **keyword_arguments(result, arguments, context))

        return undo

    def undo_sync(result: Any, arguments: Any, context: StepContext) -> Any:
        return fn(cls(), **keyword_arguments(result, arguments, context))

    return undo_sync
