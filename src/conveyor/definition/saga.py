"""Class-based workflows: a :class:`Saga` subclass is a workflow, each ``@step`` method one of its steps.

::

    class OrderProcessing(Saga):
        input_schema = OrderInput
        retry_defaults = RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_secs=2)

        @step
        def validate_order(self, order_id: str) -> dict[str, Order]: ...

        @step(order=from_result("validate_order", "order"))
        def reserve_inventory(self, order: Order) -> dict[str, str]: ...

        @reserve_inventory.undo
        def release_reservation(self, reservation_id: str, **_: Any) -> None: ...

    result = OrderProcessing.run(order_id="12345")

A step's parameters are bound by name (``from_result``, ``from_input``); a parameter left unbound takes the
same-named field of the workflow input. The steps a step reads are its dependencies, so steps that read
nothing from each other may run concurrently; ``after=`` orders a step after others it does not read. An
undo names what it needs: any argument of its step, any field of the step's result, or ``result`` (the whole
result). A subclass inherits every step; overriding a step's method changes what the step does and keeps
its arguments, options and undo, while ``@step`` in the subclass declares the step afresh (keeping its undo
unless it declares another). Each class is compiled once, when it is defined, into :attr:`Saga.workflow`
and registered in :data:`~conveyor.definition.registry.default_registry`.

conveyor creates a fresh instance (with no arguments) for every step and undo call: keep what a run needs in
step results, not on ``self``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, overload

import pydantic

from conveyor.codec import TypedCodec
from conveyor.definition.arguments import Arguments, Named, Source, from_input
from conveyor.definition.binding import describe_validation_error, pydantic_input_validator
from conveyor.definition.registry import (
    DEFAULT_NAMESPACE,
    Registry,
    qualified_name,
)
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.task import StepContext, make_task_spec
from conveyor.definition.workflow import StepDefinition, Workflow, build_workflow
from conveyor.errors import DefinitionError, StepInputError

if TYPE_CHECKING:
    from conveyor.backends.base import Backend
    from conveyor.core.records import Failure
    from conveyor.core.states import RunState
    from conveyor.engine.clock import Clock
    from conveyor.engine.handles import RunHandle
    from conveyor.engine.status import WorkflowStatus


class StepMethod:
    """A method declared as a step with :func:`step`. Read from an instance, it is the plain method."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        bindings: Mapping[str, Source],
        after: tuple[str, ...],
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
    retries: RetryPolicy | None = None,
    timeout_secs: float | timedelta | None = None,
    compensation_retries: RetryPolicy | None = None,
    description: str | None = None,
    arguments: Mapping[str, Source] | None = None,
    **bindings: Source,
) -> Any:
    """Declare a method of a :class:`Saga` as a step.

    Keyword arguments bind parameters: ``@step(order=from_result("validate_order", "order"))``; a parameter
    whose name is one of the options below is bound with ``arguments={"retries": from_input()}`` instead.
    Options: ``after`` (steps to wait for without reading them), ``retries`` (overrides the class's
    ``retry_defaults``), ``timeout_secs``, ``compensation_retries``, ``description`` (else the docstring).
    """

    def declare(function: Callable[..., Any]) -> StepMethod:
        return StepMethod(
            function,
            bindings={**(arguments or {}), **bindings},
            after=_names(after),
            retries=retries,
            timeout_secs=timeout_secs,
            compensation_retries=compensation_retries,
            description=description,
        )

    if fn is not None:
        return declare(fn)
    return declare


class SagaResult:
    """How a saga run ended: ``success``, ``completed_steps``, ``step_results`` and, on failure, ``error``."""

    def __init__(self, status: WorkflowStatus, workflow: Workflow) -> None:
        self.status = status
        """The run's full :class:`~conveyor.WorkflowStatus`."""
        self.workflow_id = status.workflow_id
        self._workflow = workflow

    @property
    def state(self) -> RunState:
        """The run's final state (completed, failed, compensated, compensation_failed)."""
        return self.status.state

    @property
    def success(self) -> bool:
        """Whether every step completed."""
        return self.status.is_completed()

    @property
    def completed_steps(self) -> tuple[str, ...]:
        """The steps that completed and were not undone, in completion order."""
        return self.status.completed_steps

    @property
    def error(self) -> Failure | None:
        """The failure that ended the run (``step_name``, ``message``, ``attempts``), or ``None``."""
        return self.status.error()

    @cached_property
    def step_results(self) -> dict[str, Any]:
        """The result of every step that produced one (undone steps included), as its declared type."""
        results = {}
        for status in self.status.steps:
            if status.result_json is not None:
                codec = self._workflow.step(status.name).task.shape.returns
                results[status.name] = codec.decode(status.result_json)
        return results

    def __repr__(self) -> str:
        return f"<SagaResult {self.workflow_id!r} {self.state.value}>"


class SagaHandle:
    """A saga run handed to workers (``asynchronous = True``): check on it later, or wait for it.

    ``status`` is ``"running"`` until the run ends, then ``"success"`` or ``"failed"``; ``result`` is the
    :class:`SagaResult` once it ended (else ``None``) and ``error`` its failure.
    """

    def __init__(self, handle: RunHandle, workflow: Workflow) -> None:
        self.handle = handle
        self.workflow_id = handle.workflow_id
        self._workflow = workflow

    @property
    def status(self) -> str:
        """``"running"``, ``"success"`` or ``"failed"``, as the run stands now."""
        current = self.handle.status()
        if current.is_running():
            return "running"
        return "success" if current.is_completed() else "failed"

    @property
    def result(self) -> SagaResult | None:
        """How the run ended, or ``None`` while it runs."""
        current = self.handle.status()
        return None if current.is_running() else SagaResult(current, self._workflow)

    @property
    def error(self) -> Failure | None:
        """The failure that ended the run, or ``None``."""
        return self.handle.status().error()

    def wait(self, timeout: float | None = None) -> SagaResult:
        """Wait until the run ends (at most ``timeout`` seconds) and return how it ended."""
        return SagaResult(self.handle.wait(timeout), self._workflow)

    def __repr__(self) -> str:
        return f"<SagaHandle {self.workflow_id!r}>"


class Saga:
    """Subclass it to declare a workflow; see the module documentation.

    Class attributes: ``workflow_name`` (default: the class name), ``namespace``, ``version``,
    ``input_schema`` (a pydantic model the input must fit, checked before anything runs), ``retry_defaults``
    and ``compensation_retry_defaults``. Class keywords: ``abstract=True`` for a base class that is not a
    workflow itself, ``registry=`` to register elsewhere than the default registry (``None``: nowhere).
    """

    workflow: ClassVar[Workflow]
    """The compiled workflow (set when the class is defined)."""
    workflow_name: ClassVar[str | None] = None
    namespace: ClassVar[str] = DEFAULT_NAMESPACE
    version: ClassVar[str] = "1"
    input_schema: ClassVar[Any] = None
    retry_defaults: ClassVar[RetryPolicy | None] = None
    compensation_retry_defaults: ClassVar[RetryPolicy | None] = None
    asynchronous: ClassVar[bool] = False
    """When True (seed 000's ``async true``), ``run`` records the run for workers and returns a handle."""

    def __init_subclass__(
        cls, *, abstract: bool = False, registry: Registry | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        cls.workflow = _compile(cls)
        if registry is not None:
            registry.register(cls.workflow, namespace=cls.namespace, name=cls.workflow_name or cls.__name__)

    @classmethod
    def _compiled(cls) -> Workflow:
        workflow = cls.__dict__.get("workflow")
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"{cls.__name__} is not a workflow (it is abstract, or Saga itself)")
        return workflow

    @classmethod
    def run(
        cls,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        backend: Backend | None = None,
        workflow_id: str | None = None,
        clock: Clock | None = None,
        correlation_id: str | None = None,
        **fields: Any,
    ) -> Any:
        """Run the workflow with the input ``fields`` (or the mapping ``inputs``) and wait for its end.

        With ``asynchronous = True`` on the class, record the run in ``backend`` for a worker to execute
        instead, and return a :class:`SagaHandle` at once.

        In memory unless ``backend`` is given; with a backend the run is durable, identified by
        ``workflow_id`` (a new id when none is given). Raises :class:`~conveyor.errors.InvalidInputError`
        if the input does not fit ``input_schema``; a failed step is reported in the result, not raised.
        """
        # The engine sits above the definition layer; import it only when a run is started.
        from conveyor.backends.memory import InMemoryBackend
        from conveyor.runtime.adapters import run_durable_workflow

        workflow = cls._compiled()
        if workflow_id is None:
            workflow_id = workflow.new_run_id()
        if inputs is not None and not isinstance(inputs, Mapping):
            raise DefinitionError(f"{cls.__name__}.run() takes keyword fields or a mapping, not {inputs!r}")
        if cls.asynchronous:
            from conveyor.runtime.adapters import start_workflow

            if backend is None:
                raise DefinitionError(
                    f"{cls.__name__} is asynchronous: pass the backend its workers read (backend=...)"
                )
            handle = start_workflow(
                workflow,
                workflow_id,
                {**(inputs or {}), **fields},
                backend,
                correlation_id=correlation_id,
            )
            return SagaHandle(handle, workflow)
        status = run_durable_workflow(
            workflow,
            workflow_id,
            {**(inputs or {}), **fields},
            backend if backend is not None else InMemoryBackend(),
            correlation_id=correlation_id,
            clock=clock,
        )
        return SagaResult(status, workflow)

    @classmethod
    def retry(cls, workflow_id: str, *, backend: Backend, clock: Clock | None = None) -> SagaResult:
        """Run a failed run again once its fault is fixed; completed steps are kept (``retry_workflow``)."""
        workflow = cls._compiled()
        from conveyor.runtime.adapters import retry_workflow

        return SagaResult(retry_workflow(workflow, workflow_id, backend, clock=clock), workflow)


_RESERVED = frozenset({"workflow", *vars(Saga)})


# -- compiling a class ----------------------------------------------------------------------------


def _compile(cls: type[Saga]) -> Workflow:
    """Turn the steps ``cls`` declares and inherits into a :class:`Workflow`."""
    where = f"saga {cls.__name__}"
    _check_instantiable(cls, where)
    for option in ("retry_defaults", "compensation_retry_defaults"):
        value = getattr(cls, option)
        if value is not None and not isinstance(value, RetryPolicy):
            raise DefinitionError(f"{option} of {where} must be a RetryPolicy, not {value!r}")
    steps = [
        _step_definition(cls, declared, undo_name) for declared, undo_name in _declarations(cls).values()
    ]
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
    )


def _declarations(cls: type) -> dict[str, tuple[StepMethod, str | None]]:
    """Every step ``cls`` has, base classes' first, with the name of its undo method."""
    declared: dict[str, tuple[StepMethod, str | None]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, StepMethod):
                if name in _RESERVED:
                    raise DefinitionError(f"a step of {klass.__name__} may not be called {name!r}")
                inherited = declared[name][1] if name in declared else None
                declared[name] = (value, value.undo_name or inherited)
    return declared


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


def _step_definition(cls: type, declared: StepMethod, undo_name: str | None) -> StepDefinition:
    name = declared.name
    fn = _method(cls, name, f"step {name!r} of {cls.__name__}")
    undo = None
    if undo_name is not None:
        undo_fn = _method(cls, undo_name, f"the undo of step {name!r} of {cls.__name__}")
        undo = _undo_caller(cls, name, undo_fn)
    spec = make_task_spec(
        _step_caller(cls, name, fn),
        name=name,
        retries=declared.retries,
        timeout_secs=declared.timeout_secs,
        compensate=undo,
        compensation_retries=declared.compensation_retries,
        description=declared.description if declared.description is not None else inspect.getdoc(fn) or "",
    )
    bindings: dict[str, Source] = dict(declared.bindings)
    for parameter in spec.shape.parameters:
        bindings.setdefault(parameter.name, from_input(parameter.name))
    return StepDefinition(name, spec, Arguments(bindings), depends_on=declared.after)


def _step_caller(cls: type, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
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


def _undo_caller(cls: type, step_name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The compensation the engine calls with ``(result, arguments)``: it calls ``fn`` with what it names."""
    what = f"the undo of step {step_name!r} of {cls.__name__}"
    hints = _hints(fn, what)
    self_name = next(iter(inspect.signature(fn).parameters))
    context_name: str | None = None
    takes_the_rest = False
    wanted: list[tuple[str, TypedCodec, bool]] = []
    for parameter in _data_parameters(fn, what):
        if hints.get(parameter.name) is StepContext:
            context_name = parameter.name
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
