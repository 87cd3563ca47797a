"""What a person does to a run by hand, each recorded on the run with who did it and why.

``resume`` drives here a run whose process died; ``retry`` runs a failed run again (from a named step, if
asked, a completed run too); ``skip`` completes a failed step with a result a person gives and lets the run
go on; ``complete`` marks a run completed. Cancel, pause and unpause are logged here too (the requests
themselves are :mod:`conveyor.runtime.steering`'s). Each action is appended to the run's operator log
(``WorkflowStatus.operator_actions``) in the same transaction as the change it makes; ``by`` is the OS user
when not given. What each changes is the pure :mod:`conveyor.core.operator`'s.
"""

from __future__ import annotations

import datetime as dt
import getpass
from typing import TYPE_CHECKING, Any

import orjson
import pydantic

from conveyor.codec import encode
from conveyor.core.operator import (
    COMPLETABLE_BY_HAND,
    RETRYABLE_FROM_A_STEP,
    SKIPPABLE_RUN_STATES,
    SKIPPABLE_STEP_STATES,
    complete_by_hand,
    reopen_from_step,
    skip_step,
)
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.core.settle import RETRYABLE_RUN_STATES, Settled, reopen_for_retry
from conveyor.definition.registry import UnknownWorkflowError
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import same_workflow_or_raise, stored_run
from conveyor.engine.checks import check_reason, check_workflow_id
from conveyor.engine.status import WorkflowStatus
from conveyor.errors import (
    ConfigurationError,
    InvalidArgumentError,
    RunAlreadyRunningError,
    RunFinishedError,
    RunNotRetryableError,
)
from conveyor.runtime.ownership import owner_is_dead

if TYPE_CHECKING:
    from conveyor.runtime.app import Conveyor, IfRunning

MAX_BY_LENGTH = 200
"""The longest name ``by`` may record."""


def os_user() -> str:
    """Who runs this process, as the OS names them (``by`` when none is given); ``unknown`` if it cannot."""
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no user name in the environment or the password database (a bare container)
        return "unknown"


def check_by(by: object) -> str:
    """``by`` (who does an action) checked: printable text, not blank; the OS user when None."""
    if by is None:
        return os_user()
    if not isinstance(by, str) or not by.strip():
        raise InvalidArgumentError("by (who does this) must be a name, not blank", argument="by")
    if len(by) > MAX_BY_LENGTH or not by.isprintable():
        raise InvalidArgumentError(
            f"by must be printable text of at most {MAX_BY_LENGTH} characters, not {by!r}", argument="by"
        )
    return by


def _entry(action: str, by: str, reason: str, at: float, step: str | None = None) -> str:
    return orjson.dumps({"action": action, "by": by, "reason": reason, "at": at, "step": step}).decode()


def _checked(app: Conveyor, workflow_id: str, by: object, reason: object) -> tuple[str, str, str, RunRecord]:
    """The checked id, ``by`` and ``reason``, and the run's record (RunNotFoundError, its corruption)."""
    workflow_id, reason, by = check_workflow_id(workflow_id), check_reason(reason), check_by(by)
    record = app._load(workflow_id)
    if record.corruption is not None:  # its rows cannot be read: nothing can change it until they are fixed
        raise record.corruption
    return workflow_id, by, reason, record


def _workflow(app: Conveyor, record: RunRecord, workflow: Workflow | type | None, doing: str) -> Workflow:
    """The workflow to drive ``record`` with: ``workflow``, else the registered one it recorded."""
    if workflow is not None:
        chosen = app._resolve(workflow, None)
    else:
        try:
            chosen = app._workflow_of(record)
        except UnknownWorkflowError:
            raise ConfigurationError(
                f"{doing} run {record.workflow_id!r} drives it here, so this runtime must know workflow "
                f"{record.workflow_name!r} v{record.workflow_version}: register it (conveyor --app) or "
                "pass workflow="
            ) from None
    same_workflow_or_raise(record, chosen)
    return chosen


def _refuse_if_driven(app: Conveyor, record: RunRecord, doing: str) -> None:
    """Raise RunAlreadyRunningError if a live process (this one included) drives the run now."""
    workflow_id, owner = record.workflow_id, record.owner
    if app._driven_lease(workflow_id) is not None:
        raise RunAlreadyRunningError(
            f"run {workflow_id!r} is being driven in this process; it cannot be {doing}",
            workflow_id=workflow_id,
            owner=owner,
        )
    if record.leased_until is not None and not owner_is_dead(owner):
        until = dt.datetime.fromtimestamp(record.leased_until, dt.UTC).strftime("%H:%M:%S UTC")
        raise RunAlreadyRunningError(
            f"run {workflow_id!r} is being driven by {owner} (its lease runs until {until}), so it cannot "
            f"be {doing}; if that process died, its lease ends by itself (pause or cancel it to stop it)",
            workflow_id=workflow_id,
            owner=owner,
        )


def _write(app: Conveyor, record: RunRecord, entry: str, checkpoint: Checkpoint | None) -> None:
    if not app.backend.record_operator_action(record.workflow_id, entry, checkpoint):
        raise RunAlreadyRunningError(
            f"run {record.workflow_id!r} was taken by another process while this action was being recorded; "
            "nothing was changed: look at its status and try again",
            workflow_id=record.workflow_id,
        )


def _drive_reopened(
    app: Conveyor,
    record: RunRecord,
    workflow: Workflow,
    entry: str,
    settled: Settled,
    if_running: IfRunning,
    wait: bool,
) -> WorkflowStatus:
    """Write a reopened run and its log entry together, then drive it here to its end (``wait``), or
    leave it, claimable at once, for a worker."""
    new, checkpoint = settled
    _write(app, record, entry, checkpoint)
    # The run's last driver may still hold a lease on it: give it up, so this drive (or a worker) takes it.
    app.backend.release_run(workflow_id=record.workflow_id, epoch=record.epoch, wake_at=None)
    if new.is_final or not wait:  # the skip completed it, or a worker will drive it
        return app.status(record.workflow_id, workflow=workflow)
    return app._run_recorded(workflow, stored_run(record, workflow), if_running)


def resume(
    app: Conveyor, workflow_id: str, *, workflow: Workflow | type | None, by: str | None, reason: str
) -> WorkflowStatus:
    """Drive here a run nobody drives any more: see :meth:`conveyor.Conveyor.resume`."""
    workflow_id, by, reason, record = _checked(app, workflow_id, by, reason)
    if record.is_final:
        raise RunFinishedError(
            f"run {workflow_id!r} has already ended ({record.state.value}); there is nothing to resume "
            "(a failed run can be retried)",
            workflow_id=workflow_id,
            state=record.state.value,
        )
    chosen = _workflow(app, record, workflow, "resuming")
    _refuse_if_driven(app, record, "resumed here")
    if record.paused:
        app.backend.request_resume(workflow_id)
    _write(app, record, _entry("resume", by, reason, app.clock.now()), None)
    return app._run_recorded(chosen, stored_run(record, chosen), "fail")


def retry(
    app: Conveyor,
    workflow_id: str,
    *,
    workflow: Workflow | type | None,
    from_step: str | None,
    by: str | None,
    reason: str,
    if_running: IfRunning,
    wait: bool = True,
) -> WorkflowStatus:
    """Run a failed run again (from ``from_step``, if given): see :meth:`conveyor.Conveyor.retry`."""
    workflow_id, by, reason, record = _checked(app, workflow_id, by, reason)
    chosen = _workflow(app, record, workflow, "retrying")
    now = app.clock.now()
    if from_step is None:
        if record.state not in RETRYABLE_RUN_STATES:
            raise RunNotRetryableError(
                f"run {workflow_id!r} is {record.state.value}; only a failed, compensated, "
                "compensation_failed or dead_lettered run can be retried",
                workflow_id=workflow_id,
            )
        settled = reopen_for_retry(chosen, record, now)
    else:
        _check_step(chosen, from_step, "from_step")
        if record.state not in RETRYABLE_FROM_A_STEP:
            raise RunNotRetryableError(
                f"run {workflow_id!r} is {record.state.value}; only a completed, failed, compensated, "
                "compensation_failed or dead_lettered run can be retried from a step",
                workflow_id=workflow_id,
            )
        settled = reopen_from_step(chosen, record, from_step, now)
    return _drive_reopened(
        app, record, chosen, _entry("retry", by, reason, now, from_step), settled, if_running, wait
    )


def skip(
    app: Conveyor,
    workflow_id: str,
    step: str,
    result: Any,
    *,
    workflow: Workflow | type | None,
    by: str | None,
    reason: str,
    if_running: IfRunning,
    wait: bool = True,
) -> WorkflowStatus:
    """Complete a failed step with ``result`` and go on: see :meth:`conveyor.Conveyor.skip_step`."""
    workflow_id, by, reason, record = _checked(app, workflow_id, by, reason)
    chosen = _workflow(app, record, workflow, "skipping a step of")
    spec = _check_step(chosen, step, "step")
    if record.state not in SKIPPABLE_RUN_STATES:
        raise RunNotRetryableError(
            f"run {workflow_id!r} is {record.state.value}; a step can be skipped only in a failed, "
            "compensated, compensation_failed or dead_lettered run",
            workflow_id=workflow_id,
        )
    state = record.steps[step].state
    if state not in SKIPPABLE_STEP_STATES:
        raise InvalidArgumentError(
            f"step {step!r} of run {workflow_id!r} is {state.value}; only a failed step can be skipped",
            argument="step",
        )
    text = encode(result, what=f"the result given for step {step!r}", max_bytes=app._max_value_bytes())
    _check_result(spec, text)
    now = app.clock.now()
    settled = skip_step(chosen, record, step, text, now)
    entry = _entry("skip", by, reason, now, step)
    return _drive_reopened(app, record, chosen, entry, settled, if_running, wait)


def complete(app: Conveyor, workflow_id: str, output: Any, *, by: str | None, reason: str) -> WorkflowStatus:
    """Mark the run completed with ``output``: see :meth:`conveyor.Conveyor.complete_by_hand`."""
    workflow_id, by, reason, record = _checked(app, workflow_id, by, reason)
    if record.state not in COMPLETABLE_BY_HAND:
        raise RunFinishedError(
            f"run {workflow_id!r} has already completed", workflow_id=workflow_id, state=record.state.value
        )
    if not record.is_final:
        _refuse_if_driven(app, record, "completed by hand")
    text = encode(output, what="the output given", max_bytes=app._max_value_bytes())
    now = app.clock.now()
    _write(app, record, _entry("complete", by, reason, now), complete_by_hand(record, text, now)[1])
    return app.status(workflow_id)


def log_request(app: Conveyor, workflow_id: str, action: str, by: str | None, reason: str) -> None:
    """Log a cancel, pause or unpause asked of a run that has not ended (one that has is the request's to
    refuse, and is not logged); RunNotFoundError for an unknown run."""
    workflow_id, reason, by = check_workflow_id(workflow_id), check_reason(reason), check_by(by)
    record = app._load(workflow_id)
    if not record.is_final:
        _write(app, record, _entry(action, by, reason, app.clock.now()), None)


def _check_step(workflow: Workflow, step: object, argument: str) -> Any:
    if not isinstance(step, str) or step not in workflow.by_name:
        raise InvalidArgumentError(
            f"{argument} must name a step of workflow {workflow.name!r} ({', '.join(workflow.step_names)}), "
            f"not {step!r}",
            argument=argument,
        )
    return workflow.by_name[step]


def _check_result(spec: Any, text: str) -> None:
    """Refuse a result given for a skipped step that does not fit the type the step declares it returns."""
    annotation = spec.task.shape.returns.annotation
    if annotation is Any:
        return
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
    except Exception:  # a return type pydantic cannot check: the steps after it will
        return
    try:
        adapter.validate_json(text)
    except pydantic.ValidationError as exc:
        raise InvalidArgumentError(
            f"the result given for step {spec.name!r} is not what the step returns ({annotation!r}): "
            f"{exc.errors()[0]['msg']}",
            argument="result",
        ) from exc
