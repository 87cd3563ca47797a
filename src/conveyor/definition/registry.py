"""Workflows by name: register them by (namespace, name, version), look them up, start them by name.

Several versions of a workflow coexist; :meth:`Registry.get` without a version returns the newest
("1.0.10" is newer than "1.0.9"). Registering the same (namespace, name, version) again replaces it, so a
module that is reloaded registers its workflows again without error. Saga classes and YAML templates
register themselves in :data:`default_registry`; workers and the command line look workflows up there.

A run records its workflow's name and version, so a workflow in a namespace other than ``"default"`` is
built with the qualified name ``namespace.name`` (see :func:`qualified_name`), and
:meth:`Registry.for_run` finds the workflow of a recorded run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.definition.names import check_name
from conveyor.definition.workflow import Workflow
from conveyor.errors import DefinitionError

if TYPE_CHECKING:
    from conveyor.backends.base import Backend
    from conveyor.engine.clock import Clock
    from conveyor.engine.handles import RunHandle
    from conveyor.engine.status import WorkflowStatus

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

    def register(
        self, workflow: Workflow, *, namespace: str = DEFAULT_NAMESPACE, name: str | None = None
    ) -> Workflow:
        """Register ``workflow`` under (``namespace``, ``name`` or its own name, its version); return it.

        The same key registered again replaces the earlier workflow. Two different keys may not share the
        name and version a run records (``workflow.name``, ``workflow.version``): a worker could not tell
        their runs apart.
        """
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"only a built Workflow can be registered, not {type(workflow).__name__}")
        namespace = check_name(namespace, "a namespace")
        name = check_name(workflow.name if name is None else name, "a workflow name")
        entry = RegisteredWorkflow(namespace, name, workflow.version, workflow)
        key = (namespace, name, workflow.version)
        recorded = (workflow.name, workflow.version)
        with self._lock:
            clash = self._by_recorded_name.get(recorded)
            if clash is not None and (clash.namespace, clash.name, clash.version) != key:
                raise DefinitionError(
                    f"workflow {workflow.name!r} v{workflow.version} is already registered as "
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

    def run(
        self,
        name: str,
        input: Any = None,
        *,
        backend: Backend | None = None,
        workflow_id: str | None = None,
        version: str | None = None,
        namespace: str | None = None,
        correlation_id: str | None = None,
        clock: Clock | None = None,
    ) -> WorkflowStatus:
        """Start the registered workflow ``name`` (newest version unless ``version``) and wait for its end.

        Runs as :func:`~conveyor.run_durable_workflow` does: checkpointed in ``backend`` (``conveyor.db``
        in the current directory when none is given), as the run ``workflow_id`` (a new id when none is
        given; an existing run is returned or resumed, never started twice). Bad input raises
        :class:`~conveyor.errors.InvalidInputError` before anything is stored.
        """
        # The engine sits above the definition layer; import it only when a run is started.
        from conveyor.engine.api import run_durable_workflow

        workflow = self.get(name, version, namespace)
        if workflow_id is None:
            workflow_id = workflow.new_run_id()
        return run_durable_workflow(
            workflow, workflow_id, input, backend, correlation_id=correlation_id, clock=clock
        )

    def start(
        self,
        name: str,
        input: Any = None,
        *,
        backend: Backend,
        workflow_id: str | None = None,
        version: str | None = None,
        namespace: str | None = None,
        correlation_id: str | None = None,
    ) -> RunHandle:
        """Record a run of the registered workflow ``name`` for a worker to execute; return its handle.

        As :func:`~conveyor.start_workflow`: durable when this returns, never started twice. Run workers
        with ``Worker(backend, registry.workflows())`` so that they know every registered workflow.
        """
        from conveyor.engine.handles import start_workflow

        workflow = self.get(name, version, namespace)
        if workflow_id is None:
            workflow_id = workflow.new_run_id()
        return start_workflow(workflow, workflow_id, input, backend, correlation_id=correlation_id)

    def retry(self, workflow_id: str, *, backend: Backend, clock: Clock | None = None) -> WorkflowStatus:
        """Retry the failed run ``workflow_id`` with the registered workflow it recorded (see
        :func:`~conveyor.retry_workflow`): completed steps are kept, the failed step and what follows run."""
        from conveyor.engine.reading import get_workflow_status

        recorded = get_workflow_status(workflow_id, backend)
        workflow = self.for_run(recorded.workflow_name, recorded.workflow_version)
        from conveyor.engine.api import retry_workflow

        return retry_workflow(workflow, workflow_id, backend, clock=clock)

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


default_registry = Registry()
"""The registry saga classes and YAML templates register in unless told otherwise."""


def run_by_name(
    name: str,
    input: Any = None,
    *,
    backend: Backend | None = None,
    workflow_id: str | None = None,
    version: str | None = None,
    namespace: str | None = None,
    correlation_id: str | None = None,
    clock: Clock | None = None,
    registry: Registry | None = None,
) -> WorkflowStatus:
    """Start a workflow of ``registry`` (:data:`default_registry`) by name; see :meth:`Registry.run`."""
    chosen = default_registry if registry is None else registry
    return chosen.run(
        name,
        input,
        backend=backend,
        workflow_id=workflow_id,
        version=version,
        namespace=namespace,
        correlation_id=correlation_id,
        clock=clock,
    )
