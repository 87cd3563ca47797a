"""``PostgresReads``: reading runs back from PostgreSQL, and the rows of runs decoded into their records.

A run is one row, its steps included (as one jsonb object of step name to step columns), so loading a run
is one statement; the queries that return runs (``load_run``, ``claim_runs``, ``take_over_run``) put the
same columns in the same places, which :func:`record_from_row` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.backends.listing import RunQuery, summary_from_row
from conveyor.backends.postgres_connections import PostgresConnections
from conveyor.backends.rows import corrupt_run, corrupt_value, run_from_rows
from conveyor.core.records import RunRecord, RunSummary
from conveyor.errors import BackendError

if TYPE_CHECKING:
    from conveyor.backends.postgres_connections import Cursor

EPOCH_COLUMN = 12
"""Where the run's epoch is in a row the run queries return (see :data:`~conveyor.backends.rows.RunRow`)."""
_LEASED_UNTIL, _STEPS, _OWNER = 16, 17, 18  # positions after the run's columns in the rows queries return
_CANCEL, _PAUSED, _DEADLINE = 19, 20, 21  # then the steering columns (see backends.steering)
_PARENT = 22  # then the parent of a child run
_OPERATOR_LOG, _ANNOTATIONS = 23, 24  # then the notes (see backends.notes), which claims leave out
_TRACE_CONTEXT = 25  # then the trace context of the code that started the run (see observe.tracing)


class PostgresReads(PostgresConnections):
    """Loading and listing runs, and counting the unfinished ones, each in one statement."""

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record with all its steps (read in one statement), or ``None``."""
        with self._cursor("load a run") as cursor:
            return self._load(cursor, workflow_id)

    def list_runs(self, query: RunQuery) -> list[RunSummary]:
        """The runs ``query`` asks for, newest first (at most one more than its limit), in one statement."""
        statement, params = query.sql("%s")
        with self._cursor("list runs") as cursor:
            cursor.execute(statement.encode(), params)
            rows = cursor.fetchall()
        return [summary_from_row(row) for row in rows]

    def _load(self, cursor: Cursor, workflow_id: str) -> RunRecord | None:
        cursor.execute(self._queries["load_run"], {"workflow_id": workflow_id})
        row = cursor.fetchone()
        return None if row is None else record_from_row(row)

    def _must_load(self, cursor: Cursor, workflow_id: str) -> RunRecord:
        record = self._load(cursor, workflow_id)
        if record is None:
            raise BackendError(f"{self._where}: run {workflow_id!r} vanished while it was being read")
        return record

    def count_unfinished_runs(self) -> dict[tuple[str, str], int]:
        """Unfinished runs by (workflow name, status): queued, waiting or running (database clock)."""
        with self._cursor("count unfinished runs") as cursor:
            cursor.execute(self._queries["count_unfinished_runs"])
            return {(str(name), str(status)): int(count) for name, status, count in cursor.fetchall()}


def record_from_row(row: Sequence[Any]) -> RunRecord:
    """The record of a row read by ``load_run`` or ``claim_runs``: run columns, leased_until, steps.

    Never raises for what the row holds: a run whose row cannot be read comes back failed (see
    :func:`~conveyor.backends.rows.run_from_rows`).
    """
    try:
        steps = orjson.loads(row[_STEPS])
        step_rows = [(name, *columns) for name, columns in steps.items()]
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        why = "which is not an object of step name to step columns"
        error = corrupt_value(str(row[0]), "steps", row[_STEPS], why)
        record = corrupt_run(row[:_LEASED_UNTIL], (), error)
    else:
        record = run_from_rows(row[:_LEASED_UNTIL], step_rows)
    record.leased_until = row[_LEASED_UNTIL]
    record.owner = row[_OWNER] if len(row) > _OWNER else None  # claims return none: the claimer owns them
    if len(row) > _DEADLINE:
        cancel, deadline = row[_CANCEL], row[_DEADLINE]
        record.cancel_reason = cancel if type(cancel) is str else None
        record.paused = row[_PAUSED] is True
        record.deadline_at = float(deadline) if type(deadline) in (int, float) else None
    if len(row) > _PARENT:
        record.parent_id = row[_PARENT] if type(row[_PARENT]) is str else None
    if len(row) > _ANNOTATIONS:
        operator_log, annotations = row[_OPERATOR_LOG], row[_ANNOTATIONS]
        record.operator_log = operator_log if type(operator_log) is str else None
        record.annotations = annotations if type(annotations) is str else None
    if len(row) > _TRACE_CONTEXT:
        trace_context = row[_TRACE_CONTEXT]
        record.trace_context = trace_context if type(trace_context) is str else None
    return record
