"""The routes of a workflow class: ``@route`` methods and the ``@step(when=(route, key))`` steps after them.

:func:`class_routes` gathers each route's branches (the steps of one key, in declaration order) and checks
what the class declares: a ``when`` names a route declared before the step, a route has branches, its
default is one of their keys, and no step reads the result of a branch it is not on (it reads
``from_route(route)`` instead). :func:`resolve_route_source` tells a ``from_route`` source each branch's
last step.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.definition.arguments import Arguments, FromRouteResult, Source
from conveyor.definition.control import Route
from conveyor.definition.names import check_name
from conveyor.definition.steps import RouteStepMethod, StepMethod
from conveyor.errors import DefinitionError


def class_routes(cls: type, methods: Sequence[StepMethod]) -> dict[str, Route]:
    """Each route of ``cls`` (by its step's name) with its branches, checked."""
    where = f"saga {cls.__name__}"
    seen: dict[str, StepMethod] = {}
    branches: dict[str, dict[str, list[str]]] = {}
    branch_of: dict[str, tuple[str, str]] = {}
    for method in methods:
        if isinstance(method, RouteStepMethod):
            branches[method.name] = {}
        if method.when is not None:
            route, key = method.when
            if route not in branches:
                what = "is not a route" if route in seen else "is not a route declared before it"
                raise DefinitionError(
                    f"step {method.name!r} of {where} runs when={method.when!r}, but {route!r} {what} "
                    "(declare it with @route, before its branches)"
                )
            check_name(key, f"the branch key of step {method.name!r} of {where}")
            branches[route].setdefault(key, []).append(method.name)
            branch_of[method.name] = (route, key)
        seen[method.name] = method
    routes: dict[str, Route] = {}
    for name, keyed in branches.items():
        method = seen[name]
        assert isinstance(method, RouteStepMethod)
        if not keyed:
            raise DefinitionError(
                f"route {name!r} of {where} has no branches; declare its steps with "
                f"@step(when=({name!r}, 'key'))"
            )
        if method.default is not None and method.default not in keyed:
            raise DefinitionError(
                f"the default of route {name!r} of {where} is {method.default!r}, which is none of its "
                f"branches ({', '.join(map(repr, keyed))})"
            )
        routes[name] = Route(tuple((key, tuple(steps)) for key, steps in keyed.items()), method.default)
    for method in methods:
        for read in Arguments(dict(method.bindings)).sources:
            if read in branch_of and branch_of.get(method.name) != branch_of[read]:
                route, key = branch_of[read]
                raise DefinitionError(
                    f"step {method.name!r} of {where} reads the result of {read!r}, which runs only when "
                    f"route {route!r} chooses {key!r}; read from_route({route!r}) instead"
                )
    return routes


def resolve_route_source(source: Source, routes: dict[str, Route], what: str) -> Source:
    """``source``, with each branch's last step filled in if it is a ``from_route``."""
    if not isinstance(source, FromRouteResult):
        return source
    route = routes.get(source.route)
    if route is None:
        raise DefinitionError(
            f"{what} reads from_route({source.route!r}), but {source.route!r} is not a route"
        )
    choices = tuple((key, steps[-1]) for key, steps in route.branches)
    return FromRouteResult(source.route, source.field, choices)
