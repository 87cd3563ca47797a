"""The dashboard's pages of runs: the runs list and one run's page.

Each handler is a plain function (Starlette runs it on a worker thread, since the runtime's reads block)
that reads through the runtime object only and renders a template; nothing here changes a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.core.states import RunState
from conveyor.definition.registry import UnknownWorkflowError
from conveyor.definition.workflow import Workflow
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import InvalidArgumentError, RunNotFoundError
from conveyor.web.dashboard.access import dashboard_of, signed_in
from conveyor.web.dashboard.definitions import definition_anchor
from conveyor.web.dashboard.graph import lay_out
from conveyor.web.dashboard.rendering import run_path
from conveyor.web.dashboard.sessions import Visitor
from conveyor.web.dashboard.timeline import build_timeline

if TYPE_CHECKING:
    from conveyor.web.dashboard.app import Dashboard

PAGE_SIZE = 50
"""Runs on one page of the list."""
HISTORY_LIMIT = 5000
"""The most events a run's page reads (a run with more says so)."""
RETRYABLE_STATES = frozenset(
    {RunState.FAILED, RunState.COMPENSATED, RunState.COMPENSATION_FAILED, RunState.DEAD_LETTERED}
)
_OPEN_STATES = frozenset({RunState.PENDING, RunState.RUNNING})
DONE_MESSAGES = {
    "retry": "Retry recorded: a worker will run the run again from its failed step.",
    "cancel": "Cancel recorded: no new step starts, and a worker undoes the completed steps.",
    "pause": "Pause recorded: the running step finishes, then no new step starts until it is unpaused.",
    "unpause": "Unpaused: a worker goes on with the run where it stopped.",
    "signal": "Signal sent: the run's waiting step takes it.",
    "start": "Run recorded: a worker starts it.",
}
"""What the page says after each action (a fixed text per action: nothing from the request is echoed)."""


def home(request: Request) -> Response:
    """``GET /``: the runs."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(root + "/runs", status_code=303)


def runs_page(request: Request) -> Response:
    """``GET /runs``: the runs, newest first, filtered by workflow and state, a page at a time; ``q`` finds a
    run by its id (its page opens), else lists the runs of that correlation id (with the filters)."""
    visitor = signed_in(request)
    if isinstance(visitor, Response):
        return visitor
    dashboard = dashboard_of(request)
    app = dashboard.app
    params = request.query_params
    workflow = params.get("workflow") or None
    state = params.get("state") or None
    page = params.get("page") or None
    search = params.get("q", "").strip()
    context: dict[str, Any] = {
        "workflow": workflow,
        "state": state,
        "search": search,
        "page": page,
        "workflow_names": sorted(
            {found.name for found in app.workflows()} | ({workflow} if workflow else set())
        ),
        "states": [member.value for member in RunState],
        "runs": (),
        "next_page": None,
        "error": None,
        "live": not page and not search,
    }
    try:
        if search and not page:
            found = _run_by_id(dashboard, search)
            if found is not None:
                root = str(request.scope.get("root_path", "")).rstrip("/")
                return RedirectResponse(root + run_path(found), status_code=303)
        listing = app.runs(workflow, state=state, correlation_id=search or None, limit=PAGE_SIZE, page=page)
        context.update(runs=listing.runs, next_page=listing.next_page)
    except InvalidArgumentError as exc:
        context["error"] = str(exc)
        return dashboard.templates.page(request, "runs.html", visitor=visitor, status_code=400, **context)
    return dashboard.templates.page(request, "runs.html", visitor=visitor, **context)


def _run_by_id(dashboard: Dashboard, text: str) -> str | None:
    try:
        return dashboard.app.status(text).workflow_id
    except (RunNotFoundError, InvalidArgumentError):
        return None


@dataclass(frozen=True, slots=True)
class Actions:
    """Which actions a run's page offers an admin, given where the run is."""

    retry: bool
    retry_needs_step: bool
    cancel: bool
    pause: bool
    unpause: bool
    signal: bool


def actions_for(status: WorkflowStatus) -> Actions:
    """The actions that make sense for ``status`` (the runtime still judges each one when it is asked)."""
    open_run = status.state in _OPEN_STATES
    return Actions(
        retry=status.state in RETRYABLE_STATES or status.state is RunState.COMPLETED,
        retry_needs_step=status.state is RunState.COMPLETED,
        cancel=open_run,
        pause=open_run and not status.paused,
        unpause=open_run and status.paused,
        signal=open_run,
    )


def run_page(request: Request) -> Response:
    """``GET /runs/{id}``: one run: its state, its step graph, its steps, a timeline of every attempt, its
    history, and (for an admin) its actions."""
    visitor = signed_in(request)
    if isinstance(visitor, Response):
        return visitor
    workflow_id = request.path_params["workflow_id"]
    return render_run(request, visitor, workflow_id)


def render_run(
    request: Request,
    visitor: Visitor,
    workflow_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The page of run ``workflow_id`` (with ``error`` said at its top, when an action was refused)."""
    dashboard = dashboard_of(request)
    app = dashboard.app
    try:
        status = app.status(workflow_id)
        events = app.history(workflow_id, limit=HISTORY_LIMIT)
    except (RunNotFoundError, InvalidArgumentError):
        return dashboard.templates.page(
            request,
            "missing.html",
            visitor=visitor,
            status_code=404,
            what=f"There is no run {workflow_id!r}.",
        )
    workflow = _registered(dashboard, status)
    states = {step.name: step.state.value for step in status.steps}
    if workflow is not None:
        shape = [(spec.name, spec.depends_on) for spec in workflow.steps]
    else:
        shape = [(step.name, ()) for step in status.steps]
    graph = lay_out(
        shape, states, {step.name: _step_words(step.state.value, step.attempts) for step in status.steps}
    )
    timeline = build_timeline(events, now=app.clock.now(), step_order=[name for name, _ in shape])
    done = request.query_params.get("done")
    return dashboard.templates.page(
        request,
        "run.html",
        visitor=visitor,
        status_code=status_code,
        status=status,
        workflow=workflow,
        definition_anchor=_anchor_of(dashboard, workflow),
        graph=graph,
        timeline=timeline,
        events=events,
        history_cut=len(events) >= HISTORY_LIMIT,
        actions=actions_for(status),
        done=DONE_MESSAGES.get(done or ""),
        error=error,
        live=status.is_running(),
    )


def _registered(dashboard: Dashboard, status: WorkflowStatus) -> Workflow | None:
    try:
        return dashboard.app.registry.for_run(status.workflow_name, status.workflow_version)
    except UnknownWorkflowError:
        return None


def _anchor_of(dashboard: Dashboard, workflow: Workflow | None) -> str | None:
    """Where the definitions page shows ``workflow`` (None for a workflow this server does not have)."""
    for entry in dashboard.app.registry:
        if entry.workflow is workflow:
            return definition_anchor(entry.namespace, entry.name, entry.version)
    return None


def _step_words(state: str, attempts: int) -> str:
    return f"{state}, {attempts} attempt{'s' if attempts != 1 else ''}"
