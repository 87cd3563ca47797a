"""``resource(name)``: a step parameter's default that asks the runtime for the resource called ``name``.

::

    @task
    def charge(order: dict, gateway: PaymentGateway = resource("gateway")) -> dict: ...

The parameter is not part of the step's data: it is filled, at each call, with the resource the running
:class:`~conveyor.Conveyor` holds under that name (see :mod:`conveyor.runtime.resources`).
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import DefinitionError


class ResourceRef:
    """The default of a parameter that receives a runtime resource; made by :func:`resource`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"resource({self.name!r})"


def resource(name: str) -> Any:
    """Declare a step parameter as the runtime's resource ``name`` (use it as the parameter's default)."""
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise DefinitionError(
            f"resource() takes a resource's name, a non-empty printable string, not {name!r}"
        )
    return ResourceRef(name)
