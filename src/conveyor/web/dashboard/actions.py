"""The actions: retry, cancel, pause, unpause and signal on a run's page, and start on the definitions
page, each a POST of a form.

An action needs an admin token (a read token gets 403) and, from a signed-in browser, the session's CSRF
token. It calls the runtime object and returns at once: a retry only prepares the run again, and a cancel
only stores the request, leaving the run (and its undos) to a worker, so no request ever drives a run.
Then the browser is sent back to the run's page (303), which says what was done; a refusal (the run has
ended, say) is shown on the page with the runtime's reason.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.errors import ConveyorError, InvalidArgumentError, RunNotFoundError
from conveyor.web.dashboard.access import FormTooLargeError, read_form, signed_in
from conveyor.web.dashboard.definitions import render_definitions
from conveyor.web.dashboard.pages import render_run
from conveyor.web.dashboard.rendering import run_path
from conveyor.web.dashboard.sessions import Visitor

if TYPE_CHECKING:
    from conveyor.web.dashboard.app import Dashboard

ACTIONS = ("retry", "cancel", "pause", "unpause", "signal")
OPERATOR = "dashboard"
"""Who the runs' operator logs name for an action taken here."""
MAX_REASON_CHARACTERS = 500


class ActionRefusedError(Exception):
    """A form asks for something that cannot be done as asked (the message says why, for the page)."""


async def act_on_run(request: Request) -> Response:
    """``POST /runs/{id}``: the action the form's ``action`` field names."""
    visitor = signed_in(request)
    if isinstance(visitor, Response):
        return visitor
    workflow_id = request.path_params["workflow_id"]
    try:
        form = await read_form(request)
    except FormTooLargeError:
        return Response("That form is too large.", status_code=413)
    if not visitor.csrf_matches(form.get("csrf_token")):
        return Response("This form has expired: reload the run's page and try again.", status_code=403)
    if not visitor.is_admin:
        return Response("Acting on runs needs an admin token; this one may only read.", status_code=403)
    action = form.get("action", "")
    if action not in ACTIONS:
        return await _refused(request, visitor, workflow_id, f"{action!r} is not an action", 400)
    dashboard: Dashboard = request.app.state.dashboard
    try:
        await run_in_threadpool(_perform, dashboard, workflow_id, action, form)
    except RunNotFoundError:
        return dashboard.templates.page(
            request,
            "missing.html",
            visitor=visitor,
            status_code=404,
            what=f"There is no run {workflow_id!r}.",
        )
    except (ActionRefusedError, InvalidArgumentError) as exc:
        return await _refused(request, visitor, workflow_id, str(exc), 400)
    except ConveyorError as exc:  # the run has ended, is not retryable, is driven elsewhere...
        return await _refused(request, visitor, workflow_id, str(exc), 409)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{root}{run_path(workflow_id)}?done={action}", status_code=303)


async def start_run(request: Request) -> Response:
    """``POST /start``: record a run of the registered workflow version the form names, for a worker to
    start (``app.start``: the input is checked against the workflow's schema first), and open its page."""
    visitor = signed_in(request)
    if isinstance(visitor, Response):
        return visitor
    try:
        form = await read_form(request)
    except FormTooLargeError:
        return Response("That form is too large.", status_code=413)
    if not visitor.csrf_matches(form.get("csrf_token")):
        return Response("This form has expired: reload the page and try again.", status_code=403)
    if not visitor.is_admin:
        return Response("Starting runs needs an admin token; this one may only read.", status_code=403)
    dashboard: Dashboard = request.app.state.dashboard
    try:
        workflow_id = await run_in_threadpool(_start, dashboard, form)
    except (ActionRefusedError, ConveyorError) as exc:  # bad input, unknown workflow, a run of another one
        return await run_in_threadpool(render_definitions, request, visitor, error=str(exc), status_code=400)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{root}{run_path(workflow_id)}?done=start", status_code=303)


def _start(dashboard: Dashboard, form: dict[str, str]) -> str:
    app = dashboard.app
    workflow = app.registry.entry(
        form.get("name", ""), form.get("version") or None, form.get("namespace") or None
    ).workflow
    value = _json(form.get("input", ""), "the input")
    handle = app.start(
        workflow,
        value,
        workflow_id=form.get("workflow_id", "").strip() or None,
        correlation_id=form.get("correlation_id", "").strip() or None,
    )
    return handle.workflow_id


def _perform(dashboard: Dashboard, workflow_id: str, action: str, form: dict[str, str]) -> None:
    app = dashboard.app
    reason = form.get("reason", "").strip()[:MAX_REASON_CHARACTERS]
    if action == "retry":
        app.retry(
            workflow_id, from_step=form.get("from_step") or None, by=OPERATOR, reason=reason, wait=False
        )
    elif action == "cancel":
        app.cancel(workflow_id, reason or "cancelled from the dashboard", by=OPERATOR, wait=False)
    elif action == "pause":
        app.pause(workflow_id, by=OPERATOR, reason=reason)
    elif action == "unpause":
        app.unpause(workflow_id, by=OPERATOR)
    else:
        name = form.get("signal", "").strip()
        if not name:
            raise ActionRefusedError("a signal needs a name")
        app.send_signal(workflow_id, name, _json(form.get("payload", ""), "the signal's payload"))


def _json(text: str, what: str) -> object:
    """The JSON value a form's field holds (None when it is empty)."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ActionRefusedError(f"{what} is not JSON: {exc}") from None


async def _refused(
    request: Request, visitor: Visitor, workflow_id: str, message: str, status_code: int
) -> Response:
    return await run_in_threadpool(
        render_run, request, visitor, workflow_id, error=message, status_code=status_code
    )
