"""Leases: a run's claim, shared by the one driver that holds it, and the heartbeat that renews them.

A :class:`Lease` is made when a process takes a run (a worker's claim, or an in-process caller's start) and
is handed to that run's one :class:`~conveyor.engine.driver.RunDriver`. Whoever learns that the run was
taken over (the :class:`Heartbeat`, when a renewal is refused) marks it lost, and the driver stops before
its next step or checkpoint. When a lease ends is judged by the backend's clock alone (the database's): a
renewal that cannot reach the backend changes nothing here, since the run stays this driver's until
another process takes it, and then its epoch has moved on and every write of the old driver is refused.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

import orjson

from conveyor.backends.base import Backend
from conveyor.core.records import StepRecord
from conveyor.core.states import StepState
from conveyor.core.steering import DEADLINE_REASON
from conveyor.errors import BackendError, LeaseLostError

log = logging.getLogger("conveyor.lease")


_NOTES_LOCK = threading.Lock()


class Note(NamedTuple):
    """An annotation a step's attempt recorded, before the checkpoint of its outcome takes it."""

    step: str
    undo: bool
    attempt: int
    name: str
    content: str
    """The content, as JSON text."""

    def entry(self, at: float) -> str:
        """The annotation as stored: ``{name, content, step, at}`` (``at``: when it was committed)."""
        name, step = orjson.dumps(self.name).decode(), orjson.dumps(self.step).decode()
        return f'{{"name":{name},"content":{self.content},"step":{step},"at":{orjson.dumps(at).decode()}}}'


class Lease:
    """One process's hold on one run at one epoch: ``workflow_id``, ``epoch``, ``owner`` and a lost flag.

    A lease is shared by exactly one claim and one driver; it is never reused for another epoch.
    """

    __slots__ = (
        "cancel_reason",
        "deadline_at",
        "epoch",
        "halted",
        "lost",
        "notes",
        "owner",
        "paused",
        "workflow_id",
    )

    def __init__(self, workflow_id: str, epoch: int, owner: str) -> None:
        self.workflow_id = workflow_id
        self.epoch = epoch
        """The epoch the run was taken at: every write of its driver is fenced by it."""
        self.owner = owner
        self.lost = False
        """Set once another process holds the run: the driver must write nothing more."""
        self.halted = False
        """Set when the driver must look before its next step: the lease was lost, or the run was asked to
        cancel or pause. One flag, so that a run nobody steers costs the driver one check per step, as
        before."""
        self.cancel_reason: str | None = None
        """Set once the run was asked to cancel (by a request, or by its deadline)."""
        self.paused = False
        """Set once the run was asked to pause."""
        self.deadline_at: float | None = None
        """The run's deadline (epoch seconds, backend clock), which the heartbeat watches."""
        self.notes: list[Note] | None = None
        """Annotations running steps recorded (``StepContext.annotate``), until the checkpoint of the
        attempt that recorded them takes them (see :meth:`take_notes`)."""

    def mark_lost(self) -> None:
        """Record that the run was taken over: its driver stops before its next step or checkpoint."""
        self.lost = True
        self.halted = True

    def request_cancel(self, reason: str) -> None:
        """Tell the driver the run is cancelled: its step is told, and no new step starts."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.halted = True

    def request_pause(self) -> None:
        """Tell the driver the run is paused: the running step finishes, and no new step starts."""
        if not self.paused:
            self.paused = True
            self.halted = True

    def annotate(self, step: str, undo: bool, attempt: int, name: str, content: str) -> None:
        """Keep an annotation attempt ``attempt`` of ``step`` (or of its undo) recorded, for the checkpoint
        of its outcome; the driver then looks before its next write (it costs runs that never annotate
        nothing)."""
        with _NOTES_LOCK:  # steps running side by side annotate from their own threads
            if self.notes is None:
                self.notes = []
            self.notes.append(Note(step, undo, attempt, name, content))
        self.halted = True

    def take_notes(self, records: Iterable[StepRecord], at: float) -> str | None:
        """The annotations to commit with a checkpoint writing ``records``, as a JSON list (None if none).

        An attempt's annotations go with the checkpoint that records it completed (or, for an undo,
        compensated); those of an attempt recorded failed are dropped, so a retried step records its
        annotations once. Annotations of steps the checkpoint does not write are kept for a later one.
        """
        by_name = {record.name: record for record in records}
        taken: list[str] = []
        with _NOTES_LOCK:
            kept = []
            for note in self.notes or ():
                record = by_name.get(note.step)
                if record is None:
                    kept.append(note)
                elif note.undo:
                    if record.state is StepState.COMPENSATED and record.compensation_attempts == note.attempt:
                        taken.append(note.entry(at))
                elif record.state is StepState.COMPLETED and record.attempts == note.attempt:
                    taken.append(note.entry(at))
            self.notes = kept or None
        return "[" + ",".join(taken) + "]" if taken else None

    @property
    def cancelled(self) -> bool:
        """Whether the run was asked to cancel (what ``StepContext.cancelled`` reads)."""
        return self.cancel_reason is not None

    def lost_error(self) -> LeaseLostError:
        """The error a driver stops with once the lease is lost."""
        return LeaseLostError(
            f"run {self.workflow_id!r} was taken over by another process; {self.owner} stopped driving it",
            workflow_id=self.workflow_id,
        )

    def __repr__(self) -> str:
        lost = " lost" if self.lost else ""
        return f"<Lease {self.workflow_id!r} epoch={self.epoch} owner={self.owner!r}{lost}>"


class Heartbeat:
    """Holds the leases of one owner and renews them all, every third of the lease, on a daemon thread.

    The thread starts with the first lease held and ends at a round with none held (an idle runtime keeps
    no thread, and nothing of it outlives its owner); each round is one backend call for every lease held.
    Holding and dropping a lease is a dict write under a lock: most runs end long before the first round.
    A lease the backend reports lost is marked lost and renewed no more, but stays held until its driver
    stops and drops it: a worker counts it as a busy slot and never claims its run meanwhile. A round the
    backend fails (it is
    unreachable) is logged and tried again next round; it marks nothing lost, since only the backend knows
    whether the run was taken over.
    """

    def __init__(self, backend: Callable[[], Backend], owner: str, lease_seconds: float) -> None:
        self._backend = backend
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        """Keep renewing ``lease`` until :meth:`drop`."""
        with self._lock:
            self._held[lease.workflow_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew, name=f"conveyor-heartbeat-{self.owner}", daemon=True
                )
                self._thread.start()

    def drop(self, lease: Lease) -> None:
        """Stop renewing ``lease`` (another lease held since on the same run is kept)."""
        with self._lock:
            if self._held.get(lease.workflow_id) is lease:
                del self._held[lease.workflow_id]

    def held(self) -> dict[str, Lease]:
        """The leases held now, by workflow_id (a copy)."""
        with self._lock:
            return dict(self._held)

    def lease_of(self, workflow_id: str) -> Lease | None:
        """The lease held on ``workflow_id`` now, if any (its driver is in this process)."""
        return self._held.get(workflow_id)

    def count(self) -> int:
        """How many leases are held now."""
        return len(self._held)

    def renew_now(self) -> None:
        """One round of renewals, on the calling thread (the daemon thread calls it every round)."""
        with self._lock:
            held = {workflow_id: lease for workflow_id, lease in self._held.items() if not lease.lost}
        if not held:
            return
        try:
            lost = self._backend().extend_leases(
                owner=self.owner,
                leases={workflow_id: lease.epoch for workflow_id, lease in held.items()},
                lease_seconds=self.lease_seconds,
            )
        except BackendError:
            log.warning("%s could not renew the leases of %d runs; trying again", self.owner, len(held))
            return
        for workflow_id in lost:
            held[workflow_id].mark_lost()  # still held (so counted) until its driver stops and drops it
            log.warning("%s lost run %s: another process took it over", self.owner, workflow_id)
        self._steer({workflow_id: lease for workflow_id, lease in held.items() if workflow_id not in lost})

    def _steer(self, held: dict[str, Lease]) -> None:
        """Tell the drivers of ``held`` of cancels and pauses asked since, and of deadlines passed.

        One read per round for all the leases held (not one per step): a request reaches a running step
        within a third of the lease.
        """
        if not held:
            return
        backend = self._backend()
        try:
            requests = backend.read_steering(list(held))
            now = backend.now()
        except BackendError:
            log.warning("%s could not read the steering of %d runs; trying again", self.owner, len(held))
            return
        steer_leases(held, requests, now)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with self._lock:
                if not self._held:  # idle: the thread ends, and the next lease held starts another
                    self._thread = None
                    return
            try:
                self.renew_now()
            except Exception:  # a bug: the heartbeat must outlive it, or every lease would run out
                log.exception("%s failed renewing its leases; trying again", self.owner)

    def close(self) -> None:
        """Stop the thread (the leases it held end by themselves)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            with contextlib.suppress(RuntimeError):
                thread.join(timeout=1)


def steer_leases(held: dict[str, Lease], requests: dict[str, tuple[str | None, bool]], now: float) -> None:
    """Mark on each lease of ``held`` the cancel or pause ``requests`` holds for its run, and its deadline."""
    for workflow_id, lease in held.items():
        cancel_reason, paused = requests.get(workflow_id, (None, False))
        if cancel_reason is not None:
            lease.request_cancel(cancel_reason)
        elif lease.deadline_at is not None and now >= lease.deadline_at:
            lease.request_cancel(DEADLINE_REASON)
        if paused:
            lease.request_pause()
