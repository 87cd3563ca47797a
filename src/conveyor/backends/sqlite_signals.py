"""Signals in SQLite (``conveyor_signals``; see :mod:`conveyor.backends.signals`): sending one to a run,
finding the oldest one a step waits for, and consuming it with the step's checkpoint.

SQLite writes one transaction at a time, so a signal sent while its run is being handed back is either seen
by the release (which looks for it first: see ``release_run`` in ``sqlite_claims``) or wakes the released
run: it is never slept through.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from conveyor.backends.history import signal_data
from conveyor.backends.rows import lease_lost
from conveyor.backends.signals import Signal, no_such_run, run_finished
from conveyor.backends.sqlite_connection import SqliteConnection
from conveyor.backends.sqlite_runs import write_checkpoint
from conveyor.core.history import EventKind
from conveyor.core.records import Checkpoint
from conveyor.core.states import FINAL_RUN_STATES

_FINAL = frozenset(state.value for state in FINAL_RUN_STATES)
_RUN_STATE = "SELECT state FROM conveyor_runs WHERE workflow_id = ?"
_INSERT_SIGNAL = "INSERT INTO conveyor_signals (workflow_id, name, payload, sent_at) VALUES (?, ?, ?, ?)"
_WAKE_FOR_SIGNAL = "UPDATE conveyor_runs SET wake_at = NULL WHERE workflow_id = ? AND wake_at IS NOT NULL"
"""A run waiting on a timer becomes claimable at once: it looks for the signal it may wait for."""
_CONSUME_SIGNAL = (
    "UPDATE conveyor_signals SET consumed_at = ?, consumed_by = ? "
    "WHERE signal_id = ? AND workflow_id = ? AND consumed_at IS NULL"
)


def oldest_signal(cursor: sqlite3.Cursor, workflow_id: str, names: Collection[str]) -> Signal | None:
    """The oldest unconsumed signal of the run named one of ``names``, read within the caller's cursor."""
    listed = list(names)
    row = cursor.execute(
        "SELECT signal_id, name, payload FROM conveyor_signals WHERE workflow_id = ? AND consumed_at IS NULL "
        f"AND name IN ({', '.join('?' * len(listed))}) ORDER BY signal_id LIMIT 1",
        (workflow_id, *listed),
    ).fetchone()
    return None if row is None else Signal(int(row[0]), str(row[1]), str(row[2]))


class SqliteSignals(SqliteConnection):
    """The part of :class:`~conveyor.backends.sqlite.SqliteBackend` that keeps and hands out signals."""

    def send_signal(self, workflow_id: str, name: str, payload: str, *, now: float) -> int:
        """Keep a signal for the run (RunNotFoundError, RunFinishedError) and wake it; return its id."""
        written = self._history()
        with self._transaction() as cursor:
            row = cursor.execute(_RUN_STATE, (workflow_id,)).fetchone()
            if row is None:
                raise no_such_run(workflow_id)
            if row[0] in _FINAL:
                raise run_finished(workflow_id, row[0])
            cursor.execute(_INSERT_SIGNAL, (workflow_id, name, payload, now))
            signal_id = int(cursor.lastrowid or 0)
            cursor.execute(_WAKE_FOR_SIGNAL, (workflow_id,))
            self._note(cursor, written, workflow_id, EventKind.SIGNAL_RECEIVED, signal_data(name, signal_id))
        self._publish(written)
        self._signal_work()
        return signal_id

    def next_signal(self, workflow_id: str, names: Collection[str]) -> Signal | None:
        """The oldest signal of the run named one of ``names`` that no step has consumed, or None."""
        with self._lock:
            return oldest_signal(self._connection.cursor(), workflow_id, names)

    def record_checkpoint_consuming(self, checkpoint: Checkpoint, signal_id: int) -> None:
        """Write ``checkpoint`` and mark the signal ``signal_id`` consumed in one transaction."""
        written = self._history()
        with self._transaction() as cursor:
            step = checkpoint.steps[0].name if checkpoint.steps else None
            cursor.execute(_CONSUME_SIGNAL, (checkpoint.at, step, signal_id, checkpoint.workflow_id))
            if cursor.rowcount != 1 or not write_checkpoint(cursor, checkpoint, written):
                raise lease_lost(checkpoint.workflow_id)  # rolled back: the signal stays unconsumed
        self._publish(written)
