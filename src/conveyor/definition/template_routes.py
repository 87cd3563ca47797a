"""Routes in YAML templates: a step ``route: true`` (``default_branch: key``), steps ``when: {route: key}``.

:func:`template_routes` reads them from the step templates and checks them, each mistake a
:class:`~conveyor.definition.template_source.TemplateError` naming the file, line, step and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.definition.control import Route
from conveyor.definition.names import check_name
from conveyor.definition.template_source import place_of
from conveyor.errors import DefinitionError


def template_routes(
    templates: Sequence[Any], names: Sequence[str], source: str
) -> tuple[dict[str, Route], dict[str, tuple[str, str]]]:
    """Each route step's :class:`Route`, and each ``when`` step's (route, key)."""
    declared: dict[str, Mapping[str, Any]] = {}
    when: dict[str, tuple[str, str]] = {}
    for template, name in zip(templates, names, strict=True):
        flag = template.get("route", False)
        if not isinstance(flag, bool):
            raise place_of(template, source, "route", name).error(f"must be true or false, not {flag!r}")
        if flag:
            if "handler_class" not in template:
                raise place_of(template, source, "route", name).error(
                    "a route needs a handler_class whose process returns the key of the branch to run"
                )
            declared[name] = template
        elif "default_branch" in template:
            raise place_of(template, source, "default_branch", name).error(
                "only a route has a default_branch"
            )
        if "when" in template:
            when[name] = _when(template, name, source)
    branches: dict[str, dict[str, list[str]]] = {name: {} for name in declared}
    for name, (route, key) in when.items():
        if route not in declared:
            template = templates[list(names).index(name)]
            raise place_of(template, source, "when", name).error(
                f"names {route!r}, which is not a step declared route: true"
            )
        branches[route].setdefault(key, []).append(name)
    routes: dict[str, Route] = {}
    for name, template in declared.items():
        keyed = branches[name]
        if not keyed:
            raise place_of(template, source, "route", name).error(
                f"a route with no branches; declare its steps with when: {{{name}: key}}"
            )
        default = template.get("default_branch")
        if default is not None and default not in keyed:
            raise place_of(template, source, "default_branch", name).error(
                f"is {default!r}, which is none of the route's branches ({', '.join(map(repr, keyed))})"
            )
        routes[name] = Route(tuple((key, tuple(steps)) for key, steps in keyed.items()), default)
    return routes, when


def _when(template: Mapping[str, Any], name: str, source: str) -> tuple[str, str]:
    value = template["when"]
    if not isinstance(value, Mapping) or len(value) != 1:
        raise place_of(template, source, "when", name).error(
            f"must name one route step and the key it runs for, such as {{choose_shipping: express}}, "
            f"not {value!r}"
        )
    ((route, key),) = value.items()
    if not isinstance(route, str) or not isinstance(key, str):
        raise place_of(template, source, "when", name).error(
            f"must map a route step's name to a branch key (text), not {value!r}"
        )
    try:
        check_name(key, f"the branch key of step {name!r}")
    except DefinitionError as exc:
        raise place_of(template, source, "when", name).error(exc.message) from None
    return route, key
