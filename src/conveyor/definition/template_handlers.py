"""Finding the handler classes a YAML template names, and turning them into step functions and undos."""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from conveyor.definition.loops import LoopResult
from conveyor.definition.task import StepContext
from conveyor.definition.template_source import Place
from conveyor.errors import NonRetryableError

Handlers = ModuleType | Mapping[str, type]
"""Where handler classes are found instead of being imported: a module (a class is looked up by the last
segment of its ``handler_class``) or a mapping from ``handler_class`` as written to the class."""


def _snake_case(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _import_class(path: str, place: Place) -> Any:
    if "::" in path:
        segments = path.split("::")
        parts = [*(_snake_case(segment) for segment in segments[:-1]), segments[-1]]
    else:
        parts = path.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise place.error(f"{path!r} is not an import path such as 'shop.handlers.ChargeHandler'")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise place.error(f"importing {module_name!r} for {path!r} failed: {exc}") from exc
        except Exception as exc:
            raise place.error(
                f"importing {module_name!r} for {path!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                raise place.error(
                    f"cannot find handler class {path!r}: {found.__name__!r} has no {attribute!r}"
                )
            found = getattr(found, attribute)
        return found
    raise place.error(
        f"cannot find handler class {path!r}: no module {'.'.join(parts[:-1])!r} can be imported"
    )


def find_handler(path: str, handlers: Handlers | None, place: Place) -> type:
    """The handler class ``path`` names, from ``handlers`` or by importing it; it must take no arguments."""
    if isinstance(handlers, ModuleType):
        short = re.split(r"::|\.", path)[-1]
        found = getattr(handlers, short, None)
        if found is None:
            raise place.error(f"module {handlers.__name__!r} has no handler class {short!r} (for {path!r})")
    elif handlers is not None:
        found = handlers.get(path)
        if found is None:
            raise place.error(
                f"handler class {path!r} is not in the handlers given ({', '.join(handlers) or 'none'})"
            )
    else:
        found = _import_class(path, place)
    if not isinstance(found, type):
        raise place.error(f"handler {path!r} must be a class, not {found!r}")
    try:
        required = [
            p.name
            for p in inspect.signature(found).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        required = []
    if required:
        raise place.error(
            f"handler {path!r} is created with no arguments, but its __init__ requires {required}"
        )
    return found


@dataclass(frozen=True, slots=True)
class HandlerMethod:
    """A handler method conveyor calls: whether it is async, and which parameter wants the step context."""

    function: Callable[..., Any]
    is_async: bool
    context_parameter: str | None


def handler_method(handler: type, name: str, arguments: str, place: Place) -> HandlerMethod | None:
    """The method ``name`` of ``handler`` if it has one, checked to take ``(self, arguments)``."""
    function = inspect.getattr_static(handler, name, None)
    if function is None:
        return None
    if not inspect.isfunction(function):
        raise place.error(
            f"{handler.__name__}.{name} must be a method defined with def, taking (self, {arguments})"
        )
    try:
        hints = typing.get_type_hints(function)
    except Exception:
        hints = {}
    context = next(
        (
            parameter
            for parameter, annotation in {**function.__annotations__, **hints}.items()
            if annotation is StepContext or annotation == "StepContext"
        ),
        None,
    )
    count = arguments.count(",") + 2  # self and each named argument
    try:
        inspect.signature(function).bind(*([None] * count), **({context: None} if context else {}))
    except TypeError:
        raise place.error(f"{handler.__name__}.{name} must take (self, {arguments})") from None
    return HandlerMethod(function, inspect.iscoroutinefunction(function), context)


def _as_result(value: Any, handler: type, step_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise NonRetryableError(
        f"{handler.__name__}.process of step {step_name!r} returned {type(value).__name__}; "
        "a step's result must be a dict",
        step_name=step_name,
    )


def _as_key(value: Any, handler: type, step_name: str) -> Any:
    """What a route's ``process`` returns: the key of the branch to run, passed on as it is."""
    return value


def _as_loop_result(value: Any, handler: type, step_name: str) -> LoopResult[dict[str, Any]]:
    """What a loop's ``process`` returns: ``LoopResult.again(value)`` or ``.done(value)``, a dict in each."""
    if not isinstance(value, LoopResult):
        raise NonRetryableError(
            f"{handler.__name__}.process of loop step {step_name!r} returned {type(value).__name__}; a "
            "loop's process returns LoopResult.again(value) or LoopResult.done(value)",
            step_name=step_name,
        )
    carried = value.value
    if carried is not None and not isinstance(carried, Mapping):
        raise NonRetryableError(
            f"{handler.__name__}.process of loop step {step_name!r} returned a LoopResult holding "
            f"{type(carried).__name__}; its value must be a dict, as any step's result",
            step_name=step_name,
        )
    return LoopResult({} if carried is None else dict(carried), value.is_done)


StepKind = Literal["step", "route", "loop", "map"]
"""What a template's step is: a plain step, a route (returns a key), a loop or a map."""

RECEIVED = "received"
"""The parameter of a loop's or map's step function that gets the value this call receives (the value the
previous iteration passed on, or the element), which the handler finds in ``results`` under the step's
own name."""


class _Nothing:
    """The first iteration of a loop receives nothing of its own."""

    def __repr__(self) -> str:
        return "<nothing>"


_NOTHING: Any = _Nothing()


def step_function(
    handler: type, process: HandlerMethod, step_name: str, *, kind: StepKind = "step"
) -> Callable[..., Any]:
    """The step function: creates the handler and calls ``process(context, results)`` (for a route, whose
    ``process`` returns a branch key, that key is the result; for a loop, a ``LoopResult``)."""
    if kind in ("loop", "map"):
        return _received_function(handler, process, step_name, loop=kind == "loop")
    function = process.function
    as_result = _as_key if kind == "route" else _as_result

    def extra(step: StepContext) -> dict[str, Any]:
        return {} if process.context_parameter is None else {process.context_parameter: step}

    if process.is_async:

        async def run_handler(context: Any, step: StepContext, results: dict[str, Any] | None = None) -> Any:
            value = await function(handler(), context, results or {}, **extra(step))
            return as_result(value, handler, step_name)

        return run_handler

    def run_handler_sync(context: Any, step: StepContext, results: dict[str, Any] | None = None) -> Any:
        return as_result(function(handler(), context, results or {}, **extra(step)), handler, step_name)

    return run_handler_sync


def _received_function(
    handler: type, process: HandlerMethod, step_name: str, *, loop: bool
) -> Callable[..., Any]:
    """The step function of a loop or a map: its first parameter, ``received``, is the value carried into
    this iteration (nothing in a loop's first) or the element, which ``process`` finds in ``results`` under
    the step's own name."""
    function = process.function
    as_result: Callable[[Any, type, str], Any] = _as_loop_result if loop else _as_result

    def arguments(received: Any, context: Any, results: dict[str, Any] | None) -> list[Any]:
        given = dict(results or {})
        if received is not _NOTHING:
            given[step_name] = received
        return [handler(), context, given]

    def extra(step: StepContext) -> dict[str, Any]:
        return {} if process.context_parameter is None else {process.context_parameter: step}

    if process.is_async:

        async def run_repeated(
            received: Any = _NOTHING,
            *,
            context: Any,
            step: StepContext,
            results: dict[str, Any] | None = None,
        ) -> Any:
            value = await function(*arguments(received, context, results), **extra(step))
            return as_result(value, handler, step_name)

        return run_repeated

    def run_repeated_sync(
        received: Any = _NOTHING,
        *,
        context: Any,
        step: StepContext,
        results: dict[str, Any] | None = None,
    ) -> Any:
        value = function(*arguments(received, context, results), **extra(step))
        return as_result(value, handler, step_name)

    return run_repeated_sync


def undo_function(handler: type, undo: HandlerMethod, step_name: str) -> Callable[..., Any]:
    """The compensation: creates the handler and calls ``undo(result, context, results)`` (for an element
    of a map, ``result`` is the element's, and ``results`` holds the element under the step's name)."""
    function = undo.function

    def call(result: Any, arguments: Any, step: StepContext) -> Any:
        extra = {} if undo.context_parameter is None else {undo.context_parameter: step}
        results = dict(arguments.get("results") or {})
        received = arguments.get(RECEIVED, _NOTHING)
        if received is not _NOTHING:
            results[step_name] = received
        return function(handler(), result, arguments["context"], results, **extra)

    if undo.is_async:

        async def undo_handler(result: dict[str, Any], arguments: Any, step: StepContext) -> Any:
            return await call(result, arguments, step)

        return undo_handler

    def undo_handler_sync(result: dict[str, Any], arguments: Any, step: StepContext) -> Any:
        return call(result, arguments, step)

    return undo_handler_sync


TASK_HOOKS = ("step_settings",)
"""The methods of a template's ``task_handler_class`` that conveyor calls."""

_TASKER_HOOKS = {
    "establish_step_dependencies_and_defaults": (
        "conveyor calls step_settings(self, context) before each run starts and uses the settings it "
        'returns ({"process_payment": {"timeout": 15, "retries": 1}}: seconds, and retries after the first '
        "attempt)"
    ),
    "update_annotations": (
        "conveyor records annotations from the steps themselves: a handler's process() declares a "
        "StepContext parameter and calls step.annotate(name, content), committed with its result"
    ),
}


def task_hooks(handler: type, place: Place) -> Callable[[Any], Any] | None:
    """The ``step_settings`` hook of a template's ``task_handler_class`` (None if it defines none).

    Any other public method is an error naming it: a hook conveyor does not call must not be mistaken for
    one it does.
    """
    for klass in handler.__mro__[:-1]:
        for name, value in vars(klass).items():
            callable_member = inspect.isfunction(value) or isinstance(value, classmethod | staticmethod)
            if name.startswith("_") or not callable_member or name in TASK_HOOKS:
                continue
            hint = _TASKER_HOOKS.get(name, f"the hooks conveyor calls are {', '.join(TASK_HOOKS)}")
            raise place.error(f"{handler.__name__}.{name} is not a hook conveyor calls: {hint}")
    method = handler_method(handler, "step_settings", "context", place)
    if method is None:
        return None
    if method.is_async or method.context_parameter is not None:
        raise place.error(f"{handler.__name__}.step_settings must be a plain def taking (self, context)")
    function = method.function

    def step_settings(context: Any) -> Any:
        return function(handler(), context)

    return step_settings
