"""The definitions page: every registered workflow, each version with its steps and its step graph."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from conveyor.definition.registry import version_key
from conveyor.definition.workflow import Workflow
from conveyor.web.dashboard.access import dashboard_of, signed_in
from conveyor.web.dashboard.graph import StepGraph, lay_out
from conveyor.web.dashboard.sessions import Visitor


@dataclass(frozen=True, slots=True)
class DefinedStep:
    """One step of a definition as the definitions page lists it."""

    name: str
    kind: str
    depends_on: tuple[str, ...]
    retries: int
    timeout_seconds: float | None
    undo: bool


@dataclass(frozen=True, slots=True)
class Definition:
    """One registered version of a workflow, with its steps and its graph."""

    namespace: str
    name: str
    version: str
    recorded_name: str
    description: str
    steps: tuple[DefinedStep, ...]
    graph: StepGraph
    anchor: str


def definitions_page(request: Request) -> Response:
    """``GET /definitions``: every registered workflow, each version with its steps and step graph (and,
    for an admin, a form to start a run of it)."""
    visitor = signed_in(request)
    if isinstance(visitor, Response):
        return visitor
    return render_definitions(request, visitor)


def render_definitions(
    request: Request, visitor: Visitor, *, error: str | None = None, status_code: int = 200
) -> Response:
    """The definitions page (with ``error`` said at its top, when a start was refused)."""
    dashboard = dashboard_of(request)
    entries = sorted(
        dashboard.app.registry,
        key=lambda entry: (entry.namespace, entry.name, version_key(entry.version)),
    )
    grouped: dict[tuple[str, str], list[Definition]] = {}
    for entry in entries:
        grouped.setdefault((entry.namespace, entry.name), []).append(
            _definition(entry.namespace, entry.name, entry.workflow)
        )
    for versions in grouped.values():
        versions.reverse()  # newest first
    return dashboard.templates.page(
        request, "definitions.html", visitor=visitor, status_code=status_code, grouped=grouped, error=error
    )


def _definition(namespace: str, name: str, workflow: Workflow) -> Definition:
    steps = tuple(
        DefinedStep(
            name=spec.name,
            kind=_kind(spec.waits, spec.control, spec.runs_child),
            depends_on=spec.depends_on,
            retries=spec.retries.max_retries,
            timeout_seconds=spec.timeout_seconds,
            undo=spec.has_compensation,
        )
        for spec in workflow.steps
    )
    graph = lay_out(
        [(spec.name, spec.depends_on) for spec in workflow.steps],
        details={step.name: step.kind for step in steps},
    )
    anchor = definition_anchor(namespace, name, workflow.version)
    return Definition(
        namespace, name, workflow.version, workflow.name, workflow.description, steps, graph, anchor
    )


def definition_anchor(namespace: str, name: str, version: str) -> str:
    """The id of a workflow version's entry on the definitions page (``/definitions#<anchor>``)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"wf-{namespace}-{name}-{version}")


def _kind(waits: object, control: object, runs_child: bool) -> str:
    if runs_child:
        return "child run"
    if waits is not None:
        return {"Sleep": "sleep", "SignalWait": "signal wait"}.get(type(waits).__name__, "wait")
    if control is not None:
        return "route"
    return "task"
