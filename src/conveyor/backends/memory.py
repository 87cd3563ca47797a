"""``InMemoryBackend``: the backend contract kept in this process's memory, for tests and scripts.

It keeps rows as tuples of strings and numbers (the same rows the SQL backends store), which the garbage
collector does not have to scan: a process holding a million finished runs stays fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson

from conveyor.backends import memory_analytics
from conveyor.backends.base import ClosesOnExit
from conveyor.backends.cursors import CursorClaim, MemoryCursors
from conveyor.backends.history import (
    EventPage,
    HistoryHooks,
    as_events,
    failure_data,
    numbered,
    operator_data,
    signal_data,
)
from conveyor.backends.listing import RunQuery, summary_from_row
from conveyor.backends.notes import appended, unknown_run
from conveyor.backends.rows import (
    READY_RUN_STATES,
    RUN_STATE_TEXT,
    StepRow,
    dead_letter_failure,
    failure_to_text,
    lease_lost,
    new_record,
    run_from_rows,
    step_to_row,
)
from conveyor.backends.signals import Signal, child_signal_name, no_such_run, run_finished
from conveyor.backends.steering import PAUSED_WAKE_AT, SteeringRequests
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures
from conveyor.core.history import Event, EventKind, EventRow, checkpoint_events, run_event
from conveyor.core.records import Checkpoint, NewRun, RunRecord, RunSummary
from conveyor.core.states import FINAL_RUN_STATES, RunState
from conveyor.core.steering import cancellation

_STATE, _UPDATED_AT, _WAKE_AT, _EPOCH, _RECOVERIES = 0, 3, 4, 5, 6  # in what changes about a run (__init__)
_FINAL = frozenset(state.value for state in FINAL_RUN_STATES)


class InMemoryBackend(HistoryHooks, ClosesOnExit):
    """Keeps runs in memory; nothing survives the process. Safe to share between threads."""

    def __init__(self, *, time_source: Callable[[], float] = time.time) -> None:
        self._time = time_source
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._work_signals = 0
        # Runs a process holds: workflow_id -> (owner, lease end or None for an inline caller).
        self._leases: dict[str, tuple[str, float | None]] = {}
        self._active: dict[str, None] = {}  # runs not final, oldest first
        # What never changes about a run: (workflow_id, name, version, input, correlation_id, step_names
        # as JSON, created_at, definition_hash); and what does: (state, output, error, updated_at, wake_at,
        # epoch, recoveries, generation).
        self._fixed: dict[str, tuple[Any, ...]] = {}
        self._changing: dict[str, tuple[Any, ...]] = {}
        self._steps: dict[tuple[str, str], StepRow] = {}
        self._recorded_steps: dict[str, tuple[str, ...]] = {}
        self._signals: dict[str, list[Signal]] = {}  # unconsumed signals by run, oldest first
        self._last_signal_id = 0
        # Steering: workflow_id -> [cancel_reason, paused, deadline_at] (see backends.steering).
        self._steering: dict[str, list[Any]] = {}
        # Child runs: workflow_id -> the parent's (see the SQL backends' conveyor_child_ended trigger).
        self._parents: dict[str, str] = {}
        # Notes: workflow_id -> [operator_log, annotations] (JSON lists; see backends.notes).
        self._notes: dict[str, list[str | None]] = {}
        # Trace contexts: workflow_id -> the starter's (see conveyor.observe.tracing), for runs that have one.
        self._trace_contexts: dict[str, str] = {}
        # The event history: each run's stored events, every run's in the order written (the feed), and
        # those written since the last hand-over to listeners (see backends.history).
        self._events: dict[str, list[tuple[Any, ...]]] = {}
        self._feed: list[tuple[Any, ...] | None] = []
        self._unpublished: list[tuple[Any, ...]] = []
        self._cursors = MemoryCursors(self._time)

    def _append(self, workflow_id: str, rows: Sequence[EventRow], *, by_owner: bool = True) -> None:
        """Append ``rows`` to the run's history (under the lock, with the change they describe)."""
        if not rows or not self.records_history:
            return
        fixed = self._fixed[workflow_id]
        stored_events = self._events.setdefault(workflow_id, [])
        lease = self._leases.get(workflow_id)
        worker = lease[0] if by_owner and lease is not None else None
        stored = numbered(
            workflow_id, rows, len(stored_events) + len(rows), worker, fixed[4], fixed[1], fixed[6]
        )
        stored_events.extend(stored)
        self._feed.extend(stored)
        if self.wants_events:
            self._unpublished.extend(stored)

    def _note(
        self, workflow_id: str, kind: EventKind, data: dict[str, Any] | None = None, *, by_owner: bool = False
    ) -> None:
        self._append(workflow_id, [run_event(kind, self._time(), data)], by_owner=by_owner)

    def _publish(self) -> None:
        """Hand the events written since the last call to this process's listeners (outside the lock)."""
        if not self._unpublished:
            return
        with self._lock:
            written, self._unpublished = self._unpublished, []
        self.deliver(written)

    def count_unfinished_runs(self) -> dict[tuple[str, str], int]:
        """Unfinished runs by (workflow name, status): queued, waiting or running."""
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            now = self._time()
            for workflow_id in self._active:
                changing = self._changing[workflow_id]
                if changing[_STATE] not in READY_RUN_STATES:
                    continue
                lease = self._leases.get(workflow_id)
                wake_at = changing[_WAKE_AT]
                if lease is not None and (lease[1] is None or lease[1] >= now):
                    status = "running"
                elif wake_at is not None and wake_at > now:
                    status = "waiting"
                else:
                    status = "queued"
                key = (self._fixed[workflow_id][1], status)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def read_history(self, workflow_id: str, *, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        """The run's events after ``after_seq``, in order (none for an unknown run)."""
        with self._lock:
            stored = self._events.get(workflow_id, [])[after_seq : after_seq + limit]
        return as_events(stored)

    def read_events(self, *, after: str | None = None, limit: int = 500) -> EventPage:
        """Every run's events written after position ``after``, in the order written (see EventPage)."""
        start = int(after) if after else 0
        with self._lock:
            stored = self._feed[start : start + limit]
        kept = [row for row in stored if row is not None]  # (None: a pruned run's)
        return EventPage(tuple(as_events(kept)), str(start + len(stored)) if stored else after)

    # -- durable subscribers' cursors (see backends.cursors) ----------------------------------------------

    def claim_event_cursor(
        self, name: str, *, owner: str, lease_seconds: float, take_over_from: str | None = None
    ) -> CursorClaim:
        """Claim the cursor ``name`` for ``owner`` unless another owner holds a live lease on it."""
        return self._cursors.claim(
            name, owner=owner, lease_seconds=lease_seconds, take_over_from=take_over_from
        )

    def save_event_cursor(self, name: str, position: str | None, *, owner: str, lease_seconds: float) -> bool:
        """Store the cursor's position and renew its lease; False if ``owner`` no longer holds it."""
        return self._cursors.save(name, position, owner=owner, lease_seconds=lease_seconds)

    def release_event_cursor(self, name: str, *, owner: str) -> None:
        """Let go of the cursor, keeping its position."""
        self._cursors.release(name, owner=owner)

    def load_event_cursor(self, name: str) -> str | None:
        """The position saved for the cursor ``name``."""
        return self._cursors.load(name)

    def start_run(
        self,
        run: NewRun,
        *,
        owner: str,
        now: float,
        durable: bool = True,
        lease_seconds: float | None = None,
        take_over_from: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Record ``run`` or take over the existing one (see :class:`~conveyor.backends.base.Backend`)."""
        with self._lock:
            lease_end = None if lease_seconds is None else self._time() + lease_seconds
            if run.workflow_id in self._fixed:
                started = self._start_existing(run, owner, now, lease_end, take_over_from), False
            else:
                started = self._start_new(run, owner, now, lease_end), True
        self._publish()
        return started

    def _start_new(self, run: NewRun, owner: str, now: float, lease_end: float | None) -> RunRecord:
        workflow_id = run.workflow_id
        self._insert(run, run.state, epoch=1, now=now)
        self._leases[workflow_id] = (owner, lease_end)
        self._active[workflow_id] = None
        self._note(workflow_id, EventKind.RUN_STARTED, by_owner=True)
        return new_record(run, state=run.state, now=now, epoch=1, owner=owner, leased_until=lease_end)

    def _start_existing(
        self, run: NewRun, owner: str, now: float, lease_end: float | None, take_over_from: str | None
    ) -> RunRecord:
        """start_run on an id that is recorded: take the run over if nobody live holds it."""
        workflow_id = run.workflow_id
        record = self._load(workflow_id)
        held = record.leased_until is not None and (take_over_from is None or record.owner != take_over_from)
        if record.corruption is not None:
            if not held and self._changing[workflow_id][_STATE] in READY_RUN_STATES:
                self._fail_corrupt(workflow_id, record, now)
            return record
        if record.is_final or held:
            return record
        previous = self._leases.get(workflow_id)
        self._leases[workflow_id] = (owner, lease_end)
        state, output, error, _updated, wake_at, epoch, recoveries, generation = self._changing[workflow_id]
        if state == "pending":  # submitted for a worker, driven in process instead
            state, record.state = RUN_STATE_TEXT[RunState.RUNNING], RunState.RUNNING
        self._changing[workflow_id] = (
            state,
            output,
            error,
            now,
            wake_at,
            epoch + 1,
            recoveries + 1,
            generation,
        )
        if previous is not None:
            data = {"previous_owner": previous[0], "recoveries": recoveries + 1}
            self._note(workflow_id, EventKind.RUN_TAKEN_OVER, data, by_owner=True)
        record.epoch += 1
        record.recoveries += 1
        record.updated_at = now
        record.owner = owner
        record.leased_until = lease_end
        return record

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` at once, unless the run's epoch moved on."""
        with self._lock:
            if not self._write_checkpoint(checkpoint):
                raise lease_lost(checkpoint.workflow_id)
        self._publish()

    def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
        """Write many runs' checkpoints at once; return the ids whose write was refused."""
        with self._lock:
            refused = {cp.workflow_id for cp in checkpoints if not self._write_checkpoint(cp)}
        self._publish()
        return refused

    def _write_checkpoint(self, checkpoint: Checkpoint) -> bool:
        workflow_id = checkpoint.workflow_id
        changing = self._changing.get(workflow_id)
        if changing is None or changing[_EPOCH] != checkpoint.epoch:
            return False
        error = checkpoint.error
        self._changing[workflow_id] = (
            RUN_STATE_TEXT[checkpoint.state],
            checkpoint.output,
            None if error is None else failure_to_text(error),
            checkpoint.at,
            checkpoint.wake_at,
            checkpoint.epoch,
            0 if checkpoint.steps else changing[_RECOVERIES],  # a step recorded: progress
            checkpoint.generation,
        )
        for record in checkpoint.steps:
            key = (workflow_id, record.name)
            if key not in self._steps:
                self._recorded_steps[workflow_id] += (record.name,)
            self._steps[key] = step_to_row(record)
        if self.records_history:
            self._append(workflow_id, checkpoint_events(checkpoint))
        if checkpoint.state in FINAL_RUN_STATES:
            self._active.pop(workflow_id, None)
            self._leases.pop(workflow_id, None)
            if changing[_STATE] not in _FINAL and workflow_id in self._parents:
                self._child_ended(workflow_id, checkpoint.at)
        else:
            self._active[workflow_id] = None
        return True

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record, or ``None``."""
        with self._lock:
            return self._load(workflow_id) if workflow_id in self._fixed else None

    def _load(self, workflow_id: str) -> RunRecord:
        fixed = self._fixed[workflow_id]
        state, output, error, updated_at, wake_at, epoch, recoveries, generation = self._changing[workflow_id]
        row = (
            *fixed[:3],
            state,
            fixed[3],
            output,
            error,
            fixed[4],
            fixed[5],
            fixed[6],
            updated_at,
            wake_at,
            epoch,
            recoveries,
            generation,
            fixed[7],
        )
        steps = [self._steps[(workflow_id, name)] for name in self._recorded_steps[workflow_id]]
        record = run_from_rows(row, steps)
        steering = self._steering.get(workflow_id)
        if steering is not None:
            record.cancel_reason, record.paused, record.deadline_at = steering
        record.parent_id = self._parents.get(workflow_id)
        record.trace_context = self._trace_contexts.get(workflow_id)
        notes = self._notes.get(workflow_id)
        if notes is not None:
            record.operator_log, record.annotations = notes
        lease = self._leases.get(workflow_id)
        if lease is not None:
            record.owner = lease[0]
            if lease[1] is not None and lease[1] >= self._time():
                record.leased_until = lease[1]
        return record

    def list_runs(self, query: RunQuery) -> list[RunSummary]:
        """The runs ``query`` asks for, newest first (at most one more than its limit)."""
        with self._lock:
            changing = self._changing
            rows = [
                (*fixed[:3], changing[workflow_id][0], fixed[4], fixed[6], *changing[workflow_id][3:1:-1])
                for workflow_id, fixed in self._fixed.items()
            ]
        matching = [summary for summary in map(summary_from_row, rows) if query.matches(summary)]
        matching.sort(key=lambda summary: (summary.created_at, summary.workflow_id), reverse=True)
        return matching[: query.limit + 1]

    # -- analytics and retention (see core.analytics) -----------------------------------------------------

    def run_figures(self, query: AnalyticsQuery) -> list[RunFigures]:
        """Each workflow's figures over the runs that finished in ``query``'s window."""
        return memory_analytics.run_figures(self._finished_runs(), query)

    def step_figures(self, query: AnalyticsQuery) -> list[StepFigures]:
        """Each (workflow, step)'s figures over the runs that finished in ``query``'s window."""
        return memory_analytics.step_figures(self._finished_runs(), query)

    def _finished_runs(self) -> list[memory_analytics.FinishedRun]:
        """Every finished run, as the figures read it. A run's ``updated_at`` is its ``finished_at``: no write
        changes it once the run has ended."""
        with self._lock:
            return [
                memory_analytics.FinishedRun(
                    fixed[1],
                    changing[_STATE],
                    fixed[6],
                    changing[_UPDATED_AT],
                    [self._steps[(workflow_id, name)] for name in self._recorded_steps[workflow_id]],
                )
                for workflow_id, fixed in self._fixed.items()
                if (changing := self._changing[workflow_id])[_STATE] in _FINAL
            ]

    def prune_finished_runs(self, *, finished_before: float, limit: int) -> int:
        """Forget up to ``limit`` runs that finished before ``finished_before``, and all they hold; how many.

        A finished child run whose parent has not finished is kept (its parent reads it).
        """
        with self._lock:
            doomed: list[str] = []
            for workflow_id, changing in self._changing.items():
                if len(doomed) >= limit:
                    break
                if changing[_STATE] not in _FINAL or not changing[_UPDATED_AT] < finished_before:
                    continue
                parent = self._changing.get(self._parents.get(workflow_id, ""))
                if parent is None or parent[_STATE] in _FINAL:
                    doomed.append(workflow_id)
            for workflow_id in doomed:
                for name in self._recorded_steps.pop(workflow_id):
                    del self._steps[(workflow_id, name)]
                for kept in (self._fixed, self._changing, self._signals, self._steering, self._parents):
                    kept.pop(workflow_id, None)
                self._notes.pop(workflow_id, None)
                self._trace_contexts.pop(workflow_id, None)
                self._events.pop(workflow_id, None)
            if doomed and self._feed:  # a pruned run's events leave the feed; positions stay where they were
                gone = set(doomed)
                self._feed = [None if row is None or row[0] in gone else row for row in self._feed]
            return len(doomed)

    # -- notes: the operator log and annotations (see backends.notes) -----------------------------------

    def record_operator_action(
        self, workflow_id: str, action: str, checkpoint: Checkpoint | None = None
    ) -> bool:
        """Append ``action`` to the run's operator log, with ``checkpoint`` if given, both or neither."""
        with self._lock:
            if workflow_id not in self._fixed:
                raise unknown_run(workflow_id)
            if checkpoint is not None and not self._write_checkpoint(checkpoint):
                return False
            notes = self._notes.setdefault(workflow_id, [None, None])
            notes[0] = appended(notes[0], action)
            self._note(workflow_id, EventKind.OPERATOR_ACTION, operator_data(action))
        self._publish()
        return True

    def record_checkpoint_annotated(self, checkpoint: Checkpoint, annotations: str) -> None:
        """Write ``checkpoint`` and append ``annotations`` to the run's, both or neither."""
        with self._lock:
            if not self._write_checkpoint(checkpoint):
                raise lease_lost(checkpoint.workflow_id)
            notes = self._notes.setdefault(checkpoint.workflow_id, [None, None])
            notes[1] = appended(notes[1], annotations)
        self._publish()

    # -- work for worker processes ------------------------------------------------------------------

    def _insert(self, run: NewRun, state: RunState, *, epoch: int, now: float) -> None:
        workflow_id = run.workflow_id
        self._fixed[workflow_id] = (
            workflow_id,
            run.workflow_name,
            run.workflow_version,
            run.input,
            run.correlation_id,
            orjson.dumps(run.step_names).decode(),
            now,
            run.definition_hash,
        )
        self._changing[workflow_id] = (RUN_STATE_TEXT[state], None, None, now, None, epoch, 0, 0)
        self._recorded_steps[workflow_id] = ()
        self._active[workflow_id] = None
        if run.deadline_at is not None:
            self._steering[workflow_id] = [None, False, run.deadline_at]
        if run.parent_id is not None:
            self._parents[workflow_id] = run.parent_id
        if run.trace_context is not None:
            self._trace_contexts[workflow_id] = run.trace_context

    def submit_run(self, run: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        """Record ``run`` as pending for a worker, unless its id exists (see the Backend contract)."""
        workflow_id = run.workflow_id
        with self._lock:
            if workflow_id in self._fixed:
                return self._load(workflow_id), False
            self._insert(run, RunState.PENDING, epoch=0, now=now)
            data = None if run.parent_id is None else {"parent_id": run.parent_id}
            self._note(workflow_id, EventKind.RUN_STARTED, data)
            self._signal_work()
            record = self._load(workflow_id)
        self._publish()
        return record, True

    def claim_runs(
        self,
        *,
        owner: str,
        limit: int,
        lease_seconds: float,
        max_recoveries: int,
        workflow_names: Collection[str] | None = None,
        reclaim_own: bool = False,
        exclude: Collection[str] = (),
    ) -> list[RunRecord]:
        """Claim up to ``limit`` ready runs for ``owner`` (see the Backend contract)."""
        claimed: list[RunRecord] = []
        with self._lock:
            now = self._time()
            for workflow_id in list(self._active):
                if len(claimed) >= limit:
                    break
                if workflow_id in exclude:
                    continue
                changing = self._changing[workflow_id]
                state, wake_at = changing[_STATE], changing[_WAKE_AT]
                if state not in READY_RUN_STATES or (wake_at is not None and wake_at > now):
                    continue
                if workflow_names is not None and self._fixed[workflow_id][1] not in workflow_names:
                    continue
                lease = self._leases.get(workflow_id)
                held = lease is not None and (lease[1] is None or lease[1] >= now)
                reclaimed = reclaim_own and lease is not None and lease[0] == owner and lease[1] is not None
                if held and not reclaimed:
                    continue
                recoveries = changing[_RECOVERIES] + (1 if lease is not None else 0)
                if recoveries > max_recoveries:
                    self._dead_letter(workflow_id, recoveries, now)
                    continue
                new_state = RUN_STATE_TEXT[RunState.RUNNING] if state == "pending" else state
                self._changing[workflow_id] = (
                    new_state,
                    *changing[1:3],
                    now,
                    changing[_WAKE_AT],
                    changing[_EPOCH] + 1,
                    recoveries,
                    *changing[_RECOVERIES + 1 :],
                )
                self._leases[workflow_id] = (owner, now + lease_seconds)
                if lease is not None:
                    data = {"previous_owner": lease[0], "recoveries": recoveries}
                    self._note(workflow_id, EventKind.RUN_TAKEN_OVER, data, by_owner=True)
                record = self._load(workflow_id)
                if record.corruption is None:
                    claimed.append(record)
                else:  # a run whose rows cannot be read: it fails, alone, instead of stopping the worker
                    self._fail_corrupt(workflow_id, record, now)
        self._publish()
        return claimed

    def _fail_corrupt(self, workflow_id: str, record: RunRecord, now: float) -> None:
        changing = self._changing[workflow_id]
        epoch = changing[_EPOCH]
        self._changing[workflow_id] = (
            RUN_STATE_TEXT[RunState.FAILED],
            changing[1],
            failure_to_text(record.error),
            now,
            None,
            (epoch if type(epoch) is int else 0) + 1,
            *changing[_RECOVERIES:],
        )
        self._active.pop(workflow_id, None)
        self._leases.pop(workflow_id, None)
        self._note(workflow_id, EventKind.RUN_FAILED, failure_data(record.error))
        if changing[_STATE] not in _FINAL and workflow_id in self._parents:
            self._child_ended(workflow_id, now)

    def _dead_letter(self, workflow_id: str, recoveries: int, now: float) -> None:
        completed = [
            name
            for name in self._recorded_steps[workflow_id]
            if self._steps[(workflow_id, name)][1] == "completed"
        ]
        step_names = orjson.loads(self._fixed[workflow_id][5])
        failure = dead_letter_failure(step_names, completed, recoveries)
        changing = self._changing[workflow_id]
        self._changing[workflow_id] = (
            RUN_STATE_TEXT[RunState.DEAD_LETTERED],
            changing[1],
            failure_to_text(failure),
            now,
            None,
            changing[_EPOCH] + 1,
            recoveries,
            *changing[_RECOVERIES + 1 :],
        )
        self._active.pop(workflow_id, None)
        self._leases.pop(workflow_id, None)
        self._note(workflow_id, EventKind.RUN_DEAD_LETTERED, failure_data(failure))
        if changing[_STATE] not in _FINAL and workflow_id in self._parents:
            self._child_ended(workflow_id, now)

    def _child_ended(self, workflow_id: str, at: float) -> None:
        """A child run ended: leave its parent a wake-up, as the SQL backends' trigger does (same lock)."""
        parent = self._parents[workflow_id]
        changing = self._changing.get(parent)
        if changing is None or changing[_STATE] in _FINAL:
            return
        state = self._changing[workflow_id][_STATE]
        self._last_signal_id += 1
        signal = Signal(self._last_signal_id, child_signal_name(workflow_id), orjson.dumps(state).decode())
        self._signals.setdefault(parent, []).append(signal)
        steering = self._steering.get(parent)
        if changing[_WAKE_AT] is not None and not (steering is not None and steering[1]):
            self._changing[parent] = (*changing[:_WAKE_AT], None, *changing[_WAKE_AT + 1 :])
        self._signal_work()

    def extend_leases(self, *, owner: str, leases: Mapping[str, int], lease_seconds: float) -> set[str]:
        """Renew ``owner``'s leases; return the ids whose lease was lost."""
        lost: set[str] = set()
        with self._lock:
            now = self._time()
            for workflow_id, epoch in leases.items():
                lease = self._leases.get(workflow_id)
                changing = self._changing.get(workflow_id)
                if lease is None or lease[0] != owner or changing is None or changing[_EPOCH] != epoch:
                    lost.add(workflow_id)
                    continue
                self._leases[workflow_id] = (owner, now + lease_seconds)
        return lost

    def release_run(
        self, *, workflow_id: str, epoch: int, wake_at: float | None, wake_for_signals: Collection[str] = ()
    ) -> bool:
        """Hand a claimed run back, claimable again at ``wake_at`` (now if one of ``wake_for_signals`` is
        already there); False if it was taken over."""
        with self._lock:
            changing = self._changing.get(workflow_id)
            if changing is None or changing[_EPOCH] != epoch:
                return False
            if wake_for_signals and self._next_signal(workflow_id, wake_for_signals) is not None:
                wake_at = None
            self._leases.pop(workflow_id, None)
            steering = self._steering.get(workflow_id)
            if steering is not None and steering[1]:  # paused: kept unclaimed until resumed
                wake_at = PAUSED_WAKE_AT
            self._changing[workflow_id] = (*changing[:_WAKE_AT], wake_at, *changing[_WAKE_AT + 1 :])
            if wake_at is None or wake_at <= self._time():
                self._signal_work()
            return True

    # -- signals ------------------------------------------------------------------------------------------

    def send_signal(self, workflow_id: str, name: str, payload: str, *, now: float) -> int:
        """Keep a signal for the run (RunNotFoundError, RunFinishedError) and wake it; return its id."""
        with self._lock:
            changing = self._changing.get(workflow_id)
            if changing is None:
                raise no_such_run(workflow_id)
            if changing[_STATE] in _FINAL:
                raise run_finished(workflow_id, changing[_STATE])
            self._last_signal_id += 1
            signal_id = self._last_signal_id
            self._signals.setdefault(workflow_id, []).append(Signal(signal_id, name, payload))
            if changing[_WAKE_AT] is not None:  # waiting: claimable now (it looks for the signal)
                self._changing[workflow_id] = (*changing[:_WAKE_AT], None, *changing[_WAKE_AT + 1 :])
            self._note(workflow_id, EventKind.SIGNAL_RECEIVED, signal_data(name, signal_id))
            self._signal_work()
        self._publish()
        return signal_id

    def next_signal(self, workflow_id: str, names: Collection[str]) -> Signal | None:
        """The oldest signal of the run named one of ``names`` that no step has consumed, or None."""
        with self._lock:
            return self._next_signal(workflow_id, names)

    def _next_signal(self, workflow_id: str, names: Collection[str]) -> Signal | None:
        return next((sig for sig in self._signals.get(workflow_id, ()) if sig.name in names), None)

    def record_checkpoint_consuming(self, checkpoint: Checkpoint, signal_id: int) -> None:
        """Write ``checkpoint`` and mark the signal ``signal_id`` consumed, both or neither."""
        with self._lock:
            kept = self._signals.get(checkpoint.workflow_id, [])
            if not any(sig.signal_id == signal_id for sig in kept):
                raise lease_lost(checkpoint.workflow_id)  # consumed already: only by a driver that took over
            if not self._write_checkpoint(checkpoint):
                raise lease_lost(checkpoint.workflow_id)
            kept[:] = [sig for sig in kept if sig.signal_id != signal_id]
        self._publish()

    def next_wake_at(
        self, *, workflow_names: Collection[str] | None = None, exclude: Collection[str] = ()
    ) -> float | None:
        """When the earliest run waiting on a timer or a lease's end becomes claimable, or None."""
        dues = []
        with self._lock:
            for workflow_id in self._active:
                if workflow_id in exclude:
                    continue
                if workflow_names is not None and self._fixed[workflow_id][1] not in workflow_names:
                    continue
                wake_at = self._changing[workflow_id][_WAKE_AT]
                if wake_at is not None and wake_at >= PAUSED_WAKE_AT:
                    continue
                lease = self._leases.get(workflow_id)
                if lease is None:
                    if wake_at is not None:
                        dues.append(wake_at)
                elif lease[1] is not None:
                    dues.append(max(lease[1], wake_at or 0.0))
        return min(dues) if dues else None

    # -- steering: cancel, pause, resume (see backends.steering) -----------------------------------------

    def request_cancel(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Record that the run is to be cancelled (the first reason is kept); None if no such run.

        A run that has ended is returned unchanged. A paused run is no longer paused, and a run waiting on
        a timer or paused becomes claimable at once, so that a driver compensates it now.
        """
        return self._steer(workflow_id, cancel=reason)

    def request_pause(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is paused (unclaimable until resumed); None if no such run."""
        return self._steer(workflow_id, pause=True)

    def request_resume(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is no longer paused (claimable at once); None if no such run."""
        return self._steer(workflow_id, pause=False)

    def _steer(
        self, workflow_id: str, *, cancel: str | None = None, pause: bool | None = None
    ) -> RunRecord | None:
        record = self._steered(workflow_id, cancel=cancel, pause=pause)
        self._publish()
        return record

    def _steered(
        self, workflow_id: str, *, cancel: str | None = None, pause: bool | None = None
    ) -> RunRecord | None:
        with self._lock:
            if workflow_id not in self._fixed:
                return None
            changing = self._changing[workflow_id]
            if changing[_STATE] in _FINAL:
                return self._load(workflow_id)
            steering = self._steering.setdefault(workflow_id, [None, False, None])
            if cancel is not None:
                if steering[0] is None:
                    steering[0] = cancel
                    self._note(workflow_id, EventKind.RUN_CANCEL_REQUESTED, {"reason": cancel})
                steering[1] = False
                wake_at = None
            elif pause and steering[0] is None:
                if not steering[1]:
                    self._note(workflow_id, EventKind.RUN_PAUSED)
                steering[1] = True
                wake_at = PAUSED_WAKE_AT
            else:
                if not pause:
                    self._note(workflow_id, EventKind.RUN_RESUMED)
                steering[1] = False
                wake_at = None if not pause else changing[_WAKE_AT]
            self._changing[workflow_id] = (*changing[:_WAKE_AT], wake_at, *changing[_WAKE_AT + 1 :])
            if wake_at is None:
                self._signal_work()
            return self._load(workflow_id)

    def request_compensation(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Ask for the run to be undone: a completed run goes ``compensating`` (see the Backend contract)."""
        with self._lock:
            if workflow_id not in self._fixed:
                return None
            changing = self._changing[workflow_id]
            completed = changing[_STATE] == "completed"
        if not completed:  # not ended: a cancel; ended otherwise: left as it is
            return self._steer(workflow_id, cancel=reason)
        with self._lock:
            changing = self._changing[workflow_id]
            if changing[_STATE] != "completed":
                return self._load(workflow_id)
            failure = failure_to_text(cancellation(reason))
            self._changing[workflow_id] = (
                "compensating",
                changing[1],
                failure,
                self._time(),
                None,
                changing[_EPOCH] + 1,
                *changing[_RECOVERIES:],
            )
            steering = self._steering.setdefault(workflow_id, [None, False, None])
            steering[0], steering[1] = reason, False
            self._active[workflow_id] = None
            self._leases.pop(workflow_id, None)
            self._note(workflow_id, EventKind.RUN_COMPENSATION_REQUESTED, {"reason": reason})
            self._note(workflow_id, EventKind.RUN_COMPENSATING)
            self._signal_work()
            record = self._load(workflow_id)
        self._publish()
        return record

    def read_steering(self, workflow_ids: Collection[str]) -> SteeringRequests:
        """Of ``workflow_ids``, the runs asked to cancel or pause: (cancel reason, paused) by id."""
        with self._lock:
            return {
                workflow_id: (steering[0], steering[1])
                for workflow_id in workflow_ids
                if (steering := self._steering.get(workflow_id)) is not None and (steering[0] or steering[1])
            }

    def wait_for_work(self, timeout_seconds: float) -> bool:
        """Block until a run is submitted or released in this process, or the timeout passes."""
        with self._lock:
            seen = self._work_signals
            return self._work.wait_for(lambda: self._work_signals != seen, timeout=timeout_seconds)

    def _signal_work(self) -> None:
        self._work_signals += 1
        self._work.notify_all()

    def now(self) -> float:
        """This backend's clock."""
        return self._time()

    def close(self) -> None:
        """Forget everything."""
        with self._lock:
            self._fixed.clear()
            self._changing.clear()
            self._steps.clear()
            self._recorded_steps.clear()
            self._leases.clear()
            self._active.clear()
            self._signals.clear()
            self._notes.clear()
            self._trace_contexts.clear()

    def __repr__(self) -> str:
        return f"<InMemoryBackend runs={len(self._fixed)}>"
