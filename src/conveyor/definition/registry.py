"""Workflows by name: register them by (namespace, name, version), look them up, start them by name.

Several versions of a workflow coexist; :meth:`Registry.get` without a version returns the newest
("1.0.10" is newer than "1.0.9"). Registering the same (namespace, name, version) again replaces it, so a
module that is reloaded registers its workflows again without error. Nothing registers itself: a runtime
(:class:`~conveyor.Conveyor`) holds a registry, and workflows are registered where the runtime is built.

A run records its workflow's name and version, so a workflow in a namespace other than ``"default"`` is
built with the qualified name ``namespace.name`` (see :func:`qualified_name`), and
:meth:`Registry.for_run` finds the workflow of a recorded run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor.definition.names import check_name
from conveyor.definition.workflow import Workflow
from conveyor.errors import DefinitionError

T = TypeVar("T")

DEFAULT_NAMESPACE = "default"
"""The namespace of a workflow registered without one."""


class UnknownWorkflowError(DefinitionError, LookupError):
    """No registered workflow has this name (or this version)."""


def qualified_name(namespace: str, name: str) -> str:
    """The name a workflow of ``namespace`` is built with: ``name`` in the default namespace, else
    ``namespace.name``. Runs record it, so it must tell the namespaces apart."""
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}.{name}"


_VERSION_PART = re.compile(r"(\d+)|([^\d.\-+]+)")


def version_key(version: str) -> tuple[Any, ...]:
    """A sort key that orders versions as people read them: "1.0.10" > "1.0.9" > "1.0.9-rc1" > "1.0".

    Numbers compare as numbers, words as words; a pre-release ("-rc1") comes before its release, trailing
    zeros do not count ("1.0" and "1.0.0" are equally new), and build metadata ("+abc") is ignored.
    """
    text = version.strip().lstrip("vV").split("+", 1)[0]
    release, _, pre = text.partition("-")

    def parts(segment: str) -> tuple[tuple[int, int, str], ...]:
        found = [
            (0, int(number), "") if number else (1, 0, word)
            for number, word in _VERSION_PART.findall(segment)
        ]
        while found and found[-1] == (0, 0, ""):
            found.pop()
        return tuple(found)

    return (parts(release), (1,) if not pre else (0, parts(pre)), version)


@dataclass(frozen=True, slots=True)
class RegisteredWorkflow:
    """One entry of a :class:`Registry`."""

    namespace: str
    name: str
    version: str
    workflow: Workflow


class Registry:
    """Workflows by (namespace, name, version). Safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], RegisteredWorkflow] = {}
        self._by_recorded_name: dict[tuple[str, str], RegisteredWorkflow] = {}

    def register(self, workflow: T, *, namespace: str | None = None, name: str | None = None) -> T:
        """Register a built workflow, or a workflow class, under (namespace, name, version); return it.

        A workflow class is registered under its ``namespace`` and ``workflow_name`` (else its class name)
        unless they are given, so ``@registry.register`` works above a class. The same key registered again
        replaces the earlier workflow. Two different keys may not share the name and version a run records
        (``workflow.name``, ``workflow.version``): a worker could not tell their runs apart.
        """
        given: Any = workflow
        built = getattr(given, "workflow", given)
        if not isinstance(built, Workflow):
            raise DefinitionError(
                f"only a built workflow or a workflow class can be registered, not {given!r}"
            )
        if built is not given:
            namespace = namespace or getattr(given, "namespace", None)
            name = name or getattr(given, "workflow_name", None) or getattr(given, "__name__", None)
        namespace = check_name(DEFAULT_NAMESPACE if namespace is None else namespace, "a namespace")
        name = check_name(built.name if name is None else name, "a workflow name")
        workflow_ = built
        entry = RegisteredWorkflow(namespace, name, workflow_.version, workflow_)
        key = (namespace, name, workflow_.version)
        recorded = (workflow_.name, workflow_.version)
        with self._lock:
            clash = self._by_recorded_name.get(recorded)
            if clash is not None and (clash.namespace, clash.name, clash.version) != key:
                raise DefinitionError(
                    f"workflow {workflow_.name!r} v{workflow_.version} is already registered as "
                    f"{clash.namespace}/{clash.name}; runs record only the workflow's name and version, so "
                    "two registered workflows may not share both"
                )
            previous = self._entries.get(key)
            if previous is not None:
                self._by_recorded_name.pop((previous.workflow.name, previous.version), None)
            self._entries[key] = entry
            self._by_recorded_name[recorded] = entry
        return workflow

    def get(self, name: str, version: str | None = None, namespace: str | None = None) -> Workflow:
        """The workflow called ``name``: ``version`` of it, or its newest version when none is given.

        Without ``namespace``, every namespace is searched; if the name is in several, pass ``namespace``.
        Raises :class:`UnknownWorkflowError` naming what is registered.
        """
        return self.entry(name, version, namespace).workflow

    def entry(
        self, name: str, version: str | None = None, namespace: str | None = None
    ) -> RegisteredWorkflow:
        """Like :meth:`get`, but returns the registry entry (namespace, name, version, workflow)."""
        with self._lock:
            entries = [
                entry
                for entry in self._entries.values()
                if entry.name == name and (namespace is None or entry.namespace == namespace)
            ]
        if not entries:
            where = "" if namespace is None else f" in namespace {namespace!r}"
            raise UnknownWorkflowError(
                f"no workflow {name!r}{where} is registered; registered: {self._describe()}",
                name=name,
                namespace=namespace,
                version=version,
            )
        namespaces = sorted({entry.namespace for entry in entries})
        if len(namespaces) > 1:
            raise UnknownWorkflowError(
                f"workflow {name!r} is registered in several namespaces ({', '.join(namespaces)}); "
                "pass namespace=",
                name=name,
                namespace=namespace,
                version=version,
            )
        if version is None:
            return max(entries, key=lambda entry: version_key(entry.version))
        for entry in entries:
            if entry.version == str(version):
                return entry
        known = ", ".join(sorted((entry.version for entry in entries), key=version_key))
        raise UnknownWorkflowError(
            f"workflow {name!r} has no version {version!r}; registered versions: {known}",
            name=name,
            namespace=namespaces[0],
            version=version,
        )

    def versions(self, name: str, namespace: str | None = None) -> tuple[str, ...]:
        """The registered versions of ``name``, oldest first (empty if there are none)."""
        with self._lock:
            found = {
                entry.version
                for entry in self._entries.values()
                if entry.name == name and (namespace is None or entry.namespace == namespace)
            }
        return tuple(sorted(found, key=version_key))

    def for_run(self, workflow_name: str, workflow_version: str) -> Workflow:
        """The workflow a recorded run belongs to, found by the name and version the run recorded."""
        with self._lock:
            entry = self._by_recorded_name.get((workflow_name, workflow_version))
        if entry is None:
            raise UnknownWorkflowError(
                f"no registered workflow builds runs of {workflow_name!r} v{workflow_version}; "
                f"registered: {self._describe()}",
                name=workflow_name,
                version=workflow_version,
            )
        return entry.workflow

    def workflows(self) -> list[Workflow]:
        """Every registered workflow (for ``Worker(backend, registry.workflows())``)."""
        return [entry.workflow for entry in self]

    def _describe(self) -> str:
        with self._lock:
            entries = list(self._entries.values())
        if not entries:
            return "none"
        grouped: dict[tuple[str, str], list[str]] = {}
        for entry in entries:
            grouped.setdefault((entry.namespace, entry.name), []).append(entry.version)
        return ", ".join(
            f"{namespace}/{name} ({', '.join(sorted(versions, key=version_key))})"
            for (namespace, name), versions in sorted(grouped.items())
        )

    def __iter__(self) -> Iterator[RegisteredWorkflow]:
        with self._lock:
            entries = sorted(
                self._entries.values(), key=lambda e: (e.namespace, e.name, version_key(e.version))
            )
        return iter(entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"<Registry {len(self)} workflows>"
