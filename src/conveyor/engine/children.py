"""How the driver moves a child step (``Flow.then_flow``, ``child(...)``), and undoes one.

Nothing here is on the path of runs without child steps: the driver comes here only for a step whose spec
``runs_child``. Each move reads the child run's record (the child's end is what it waits for) after
spending the wake-ups its end left (see below), and writes at most a checkpoint or two:

- the child run is started once, pending for any worker, under the id :func:`child_run_id` gives (the
  parent's id and the step's name), recorded with its parent; then the step records that its wait began
  and the parent is handed back with no worker slot held, woken only by the child's end;
- when the child has ended, a completed child completes the step with its output; any other end fails the
  step for good with a :class:`~conveyor.errors.ChildWorkflowError` naming the child and its error.

The wake-up is written by the backend in the child's last transaction (a signal named
:func:`~conveyor.backends.signals.child_signal_name` for the parent, and its timer due now): so the parent
never polls, and a child ending while its parent is handed back is never slept through. A driver of this
process's runtime (``Conveyor.run``) drives a child that nobody holds here instead, to its end.

Undoing (the parent compensates, or is cancelled): a child step still waiting cancels its child and waits
for it to end, then settles as above (a completed child's own undo comes next); a completed child step's
undo is ``compensate_workflow`` on the child run: its undos run, and the step is compensated once the child
ends ``cancelled`` (``compensation_failed`` if the child's compensation did not succeed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from conveyor.backends.signals import child_signal_name
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.core.settle import StepSucceeded, UndoFailed, UndoSucceeded, settle
from conveyor.core.states import RunState, StepState
from conveyor.core.waits import WAIT_FOREVER, begin_wait
from conveyor.definition.children import CHILD_INPUT, ChildRun, child_run_id
from conveyor.definition.registry import UnknownWorkflowError, version_key
from conveyor.definition.workflow import StepSpec, Workflow
from conveyor.engine.api import new_run
from conveyor.engine.waiting import StillWaiting
from conveyor.errors import ChildWorkflowError

if TYPE_CHECKING:
    from conveyor.engine.driver import RunDriver

_WAITING = StepState.WAITING


@dataclass(frozen=True, slots=True)
class ChildRuns:
    """What a driver needs for child steps: how to find a workflow by name (and version, else the newest),
    and, for a runtime driving in process, how to drive a child run here to its end."""

    resolve: Callable[[str, str | None], Workflow]
    drive_here: Callable[[RunRecord], None] | None = None


def resolver_over(workflows: Iterable[Workflow]) -> Callable[[str, str | None], Workflow]:
    """Find a workflow among ``workflows`` by the name its runs record (and version, else the newest)."""
    known = list(workflows)

    def resolve(name: str, version: str | None) -> Workflow:
        found = [workflow for workflow in known if workflow.name == name]
        if version is not None:
            found = [workflow for workflow in found if workflow.version == version]
        if not found:
            wanted = repr(name) if version is None else f"{name!r} v{version}"
            have = ", ".join(sorted(f"{w.name} v{w.version}" for w in known)) or "none"
            raise UnknownWorkflowError(f"no workflow {wanted} is known here (known: {have})", name=name)
        return max(found, key=lambda workflow: version_key(workflow.version))

    return resolve


def move_child(driver: RunDriver, spec: StepSpec, now: float) -> StillWaiting | None:
    """Take the child step ``spec`` one move further; :class:`StillWaiting` while its child runs."""
    wait = spec.waits
    assert isinstance(wait, ChildRun)
    child_id, wake = _ids(driver, spec)
    _spend_wake_ups(driver, wake, now)
    record = driver.run.steps[spec.name]
    started = record.started_at if record.state is _WAITING and record.started_at is not None else now
    child = driver.backend.load_run(child_id)
    if child is None:
        try:
            child = _start(driver, spec, wait, child_id, now)
        except Exception as exc:  # unknown workflow, an input its schema refuses, a value too big
            error = ChildWorkflowError(
                f"step {spec.name!r} could not start its child run {child_id!r} of workflow "
                f"{wait.name!r}: {type(exc).__name__}: {exc}",
                step_name=spec.name,
                child_id=child_id,
            )
            error.__cause__ = exc
            driver.write(driver.failed(spec, error, started, now))
            return None
    if record.state is not _WAITING:
        driver.write(driver.took(begin_wait(driver.workflow, driver.run, spec, now, None)))
    child = _drive_here(driver, child)
    if not child.is_final:
        return StillWaiting(WAIT_FOREVER, (wake,))
    _settle_child_end(driver, spec, child, started, now)
    return None


def undo_child(driver: RunDriver, spec: StepSpec, now: float) -> StillWaiting | None:
    """Undo the child step ``spec`` one move further, as its run compensates (see the module's docstring)."""
    child_id, wake = _ids(driver, spec)
    _spend_wake_ups(driver, wake, now)
    run = driver.run
    record = run.steps[spec.name]
    why = f"its parent run {run.workflow_id!r} is undone"
    reason = why if run.error is None else f"{why}: {run.error.message}"[:2000]
    backend = driver.backend
    if record.state is _WAITING:  # the child still runs: cancel it, and take its end as the step's
        started = record.started_at if record.started_at is not None else now
        child = backend.load_run(child_id)
        if child is not None and not child.is_final:
            child = backend.request_cancel(child_id, reason) or child
        if child is None:  # recorded waiting, yet never started: nothing to cancel
            error = ChildWorkflowError(
                f"child run {child_id!r} of step {spec.name!r} was never started",
                step_name=spec.name,
                child_id=child_id,
            )
            driver.write(driver.failed(spec, error, started, now))
            return None
        child = _drive_here(driver, child)
        if not child.is_final:
            return StillWaiting(WAIT_FOREVER, (wake,))
        _settle_child_end(driver, spec, child, started, now)
        return None
    child = backend.request_compensation(child_id, reason)  # a completed child goes compensating, once
    if child is not None:
        child = _drive_here(driver, child)
        if not child.is_final:
            return StillWaiting(WAIT_FOREVER, (wake,))
    if child is None or child.state is RunState.CANCELLED:  # undone (or gone: nothing left to undo)
        outcome: UndoSucceeded | UndoFailed = UndoSucceeded(now)
    else:
        outcome = UndoFailed(_ended_error(spec, child, "undoing it ended"), False, now)
    driver.check_lease()
    driver.write(driver.took(settle(driver.workflow, driver.run, spec, outcome, driver.in_flight)))
    return None


def _ids(driver: RunDriver, spec: StepSpec) -> tuple[str, str]:
    """The child run's id, and the name of the wake-up its end leaves the parent."""
    run = driver.run
    child_id = child_run_id(run.workflow_id, spec.name, run.generation)
    if run.wake_at is not None:  # woken (or taken over): that wake-up is spent; never write it back
        driver.run = replace(run, wake_at=None)
    return child_id, child_signal_name(child_id)


def _spend_wake_ups(driver: RunDriver, wake: str, now: float) -> None:
    """Mark consumed the wake-ups the child's end left, before the child's record is read: one left after
    the read is seen by the release that hands the parent back, which then wakes it again."""
    backend, run = driver.backend, driver.run
    while (signal := backend.next_signal(run.workflow_id, (wake,))) is not None:
        unchanged = Checkpoint(
            run.workflow_id, run.epoch, (), run.state, run.output, run.error, run.wake_at, now, run.generation
        )
        driver.check_lease()
        backend.record_checkpoint_consuming(unchanged, signal.signal_id)


def _start(driver: RunDriver, spec: StepSpec, wait: ChildRun, child_id: str, now: float) -> RunRecord:
    """Record the child run, pending for any worker, with its parent (the same id: never two)."""
    workflow = wait.workflow
    if workflow is None:
        children = driver.children
        if children is None:
            raise UnknownWorkflowError(
                f"this run is driven without a registry, so workflow {wait.name!r} cannot be found by name",
                name=wait.name,
            )
        workflow = children.resolve(wait.name, wait.version)
    child = new_run(
        workflow,
        child_id,
        _child_input(driver, spec),
        driver.run.correlation_id,
        max_bytes=driver.max_value_bytes,
    )
    child.parent_id = driver.run.workflow_id
    if driver.tracer is not None:  # the child's spans continue the parent's drive, wherever it runs
        child.trace_context = driver.tracer.capture()
    record, _ = driver.backend.submit_run(child, now=now)
    return record


def _child_input(driver: RunDriver, spec: StepSpec) -> Any:
    """The value the child starts with: what the step's binding gives its one parameter."""
    args, kwargs = spec.build_arguments(driver.run.input, driver.results)
    return args[0] if args else kwargs.get(CHILD_INPUT)


def _drive_here(driver: RunDriver, child: RunRecord) -> RunRecord:
    """In process (``Conveyor.run``), drive a child nobody holds here, to its end; its latest record."""
    children = driver.children
    if child.is_final or children is None or children.drive_here is None:
        return child
    children.drive_here(child)
    return driver.backend.load_run(child.workflow_id) or child


def _settle_child_end(
    driver: RunDriver, spec: StepSpec, child: RunRecord, started: float, now: float
) -> None:
    """The child ended: complete the step with its output, or fail it for good naming the child's end.

    A child that did not complete while its parent is being cancelled leaves the step to the cancel (the
    drive applies it next): the parent ends ``cancelled``, not failed by its child's cancel.
    """
    lease = driver.lease
    if child.state is not RunState.COMPLETED and lease.cancel_reason is not None and driver.run.error is None:
        return
    if child.state is RunState.COMPLETED:
        result = child.output if child.output is not None else "null"
        driver.results[spec.name] = result
        settled = settle(
            driver.workflow, driver.run, spec, StepSucceeded(result, started, now), driver.in_flight
        )
        driver.write(driver.took(settled))
        return
    driver.write(driver.failed(spec, _ended_error(spec, child, "it ended"), started, now))


def _ended_error(spec: StepSpec, child: RunRecord, what: str) -> ChildWorkflowError:
    """The error naming the child run, how it ended, and its own error."""
    because = "" if child.error is None else f": {child.error}"
    return ChildWorkflowError(
        f"child run {child.workflow_id!r} (workflow {child.workflow_name!r} v{child.workflow_version}) of "
        f"step {spec.name!r}: {what} {child.state.value}{because}",
        step_name=spec.name,
        child_id=child.workflow_id,
    )
