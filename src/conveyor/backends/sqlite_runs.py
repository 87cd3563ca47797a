"""A run's own rows in SQLite: recording a run (started here or submitted for a worker), writing its
checkpoints, and loading or listing runs.

:func:`write_checkpoint` is the per-step write: one update of the run's row, fenced by its epoch, which also
numbers the checkpoint's events; the writes of signals and notes call it within their own transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from conveyor.backends.listing import RunQuery, summary_from_row
from conveyor.backends.rows import (
    READY_RUN_STATES,
    STEP_COLUMNS,
    failure_to_text,
    lease_lost,
    new_record,
    run_from_rows,
    step_to_row,
)
from conveyor.backends.sqlite_connection import FAIL_CORRUPT, SELECT_RUN, SELECT_STEPS, SqliteConnection
from conveyor.backends.sqlite_history import insert_events
from conveyor.core.history import EventKind, checkpoint_events
from conveyor.core.records import Checkpoint, NewRun, RunRecord, RunSummary
from conveyor.core.states import RunState
from conveyor.errors import BackendError

_INSERT_RUN = (
    "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, "
    "correlation_id, step_names, created_at, updated_at, epoch, recoveries, owner, lease_expires_at, "
    "definition_hash, deadline_at, trace_context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)"
)
_TAKE_OVER = (
    "UPDATE conveyor_runs SET epoch = epoch + 1, recoveries = recoveries + 1, owner = ?, updated_at = ?, "
    "lease_expires_at = ?, state = CASE state WHEN 'pending' THEN 'running' ELSE state END "
    "WHERE workflow_id = ?"
)
"""A pending run taken over (one submitted for a worker, driven in process instead) becomes running."""
_SET_PARENT = "UPDATE conveyor_runs SET parent_id = ? WHERE workflow_id = ?"
_NUMBERED = " RETURNING event_seq, owner, correlation_id, workflow_name, created_at"
"""What a checkpoint's write returns: enough to number and attribute its events (see sqlite_history)."""
_FENCED_UPDATE = (
    "UPDATE conveyor_runs SET state = ?, output = ?, error = ?, wake_at = ?, updated_at = ?, generation = ?, "
    "recoveries = CASE WHEN ? THEN 0 ELSE recoveries END, event_seq = event_seq + ? "
    "WHERE workflow_id = ? AND epoch = ?" + _NUMBERED
)
"""The run's half of a checkpoint, fenced by its epoch; a checkpoint recording a step (progress) sets
recoveries back to 0."""
_FENCED_UPDATE_SAME_STATE = (
    "UPDATE conveyor_runs SET output = ?, error = ?, updated_at = ?, generation = ?, "
    "recoveries = CASE WHEN ? THEN 0 ELSE recoveries END, event_seq = event_seq + ? "
    "WHERE workflow_id = ? AND epoch = ?" + _NUMBERED
)
"""The same, for a checkpoint that keeps the run's state and wake-up time: it assigns neither, so SQLite
leaves the two claim indexes (over wake_at, for the states in which a run is claimable) untouched. Most
step completions write this one: 4 of a 4-step run's 5 transactions, 41 of its 112 kB of WAL."""
_UPSERT_STEP = f"INSERT OR REPLACE INTO conveyor_steps (workflow_id, {STEP_COLUMNS}) VALUES ({'?, ' * 12}?)"


def write_checkpoint(
    cursor: sqlite3.Cursor, checkpoint: Checkpoint, written: list[tuple[Any, ...]] | None
) -> bool:
    """Write one checkpoint inside the caller's transaction, with its events unless ``written`` is None
    (the stored events are added to it); False (and nothing written) if fenced out. The run's row is
    updated once: the same statement numbers the events."""
    workflow_id = checkpoint.workflow_id
    events = checkpoint_events(checkpoint) if written is not None else ()
    if checkpoint.same_state_and_timer:
        numbered = cursor.execute(
            _FENCED_UPDATE_SAME_STATE,
            (
                checkpoint.output,
                failure_to_text(checkpoint.error),
                checkpoint.at,
                checkpoint.generation,
                bool(checkpoint.steps),
                len(events),
                workflow_id,
                checkpoint.epoch,
            ),
        ).fetchone()
    else:
        numbered = cursor.execute(
            _FENCED_UPDATE,
            (
                checkpoint.state.value,
                checkpoint.output,
                failure_to_text(checkpoint.error),
                checkpoint.wake_at,
                checkpoint.at,
                checkpoint.generation,
                bool(checkpoint.steps),
                len(events),
                workflow_id,
                checkpoint.epoch,
            ),
        ).fetchone()
    if numbered is None:
        return False
    if len(checkpoint.steps) == 1:
        cursor.execute(_UPSERT_STEP, (workflow_id, *step_to_row(checkpoint.steps[0])))
    elif checkpoint.steps:
        cursor.executemany(_UPSERT_STEP, [(workflow_id, *step_to_row(record)) for record in checkpoint.steps])
    if events and written is not None:
        insert_events(cursor, workflow_id, events, numbered, written)
    return True


class SqliteRuns(SqliteConnection):
    """The part of :class:`~conveyor.backends.sqlite.SqliteBackend` that records runs and their checkpoints
    and reads them back."""

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
        step_names = orjson.dumps(run.step_names).decode()
        written = self._history()
        with self._transaction(durable=durable) as cursor:
            lease_end = None if lease_seconds is None else self.now() + lease_seconds
            row = cursor.execute(SELECT_RUN, (run.workflow_id,)).fetchone()
            if row is None:
                cursor.execute(
                    _INSERT_RUN,
                    (
                        *(run.workflow_id, run.workflow_name, run.workflow_version, run.state.value),
                        *(run.input, run.correlation_id, step_names, now, now, 1, owner, lease_end),
                        run.definition_hash,
                        run.deadline_at,
                        run.trace_context,
                    ),
                )
                self._note(cursor, written, run.workflow_id, EventKind.RUN_STARTED, by_owner=True)
                record = new_record(
                    run, state=run.state, now=now, epoch=1, owner=owner, leased_until=lease_end
                )
                created_now = True
            else:
                record, created_now = self._start_existing(
                    cursor, written, run, row, owner, now, lease_end, take_over_from
                )
        self._publish(written)
        return record, created_now

    def _start_existing(
        self,
        cursor: sqlite3.Cursor,
        written: list[tuple[Any, ...]] | None,
        run: NewRun,
        row: Sequence[Any],
        owner: str,
        now: float,
        lease_end: float | None,
        take_over_from: str | None,
    ) -> tuple[RunRecord, bool]:
        """start_run on an id that is recorded: take the run over if nobody live holds it."""
        record = self._record(row, cursor.execute(SELECT_STEPS, (run.workflow_id,)))
        held = record.leased_until is not None and (take_over_from is None or record.owner != take_over_from)
        if record.corruption is not None:
            if not held and row[3] in READY_RUN_STATES:  # a run it could drive: end it, here
                cursor.execute(FAIL_CORRUPT, (failure_to_text(record.error), now, run.workflow_id))
            return record, False
        if record.is_final or held:
            return record, False
        previous = record.owner
        cursor.execute(_TAKE_OVER, (owner, now, lease_end, run.workflow_id))
        if previous is not None:
            data = {"previous_owner": previous, "recoveries": record.recoveries + 1}
            self._note(cursor, written, run.workflow_id, EventKind.RUN_TAKEN_OVER, data, by_owner=True)
        if record.state is RunState.PENDING:
            record.state = RunState.RUNNING
        record.epoch += 1
        record.recoveries += 1
        record.updated_at = now
        record.owner, record.leased_until = owner, lease_end
        if record.state is RunState.PENDING:
            record.state = RunState.RUNNING
        return record, False

    def submit_run(self, run: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        """Record ``run`` as pending for a worker, unless its id exists (see the Backend contract)."""
        step_names = orjson.dumps(run.step_names).decode()
        written = self._history()
        with self._transaction() as cursor:
            row = cursor.execute(SELECT_RUN, (run.workflow_id,)).fetchone()
            if row is not None:
                return self._record(row, cursor.execute(SELECT_STEPS, (run.workflow_id,))), False
            cursor.execute(
                _INSERT_RUN,
                (
                    *(run.workflow_id, run.workflow_name, run.workflow_version, "pending", run.input),
                    *(run.correlation_id, step_names, now, now, 0, None, None, run.definition_hash),
                    run.deadline_at,
                    run.trace_context,
                ),
            )
            if run.parent_id is not None:  # a child run: recorded with its parent, in the same transaction
                cursor.execute(_SET_PARENT, (run.parent_id, run.workflow_id))
            data = None if run.parent_id is None else {"parent_id": run.parent_id}
            self._note(cursor, written, run.workflow_id, EventKind.RUN_STARTED, data)
            created = (
                *(run.workflow_id, run.workflow_name, run.workflow_version, "pending"),
                *(run.input, None, None, run.correlation_id, step_names, now, now, None, 0, 0, 0),
                run.definition_hash,
            )
        self._publish(written)
        self._signal_work()
        record = run_from_rows(created, ())
        record.deadline_at = run.deadline_at
        record.parent_id = run.parent_id
        record.trace_context = run.trace_context
        return record, True

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` in one transaction, unless the run's epoch moved on."""
        written = self._history()
        with self._transaction() as cursor:
            if not write_checkpoint(cursor, checkpoint, written):
                raise lease_lost(checkpoint.workflow_id)
        self._publish(written)

    def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
        """Write many runs' checkpoints in one transaction; return the ids whose write was refused."""
        written = self._history()
        with self._transaction() as cursor:
            refused = {cp.workflow_id for cp in checkpoints if not write_checkpoint(cursor, cp, written)}
        self._publish(written)
        return refused

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record, or ``None``."""
        with self._lock:
            cursor = self._connection.cursor()
            try:
                cursor.execute("BEGIN")
                row = cursor.execute(SELECT_RUN, (workflow_id,)).fetchone()
                steps = cursor.execute(SELECT_STEPS, (workflow_id,)).fetchall() if row else []
                cursor.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._connection.in_transaction:  # a failed read must not leave the connection stuck
                    self._connection.rollback()
                raise BackendError(f"SQLite at {self.path} failed: {exc}") from exc
            finally:
                cursor.close()
        return None if row is None else self._record(row, steps)

    def list_runs(self, query: RunQuery) -> list[RunSummary]:
        """The runs ``query`` asks for, newest first (at most one more than its limit), in one read."""
        statement, params = query.sql("?")
        with self._lock:
            try:
                rows = self._connection.execute(statement, params).fetchall()
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed listing runs: {exc}") from exc
        return [summary_from_row(row) for row in rows]
