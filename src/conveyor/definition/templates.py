"""Workflows declared in YAML templates (Tasker's format), with the steps' handlers written in Python.

A template names the workflow (``name``, ``namespace_name``, ``version``, ``description``), the JSON Schema
its input must fit (``schema``) and its ``step_templates``: each with a ``name``, a ``handler_class``
(a dotted import path, or a Ruby-style ``Shop::StepHandlers::ChargeHandler``, read as
``shop.step_handlers.ChargeHandler``), its dependencies (``depends_on_step`` / ``depends_on_steps``),
``retryable``, ``retry_limit`` (attempts in all; 3 by default, as in Tasker) and ``timeout``
(milliseconds). ``task_handler_class`` is accepted and recorded, not called.

A handler is a class with a ``process(self, context, results)`` method: ``context`` is the run's input,
``results`` the results of the steps it depends on, directly or through other steps, by step name (``{}``
for a step with none); it returns a dict, the step's result. It may also define
``undo(self, result, context, results)``, run when a later step fails for good. Either method may declare a
parameter annotated :class:`~conveyor.StepContext` to receive the step's context. A handler is created with
no arguments for every call. The workflow's output is a dict of every step's result.

Loading reads the file and imports the handler classes; nothing else is done until the workflow runs.
Every mistake (unknown handler, missing or invalid field, unknown dependency, cycle, invalid JSON Schema)
is a :class:`TemplateError` naming the file, the line, the step and the field.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

from conveyor.definition.arguments import Arguments, from_input, from_results
from conveyor.definition.registry import Registry, default_registry, qualified_name
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.task import StepContext, make_task_spec
from conveyor.definition.workflow import StepDefinition, Workflow, build_workflow
from conveyor.errors import DefinitionError, InvalidInputError, NonRetryableError

Handlers = ModuleType | Mapping[str, type]
"""Where handler classes are found instead of being imported: a module (a class is looked up by the last
segment of its ``handler_class``) or a mapping from ``handler_class`` as written to the class."""

DEFAULT_RETRY_LIMIT = 3
"""Attempts a retryable step gets when its template gives no ``retry_limit`` (Tasker's default)."""

TEMPLATE_FIELDS = (
    "name",
    "namespace_name",
    "version",
    "description",
    "task_handler_class",
    "schema",
    "step_templates",
)
STEP_FIELDS = (
    "name",
    "description",
    "handler_class",
    "depends_on_step",
    "depends_on_steps",
    "retryable",
    "retry_limit",
    "timeout",
)


class TemplateError(DefinitionError):
    """A YAML workflow template is invalid."""


# -- reading YAML with line numbers ---------------------------------------------------------------


class _Located(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]


class _TemplateLoader(yaml.SafeLoader):
    """PyYAML's safe loader, keeping line numbers and refusing duplicate keys."""


def _construct_mapping(loader: _TemplateLoader, node: yaml.MappingNode) -> Iterator[_Located]:
    mapping = _Located()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    yield mapping
    seen: set[str] = set()
    for key_node, _value in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key_node.value!r} twice",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
    mapping.update(loader.construct_mapping(node))
    for key_node, _value in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            mapping.key_lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)


_TemplateLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where in which file a value was read, for error messages."""

    source: str
    line: int | None = None
    step: str | None = None
    field: str | None = None

    def error(self, message: str) -> TemplateError:
        """The error to raise for ``message`` at this place."""
        location = self.source if self.line is None else f"{self.source}:{self.line}"
        subject = ", ".join(
            part
            for part in (
                None if self.step is None else f"step {self.step!r}",
                None if self.field is None else f"field {self.field!r}",
            )
            if part
        )
        return TemplateError(
            f"{location}: {subject + ': ' if subject else ''}{message}",
            file=self.source,
            line=self.line,
            step_name=self.step,
            field=self.field,
        )


def _at(mapping: Mapping[str, Any], source: str, key: str | None = None, step: str | None = None) -> _Place:
    lines = getattr(mapping, "key_lines", {})
    line = lines.get(key) if key is not None else None
    return _Place(source, line if line is not None else getattr(mapping, "line", None), step, key)


def _text(
    mapping: Mapping[str, Any], key: str, source: str, step: str | None = None, *, required: bool = False
) -> str | None:
    value = mapping.get(key)
    if value is None:
        if required:
            raise _at(mapping, source, None, step).error(f"the field {key!r} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _at(mapping, source, key, step).error(f"must be a non-empty string, not {value!r}")
    return value


def _check_fields(mapping: Any, known: Sequence[str], place: _Place, what: str) -> Mapping[str, Any]:
    if not isinstance(mapping, Mapping):
        raise place.error(f"{what} must be a mapping, not {type(mapping).__name__}")
    for key in mapping:
        if key not in known:
            raise _at(mapping, place.source, str(key), place.step).error(
                f"unknown field in {what}; the known fields are {', '.join(known)}"
            )
    return mapping


# -- handlers -------------------------------------------------------------------------------------


def _snake_case(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _import_class(path: str, place: _Place) -> Any:
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


def _find_handler(path: str, handlers: Handlers | None, place: _Place) -> type:
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
class _Method:
    """A handler method conveyor calls: whether it is async, and which parameter wants the step context."""

    function: Callable[..., Any]
    is_async: bool
    context_parameter: str | None


def _method(handler: type, name: str, arguments: str, place: _Place) -> _Method | None:
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
    return _Method(function, inspect.iscoroutinefunction(function), context)


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


def _step_function(handler: type, process: _Method, step_name: str) -> Callable[..., Any]:
    """The step function: creates the handler and calls ``process(context, results)``."""
    function = process.function

    def extra(step: StepContext) -> dict[str, Any]:
        return {} if process.context_parameter is None else {process.context_parameter: step}

    if process.is_async:

        async def run_handler(
            context: Any, step: StepContext, results: dict[str, Any] | None = None
        ) -> dict[str, Any]:
            value = await function(handler(), context, results or {}, **extra(step))
            return _as_result(value, handler, step_name)

        return run_handler

    def run_handler_sync(
        context: Any, step: StepContext, results: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return _as_result(function(handler(), context, results or {}, **extra(step)), handler, step_name)

    return run_handler_sync


def _undo_function(handler: type, undo: _Method) -> Callable[..., Any]:
    """The compensation: creates the handler and calls ``undo(result, context, results)``."""
    function = undo.function

    def call(result: Any, arguments: Any, step: StepContext) -> Any:
        extra = {} if undo.context_parameter is None else {undo.context_parameter: step}
        return function(handler(), result, arguments["context"], arguments.get("results") or {}, **extra)

    if undo.is_async:

        async def undo_handler(result: dict[str, Any], arguments: Any, step: StepContext) -> Any:
            return await call(result, arguments, step)

        return undo_handler

    def undo_handler_sync(result: dict[str, Any], arguments: Any, step: StepContext) -> Any:
        return call(result, arguments, step)

    return undo_handler_sync


# -- schema ---------------------------------------------------------------------------------------


def _line_of(document: Any, path: Sequence[Any]) -> int | None:
    """The line of the deepest key along ``path`` in a mapping read from YAML."""
    line = getattr(document, "line", None)
    for part in path:
        if isinstance(document, Mapping) and part in document:
            line = getattr(document, "key_lines", {}).get(str(part), line)
            document = document[part]
        elif isinstance(document, list) and isinstance(part, int) and 0 <= part < len(document):
            document = document[part]
            line = getattr(document, "line", line)
        else:
            break
    return line


def _input_validator(schema: dict[str, Any], workflow_name: str, place: _Place) -> Callable[[Any], Any]:
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = list(exc.absolute_path)
        where = ".".join(str(part) for part in path) or "(the schema itself)"
        line = _line_of(schema, path)
        raise _Place(place.source, line or place.line, None, "schema").error(
            f"invalid JSON Schema at {where}: {exc.message}"
        ) from exc
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    def validate(value: Any) -> Any:
        problems: dict[str, str] = {}
        for error in validator.iter_errors(value):
            location = ".".join(str(part) for part in error.absolute_path)
            required = error.validator_value
            if (
                error.validator == "required"
                and isinstance(error.instance, Mapping)
                and isinstance(required, list)
            ):
                for missing in required:
                    if missing not in error.instance:
                        problems.setdefault(f"{location}.{missing}" if location else missing, "is required")
            else:
                problems.setdefault(location or "(the input itself)", error.message)
        if not problems:
            return value
        fields = sorted(problems)
        raise InvalidInputError(
            f"the input of workflow {workflow_name!r} does not fit its schema: "
            + "; ".join(f"field {field!r}: {problems[field]}" for field in fields),
            fields=fields,
        )

    return validate


# -- templates ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Template:
    """A template read and compiled, before it is registered."""

    source: str
    namespace: str
    name: str
    version: str
    task_handler_class: str | None
    workflow: Workflow


def _find_cycle(dependencies: Mapping[str, Sequence[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        visiting.append(name)
        for dependency in dependencies.get(name, ()):
            if dependency in visiting:
                return [*visiting[visiting.index(dependency) :], dependency]
            if dependency not in done:
                cycle = visit(dependency)
                if cycle:
                    return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in dependencies:
        if name not in done:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


def _dependencies(template: Mapping[str, Any], source: str, step: str) -> tuple[str, ...]:
    names: list[str] = []
    single = template.get("depends_on_step")
    if single is not None:
        if not isinstance(single, str) or not single:
            raise _at(template, source, "depends_on_step", step).error(f"must be a step name, not {single!r}")
        names.append(single)
    several = template.get("depends_on_steps")
    if several is not None:
        if not isinstance(several, list) or not all(isinstance(name, str) and name for name in several):
            raise _at(template, source, "depends_on_steps", step).error(
                f"must be a list of step names, not {several!r}"
            )
        names.extend(several)
    return tuple(dict.fromkeys(names))


def _retries(template: Mapping[str, Any], source: str, step: str) -> RetryPolicy:
    retryable = template.get("retryable", True)
    if not isinstance(retryable, bool):
        raise _at(template, source, "retryable", step).error(f"must be true or false, not {retryable!r}")
    limit = template.get("retry_limit", DEFAULT_RETRY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise _at(template, source, "retry_limit", step).error(
            f"must be a whole number of attempts, at least 1, not {limit!r}"
        )
    if not retryable or limit == 1:
        return RetryPolicy.none()
    return RetryPolicy(max_attempts=limit, backoff="exponential", initial_delay_secs=1.0, max_delay_secs=30.0)


def _timeout_seconds(template: Mapping[str, Any], source: str, step: str) -> float | None:
    timeout = template.get("timeout")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _at(template, source, "timeout", step).error(
            f"must be a positive number of milliseconds, not {timeout!r}"
        )
    return timeout / 1000.0


def _step(
    template: Mapping[str, Any], name: str, reads: tuple[str, ...], source: str, handlers: Handlers | None
) -> StepDefinition:
    """Compile one step template; ``reads`` are the steps whose results its handler receives."""
    handler_path = _text(template, "handler_class", source, name, required=True)
    assert handler_path is not None
    handler_place = _at(template, source, "handler_class", name)
    handler = _find_handler(handler_path, handlers, handler_place)
    process = _method(handler, "process", "context, results", handler_place)
    if process is None:
        raise handler_place.error(f"handler {handler_path!r} has no process(self, context, results) method")
    undo = _method(handler, "undo", "result, context, results", handler_place)
    spec = make_task_spec(
        _step_function(handler, process, name),
        name=name,
        retries=_retries(template, source, name),
        timeout_secs=_timeout_seconds(template, source, name),
        compensate=None if undo is None else _undo_function(handler, undo),
        description=_text(template, "description", source, name) or "",
    )
    binding = (
        Arguments(context=from_input(), results=from_results(*reads))
        if reads
        else Arguments(context=from_input())
    )
    return StepDefinition(name, spec, binding)


def _step_names(templates: list[Any], source: str) -> list[str]:
    """Each step template's name, checking its fields are known and no name is declared twice."""
    names: list[str] = []
    for index, template in enumerate(templates):
        given = template.get("name") if isinstance(template, Mapping) else None
        label = given if isinstance(given, str) and given.strip() else f"#{index + 1}"
        _check_fields(template, STEP_FIELDS, _Place(source, getattr(template, "line", None), label), "a step")
        name = _text(template, "name", source, label, required=True)
        assert name is not None
        if name in names:
            raise _at(template, source, "name", name).error(f"a step called {name!r} is declared twice")
        names.append(name)
    return names


def _dependency_field(template: Mapping[str, Any]) -> str:
    return "depends_on_step" if "depends_on_step" in template else "depends_on_steps"


def _check_graph(templates: list[Any], names: list[str], source: str) -> dict[str, tuple[str, ...]]:
    """Each step's dependencies, refusing unknown ones and cycles (named with their file and line)."""
    dependencies: dict[str, tuple[str, ...]] = {}
    for template, name in zip(templates, names, strict=True):
        declared = _dependencies(template, source, name)
        for dependency in declared:
            if dependency == name:
                raise _at(template, source, _dependency_field(template), name).error(
                    "a step cannot depend on itself"
                )
            if dependency not in names:
                raise _at(template, source, _dependency_field(template), name).error(
                    f"depends on {dependency!r}, which is not a step of this template "
                    f"(steps: {', '.join(names)})"
                )
        dependencies[name] = declared
    cycle = _find_cycle(dependencies)
    if cycle:
        template = templates[names.index(cycle[0])]
        raise _at(template, source, _dependency_field(template), cycle[0]).error(
            f"the dependencies form a cycle: {' -> '.join(cycle)}"
        )
    return dependencies


def _upstream(dependencies: Mapping[str, tuple[str, ...]], names: list[str]) -> dict[str, tuple[str, ...]]:
    """For each step, every step it depends on directly or through others, in declaration order."""
    upstream: dict[str, tuple[str, ...]] = {}
    for name in names:
        found: set[str] = set()
        waiting = list(dependencies[name])
        while waiting:
            step = waiting.pop()
            if step not in found:
                found.add(step)
                waiting.extend(dependencies[step])
        upstream[name] = tuple(step for step in names if step in found)
    return upstream


def _compile(document: Any, source: str, handlers: Handlers | None) -> _Template:
    top = _check_fields(document, TEMPLATE_FIELDS, _Place(source, 1), "a workflow template")
    name = _text(top, "name", source, required=True)
    assert name is not None
    namespace = _text(top, "namespace_name", source) or "default"
    version = top.get("version", "0.1.0")
    if isinstance(version, float):
        raise _at(top, source, "version").error(
            f"{version!r} was read as a number; quote it (version: '1.10', not 1.10)"
        )
    if isinstance(version, bool) or not isinstance(version, str | int) or not str(version).strip():
        raise _at(top, source, "version").error(f"must be a version string such as '1.0.0', not {version!r}")
    task_handler_class = _text(top, "task_handler_class", source)
    schema = top.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise _at(top, source, "schema").error(f"must be a JSON Schema object, not {type(schema).__name__}")
    templates = top.get("step_templates")
    if not isinstance(templates, list) or not templates:
        raise _at(top, source, "step_templates" if "step_templates" in top else None).error(
            "step_templates must be a non-empty list of steps"
        )
    names = _step_names(templates, source)
    upstream = _upstream(_check_graph(templates, names, source), names)
    steps = [
        _step(template, step_name, upstream[step_name], source, handlers)
        for template, step_name in zip(templates, names, strict=True)
    ]
    workflow_name = qualified_name(namespace, name)
    validator = (
        None if schema is None else _input_validator(schema, workflow_name, _at(top, source, "schema"))
    )
    return _Template(
        source=source,
        namespace=namespace,
        name=name,
        version=str(version),
        task_handler_class=task_handler_class,
        workflow=build_workflow(
            workflow_name,
            steps,
            version=str(version),
            description=_text(top, "description", source) or "",
            input_validator=validator,
        ),
    )


def _read(path: Path, handlers: Handlers | None) -> _Template:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{source}: cannot read the template: {exc}", file=source) from exc
    try:
        document = yaml.load(text, Loader=_TemplateLoader)  # a SafeLoader: builds plain values only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise _Place(source, line).error(f"invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise _Place(source).error(f"invalid YAML: {exc}") from exc
    return _compile(document, source, handlers)


def load_template(
    path: str | Path, *, handlers: Handlers | None = None, registry: Registry | None = default_registry
) -> Workflow:
    """Read the YAML template at ``path``, register its workflow in ``registry`` and return the workflow.

    ``handlers`` is where handler classes are found (a module, or a mapping from ``handler_class`` as
    written); without it each ``handler_class`` is imported. ``registry=None`` registers nothing.
    """
    template = _read(Path(path), handlers)
    if registry is not None:
        registry.register(template.workflow, namespace=template.namespace, name=template.name)
    return template.workflow


def load_templates(
    directory: str | Path, *, handlers: Handlers | None = None, registry: Registry | None = default_registry
) -> list[Workflow]:
    """Load every ``*.yaml`` / ``*.yml`` template under ``directory`` (recursively), all or none.

    Two files declaring the same (namespace, name, version) are an error naming both.
    """
    root = Path(directory)
    if not root.is_dir():
        raise TemplateError(f"{root}: not a directory of templates", file=str(root))
    paths = sorted(path for path in root.rglob("*") if path.suffix in (".yaml", ".yml") and path.is_file())
    templates = [_read(path, handlers) for path in paths]
    first: dict[tuple[str, str, str], str] = {}
    for template in templates:
        key = (template.namespace, template.name, template.version)
        if key in first:
            raise TemplateError(
                f"{template.source}: workflow {template.namespace}/{template.name} v{template.version} is "
                f"also declared in {first[key]}",
                file=template.source,
            )
        first[key] = template.source
    if registry is not None:
        for template in templates:
            registry.register(template.workflow, namespace=template.namespace, name=template.name)
    return [template.workflow for template in templates]
