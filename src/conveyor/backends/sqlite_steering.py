"""Steering runs in SQLite (see :mod:`conveyor.backends.steering`): requests to cancel, pause, resume or
compensate a run, and the notes kept on it, its operator log and annotations (see
:mod:`conveyor.backends.notes`).

A request is kept in the run's row, written in one transaction with the event that records it; whoever
drives the run reads it with ``read_steering``. Compensating a completed run reopens it for a worker to undo.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from conveyor.backends.history import operator_data
from conveyor.backends.notes import appended, unknown_run
from conveyor.backends.rows import READY_RUN_STATES, failure_to_text, lease_lost
from conveyor.backends.sqlite_connection import (
    CANCEL_REASON,
    PAUSED,
    SELECT_RUN,
    SELECT_STEPS,
    SqliteConnection,
)
from conveyor.backends.sqlite_runs import write_checkpoint
from conveyor.backends.steering import PAUSED_WAKE_AT, SteeringRequests
from conveyor.core.history import EventKind
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.core.steering import cancellation

_STEER = {
    "cancel": "UPDATE conveyor_runs SET cancel_reason = coalesce(cancel_reason, ?), paused = 0, "
    "wake_at = NULL WHERE workflow_id = ?",
    "pause": f"UPDATE conveyor_runs SET paused = 1, wake_at = {PAUSED_WAKE_AT!r} "
    "WHERE workflow_id = ? AND cancel_reason IS NULL",
    "resume": "UPDATE conveyor_runs SET paused = 0, wake_at = NULL WHERE workflow_id = ? AND paused",
}
_COMPENSATE_COMPLETED = (
    "UPDATE conveyor_runs SET state = 'compensating', error = ?, cancel_reason = coalesce(cancel_reason, ?), "
    "paused = 0, wake_at = NULL, owner = NULL, lease_expires_at = NULL, epoch = epoch + 1, updated_at = ? "
    "WHERE workflow_id = ? AND state = 'completed'"
)
"""A completed run reopened to be undone (see ``request_compensation``)."""
_SELECT_NOTE = "SELECT %s FROM conveyor_runs WHERE workflow_id = ?"
_UPDATE_NOTE = "UPDATE conveyor_runs SET %s = ? WHERE workflow_id = ?"
_STEERING_EVENTS = {
    "cancel": EventKind.RUN_CANCEL_REQUESTED,
    "pause": EventKind.RUN_PAUSED,
    "resume": EventKind.RUN_RESUMED,
}


def _steered(what: str, row: Sequence[Any]) -> bool:
    """Whether ``what`` changed the run ``row`` was before it (a second cancel or pause changes nothing)."""
    if what == "cancel":
        return row[CANCEL_REASON] is None
    if what == "pause":
        return not row[PAUSED]
    return True


class SqliteSteering(SqliteConnection):
    """The part of :class:`~conveyor.backends.sqlite.SqliteBackend` that records requests to steer a run
    and the notes kept on it."""

    # -- steering: cancel, pause, resume (see backends.steering) -----------------------------------------

    def request_cancel(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Record that the run is to be cancelled (the first reason is kept); None if no such run.

        A run that has ended is returned unchanged; a paused or waiting one becomes claimable at once.
        """
        return self._steer(workflow_id, "cancel", (reason, workflow_id), {"reason": reason})

    def request_pause(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is paused (unclaimable until resumed); None if no such run."""
        return self._steer(workflow_id, "pause", (workflow_id,))

    def request_resume(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is no longer paused (claimable at once); None if no such run."""
        return self._steer(workflow_id, "resume", (workflow_id,))

    def _steer(
        self, workflow_id: str, what: str, params: tuple[Any, ...], data: dict[str, Any] | None = None
    ) -> RunRecord | None:
        written = self._history()
        with self._transaction() as cursor:
            row = cursor.execute(SELECT_RUN, (workflow_id,)).fetchone()
            if row is None:
                return None
            if row[3] in READY_RUN_STATES:
                cursor.execute(_STEER[what], params)
                if cursor.rowcount == 1 and _steered(what, row):
                    self._note(cursor, written, workflow_id, _STEERING_EVENTS[what], data)
                row = cursor.execute(SELECT_RUN, (workflow_id,)).fetchone()
            record = self._record(row, cursor.execute(SELECT_STEPS, (workflow_id,)))
        self._publish(written)
        if what != "pause":
            self._signal_work()
        return record

    def request_compensation(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Ask for the run to be undone: a completed run goes ``compensating`` (see the Backend contract)."""
        written = self._history()
        with self._transaction() as cursor:
            row = cursor.execute(SELECT_RUN, (workflow_id,)).fetchone()
            if row is None:
                return None
            if row[3] == "completed":
                failure = failure_to_text(cancellation(reason))
                cursor.execute(_COMPENSATE_COMPLETED, (failure, reason, self.now(), workflow_id))
                kind = EventKind.RUN_COMPENSATION_REQUESTED
                self._note(cursor, written, workflow_id, kind, {"reason": reason})
                self._note(cursor, written, workflow_id, EventKind.RUN_COMPENSATING)
            elif row[3] in READY_RUN_STATES:
                cursor.execute(_STEER["cancel"], (reason, workflow_id))
                if row[CANCEL_REASON] is None:
                    kind = EventKind.RUN_CANCEL_REQUESTED
                    self._note(cursor, written, workflow_id, kind, {"reason": reason})
            row = cursor.execute(SELECT_RUN, (workflow_id,)).fetchone()
            record = self._record(row, cursor.execute(SELECT_STEPS, (workflow_id,)))
        self._publish(written)
        self._signal_work()
        return record

    def read_steering(self, workflow_ids: Collection[str]) -> SteeringRequests:
        """Of ``workflow_ids``, the runs asked to cancel or pause: (cancel reason, paused) by id."""
        ids = list(workflow_ids)
        if not ids:
            return {}
        query = (
            "SELECT workflow_id, cancel_reason, paused FROM conveyor_runs WHERE (cancel_reason IS NOT NULL "
            f"OR paused) AND workflow_id IN ({', '.join('?' * len(ids))})"
        )
        with self._lock:
            rows = self._connection.execute(query, ids).fetchall()
        return {row[0]: (row[1], bool(row[2])) for row in rows}

    # -- notes: the operator log and annotations (see backends.notes) -----------------------------------

    def record_operator_action(
        self, workflow_id: str, action: str, checkpoint: Checkpoint | None = None
    ) -> bool:
        """Append ``action`` to the run's operator log, with ``checkpoint`` if given, in one transaction."""
        written = self._history()
        with self._transaction() as cursor:
            row = cursor.execute(_SELECT_NOTE % "operator_log", (workflow_id,)).fetchone()
            if row is None:
                raise unknown_run(workflow_id)
            if checkpoint is not None and not write_checkpoint(cursor, checkpoint, written):
                return False
            stored = row[0] if type(row[0]) is str else None
            cursor.execute(_UPDATE_NOTE % "operator_log", (appended(stored, action), workflow_id))
            self._note(cursor, written, workflow_id, EventKind.OPERATOR_ACTION, operator_data(action))
        self._publish(written)
        return True

    def record_checkpoint_annotated(self, checkpoint: Checkpoint, annotations: str) -> None:
        """Write ``checkpoint`` and append ``annotations`` to the run's, in one transaction."""
        workflow_id = checkpoint.workflow_id
        written = self._history()
        with self._transaction() as cursor:
            if not write_checkpoint(cursor, checkpoint, written):
                raise lease_lost(workflow_id)  # rolled back: nothing written
            row = cursor.execute(_SELECT_NOTE % "annotations", (workflow_id,)).fetchone()
            stored = row[0] if row is not None and type(row[0]) is str else None
            cursor.execute(_UPDATE_NOTE % "annotations", (appended(stored, annotations), workflow_id))
        self._publish(written)
