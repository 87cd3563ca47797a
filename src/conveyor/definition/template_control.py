"""Loops and maps in YAML templates: ``loop: {max_iterations: 5, on_max: exit}`` and
``map: {over: validate_cart.lines, max_concurrency: 4}`` on a step with a ``handler_class``.

A loop step's handler returns ``LoopResult.again(value)`` or ``LoopResult.done(value)`` from ``process``;
each later iteration finds the value the one before passed on in ``results`` under the step's own name. A
map step's handler is called once per element of the list ``over`` names (the run's input, ``context``, or
a step's result, then fields along a dotted path; without ``over``, the whole result of the one step it
depends on), the element in ``results`` under the step's own name; its ``undo`` runs once per element that
succeeded, newest first.

:func:`template_controls` reads both from the step templates and checks them, and :func:`map_items` finds
a map's list among the steps upstream of it; each mistake is a
:class:`~conveyor.definition.template_source.TemplateError` naming the file, line, step and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from conveyor.definition.binding import ArgumentBuilder
from conveyor.definition.loops import Loop
from conveyor.definition.maps import DEFAULT_MAX_CONCURRENCY, ITEMS_PARAMETER, Map
from conveyor.definition.task import CallableShape
from conveyor.definition.template_source import Place, place_of
from conveyor.errors import StepInputError

LOOP_FIELDS = ("max_iterations", "on_max")
"""The fields of a step's ``loop:``."""

MAP_FIELDS = ("over", "max_concurrency")
"""The fields of a step's ``map:``."""

INPUT = "context"
"""How ``over`` names the run's input: as a handler's ``process`` receives it."""


@dataclass(frozen=True, slots=True)
class TemplateMap:
    """A step's ``map:``: at most ``max_concurrency`` elements at once, over the list at ``over`` (the
    dotted path as written, split; None for the whole result of the one step it depends on)."""

    max_concurrency: int
    over: tuple[str, ...] | None
    place: Place
    """Where ``over`` (or, without it, ``map``) was written, for errors found once the graph is known."""


@dataclass(frozen=True, slots=True)
class ItemsAt:
    """The list a template's map step maps over: the run's input (``step`` None) or ``step``'s result, then
    the field at each name of ``path`` in turn (a binding, compiled once)."""

    step: str | None
    path: tuple[str, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        """The step whose result holds the list (none for the run's input)."""
        return () if self.step is None else (self.step,)

    def written(self) -> str:
        """The path as the template writes it (``validate_cart.lines``)."""
        return ".".join((INPUT if self.step is None else self.step, *self.path))

    def compile(self, shape: CallableShape, step_name: str) -> ArgumentBuilder:
        """The builder that reads the list (plain JSON; the engine checks it is a list)."""
        step, path = self.step, self.path

        def build(workflow_input: str, results: Mapping[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            value = orjson.loads(workflow_input if step is None else results[step])
            for depth, name in enumerate(path):
                if not isinstance(value, dict) or name not in value:
                    reached = ".".join((INPUT if step is None else step, *path[:depth]))
                    found = (
                        f"has no field {name!r} (fields: {', '.join(map(repr, value)) or 'none'})"
                        if isinstance(value, dict)
                        else f"is {type(value).__name__}, not an object"
                    )
                    raise StepInputError(
                        f"map {step_name!r} maps over {self.written()}, and {reached} {found}",
                        step_name=step_name,
                    )
                value = value[name]
            return (), {ITEMS_PARAMETER: value}

        return build


@dataclass(frozen=True, slots=True)
class MapOver(Map):
    """A template's map step: a :class:`Map` whose definition hash also covers where its list is (a
    Flow's map always takes the previous result; a template's names it, and naming another list is another
    definition)."""

    over: str = ""

    def describe(self) -> list[Any]:
        """What the definition hash sees of it: the map's, and the list's path as written."""
        return [*Map.describe(self), self.over]

    @classmethod
    def of(cls, control: Map, items: ItemsAt) -> MapOver:
        """``control``, the map ``map_task`` made, with where its list is."""
        return cls(
            control.max_concurrency, control.element, control.items, control.arguments, items.written()
        )


Control = Loop | TemplateMap
"""What a step's ``loop:`` or ``map:`` declares."""


def template_controls(templates: Sequence[Any], names: Sequence[str], source: str) -> dict[str, Control]:
    """Each loop step's :class:`Loop` and each map step's :class:`TemplateMap`, by step name."""
    controls: dict[str, Control] = {}
    for template, name in zip(templates, names, strict=True):
        declared = [key for key in ("loop", "map") if key in template]
        if not declared:
            continue
        if len(declared) > 1:
            raise place_of(template, source, "map", name).error(
                "a step is a loop or a map, not both; make two steps"
            )
        (key,) = declared
        if template.get("route") is True:
            raise place_of(template, source, key, name).error(
                f"a route cannot be a {key}: a route's process returns the key of a branch; make the {key} "
                "a step of its own"
            )
        if "handler_class" not in template:
            raise place_of(template, source, key, name).error(
                f"a {key} needs a handler_class whose process is called "
                + ("once per iteration" if key == "loop" else "once per element")
            )
        value = template[key]
        example = "{max_iterations: 5, on_max: exit}" if key == "loop" else "{over: validate.lines}"
        if not isinstance(value, Mapping):
            raise place_of(template, source, key, name).error(
                f"must be a mapping such as {example}, not {value!r}"
            )
        known = LOOP_FIELDS if key == "loop" else MAP_FIELDS
        for field in value:
            if field not in known:
                raise _place(value, template, source, key, str(field), name).error(
                    f"unknown field in a {key}; the known fields are {', '.join(known)}"
                )
        controls[name] = (
            _loop(value, template, source, name) if key == "loop" else _map(value, template, source, name)
        )
    return controls


def _place(
    value: Mapping[str, Any], template: Mapping[str, Any], source: str, key: str, field: str, step: str
) -> Place:
    """Where ``field`` of the step's ``loop`` or ``map`` (``key``) is: its own line, named ``loop.field``."""
    line = getattr(value, "key_lines", {}).get(field)
    if line is None:
        line = place_of(template, source, key, step).line
    return Place(source, line, step, f"{key}.{field}")


def _loop(value: Mapping[str, Any], template: Mapping[str, Any], source: str, name: str) -> Loop:
    if "max_iterations" not in value:
        raise place_of(template, source, "loop", name).error(
            "a loop needs max_iterations: the most times its process is called"
        )
    most = value["max_iterations"]
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise _place(value, template, source, "loop", "max_iterations", name).error(
            f"must be a whole number of iterations, at least 1, not {most!r}"
        )
    on_max = value.get("on_max", "fail")
    if on_max not in ("fail", "exit"):
        raise _place(value, template, source, "loop", "on_max", name).error(
            f"must be fail (the step fails with LoopLimitError) or exit (it completes with the last value), "
            f"not {on_max!r}"
        )
    return Loop(most, on_max)


def _map(value: Mapping[str, Any], template: Mapping[str, Any], source: str, name: str) -> TemplateMap:
    concurrency = value.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise _place(value, template, source, "map", "max_concurrency", name).error(
            f"must be a whole number of elements at once, at least 1, not {concurrency!r}"
        )
    if "over" not in value:
        return TemplateMap(concurrency, None, place_of(template, source, "map", name))
    place = _place(value, template, source, "map", "over", name)
    over = value["over"]
    parts = over.split(".") if isinstance(over, str) else []
    if not parts or not all(part.strip() for part in parts):
        raise place.error(
            f"must name the list as context.field (the run's input) or step.field (a step's result), "
            f"not {over!r}"
        )
    return TemplateMap(concurrency, tuple(parts), place)


def map_items(
    declared: TemplateMap, name: str, depends_on: Sequence[str], upstream: Sequence[str], names: Sequence[str]
) -> ItemsAt:
    """Where the map step ``name`` finds its list: ``over`` checked against the steps upstream of it (or,
    without ``over``, the one step it depends on)."""
    place = declared.place
    if declared.over is None:
        if len(depends_on) != 1:
            which = f" ({', '.join(depends_on)})" if depends_on else ""
            raise place.error(
                "a map without over maps over the result of the one step it depends on, and this step "
                f"depends on {len(depends_on)}{which}; say where its list is with over: step.field"
            )
        return ItemsAt(depends_on[0], ())
    head, *path = declared.over
    if head == INPUT:
        if INPUT in upstream:
            raise place.error(
                f"{INPUT!r} names the run's input here, and a step this one depends on is called {INPUT!r}; "
                "rename that step"
            )
        return ItemsAt(None, tuple(path))
    if head == name:
        raise place.error("a map cannot map over its own result")
    if head not in upstream:
        if head in names:
            raise place.error(
                f"maps over {head!r}, a step this one does not depend on (directly or through others); "
                f"add depends_on_step: {head}"
            )
        raise place.error(
            f"maps over {head!r}, which is neither {INPUT} (the run's input) nor a step of this template "
            f"(steps: {', '.join(names)})"
        )
    return ItemsAt(head, tuple(path))
