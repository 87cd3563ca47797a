"""Steering a run from any process: cancel it, pause it, resume it (what ``Conveyor.cancel`` and the
others do; the requests are stored with the run, so they hold across restarts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.core.records import RunRecord
from conveyor.core.states import RunState
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


def cancel(app: Conveyor, workflow_id: str, reason: str) -> WorkflowStatus:
    """Cancel the run: see :meth:`conveyor.Conveyor.cancel`."""
    workflow_id, reason = check_workflow_id(workflow_id), check_reason(reason)
    record = _requested(app.backend.request_cancel(workflow_id, reason), workflow_id)
    if record.is_final:
        if record.state is RunState.CANCELLED:  # cancelling twice is harmless
            return app.status(workflow_id)
        raise _finished(record, "cancelled")
    lease = app._driven_lease(workflow_id)
    if lease is not None:  # a driver of this process: its step is told at once
        lease.request_cancel(reason)
        return app.status(workflow_id)
    workflow = app._known_workflow(record)
    held = record.leased_until is not None and not owner_is_dead(record.owner)
    if workflow is not None and not held:  # waiting, paused or pending: compensate it here, now
        try:
            return app._run_recorded(workflow, stored_run(record, workflow), "fail")
        except RunAlreadyRunningError:  # another caller took it meanwhile: its driver sees the request
            pass
    return app.status(workflow_id)


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
