"""What every part of :class:`~conveyor.backends.sqlite.SqliteBackend` shares: the one connection.

:class:`SqliteConnection` holds the connection's lock and write transactions, reads a run's rows into a
record, hands a committed write's events to this process's listeners and wakes the threads waiting for
work. The parts of the backend (``sqlite_runs``, ``sqlite_claims``, ``sqlite_signals``, ``sqlite_steering``,
``sqlite_observability``) are mixins of it; ``SqliteBackend`` opens the file and assembles them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from conveyor.backends.history import HistoryHooks
from conveyor.backends.read_only import refused_write
from conveyor.backends.rows import RUN_COLUMNS, STEP_COLUMNS, run_from_rows
from conveyor.backends.sqlite_history import append_events
from conveyor.core.history import EventKind, run_event
from conveyor.core.records import RunRecord
from conveyor.errors import BackendError

Synchronous = Literal["FULL", "NORMAL"]

SELECT_RUN = (
    f"SELECT {RUN_COLUMNS}, lease_expires_at, owner, cancel_reason, paused, deadline_at, parent_id, "
    "operator_log, annotations, trace_context FROM conveyor_runs WHERE workflow_id = ?"
)
"""A run's row, read by its id: the columns of ``RUN_COLUMNS``, then those whose positions follow."""
# the positions, in a SELECT_RUN row, of the columns after RUN_COLUMNS
LEASE_EXPIRES_AT, OWNER, CANCEL_REASON, PAUSED, DEADLINE_AT, PARENT_ID = 16, 17, 18, 19, 20, 21
OPERATOR_LOG, ANNOTATIONS, TRACE_CONTEXT = 22, 23, 24
SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM conveyor_steps WHERE workflow_id = ?"
"""A run's steps, read by its id."""
FAIL_CORRUPT = (
    "UPDATE conveyor_runs SET state = 'failed', error = ?, owner = NULL, lease_expires_at = NULL, "
    "wake_at = NULL, epoch = epoch + 1, updated_at = ? WHERE workflow_id = ?"
)
"""A run whose rows cannot be read is failed, alone, with the error saying what was wrong."""


class SqliteConnection(HistoryHooks):
    """The connection and what the backend's parts do with it; ``SqliteBackend.__init__`` sets the
    attributes declared here."""

    path: Path
    synchronous: Synchronous
    read_only: bool
    _lock: threading.Lock
    _connection: sqlite3.Connection
    _work: threading.Condition
    _work_signals: int

    @contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Cursor]:
        if self.read_only:
            raise refused_write(f"the SQLite database at {self.path}", "write to it")
        with self._lock:
            connection = self._connection
            relaxed = not durable and self.synchronous == "FULL"
            if relaxed:
                connection.execute("PRAGMA synchronous = NORMAL")
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed: {exc}") from exc
            finally:
                cursor.close()
                if relaxed:
                    connection.execute("PRAGMA synchronous = FULL")

    def _history(self) -> list[tuple[Any, ...]] | None:
        """A list to collect a write's stored events in, or None when history is off."""
        return [] if self.records_history else None

    def _publish(self, written: list[tuple[Any, ...]] | None) -> None:
        """Hand a committed write's events to this process's listeners."""
        if written and self.wants_events:
            self.deliver(written)

    def _note(
        self,
        cursor: sqlite3.Cursor,
        written: list[tuple[Any, ...]] | None,
        workflow_id: str,
        kind: EventKind,
        data: dict[str, Any] | None = None,
        *,
        by_owner: bool = False,
    ) -> None:
        """Append one event about the run as a whole, within the caller's transaction."""
        if written is not None:
            append_events(
                cursor, workflow_id, [run_event(kind, self.now(), data)], written, by_owner=by_owner
            )

    def _record(self, row: Sequence[Any], step_rows: Iterable[Sequence[Any]]) -> RunRecord:
        record = run_from_rows(row, step_rows)
        owner, lease = row[OWNER], row[LEASE_EXPIRES_AT]
        record.owner = owner if type(owner) is str else None
        if type(lease) in (int, float) and lease >= self.now():
            record.leased_until = lease
        cancel, deadline = row[CANCEL_REASON], row[DEADLINE_AT]
        record.cancel_reason = cancel if type(cancel) is str else None
        record.paused = bool(row[PAUSED])
        record.deadline_at = float(deadline) if type(deadline) in (int, float) else None
        parent, trace_context = row[PARENT_ID], row[TRACE_CONTEXT]
        record.parent_id = parent if type(parent) is str else None
        record.trace_context = trace_context if type(trace_context) is str else None
        operator_log, annotations = row[OPERATOR_LOG], row[ANNOTATIONS]
        if operator_log is not None or annotations is not None:
            record.operator_log = operator_log if type(operator_log) is str else None
            record.annotations = annotations if type(annotations) is str else None
        return record

    def _signal_work(self) -> None:
        with self._work:
            self._work_signals += 1
            self._work.notify_all()

    def now(self) -> float:
        """This backend's clock: the machine's, which is the database's (SQLite runs in this process)."""
        return time.time()
