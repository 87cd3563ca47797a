"""The resources steps ask for by name: a database, a gateway client, the application's services.

A runtime holds them; a step gets one through its context (``context.resource("gateway")``) or by declaring
a parameter whose default is :func:`~conveyor.resource` (``gateway: Gateway = resource("gateway")``).
A resource is either a value handed in as it is (its owner closes it) or built on first use by a factory
registered with :meth:`Resources.add_factory`; what a factory built is closed with the runtime, newest
first, when it has a ``close()`` method.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from conveyor.errors import InvalidArgumentError, UnknownResourceError


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise InvalidArgumentError(f"a resource name must be a non-empty printable string, not {name!r}")
    return name


class Resources(Mapping[str, Any]):
    """Named resources, read-only to steps; factories run once, on first use, under a lock."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {}
        self._factories: dict[str, Callable[[], Any]] = {}
        self._built: list[str] = []
        self._lock = threading.RLock()
        for name, value in (values or {}).items():
            self._values[_check_name(name)] = value

    def add(self, name: str, value: Any) -> None:
        """Make ``value`` available as ``name`` (its owner, not the runtime, closes it)."""
        name = _check_name(name)
        with self._lock:
            self._refuse_duplicate(name)
            self._values[name] = value

    def add_factory(self, name: str, factory: Callable[[], Any]) -> None:
        """Build ``name`` with ``factory()`` the first time a step asks for it; closed with the runtime."""
        name = _check_name(name)
        if not callable(factory):
            raise InvalidArgumentError(f"the factory of resource {name!r} must be callable, not {factory!r}")
        with self._lock:
            self._refuse_duplicate(name)
            self._factories[name] = factory

    def _refuse_duplicate(self, name: str) -> None:
        if name in self._values or name in self._factories:
            raise InvalidArgumentError(f"a resource named {name!r} is already registered")

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            pass
        with self._lock:
            if name in self._values:
                return self._values[name]
            factory = self._factories.get(name)
            if factory is None:
                known = ", ".join(sorted({*self._values, *self._factories})) or "none"
                raise UnknownResourceError(
                    f"no resource named {name!r}; this runtime has: {known}", resource=name
                )
            value = factory()
            self._values[name] = value
            self._built.append(name)
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._values, *self._factories}))

    def __len__(self) -> int:
        return len({*self._values, *self._factories})

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._factories

    def close(self) -> None:
        """Close what the factories built, newest first; values handed in are left to their owners."""
        with self._lock:
            built, self._built = self._built, []
            for name in reversed(built):
                value = self._values.pop(name)
                close = getattr(value, "close", None)
                if callable(close):
                    close()

    def __repr__(self) -> str:
        return f"<Resources {list(self)}>"
