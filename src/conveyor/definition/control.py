"""Steps that steer the flow of a run: a route picks one of several branches by a key (a loop, in
:mod:`conveyor.definition.loops`, calls its body until it is done; a map, in :mod:`conveyor.definition.maps`,
calls its function once per element of a list).

A route step is declared with :meth:`conveyor.Flow.route`, or in a workflow class with :func:`route` and
steps declared ``@step(when=("route_name", "key"))``. Its function computes a key from the value it
receives; the step's result is the name of the branch it chose (the key, or the default branch's name
when the key names none). The graph stays static: every branch's steps are in the workflow, and when the
route step completes, the same checkpoint marks every step of the branches it did not choose
``skipped``. The step after the route receives the chosen branch's result (:class:`FromRoute`).

The engine handles such a step itself (see :mod:`conveyor.engine.control`): its spec's ``control`` says
how, so a workflow without one never looks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from conveyor.definition.binding import ArgumentBuilder, decode_argument
from conveyor.definition.loops import Loop
from conveyor.definition.maps import Map
from conveyor.definition.task import CallableShape
from conveyor.errors import DefinitionError, RouteKeyError, StepInputError

DEFAULT_BRANCH = "default"
"""The name of a route's default branch when it is given as steps rather than as one of the keys."""


@dataclass(frozen=True, slots=True)
class Route:
    """A route's branches: each key and the names of its steps, in order; and the default branch's key."""

    branches: tuple[tuple[str, tuple[str, ...]], ...]
    default: str | None = None
    _steps_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_steps_of", dict(self.branches))

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the branches, as declared."""
        return tuple(key for key, _steps in self.branches)

    def choose(self, key: object, step_name: str) -> str:
        """The branch ``key`` picks (the default if it names none); a :class:`RouteKeyError` if none fits."""
        if isinstance(key, str) and key in self._steps_of:
            return str.__str__(key)  # a StrEnum member names its value
        if self.default is not None:
            return self.default
        known = ", ".join(map(repr, self.keys))
        what = repr(key) if isinstance(key, str) else f"{key!r} ({type(key).__name__}, not text)"
        raise RouteKeyError(
            f"route step {step_name!r} chose {what}, which is none of its branches ({known}), and it has "
            "no default branch",
            step_name=step_name,
            key=key,
            known=self.keys,
        )

    def skipped_by(self, branch: str) -> tuple[str, ...]:
        """The steps of every branch but ``branch``: what choosing it skips."""
        chosen = set(self._steps_of[branch])
        return tuple(
            dict.fromkeys(
                name for key, steps in self.branches if key != branch for name in steps if name not in chosen
            )
        )

    @property
    def step_names(self) -> tuple[str, ...]:
        """Every step of every branch."""
        return tuple(dict.fromkeys(name for _key, steps in self.branches for name in steps))

    def describe(self) -> list[Any]:
        """What the definition hash sees of it."""
        return ["route", [[key, list(steps)] for key, steps in self.branches], self.default]


Control = Route | Loop | Map
"""How the engine handles a step that steers the run."""


@dataclass(frozen=True, slots=True)
class FromRoute:
    """The step receives the result of the branch its route chose: of that branch's last step, or, for a
    branch with no steps, the value the route received (``choices`` maps each branch to that step, None
    standing for the workflow input)."""

    route: str
    choices: tuple[tuple[str, str | None], ...]

    @property
    def sources(self) -> tuple[str, ...]:
        """The steps whose results this binding reads (the route and each branch's last step)."""
        return tuple(dict.fromkeys((self.route, *(step for _key, step in self.choices if step is not None))))

    def compile(self, shape: CallableShape, step_name: str) -> ArgumentBuilder:
        """Return the argument builder for ``step_name``."""
        if len(shape.required) > 1:
            names = ", ".join(p.name for p in shape.required)
            raise DefinitionError(
                f"step {step_name!r} takes {len(shape.required)} arguments ({names}), but it receives one "
                f"value: the result of the branch route {self.route!r} chose"
            )
        parameter = shape.parameters[0] if shape.parameters else None
        if parameter is None:
            return lambda _input, _results: ((), {})
        pick = self.pick

        def build(workflow_input: str, results: Mapping[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (decode_argument(parameter, pick(workflow_input, results, step_name), step_name),), {}

        return build

    def pick(self, workflow_input: str, results: Mapping[str, str], step_name: str) -> str:
        """The JSON text of the chosen branch's result."""
        branch = orjson.loads(results[self.route])
        for key, step in self.choices:
            if key == branch:
                return workflow_input if step is None else results[step]
        raise StepInputError(  # the route's stored result names no branch: the definition changed under it
            f"step {step_name!r} reads the branch route {self.route!r} chose, {branch!r}, which the route no "
            "longer has",
            step_name=step_name,
        )
