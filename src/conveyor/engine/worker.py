"""The worker: claims runs from a shared backend and drives them, ``concurrency`` at a time.

Many workers, in many processes and on many machines, may share one backend. Each claimed run is held
under a :class:`~conveyor.engine.lease.Lease` that the worker's heartbeat renews and that the run's one
driver shares; a worker that dies stops renewing, and once the lease ends (by the backend's clock) any
other worker claims the run and resumes it from its last checkpoint. A worker never claims a run one of
its own drivers still holds, and a run is held only while a slot drives it: when a drive fails, the lease
is cut short (a back-off) and the next claim counts it, so that a run that keeps failing is dead-lettered
rather than looping. A run waiting for a retry is handed back with its due time, so it holds no slot.

The claim loop has one wake-up: it claims while it has free slots and work is ready, then sleeps until
new work is announced, a slot frees, the next run falls due (by the backend's clock), or the poll
interval passes. A backend that fails (a killed connection, a restart) is ridden through: the loop backs
off, doubling up to a bound, and carries on.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import Backend
from conveyor.core.records import Checkpoint, Failure, RunRecord
from conveyor.core.states import RunState, StepState
from conveyor.core.waits import WAIT_FOREVER
from conveyor.definition.children import with_children
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import definition_changed, recorded_by
from conveyor.engine.calls import NO_RESOURCES
from conveyor.engine.children import ChildRuns, resolver_over
from conveyor.engine.clock import Clock, SystemClock
from conveyor.engine.driver import Paused, RunDriver, WaitUntil
from conveyor.engine.executor import StepExecutor
from conveyor.engine.group_commit import GroupCommitter
from conveyor.engine.lease import Heartbeat, Lease
from conveyor.errors import BackendError, EngineError, InvalidArgumentError, LeaseLostError

if TYPE_CHECKING:
    from conveyor.observe.tracing import RunTracer

log = logging.getLogger("conveyor.worker")

_UNKNOWN_VERSION_RETRY_SECONDS = 5.0
_CHANGED_DEFINITION_HAND_BACKS = 3
"""How many times a worker hands back a run recorded by another definition of a workflow it has (same
name and version: another worker of a rolling deploy may still have the old one) before it fails the run
with the DefinitionChangedError, rather than handing it back forever."""
_FIRST_BACKOFF_SECONDS = 0.5
"""After a failed drive or a failed claim, the first pause; each failure in a row doubles it."""
_LONGEST_BACKOFF_SECONDS = 10.0
"""The claim loop's longest pause while the backend keeps failing."""
_LISTEN_SECONDS = 1.0
"""How long one wait for announced work lasts before the listener looks whether the worker stopped."""


@dataclass
class WorkerStats:
    """What a worker has done since it started."""

    claimed: int = 0
    finished: int = 0
    released: int = 0
    leases_lost: int = 0
    errors: int = 0


class Worker:
    """Claims and drives runs of ``workflows`` from ``backend`` until :meth:`stop` is called.

    ``concurrency`` runs are driven at once, each on its own thread. ``lease_seconds`` is how long a claim
    lasts unless renewed (renewed every third of it); ``poll_interval_seconds`` bounds how long an idle
    worker waits when no wake-up arrives; a run whose worker died (or whose drive failed) more than
    ``max_recoveries`` times in a row without recording a step is dead-lettered; on :meth:`stop`, runs
    still in flight get ``shutdown_grace_seconds`` to finish before they are handed back for another
    worker. With ``group_commit`` (the default), the checkpoints of
    runs finishing steps at the same moment share one transaction. With a ``tracer``, each drive of a run
    continues the trace its starter stored with it (see :mod:`conveyor.observe.tracing`).
    """

    def __init__(
        self,
        backend: Backend,
        workflows: Iterable[Workflow],
        *,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        poll_interval_seconds: float = 5.0,
        max_recoveries: int = 5,
        shutdown_grace_seconds: float = 30.0,
        name: str | None = None,
        clock: Clock | None = None,
        group_commit: bool = True,
        resources: Mapping[str, Any] = NO_RESOURCES,
        executor: StepExecutor | None = None,
        children: ChildRuns | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be at least 1, not {concurrency}")
        if lease_seconds <= 0:
            raise InvalidArgumentError(f"lease_seconds must be more than zero, not {lease_seconds}")
        self.backend = backend
        self.workflows = {(flow.name, flow.version): flow for flow in with_children(workflows)}
        self.children = children or ChildRuns(resolver_over(self.workflows.values()))
        """How child steps find their workflows by name: among this worker's, unless given."""
        if not self.workflows:
            raise InvalidArgumentError("a worker needs at least one workflow to run")
        self.workflow_names = frozenset(name for name, _ in self.workflows)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.max_recoveries = max_recoveries
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock or SystemClock()
        self.stats = WorkerStats()
        self._changed_hand_backs: dict[str, int] = {}
        self._changed_lock = threading.Lock()
        """Runs handed back for another definition of a workflow this worker has, and how many times."""
        self._stopping = threading.Event()
        self._wake = threading.Event()
        """The claim loop's one wake-up: set by announced work, a freed slot, and :meth:`stop`."""
        self._leases = Heartbeat(lambda: backend, self.name, lease_seconds)
        """The leases of the runs this worker's slots drive (or are about to): renewed while held."""
        self._queue: queue.SimpleQueue[tuple[RunRecord, Lease] | None] = queue.SimpleQueue()
        self.group_commit = group_commit
        self.resources = resources
        """What steps may ask for by name (a runtime's resources)."""
        self.executor = executor
        self.tracer = tracer
        """Makes a span of each drive and of each step attempt (see conveyor.observe.tracing); None: off."""
        self._committer: GroupCommitter | None = None

    # -- the claim loop ---------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Claim and drive runs until :meth:`stop` (or, with ``until_idle``, until nothing is left to do)."""
        slots = [
            threading.Thread(target=self._drive_claimed, name=f"conveyor-slot-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        listener = threading.Thread(target=self._listen_for_work, name="conveyor-listener", daemon=True)
        if self.group_commit and self.concurrency > 1:
            writers = getattr(self.backend, "group_commit_writers", 1)
            self._committer = GroupCommitter(self.backend, writers=writers)
        for thread in (*slots, listener):
            thread.start()
        log.info(
            "worker %s started: %d slots, workflows %s", self.name, self.concurrency, sorted(self.workflows)
        )
        try:
            self._claim_until_stopped(until_idle)
        finally:
            self._stopping.set()
            self._shut_down(slots)
            self._leases.close()
            if self._committer is not None:
                self._committer.close()
        log.info("worker %s stopped: %s", self.name, self.stats)
        return self.stats

    def lease_of(self, workflow_id: str) -> Lease | None:
        """The lease a slot of this worker drives ``workflow_id`` under now, if any."""
        return self._leases.lease_of(workflow_id)

    def stop(self) -> None:
        """Stop claiming; runs in flight get the grace period to finish. Safe in a signal handler."""
        self._stopping.set()
        self._wake.set()

    def _claim_until_stopped(self, until_idle: bool) -> None:
        """Claim while slots are free and work is ready; else sleep until the one wake-up or the next due.

        The wake-up is cleared before each claim, so work announced during the claim is not missed.
        """
        reclaim_own = True  # a worker restarted under its name takes its previous life's runs back at once
        failures = 0
        idle_seen = False
        while not self._stopping.is_set():
            self._wake.clear()
            free = self.concurrency - self._leases.count()
            timeout: float | None = None  # no free slot: until one frees
            if free > 0:
                try:
                    claimed = self._claim(free, reclaim_own=reclaim_own)
                    reclaim_own, failures = False, 0
                    if claimed:
                        idle_seen = False
                        continue  # there may be more
                    timeout = self._seconds_until_due()
                except BackendError:
                    failures += 1
                    self.stats.errors += 1
                    timeout = _backoff(failures, _LONGEST_BACKOFF_SECONDS)
                    log.warning(
                        "worker %s could not reach the backend; trying again in %.1f s",
                        self.name,
                        timeout,
                        exc_info=True,
                    )
                else:
                    if until_idle and timeout is None and not self._leases.count():
                        # Idle twice in a row: a slot that handed a run back ready (a parent its child
                        # woke as it was released) between this claim and the count is claimed next.
                        if idle_seen:
                            return
                        idle_seen = True
                        continue
                    idle_seen = False
            poll = self.poll_interval_seconds
            self._wake.wait(poll if timeout is None else min(timeout, poll))

    def _claim(self, limit: int, *, reclaim_own: bool) -> list[RunRecord]:
        """Claim up to ``limit`` runs, none that a slot of this worker holds, and hand each to a slot."""
        claimed = self.backend.claim_runs(
            owner=self.name,
            limit=limit,
            lease_seconds=self.lease_seconds,
            max_recoveries=self.max_recoveries,
            workflow_names=self.workflow_names,
            reclaim_own=reclaim_own,
            exclude=self._leases.held().keys(),
        )
        for run in claimed:
            lease = Lease(run.workflow_id, run.epoch, self.name)
            self._leases.hold(lease)
            self.stats.claimed += 1
            self._queue.put((run, lease))
        return claimed

    def _seconds_until_due(self) -> float | None:
        """How long until a run this worker could claim becomes ready by itself (None: none will).

        Both ends are read from the backend's clock. A due time already past (a run another claimer
        locked a moment ago) is looked at again after a short pause, never in a tight loop.
        """
        due = self.backend.next_wake_at(
            workflow_names=self.workflow_names, exclude=self._leases.held().keys()
        )
        if due is None or due >= WAIT_FOREVER:  # only runs waiting for signals: none wakes by itself
            return None
        return max(due - self.backend.now(), _FIRST_BACKOFF_SECONDS / 10)

    def _listen_for_work(self) -> None:
        """Wake the claim loop whenever the backend announces new work, until the worker stops."""
        while not self._stopping.is_set():
            try:
                announced = self.backend.wait_for_work(min(_LISTEN_SECONDS, self.poll_interval_seconds))
            except Exception:  # the backend's wait is built not to raise; a bug must not end the wake-ups
                if self._stopping.is_set():  # the worker has stopped and its backend may be closed: done
                    return
                log.exception("worker %s lost its wake-up channel; polling until it is back", self.name)
                announced = False
                self._stopping.wait(_LISTEN_SECONDS)
            if announced:
                self._wake.set()

    # -- the slots --------------------------------------------------------------------------------

    def _drive_claimed(self) -> None:
        """A slot: drive each claimed run handed to it; nothing a drive raises ends the slot."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            run, lease = item
            try:
                self._drive(run, lease)
            except BaseException:  # a bug in the failure handling itself: the slot still lives on
                log.exception("worker %s failed handling run %s", self.name, run.workflow_id)
            finally:
                self._leases.drop(lease)  # from here on the lease is never renewed: released, or lapsing
                self._wake.set()

    def _drive(self, run: RunRecord, lease: Lease) -> None:
        """Drive one claimed run until it ends or waits; a failure of any kind backs off (see below)."""
        try:
            workflow = self.workflows.get((run.workflow_name, run.workflow_version))
            if workflow is not None and not recorded_by(run, workflow) and self._changed_for_good(run):
                self._fail_changed(run, workflow)
                return
            if workflow is None or not recorded_by(run, workflow):  # another worker may have its definition
                log.error(
                    "run %s needs workflow %r v%s (definition %s), which this worker does not have; "
                    "handing it back",
                    run.workflow_id,
                    run.workflow_name,
                    run.workflow_version,
                    run.definition_hash or "any",
                )
                self._release(run, self.backend.now() + _UNKNOWN_VERSION_RETRY_SECONDS)
                return
            driver = RunDriver(
                workflow,
                run,
                self.backend,
                self.clock,
                executor=self.executor,
                resources=self.resources,
                record_checkpoint=None if self._committer is None else self._committer.record_checkpoint,
                lease=lease,
                children=self.children,
                tracer=self.tracer,
            )
            outcome = driver.drive()
            if isinstance(outcome, WaitUntil):
                self._release(run, outcome.at, outcome.signals)
            elif isinstance(outcome, Paused):  # handed back; the backend keeps it unclaimed until resumed
                self._release(run, None)
            else:
                self.stats.finished += 1
        except LeaseLostError:
            lease.mark_lost()
            self.stats.leases_lost += 1
            log.warning("worker %s lost run %s to another worker", self.name, run.workflow_id)
        except BaseException as error:  # the engine's or the backend's (a step's own ends in its record)
            self.stats.errors += 1
            log.warning("worker %s failed driving run %s", self.name, run.workflow_id, exc_info=True)
            self._after_failed_drive(run, lease, error)

    def _after_failed_drive(self, run: RunRecord, lease: Lease, error: BaseException) -> None:
        """After a failed drive: cut the lease short, to end after a back-off, and stop renewing it.

        The run stays this worker's until then, so that the next claim (by any worker) counts the failure
        as a recovery: a run whose drives keep failing without recording a step is dead-lettered after
        ``max_recoveries``, never claimed and failed in a loop. The failure that reaches that bound
        dead-letters the run here, naming its error. If these writes fail, the lease ends by itself, with
        the same effect, a little later.
        """
        self._leases.drop(lease)  # first: a renewal must not undo the cut below
        try:
            stored = self.backend.load_run(run.workflow_id) or run  # as recorded, not as driven
            failures = stored.recoveries + 1  # what the next claim counts (a recorded step set it to 0)
            if failures > self.max_recoveries:
                self.backend.record_checkpoint(
                    _dead_letter(stored, lease, error, failures, self.backend.now())
                )
                log.error("worker %s dead-lettered run %s: %s", self.name, run.workflow_id, error)
                return
            delay = _backoff(failures, self.lease_seconds)
            self.backend.extend_leases(
                owner=self.name, leases={run.workflow_id: lease.epoch}, lease_seconds=delay
            )
        except Exception:
            log.warning(
                "worker %s could not cut short its lease on run %s; it ends by itself",
                self.name,
                run.workflow_id,
                exc_info=True,
            )

    def _changed_for_good(self, run: RunRecord) -> bool:
        """Whether this worker has handed ``run`` back enough times for another definition (it counts)."""
        with self._changed_lock:
            seen = self._changed_hand_backs[run.workflow_id] = (
                self._changed_hand_backs.get(run.workflow_id, 0) + 1
            )
        return seen > _CHANGED_DEFINITION_HAND_BACKS

    def _fail_changed(self, run: RunRecord, workflow: Workflow) -> None:
        """End a run recorded by another definition of ``workflow`` (same name and version) with that error:
        no step runs on the other definition, and the status says what changed and what to do."""
        assert run.definition_hash is not None
        error = definition_changed(run, workflow, run.definition_hash)
        at = next((name for name in run.step_names if run.steps[name].state is not StepState.COMPLETED), "")
        failure = Failure(at, type(error).__name__, error.message, 0, retryable=False)
        state = RunState.COMPENSATION_FAILED if run.state is RunState.COMPENSATING else RunState.FAILED
        checkpoint = Checkpoint(
            run.workflow_id,
            run.epoch,
            (),
            state,
            run.output,
            failure,
            None,
            self.backend.now(),
            run.generation,
            previous_state=run.state,
        )
        log.error("run %s fails: %s", run.workflow_id, error.message)
        self.backend.record_checkpoint(checkpoint)
        self.stats.finished += 1
        with self._changed_lock:
            self._changed_hand_backs.pop(run.workflow_id, None)

    def _release(self, run: RunRecord, wake_at: float | None, signals: tuple[str, ...] = ()) -> None:
        released = (
            self.backend.release_run(
                workflow_id=run.workflow_id, epoch=run.epoch, wake_at=wake_at, wake_for_signals=signals
            )
            if signals
            else self.backend.release_run(workflow_id=run.workflow_id, epoch=run.epoch, wake_at=wake_at)
        )
        if released:
            self.stats.released += 1

    # -- shutdown -----------------------------------------------------------------------------------

    def _shut_down(self, slots: list[threading.Thread]) -> None:
        """Let the slots finish within the grace period; then stop the drivers left and hand their runs back.

        A driver still running after the grace period has its lease marked lost first, so that it starts
        no step and writes nothing once its run is handed back (the process is about to end).
        """
        for _ in slots:
            self._queue.put(None)
        deadline = time.monotonic() + self.shutdown_grace_seconds  # a wait here, not a lease's end
        for thread in slots:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for lease in self._leases.held().values():
            log.warning(
                "worker %s hands back run %s, unfinished after the grace period", self.name, lease.workflow_id
            )
            lease.mark_lost()
            self._leases.drop(lease)
            try:
                self.backend.release_run(workflow_id=lease.workflow_id, epoch=lease.epoch, wake_at=None)
            except BackendError:
                log.warning("could not hand back run %s; its lease will end by itself", lease.workflow_id)


def _dead_letter(run: RunRecord, lease: Lease, error: BaseException, failures: int, now: float) -> Checkpoint:
    """The checkpoint that sets ``run`` aside as dead-lettered, its error an EngineError naming ``error``."""
    step = next(
        (name for name in run.step_names if run.steps[name].state is not StepState.COMPLETED),
        run.step_names[-1] if run.step_names else "",
    )
    cause = EngineError(
        f"driving this run failed {failures} times in a row without recording a step, last with "
        f"{type(error).__name__}: {error}; it was set aside. Fix the cause, then retry it.",
        step_name=step,
    )
    cause.__cause__ = error
    return Checkpoint(
        workflow_id=run.workflow_id,
        epoch=lease.epoch,
        steps=(),
        state=RunState.DEAD_LETTERED,
        output=run.output,
        error=Failure.from_exception(step, cause, failures, retryable=False),
        wake_at=None,
        at=now,
        generation=run.generation,
        previous_state=run.state,
    )


def _backoff(failures: int, longest: float) -> float:
    """The pause after ``failures`` failures in a row: doubling from the first, never past ``longest``."""
    return min(_FIRST_BACKOFF_SECONDS * 2.0 ** min(failures - 1, 32), longest)
