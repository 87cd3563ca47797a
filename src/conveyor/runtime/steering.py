"""Steering a run from any process: cancel it, pause it, resume it (what ``Conveyor.cancel`` and the
others do; the requests are stored with the run, so they hold across restarts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.core.records import RunRecord
from conveyor.core.states import RunState, StepState
from conveyor.definition.children import child_run_id, child_steps
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import stored_run
from conveyor.engine.checks import check_reason, check_workflow_id
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import RunAlreadyRunningError, RunFinishedError, RunNotFoundError
from conveyor.runtime.ownership import owner_is_dead

if TYPE_CHECKING:
    from conveyor.runtime.app import Conveyor


def _requested(record: RunRecord | None, workflow_id: str) -> RunRecord:
    if record is None:
        raise RunNotFoundError(f"no run with workflow_id {workflow_id!r}", workflow_id=workflow_id)
    return record


def _finished(record: RunRecord, doing: str) -> RunFinishedError:
    return RunFinishedError(
        f"run {record.workflow_id!r} has already ended ({record.state.value}); it cannot be {doing}",
        workflow_id=record.workflow_id,
        state=record.state.value,
    )


def cancel(app: Conveyor, workflow_id: str, reason: str, *, undo_here: bool = True) -> WorkflowStatus:
    """Cancel the run: see :meth:`conveyor.Conveyor.cancel` (``undo_here`` is its ``wait``)."""
    workflow_id, reason = check_workflow_id(workflow_id), check_reason(reason)
    record = _requested(app.backend.request_cancel(workflow_id, reason), workflow_id)
    if record.is_final:
        if record.state is RunState.CANCELLED:  # cancelling twice is harmless
            return app.status(workflow_id)
        raise _finished(record, "cancelled")
    workflow = app._known_workflow(record)
    children_run_on = _cancel_children(app, workflow, record, reason, undo_here)
    lease = app._driven_lease(workflow_id)
    if lease is not None:  # a driver of this process: its step is told at once
        lease.request_cancel(reason)
        return app.status(workflow_id)
    held = record.leased_until is not None and not owner_is_dead(record.owner)
    if undo_here and workflow is not None and not held and not children_run_on:  # undo it now
        try:
            return app._run_recorded(workflow, stored_run(record, workflow), "fail")
        except RunAlreadyRunningError:  # another caller took it meanwhile: its driver sees the request
            pass
    return app.status(workflow_id)


def _cancel_children(
    app: Conveyor, workflow: Workflow | None, record: RunRecord, reason: str, undo_here: bool
) -> bool:
    """Cancel the child runs the run's waiting child steps started (theirs too); whether any still runs.

    The parent's own compensation cancels them too (durably: the request is stored with each child); this
    tells their drivers at once. A parent whose child another driver still holds is left to the workers:
    its undo waits for the child's end without holding anything, where a caller here would block on it.
    """
    running = False
    for name in child_steps(workflow):
        step = record.steps.get(name)
        if step is None or step.state is not StepState.WAITING:
            continue
        child_id = child_run_id(record.workflow_id, name, record.generation)
        try:
            why = f"its parent run {record.workflow_id!r} is cancelled: {reason}"[:2000]
            status = cancel(app, child_id, why, undo_here=undo_here)
        except (RunNotFoundError, RunFinishedError):
            continue
        running = running or status.is_running()
    return running


def compensate(app: Conveyor, workflow_id: str, reason: str) -> WorkflowStatus:
    """Undo the run, completed or not: see :meth:`conveyor.Conveyor.compensate`."""
    workflow_id, reason = check_workflow_id(workflow_id), check_reason(reason)
    record = _requested(app.backend.request_compensation(workflow_id, reason), workflow_id)
    if record.is_final:
        if record.state is RunState.CANCELLED:  # undone already (or cancelled): harmless
            return app.status(workflow_id)
        raise _finished(record, "compensated")
    return cancel(app, workflow_id, reason)  # now compensating, or asked to cancel: the cancel's way on


def pause(app: Conveyor, workflow_id: str) -> WorkflowStatus:
    """Pause the run: see :meth:`conveyor.Conveyor.pause`."""
    workflow_id = check_workflow_id(workflow_id)
    record = _requested(app.backend.request_pause(workflow_id), workflow_id)
    if record.is_final:
        raise _finished(record, "paused")
    lease = app._driven_lease(workflow_id)
    if lease is not None and record.cancel_reason is None:
        lease.request_pause()
    return app.status(workflow_id)


def resume(app: Conveyor, workflow_id: str) -> WorkflowStatus:
    """Resume a paused run: see :meth:`conveyor.Conveyor.resume`."""
    workflow_id = check_workflow_id(workflow_id)
    record = _requested(app.backend.request_resume(workflow_id), workflow_id)
    if record.is_final:
        raise _finished(record, "resumed")
    return app.status(workflow_id)
