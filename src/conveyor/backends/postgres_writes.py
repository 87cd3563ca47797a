"""``PostgresWrites``: writing a run (started here or submitted for workers) and its checkpoints.

Each is one statement, so one round trip, which also appends the events it records (see
:mod:`conveyor.backends.postgres_history`). A batch of checkpoints locks its runs' rows in workflow_id
order and is tried again when the server aborted it as a deadlock victim (nothing of it was written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.backends.history import failure_data
from conveyor.backends.postgres_connections import DEADLOCK_SQLSTATE
from conveyor.backends.postgres_history import NO_EVENTS, PostgresHistory, events_json, stored_rows
from conveyor.backends.postgres_reads import EPOCH_COLUMN, PostgresReads, record_from_row
from conveyor.backends.postgres_sql import batch_statement
from conveyor.backends.rows import failure_to_text, lease_lost, new_record, step_to_row
from conveyor.core.history import EventKind, EventRow, checkpoint_events, run_event
from conveyor.core.records import Checkpoint, NewRun, RunRecord
from conveyor.core.states import RunState
from conveyor.errors import BackendError

if TYPE_CHECKING:
    from conveyor.backends.postgres_connections import Cursor

_TRANSIENT_RETRIES = 3
"""Tries at a batch of checkpoints the server aborted as a deadlock victim (nothing of it was written)."""


class PostgresWrites(PostgresReads, PostgresHistory):
    """Recording runs and their checkpoints, each write fenced by the run's epoch."""

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
        """Record ``run`` or take over the existing one (see :class:`~conveyor.backends.base.Backend`).

        The lease is judged by the database's clock. ``durable=False`` turns ``synchronous_commit`` off for
        this one transaction.
        """
        params = _run_params(run, state=run.state.value, epoch=1, owner=owner, now=now)
        params["lease_seconds"] = lease_seconds
        params["take_over_from"] = take_over_from
        started = self._started_events(now)
        params["events"] = events_json(started)
        params["history"] = self.records_history
        with self._cursor("start a run") as cursor:
            cursor.execute(self._queries["insert_run" if durable else "insert_run_relaxed"], params)
            inserted = cursor.fetchone()
            if inserted is not None:
                created = new_record(run, state=run.state, now=now, epoch=1, owner=owner, leased_until=None)
                self._publish(started, inserted)
                return created, True
            cursor.execute(self._queries["take_over_run"], params)
            row = cursor.fetchone()
            if row is not None:
                record = record_from_row(row)
                if row[-1] is not None:  # taken from another owner: its run.taken_over event
                    self._publish_taken_over(record, row[-1], int(row[-2]), record.updated_at)
                if record.corruption is not None:  # taken, but its rows cannot be read: end it here
                    self._fail_corrupt(cursor, record, row[EPOCH_COLUMN])
                return record, False
            return self._must_load(cursor, run.workflow_id), False  # ended, or a worker holds it

    def _started_events(self, now: float) -> list[EventRow]:
        return [run_event(EventKind.RUN_STARTED, now)] if self.records_history else []

    def submit_run(self, run: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        """Record ``run`` as pending (epoch 0, no owner) and wake idle workers; or return the existing run."""
        params = _run_params(run, state=RunState.PENDING.value, epoch=0, owner=None, now=now)
        data = None if run.parent_id is None else {"parent_id": run.parent_id}
        started = [run_event(EventKind.RUN_STARTED, now, data)] if self.records_history else []
        params["events"] = events_json(started)
        with self._cursor("submit a run") as cursor:
            cursor.execute(self._queries["submit_run"], params)
            inserted = cursor.fetchone()
            if inserted is not None:
                created = new_record(
                    run, state=RunState.PENDING, now=now, epoch=0, owner=None, leased_until=None
                )
                created.parent_id = run.parent_id
                self._publish(started, inserted[1:], worker=False)
                return created, True
            return self._must_load(cursor, run.workflow_id), False

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` in one statement, unless the run's epoch moved on (LeaseLostError)."""
        if self._write_checkpoints((checkpoint,), "record a checkpoint"):
            raise lease_lost(checkpoint.workflow_id)

    def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
        """Write several runs' checkpoints in one transaction; return the ids whose write was refused.

        Each checkpoint is fenced on its own: a refused one writes nothing, the others are written. The rows
        are locked in workflow_id order (one lock order for every writer).
        """
        if not checkpoints:
            return set()
        ordered = sorted(checkpoints, key=lambda checkpoint: checkpoint.workflow_id)
        for attempt in range(_TRANSIENT_RETRIES):
            try:
                return self._write_checkpoints(ordered, "record checkpoints")
            except BackendError as exc:
                transient = getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_SQLSTATE
                if not transient or attempt == _TRANSIENT_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _write_checkpoints(self, ordered: Sequence[Checkpoint], action: str) -> set[str]:
        """Write checkpoints in one statement (one round trip, one transaction): all of them or none.

        Returns the ids the fence refused.
        """
        history = self.records_history
        events = [checkpoint_events(checkpoint) if history else [] for checkpoint in ordered]
        quiet = not any(events)  # nothing to append to a history: the plain UPDATE (measured cheaper)
        skip = 1 if quiet else 0  # (write_checkpoint's first parameter is the events)
        with self._cursor(action) as cursor:
            if len(ordered) == 1:
                statement = self._queries["write_checkpoint_quiet" if quiet else "write_checkpoint"]
                cursor.execute(statement, checkpoint_params(ordered[0], events[0])[skip:])
            else:
                params = [
                    value
                    for checkpoint, rows in zip(ordered, events, strict=True)
                    for value in checkpoint_params(checkpoint, rows)[skip:]
                ]
                cursor.execute(batch_statement(len(ordered), quiet=quiet), params)
            returned = {row[0]: row for row in cursor.fetchall()}
        if history and self.wants_events:
            stored = [
                event
                for checkpoint, rows in zip(ordered, events, strict=True)
                if rows and checkpoint.workflow_id in returned
                for event in stored_rows(rows, returned[checkpoint.workflow_id])
            ]
            self.deliver(stored)
        return {checkpoint.workflow_id for checkpoint in ordered} - returned.keys()

    def _fail_corrupt(self, cursor: Cursor, record: RunRecord, epoch: int) -> None:
        """End a run this caller just took whose rows cannot be read: failed, with its CorruptRunError."""
        cursor.execute(
            self._queries["fail_corrupt_run"],
            {"workflow_id": record.workflow_id, "epoch": epoch, "error": failure_to_text(record.error)},
        )
        if cursor.rowcount == 1:
            self._append(cursor, record.workflow_id, EventKind.RUN_FAILED, failure_data(record.error))


def _run_params(run: NewRun, *, state: str, epoch: int, owner: str | None, now: float) -> dict[str, Any]:
    return {
        "workflow_id": run.workflow_id,
        "workflow_name": run.workflow_name,
        "workflow_version": run.workflow_version,
        "state": state,
        "input": run.input,
        "correlation_id": run.correlation_id,
        "step_names": orjson.dumps(run.step_names).decode(),
        "now": now,
        "epoch": epoch,
        "owner": owner,
        "definition_hash": run.definition_hash,
        "deadline_at": run.deadline_at,
        "parent_id": run.parent_id,
        "trace_context": run.trace_context,
    }


def checkpoint_params(checkpoint: Checkpoint, events: Sequence[EventRow]) -> tuple[Any, ...]:
    """The parameters of ``write_checkpoint``: its events, the run's columns, its changed steps as JSON,
    whether it records progress (a step), the fence."""
    steps = {record.name: step_to_row(record)[1:] for record in checkpoint.steps}
    return (
        events_json(events) if events else NO_EVENTS,
        *(checkpoint.state.value, checkpoint.output, failure_to_text(checkpoint.error), checkpoint.wake_at),
        *(checkpoint.at, checkpoint.generation, orjson.dumps(steps).decode(), bool(steps)),
        *(checkpoint.workflow_id, checkpoint.epoch),
    )
