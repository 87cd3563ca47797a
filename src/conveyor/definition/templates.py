"""Workflows declared in YAML templates (Tasker's format), with the steps' handlers written in Python.

A template names the workflow (``name``, ``namespace_name``, ``version``, ``description``), the JSON Schema
its input must fit (``schema``) and its ``step_templates``: each with a ``name``, a ``handler_class``
(a dotted import path, or a Ruby-style ``Shop::StepHandlers::ChargeHandler``, read as
``shop.step_handlers.ChargeHandler``), its dependencies (``depends_on_step`` / ``depends_on_steps``),
``retryable``, ``retry_limit`` (attempts in all; 3 by default, as in Tasker) and ``timeout``
(milliseconds). ``task_handler_class`` names a class whose ``step_settings(self, context)`` method, if it
has one, adjusts steps' timeout and retries per run (see :mod:`conveyor.definition.settings`); any other
public method on it is an error (Tasker's hook names say what to write instead). Instead of a
``handler_class``, a step may declare ``delay: 5m`` (a durable sleep) or ``wait_for_signal: approved`` (a name
or a list; ``timeout`` in milliseconds); its result (the signal's payload) reaches later steps' ``results``.
A step declared ``route: true`` (optionally ``default_branch: key``) is a route: its handler's ``process``
returns a key (text), and the steps declared ``when: {that_step: key}`` run only when it returns that key
(a ``when`` step depends on its route); the others are ``skipped``, and reach later steps' ``results`` as
``None``.
``child_workflow: shipping`` (with ``child_version: "2"``, else the newest) runs a registered workflow as a
child run with the run's input as its input; its output is the step's result.
A step declared ``loop: {max_iterations: 5, on_max: exit}`` is a loop: its handler's ``process`` returns
``LoopResult.again(value)`` or ``LoopResult.done(value)``, and each later iteration finds the value passed on
in ``results`` under the step's own name. A step declared ``map: {over: validate_cart.lines,
max_concurrency: 4}`` calls its handler's ``process`` once per element of that list (the element in
``results`` under the step's own name) and its ``undo`` once per succeeded element, newest first (see
:mod:`conveyor.definition.template_control`).

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conveyor.definition.arguments import Arguments, FromResult, Source, from_input, from_results
from conveyor.definition.children import CHILD_INPUT, ChildRun, child_run
from conveyor.definition.control import Route
from conveyor.definition.loops import Loop, loop_task
from conveyor.definition.maps import Map, element_key, map_task
from conveyor.definition.names import check_name
from conveyor.definition.registry import Registry, qualified_name
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.task import make_task_spec
from conveyor.definition.template_control import Control, ItemsAt, MapOver, map_items, template_controls
from conveyor.definition.template_handlers import (
    RECEIVED,
    Handlers,
    StepKind,
    find_handler,
    handler_method,
    step_function,
    task_hooks,
    undo_function,
)
from conveyor.definition.template_routes import template_routes
from conveyor.definition.template_source import (
    Place,
    TemplateError,
    TemplateLoader,
    check_fields,
    place_of,
    text_field,
)
from conveyor.definition.waits import Sleep, Wait, parse_duration, signal_wait, wait_task
from conveyor.definition.workflow import StepDefinition, Workflow, build_workflow
from conveyor.errors import DefinitionError, InvalidInputError

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
    "delay",
    "wait_for_signal",
    "route",
    "default_branch",
    "when",
    "child_workflow",
    "child_version",
    "loop",
    "map",
)


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


_FAILURES = {
    "type": "is not of type {!r}",
    "pattern": "does not match {!r}",
    "minimum": "is less than the minimum of {!r}",
    "maximum": "is more than the maximum of {!r}",
    "exclusiveMinimum": "is not more than {!r}",
    "exclusiveMaximum": "is not less than {!r}",
    "multipleOf": "is not a multiple of {!r}",
    "minLength": "is shorter than {!r} characters",
    "maxLength": "is longer than {!r} characters",
    "minItems": "has fewer than {!r} items",
    "maxItems": "has more than {!r} items",
    "uniqueItems": "has items that repeat",
    "enum": "is not one of {!r}",
    "const": "is not {!r}",
    "format": "is not a valid {!r}",
}
"""What a failed JSON Schema rule says, without the value: an input may hold a card number or a password."""


def _failure(error: jsonschema.ValidationError) -> str:
    """The schema rule ``error`` broke, in words that never repeat the value that broke it."""
    if error.validator == "additionalProperties":
        return error.message  # names the unexpected keys, which are field names, not values
    template = _FAILURES.get(str(error.validator))
    if template is None:
        return f"does not satisfy the schema's {error.validator!r} rule"
    return template.format(error.validator_value)


def _input_validator(schema: dict[str, Any], workflow_name: str, place: Place) -> Callable[[Any], Any]:
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = list(exc.absolute_path)
        where = ".".join(str(part) for part in path) or "(the schema itself)"
        line = _line_of(schema, path)
        raise Place(place.source, line or place.line, None, "schema").error(
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
                problems.setdefault(location or "(the input itself)", _failure(error))
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
            raise place_of(template, source, "depends_on_step", step).error(
                f"must be a step name, not {single!r}"
            )
        names.append(single)
    several = template.get("depends_on_steps")
    if several is not None:
        if not isinstance(several, list) or not all(isinstance(name, str) and name for name in several):
            raise place_of(template, source, "depends_on_steps", step).error(
                f"must be a list of step names, not {several!r}"
            )
        names.extend(several)
    return tuple(dict.fromkeys(names))


def _retries(template: Mapping[str, Any], source: str, step: str) -> RetryPolicy:
    retryable = template.get("retryable", True)
    if not isinstance(retryable, bool):
        raise place_of(template, source, "retryable", step).error(f"must be true or false, not {retryable!r}")
    limit = template.get("retry_limit", DEFAULT_RETRY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise place_of(template, source, "retry_limit", step).error(
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
        raise place_of(template, source, "timeout", step).error(
            f"must be a positive number of milliseconds, not {timeout!r}"
        )
    return timeout / 1000.0


def _wait(template: Mapping[str, Any], source: str, step: str) -> Wait | None:
    """The wait a step template declares instead of a handler: ``delay: 5m`` (a duration), or
    ``wait_for_signal: approved`` (a name or a list of names, ``timeout`` in milliseconds); else None."""
    kinds = ("handler_class", "delay", "wait_for_signal", "child_workflow")
    declared = [key for key in kinds if key in template]
    if len(declared) > 1:
        raise place_of(template, source, declared[1], step).error(
            "a step has one of handler_class, delay, wait_for_signal and child_workflow, "
            f"not {' and '.join(declared)}"
        )
    if "child_version" in template and "child_workflow" not in template:
        raise place_of(template, source, "child_version", step).error("child_version needs child_workflow")
    try:
        if "child_workflow" in template:
            version = template.get("child_version")
            return child_run(template["child_workflow"], version, what=f"step {step!r}")
        if "delay" in template:
            if "timeout" in template:
                raise place_of(template, source, "timeout", step).error("a delay has no timeout")
            return Sleep(parse_duration(template["delay"], what=f"the delay of step {step!r}"))
        if "wait_for_signal" in template:
            names = template["wait_for_signal"]
            return signal_wait(names, _timeout_seconds(template, source, step), what=f"step {step!r}")
    except DefinitionError as exc:
        key = next(key for key in ("delay", "wait_for_signal", "child_workflow") if key in template)
        raise place_of(template, source, key, step).error(str(exc)) from None
    return None


def _step(
    template: Mapping[str, Any],
    name: str,
    reads: tuple[str, ...],
    source: str,
    handlers: Handlers | None,
    control: Loop | tuple[int, ItemsAt] | None = None,
) -> StepDefinition:
    """Compile one step template; ``reads`` are the steps whose results its handler receives, ``control``
    its loop, or its map's concurrency and list."""
    wait = _wait(template, source, name)
    if wait is not None:  # a durable sleep or a wait for a signal: no handler, after every step upstream
        task = wait_task(name, wait, retries=_retries(template, source, name))
        binding = Arguments({CHILD_INPUT: from_input()}) if isinstance(wait, ChildRun) else Arguments({})
        return StepDefinition(name, task, binding, depends_on=reads)
    handler_path = text_field(template, "handler_class", source, name, required=True)
    assert handler_path is not None
    handler_place = place_of(template, source, "handler_class", name)
    handler = find_handler(handler_path, handlers, handler_place)
    process = handler_method(handler, "process", "context, results", handler_place)
    if process is None:
        raise handler_place.error(f"handler {handler_path!r} has no process(self, context, results) method")
    undo = handler_method(handler, "undo", "result, context, results", handler_place)
    kind: StepKind = "step" if control is None else "loop" if isinstance(control, Loop) else "map"
    if template.get("route") is True:
        kind = "route"
    spec = make_task_spec(
        step_function(handler, process, name, kind=kind),
        name=name,
        retries=_retries(template, source, name),
        timeout_secs=_timeout_seconds(template, source, name),
        compensate=None if undo is None else undo_function(handler, undo, name),
        description=text_field(template, "description", source, name) or "",
    )
    sources: dict[str, Source] = {"context": from_input()}
    if reads:
        sources["results"] = from_results(*reads)
    if isinstance(control, Loop):
        spec = loop_task(spec, control, f"loop step {name!r}")
    elif control is not None:  # each element in the step function's first parameter, then as any step
        concurrency, items = control
        each = Arguments({RECEIVED: FromResult(element_key(name)), **sources})
        spec = map_task(spec, concurrency, items, each, f"map step {name!r}")
        assert isinstance(spec.control, Map)
        spec = replace(spec, control=MapOver.of(spec.control, items))
    return StepDefinition(name, spec, Arguments(sources))


def _routed(step: StepDefinition, routes: Mapping[str, Route]) -> StepDefinition:
    """``step``, made a route if the template declares it one."""
    route = routes.get(step.name)
    if route is None:
        return step
    return StepDefinition(step.name, replace(step.task, control=route), step.binding, step.depends_on)


def _control(
    control: Control | None,
    name: str,
    declared: Mapping[str, tuple[str, ...]],
    upstream: Mapping[str, tuple[str, ...]],
    names: list[str],
) -> Loop | tuple[int, ItemsAt] | None:
    """A step's loop, or its map's concurrency and the list it maps over (checked against the graph)."""
    if control is None or isinstance(control, Loop):
        return control
    return control.max_concurrency, map_items(control, name, declared[name], upstream[name], names)


def _step_names(templates: list[Any], source: str) -> list[str]:
    """Each step template's name, checking its fields are known and no name is declared twice."""
    names: list[str] = []
    for index, template in enumerate(templates):
        given = template.get("name") if isinstance(template, Mapping) else None
        label = given if isinstance(given, str) and given.strip() else f"#{index + 1}"
        check_fields(template, STEP_FIELDS, Place(source, getattr(template, "line", None), label), "a step")
        name = text_field(template, "name", source, label, required=True)
        assert name is not None
        _check_name(template, "name", source, "a step name", step=label)
        if name in names:
            raise place_of(template, source, "name", name).error(f"a step called {name!r} is declared twice")
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
                raise place_of(template, source, _dependency_field(template), name).error(
                    "a step cannot depend on itself"
                )
            if dependency not in names:
                raise place_of(template, source, _dependency_field(template), name).error(
                    f"depends on {dependency!r}, which is not a step of this template "
                    f"(steps: {', '.join(names)})"
                )
        dependencies[name] = declared
    cycle = _find_cycle(dependencies)
    if cycle:
        template = templates[names.index(cycle[0])]
        raise place_of(template, source, _dependency_field(template), cycle[0]).error(
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


def _check_name(
    mapping: Mapping[str, Any],
    key: str,
    source: str,
    what: str,
    *,
    step: str | None = None,
    value: object = None,
) -> None:
    """Refuse a name no backend can store, naming the file and line it was read from."""
    try:
        check_name(mapping.get(key) if value is None else value, what)
    except DefinitionError as exc:
        raise place_of(mapping, source, key, step).error(exc.message) from None


def _compile(document: Any, source: str, handlers: Handlers | None) -> _Template:
    top = check_fields(document, TEMPLATE_FIELDS, Place(source, 1), "a workflow template")
    name = text_field(top, "name", source, required=True)
    assert name is not None
    _check_name(top, "name", source, "a workflow's name")
    namespace = text_field(top, "namespace_name", source) or "default"
    if "namespace_name" in top:
        _check_name(top, "namespace_name", source, "a namespace")
    version = top.get("version", "0.1.0")
    if isinstance(version, float):
        raise place_of(top, source, "version").error(
            f"{version!r} was read as a number; quote it (version: '1.10', not 1.10)"
        )
    if isinstance(version, bool) or not isinstance(version, str | int) or not str(version).strip():
        raise place_of(top, source, "version").error(
            f"must be a version string such as '1.0.0', not {version!r}"
        )
    _check_name(top, "version", source, "a version", value=str(version))
    task_handler_class = text_field(top, "task_handler_class", source)
    step_settings = None
    if task_handler_class is not None:
        place = place_of(top, source, "task_handler_class")
        step_settings = task_hooks(find_handler(task_handler_class, handlers, place), place)
    schema = top.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise place_of(top, source, "schema").error(
            f"must be a JSON Schema object, not {type(schema).__name__}"
        )
    templates = top.get("step_templates")
    if not isinstance(templates, list) or not templates:
        raise place_of(top, source, "step_templates" if "step_templates" in top else None).error(
            "step_templates must be a non-empty list of steps"
        )
    names = _step_names(templates, source)
    controls = template_controls(templates, names, source)  # first: a route that loops is refused as such
    routes, when = template_routes(templates, names, source)
    dependencies = _check_graph(templates, names, source)
    declared = dict(dependencies)
    for step_name, (route_name, _key) in when.items():  # a step of a branch waits for its route
        dependencies[step_name] = tuple(dict.fromkeys((*dependencies[step_name], route_name)))
    upstream = _upstream(dependencies, names)
    steps = [
        _routed(
            _step(
                template,
                step_name,
                upstream[step_name],
                source,
                handlers,
                _control(controls.get(step_name), step_name, declared, upstream, names),
            ),
            routes,
        )
        for template, step_name in zip(templates, names, strict=True)
    ]
    workflow_name = qualified_name(namespace, name)
    validator = (
        None if schema is None else _input_validator(schema, workflow_name, place_of(top, source, "schema"))
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
            description=text_field(top, "description", source) or "",
            input_validator=validator,
            input_schema=schema,
            step_settings=step_settings,
        ),
    )


def _read(path: Path, handlers: Handlers | None) -> _Template:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{source}: cannot read the template: {exc}", file=source) from exc
    try:
        document = yaml.load(text, Loader=TemplateLoader)  # a SafeLoader: builds plain values only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise Place(source, line).error(f"invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise Place(source).error(f"invalid YAML: {exc}") from exc
    return _compile(document, source, handlers)


def load_template(
    path: str | Path, *, handlers: Handlers | None = None, registry: Registry | None = None
) -> Workflow:
    """Read the YAML template at ``path`` and return its workflow; with ``registry``, register it there.

    ``handlers`` is where handler classes are found (a module, or a mapping from ``handler_class`` as
    written); without it each ``handler_class`` is imported. A runtime registers templates with
    ``load_template(path, registry=app.registry)`` (under the template's namespace and name).
    """
    template = _read(Path(path), handlers)
    if registry is not None:
        registry.register(template.workflow, namespace=template.namespace, name=template.name)
    return template.workflow


def load_templates(
    directory: str | Path, *, handlers: Handlers | None = None, registry: Registry | None = None
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
