"""The worker: claims runs from a shared backend and drives them, ``concurrency`` at a time.

Many workers, in many processes and on many machines, may share one backend. Each claimed run is held
under a lease that a heartbeat renews; a worker that dies stops renewing, and once the lease expires any
other worker claims the run and resumes it from its last checkpoint. A run waiting for a retry is handed
back with its due time, so it holds no slot; an idle worker sleeps until new work is announced, a timer
falls due, or (as a fallback) the poll interval passes.
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
from typing import Any

from conveyor.backends.base import Backend
from conveyor.core.records import RunRecord
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import recorded_by
from conveyor.engine.calls import NO_RESOURCES
from conveyor.engine.clock import Clock, SystemClock
from conveyor.engine.driver import RunDriver, WaitUntil
from conveyor.engine.executor import StepExecutor
from conveyor.engine.group_commit import GroupCommitter
from conveyor.errors import BackendError, InvalidArgumentError, LeaseLostError

log = logging.getLogger("conveyor.worker")

_IDLE_CHECK_SECONDS = 0.1
"""How often an idle worker looks up from waiting (for a stop, a freed slot or a timer); no query."""
_UNKNOWN_VERSION_RETRY_SECONDS = 5.0
_TIMER_CHECK_SECONDS = 0.5
"""How often an idle worker re-reads when the next run may become ready (one indexed query)."""


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
    worker waits when no wake-up arrives; a run whose worker died more than ``max_recoveries`` times in a
    row is dead-lettered; on :meth:`stop`, runs still in flight get ``shutdown_grace_seconds`` to finish
    before they are handed back for another worker. With ``group_commit`` (the default), the checkpoints of
    runs finishing steps at the same moment share one transaction.
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
    ) -> None:
        if concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be at least 1, not {concurrency}")
        if lease_seconds <= 0:
            raise InvalidArgumentError(f"lease_seconds must be more than zero, not {lease_seconds}")
        self.backend = backend
        self.workflows = {(workflow.name, workflow.version): workflow for workflow in workflows}
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
        self._stopping = threading.Event()
        self._active: dict[str, int] = {}  # workflow_id -> epoch of the runs being driven
        self._active_lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._queue: queue.SimpleQueue[RunRecord | None] = queue.SimpleQueue()
        self.group_commit = group_commit
        self.resources = resources
        """What steps may ask for by name (a runtime's resources)."""
        self.executor = executor
        self._committer: GroupCommitter | None = None

    # -- the claim loop ---------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Claim and drive runs until :meth:`stop` (or, with ``until_idle``, until nothing is left to do)."""
        slots = [
            threading.Thread(target=self._drive_claimed, name=f"conveyor-slot-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        heartbeat = threading.Thread(target=self._renew_leases, name="conveyor-heartbeat", daemon=True)
        if self.group_commit and self.concurrency > 1:
            writers = getattr(self.backend, "group_commit_writers", 1)
            self._committer = GroupCommitter(self.backend, writers=writers)
        for thread in (*slots, heartbeat):
            thread.start()
        log.info(
            "worker %s started: %d slots, workflows %s", self.name, self.concurrency, sorted(self.workflows)
        )
        try:
            self._claim_until_stopped(until_idle)
        finally:
            self._stopping.set()
            self._shut_down(slots)
            heartbeat.join(timeout=1)
            if self._committer is not None:
                self._committer.close()
        log.info("worker %s stopped: %s", self.name, self.stats)
        return self.stats

    def stop(self) -> None:
        """Stop claiming; runs in flight get the grace period to finish. Safe in a signal handler."""
        self._stopping.set()
        self._slot_freed.set()

    def _free_slots(self) -> int:
        with self._active_lock:
            return self.concurrency - len(self._active)

    def _claim_until_stopped(self, until_idle: bool) -> None:
        last_claim = float("-inf")
        last_timer_check = float("-inf")
        next_timer: float | None = None
        woken = True
        # A worker restarted under the same name takes its previous life's runs back at once.
        self._claim(self.concurrency, reclaim_own=True)
        while not self._stopping.is_set():
            free = self._free_slots()
            if free == 0:
                self._slot_freed.wait(_IDLE_CHECK_SECONDS)
                continue
            timer_due = next_timer is not None and next_timer <= self.backend.now()  # asks only if a timer
            due_to_poll = time.monotonic() - last_claim >= self.poll_interval_seconds
            if woken or due_to_poll or timer_due or self._slot_freed.is_set():
                self._slot_freed.clear()
                last_claim = time.monotonic()
                if self._claim(free):
                    woken = True  # there may be more
                    continue
                next_timer = self._next_timer()
                if until_idle and next_timer is None and self._free_slots() == self.concurrency:
                    return
            if time.monotonic() - last_timer_check >= _TIMER_CHECK_SECONDS:
                # Leases taken since the last look may expire (their worker died): keep the next due
                # time fresh, so a dead worker's run is claimed when its lease ends, not at the next poll.
                last_timer_check = time.monotonic()
                next_timer = self._next_timer()
            timeout = _IDLE_CHECK_SECONDS
            if next_timer is not None:
                timeout = max(0.0, min(timeout, next_timer - self.backend.now()))
            woken = self._wait_for_work(timeout)

    def _claim(self, limit: int, *, reclaim_own: bool = False) -> list[RunRecord]:
        try:
            claimed = self.backend.claim_runs(
                owner=self.name,
                limit=limit,
                lease_seconds=self.lease_seconds,
                max_recoveries=self.max_recoveries,
                workflow_names=self.workflow_names,
                reclaim_own=reclaim_own,
            )
        except BackendError:
            log.exception("worker %s could not claim runs; trying again shortly", self.name)
            self.stats.errors += 1
            self._stopping.wait(1.0)
            return []
        for run in claimed:
            with self._active_lock:
                self._active[run.workflow_id] = run.epoch
            self.stats.claimed += 1
            self._queue.put(run)
        return claimed

    def _next_timer(self) -> float | None:
        try:
            return self.backend.next_wake_at()
        except BackendError:
            return None

    def _wait_for_work(self, timeout: float) -> bool:
        """Wait for new work to be announced, at most ``timeout``; True when woken by it."""
        try:
            return self.backend.wait_for_work(timeout)
        except BackendError:
            log.exception("worker %s lost its wake-up channel; polling until it is back", self.name)
            self._stopping.wait(timeout)
            return False

    # -- the slots --------------------------------------------------------------------------------

    def _drive_claimed(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                return
            try:
                self._drive(run)
            finally:
                with self._active_lock:
                    self._active.pop(run.workflow_id, None)
                self._slot_freed.set()

    def _drive(self, run: RunRecord) -> None:
        workflow = self.workflows.get((run.workflow_name, run.workflow_version))
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
        )
        try:
            outcome = driver.drive()
        except LeaseLostError:
            self.stats.leases_lost += 1
            log.warning("worker %s lost run %s to another worker", self.name, run.workflow_id)
            return
        except Exception:  # a bug or a backend failure: the slot must live on, and the run go back
            self.stats.errors += 1
            log.exception("worker %s failed driving run %s; handing it back", self.name, run.workflow_id)
            self._release(run, self.backend.now() + 1.0)
            return
        if isinstance(outcome, WaitUntil):
            self._release(run, outcome.at)
        else:
            self.stats.finished += 1

    def _release(self, run: RunRecord, wake_at: float | None) -> None:
        try:
            if self.backend.release_run(workflow_id=run.workflow_id, epoch=run.epoch, wake_at=wake_at):
                self.stats.released += 1
        except Exception:
            log.exception(
                "worker %s could not hand back run %s; its lease will expire", self.name, run.workflow_id
            )

    # -- leases and shutdown ------------------------------------------------------------------------

    def _renew_leases(self) -> None:
        interval = self.lease_seconds / 3
        while not self._stopping.wait(interval):
            with self._active_lock:
                held = dict(self._active)
            if not held:
                continue
            try:
                lost = self.backend.extend_leases(
                    owner=self.name, leases=held, lease_seconds=self.lease_seconds
                )
            except BackendError:
                log.exception("worker %s could not renew its leases", self.name)
                continue
            for workflow_id in lost:
                log.warning("worker %s no longer holds run %s", self.name, workflow_id)

    def _shut_down(self, slots: list[threading.Thread]) -> None:
        for _ in slots:
            self._queue.put(None)
        deadline = time.monotonic() + self.shutdown_grace_seconds
        for thread in slots:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._active_lock:
            unfinished = dict(self._active)
        for workflow_id, epoch in unfinished.items():
            log.warning(
                "worker %s hands back run %s, unfinished after the grace period", self.name, workflow_id
            )
            try:
                self.backend.release_run(workflow_id=workflow_id, epoch=epoch, wake_at=None)
            except BackendError:
                log.exception("could not hand back run %s; its lease will expire", workflow_id)
