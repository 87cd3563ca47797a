"""``@task``: a function declared as a workflow step, with its retry policy, timeout and undo.

Declaring a task does no I/O. Everything a step needs at run time that can be worked out once (whether the
function is async, which parameter wants the step context, how to decode its input and output) is worked
out here, when the task is declared.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from conveyor.codec import TypedCodec, encode
from conveyor.definition.names import check_name
from conveyor.definition.resources import ResourceRef
from conveyor.definition.retry import RetryPolicy, seconds
from conveyor.errors import Cancelled, ConveyorError, DefinitionError, InvalidArgumentError

if TYPE_CHECKING:
    from conveyor.definition.control import Control
    from conveyor.definition.waits import Wait

P = ParamSpec("P")
R = TypeVar("R")


def _key_part(text: str) -> str:
    """``text`` with ``%`` and ``:`` percent-escaped, so it never holds the key's separator."""
    if "%" in text or ":" in text:
        return text.replace("%", "%25").replace(":", "%3A")
    return text


class StepContext:
    """What a running step may know about itself.

    A step receives it by declaring a parameter annotated ``StepContext`` (any name), or by calling
    :func:`conveyor.current_context` while it runs. ``idempotency_key`` is the same on every attempt of this
    step in this run: pass it to payment gateways and other services so a retried call is done once.
    """

    __slots__ = (
        "_steering",
        "attempt",
        "correlation_id",
        "generation",
        "index",
        "is_compensation",
        "resources",
        "step_name",
        "workflow_id",
        "workflow_name",
    )

    def __init__(
        self,
        *,
        workflow_id: str,
        workflow_name: str,
        step_name: str,
        attempt: int,
        correlation_id: str,
        is_compensation: bool = False,
        generation: int = 0,
        resources: Mapping[str, Any] | None = None,
        steering: Any = None,
        index: int | None = None,
    ) -> None:
        self._steering = steering
        """What tells whether the run was cancelled: an object with ``cancel_reason`` (the run's lease)."""
        self.resources: Mapping[str, Any] = resources if resources is not None else {}
        """The runtime's resources, by name (see :meth:`resource`)."""
        self.workflow_id = workflow_id
        self.workflow_name = workflow_name
        self.step_name = step_name
        self.attempt = attempt
        self.correlation_id = correlation_id
        self.is_compensation = is_compensation
        self.generation = generation
        self.index = index
        """A loop's iteration (0 first) or a map element's position in its list; None for other steps."""

    @property
    def idempotency_key(self) -> str:
        """A key stable across every attempt of this step (or of its undo) in this run, and no other's.

        ``{workflow_id}:{step_name}``, then ``:retry{n}`` after the run's n-th retry by hand (see
        ``retry_workflow``: steps that run again get a new key) and ``:undo`` for the undo. A loop's
        iteration or a map's element adds its :attr:`index` after the name (``order-7:reserve:2``), so a
        gateway sees each as a call of its own. A ``%`` or ``:`` inside the id or the name is written
        ``%25`` or ``%3A``, so two different steps never share a key, and a key without them is what it has
        always been.
        """
        retry = f":retry{self.generation}" if self.generation else ""
        undo = ":undo" if self.is_compensation else ""
        index = "" if self.index is None else f":{self.index}"
        return f"{_key_part(self.workflow_id)}:{_key_part(self.step_name)}{index}{retry}{undo}"

    @property
    def cancelled(self) -> bool:
        """Whether the run was cancelled while this step runs: a long step should stop soon.

        Known within a third of the lease after ``cancel_workflow`` from another process, at once from
        this one. See :meth:`raise_if_cancelled`.
        """
        steering = self._steering
        return steering is not None and steering.cancel_reason is not None

    @property
    def cancel_reason(self) -> str | None:
        """Why the run was cancelled (or undone by ``compensate_workflow``), else None.

        An undo reads it to tell a cancel from a failure: while a cancelled run compensates, each undo's
        context carries the reason given.
        """
        steering = self._steering
        return None if steering is None else steering.cancel_reason

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~conveyor.errors.Cancelled` if the run was cancelled (``except Exception`` lets it
        through); the run then undoes its completed steps and ends ``cancelled``."""
        steering = self._steering
        if steering is not None and steering.cancel_reason is not None:
            raise Cancelled(steering.cancel_reason, workflow_id=self.workflow_id)

    def resource(self, name: str) -> Any:
        """The runtime's resource ``name`` (a database, a gateway client), built on first use."""
        return self.resources[name]

    def annotate(self, name: str, content: Any = None) -> None:
        """Record a note on the run, ``name`` with ``content`` (any value a result may be), for people and
        dashboards to read (``status.annotations``): ``context.annotate("payment_processed", {"ms": 120})``.

        It is committed with this attempt's result, in the same checkpoint (never a transaction of its
        own); an attempt that fails leaves none, so a retried step records its notes once.
        """
        record = getattr(self._steering, "annotate", None)
        if record is None:
            raise ConveyorError(
                "annotate() records on a run conveyor drives; this context is not a running step's"
            )
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
            raise InvalidArgumentError(
                f"an annotation's name must be printable text of at most 200 characters, not {name!r}",
                argument="name",
            )
        text = encode(content, what=f"the content of annotation {name!r}")
        record(self.step_name, self.is_compensation, self.attempt, name, text)

    def __repr__(self) -> str:
        return (
            f"StepContext(workflow_id={self.workflow_id!r}, step_name={self.step_name!r}, "
            f"attempt={self.attempt}, is_compensation={self.is_compensation})"
        )


@dataclass(frozen=True, slots=True)
class Parameter:
    """One data parameter of a step function, and how its JSON value is decoded."""

    name: str
    codec: TypedCodec
    has_default: bool


@dataclass(frozen=True, slots=True)
class CallableShape:
    """What conveyor needs to know to call a function: its data parameters and where the context goes."""

    fn: Callable[..., Any]
    is_async: bool
    parameters: tuple[Parameter, ...]
    context_parameter: str | None
    accepts_var_keyword: bool
    returns: TypedCodec
    resource_parameters: tuple[tuple[str, str], ...] = ()
    """(parameter, resource name) for each parameter declared ``= resource(name)``."""

    @property
    def required(self) -> tuple[Parameter, ...]:
        """The data parameters that have no default value."""
        return tuple(p for p in self.parameters if not p.has_default)


def describe_callable(fn: Callable[..., Any], *, what: str) -> CallableShape:
    """Inspect ``fn`` once: async or not, its parameters' types, and which one wants the step context."""
    if not callable(fn):
        raise DefinitionError(f"{what} must be a function, not {fn!r}")
    target = inspect.unwrap(fn)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"cannot read the signature of {what}: {exc}") from exc
    try:
        hints = typing.get_type_hints(target)
    except Exception as exc:
        raise DefinitionError(
            f"cannot resolve the type annotations of {what}: {exc}. Define the types it names before it."
        ) from exc
    parameters: list[Parameter] = []
    context_parameter = None
    resource_parameters: list[tuple[str, str]] = []
    var_keyword = False
    for parameter in signature.parameters.values():
        annotation = hints.get(parameter.name, Any)
        if annotation is StepContext:
            context_parameter = parameter.name
            continue
        if isinstance(parameter.default, ResourceRef):
            resource_parameters.append((parameter.name, parameter.default.name))
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        parameters.append(
            Parameter(
                parameter.name,
                TypedCodec(annotation),
                parameter.default is not inspect.Parameter.empty,
            )
        )
    return CallableShape(
        fn=fn,
        is_async=inspect.iscoroutinefunction(target),
        parameters=tuple(parameters),
        context_parameter=context_parameter,
        accepts_var_keyword=var_keyword,
        returns=TypedCodec(hints.get("return", Any)),
        resource_parameters=tuple(resource_parameters),
    )


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """Everything declared about one task: the function, its undo, retries, timeout and labels."""

    name: str
    shape: CallableShape
    retries: RetryPolicy | None = None
    timeout_seconds: float | None = None
    compensation: CallableShape | None = None
    compensation_retries: RetryPolicy | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    waits: Wait | None = None
    """Set for a wait step (a durable sleep, a wait for a signal): the engine waits instead of calling it."""
    control: Control | None = None
    """Set for a step that steers the run (a route): the engine settles its calls itself."""

    @property
    def fn(self) -> Callable[..., Any]:
        """The step function itself."""
        return self.shape.fn


class Task(Generic[P, R]):
    """A function declared with :func:`task`. Calling it calls the function, so it stays easy to unit-test."""

    __slots__ = ("__dict__", "spec")

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.__doc__ = getattr(spec.fn, "__doc__", None)
        self.__name__ = spec.name
        self.__wrapped__ = spec.fn

    @property
    def name(self) -> str:
        """The step name this task has in a workflow (unless the workflow renames it)."""
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.spec.fn(*args, **kwargs)
        return result

    def compensate(self, undo: Callable[..., Any]) -> Callable[..., Any]:
        """Declare ``undo`` as this task's compensation (used as a decorator: ``@charge.compensate``)."""
        shape = _compensation_shape(undo, self.spec.name)
        self.spec = replace(self.spec, compensation=shape)
        return undo

    def __repr__(self) -> str:
        return f"<task {self.spec.name!r}>"


def _compensation_shape(undo: Callable[..., Any], name: str) -> CallableShape:
    shape = describe_callable(undo, what=f"the compensation of task {name!r}")
    if len(shape.required) > 2:
        raise DefinitionError(
            f"the compensation of task {name!r} takes {len(shape.required)} arguments; it is called with "
            "the step's result, and optionally the step's input"
        )
    return shape


def make_task_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    timeout_secs: float | timedelta | None = None,
    retries: RetryPolicy | None = None,
    compensate: Callable[..., Any] | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
) -> TaskSpec:
    """Build the :class:`TaskSpec` for ``fn``; ``@task`` and the workflow builders share this."""
    if isinstance(fn, Task):
        return fn.spec
    step_name = name if name is not None else getattr(fn, "__name__", None)
    if not isinstance(step_name, str) or not step_name.strip():
        raise DefinitionError(f"a task needs a non-empty name; {fn!r} has none (pass name=...)")
    check_name(step_name, "a task's name")
    for policy, what in ((retries, "retries"), (compensation_retries, "compensation_retries")):
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise DefinitionError(f"{what} of task {step_name!r} must be a RetryPolicy, not {policy!r}")
    timeout = seconds(timeout_secs, what=f"timeout_secs of task {step_name!r}")
    if timeout == 0:
        raise DefinitionError(f"timeout_secs of task {step_name!r} must be more than zero")
    return TaskSpec(
        name=step_name,
        shape=describe_callable(fn, what=f"task {step_name!r}"),
        retries=retries,
        timeout_seconds=timeout,
        compensation=_compensation_shape(compensate, step_name) if compensate is not None else None,
        compensation_retries=compensation_retries,
        description=description if description is not None else inspect.getdoc(fn) or "",
        tags=tuple(tags),
    )


@overload
def task(fn: Callable[P, Awaitable[R]], /) -> Task[P, Awaitable[R]]: ...
@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    timeout_secs: float | timedelta | None = None,
    retries: RetryPolicy | None = None,
    compensate: Callable[..., Any] | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout_secs: float | timedelta | None = None,
    retries: RetryPolicy | None = None,
    compensate: Callable[..., Any] | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
) -> Any:
    """Declare a function as a workflow step.

    Use it bare (``@task``) or with options: ``name``, ``timeout_secs`` (seconds or a ``timedelta``),
    ``retries=RetryPolicy(...)``, ``compensate=`` (the undo, called with the step's result when a later step
    fails for good), ``compensation_retries``, ``description`` and ``tags``. Sync and ``async def``
    functions both work.
    """

    def declare(function: Callable[..., Any]) -> Task[Any, Any]:
        return Task(
            make_task_spec(
                function,
                name=name,
                timeout_secs=timeout_secs,
                retries=retries,
                compensate=compensate,
                compensation_retries=compensation_retries,
                description=description,
                tags=tags,
            )
        )

    if fn is not None:
        return declare(fn)
    return declare
