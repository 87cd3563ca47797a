"""``PostgresSteering``: runs steered from outside (cancel, pause, resume, compensation) and the notes kept
on them (the operator log and annotations), in PostgreSQL.

A steering request is a column of the run's row (see :mod:`conveyor.backends.steering`), set in one
transaction with the events it records; a note is appended to its column, with a checkpoint when one comes
with it (see :mod:`conveyor.backends.notes`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from conveyor.backends.history import operator_data, steering_events
from conveyor.backends.notes import unknown_run
from conveyor.backends.postgres_history import PostgresHistory
from conveyor.backends.postgres_reads import PostgresReads
from conveyor.backends.postgres_writes import checkpoint_params
from conveyor.backends.rows import failure_to_text, lease_lost
from conveyor.backends.steering import SteeringRequests
from conveyor.core.history import EventKind, checkpoint_events
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.core.steering import cancellation


class PostgresSteering(PostgresReads, PostgresHistory):
    """Steering requests (made and read) and notes, each written in one transaction with its events."""

    # -- steering: cancel, pause, resume (see backends.steering) -----------------------------------------

    def request_cancel(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Record that the run is to be cancelled (the first reason is kept); None if no such run.

        A run that has ended is returned unchanged; a paused or waiting one becomes claimable at once.
        """
        return self._steer("request_cancel", {"workflow_id": workflow_id, "reason": reason})

    def request_pause(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is paused (unclaimable until resumed); None if no such run."""
        return self._steer("request_pause", {"workflow_id": workflow_id})

    def request_resume(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is no longer paused (claimable at once); None if no such run."""
        return self._steer("request_resume", {"workflow_id": workflow_id})

    def _steer(self, query: str, params: dict[str, Any]) -> RunRecord | None:
        workflow_id = params["workflow_id"]
        with self._transaction(query.replace("_", " ")) as cursor:
            before = self._load(cursor, workflow_id) if self.records_history else None
            cursor.execute(self._queries[query], params)
            after = self._load(cursor, workflow_id)
            if before is not None and after is not None:
                for kind in steering_events(before, after):
                    data = {"reason": after.cancel_reason} if "requested" in kind.value else None
                    self._append(cursor, workflow_id, kind, data)
            return after

    def request_compensation(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Ask for the run to be undone: a completed run goes ``compensating`` (see the Backend contract)."""
        error = failure_to_text(cancellation(reason))
        params = {"workflow_id": workflow_id, "reason": reason, "error": error}
        return self._steer("request_compensation", params)

    def read_steering(self, workflow_ids: Collection[str]) -> SteeringRequests:
        """Of ``workflow_ids``, the runs asked to cancel or pause: (cancel reason, paused) by id."""
        if not workflow_ids:
            return {}
        with self._cursor("read steering requests") as cursor:
            cursor.execute(self._queries["read_steering"], {"workflow_ids": list(workflow_ids)})
            return {row[0]: (row[1], bool(row[2])) for row in cursor.fetchall()}

    # -- notes: the operator log and annotations (see backends.notes) -----------------------------------

    def record_operator_action(
        self, workflow_id: str, action: str, checkpoint: Checkpoint | None = None
    ) -> bool:
        """Append ``action`` to the run's operator log, with ``checkpoint`` if given, in one transaction."""
        params = {"workflow_id": workflow_id, "action": action}
        rows = checkpoint_events(checkpoint) if checkpoint is not None and self.records_history else []
        returned = None
        with self._transaction("record an operator action") as cursor:
            if checkpoint is not None:
                cursor.execute(self._queries["write_checkpoint"], checkpoint_params(checkpoint, rows))
                returned = cursor.fetchone()
                if returned is None:
                    if self._load(cursor, workflow_id) is None:
                        raise unknown_run(workflow_id)
                    return False
            cursor.execute(self._queries["append_operator_action"], params)
            if cursor.fetchone() is None:
                raise unknown_run(workflow_id)
            if returned is not None:
                self._publish(rows, returned)
            self._append(cursor, workflow_id, EventKind.OPERATOR_ACTION, operator_data(action))
        return True

    def record_checkpoint_annotated(self, checkpoint: Checkpoint, annotations: str) -> None:
        """Write ``checkpoint`` and append ``annotations`` to the run's, in one statement."""
        rows = checkpoint_events(checkpoint) if self.records_history else []
        params = checkpoint_params(checkpoint, rows)
        with self._cursor("record a checkpoint with annotations") as cursor:
            cursor.execute(
                self._queries["write_checkpoint_annotated"], (*params[:9], annotations, *params[9:])
            )
            returned = cursor.fetchone()
            if returned is None:
                raise lease_lost(checkpoint.workflow_id)
        self._publish(rows, returned)
