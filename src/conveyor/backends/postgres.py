"""``PostgresBackend``: runs kept in PostgreSQL, shared by worker processes on any number of machines.

Workers claim ready runs with ``SELECT … FOR UPDATE SKIP LOCKED`` and hold them under leases judged by the
database's clock; every write about a run is fenced by its epoch. A submitted or released run is announced
with ``NOTIFY conveyor_work``, which wakes idle workers waiting in :meth:`PostgresBackend.wait_for_work`.
Each call is one statement, so one round trip: a run is one row, its steps included. A borrowed connection
the server has ended (a restart, a killed session) is noticed without a query and replaced, so the next
call after such an event works; only a call whose connection dies under it fails, raising
:class:`~conveyor.errors.BackendError` (a retry gets a fresh connection).

Needs psycopg 3: ``pip install "conveyor[postgres]"``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from conveyor.backends import postgres_analytics as analytics
from conveyor.backends import postgres_signals as signal_sql
from conveyor.backends.history import (
    operator_data,
    signal_data,
    steering_events,
)
from conveyor.backends.notes import unknown_run
from conveyor.backends.postgres_connections import (
    CLAIM_PLANNER_OPTIONS,
    READ_ONLY_OPTIONS,
    READ_ONLY_SQLSTATE,
)
from conveyor.backends.postgres_reads import EPOCH_COLUMN, record_from_row
from conveyor.backends.postgres_writes import PostgresWrites, checkpoint_params
from conveyor.backends.rows import (
    failure_to_text,
    lease_lost,
)
from conveyor.backends.signals import Signal, no_such_run, run_finished
from conveyor.backends.steering import SteeringRequests
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures
from conveyor.core.history import EventKind, checkpoint_events
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.core.states import RunState
from conveyor.core.steering import cancellation

__all__ = ["CLAIM_PLANNER_OPTIONS", "READ_ONLY_OPTIONS", "READ_ONLY_SQLSTATE", "PostgresBackend"]


class PostgresBackend(PostgresWrites):
    """Stores runs in the PostgreSQL database at ``url``; creates its tables on first use.

    ``url`` is a ``postgresql://`` URL or a libpq conninfo string. Calls borrow a connection from a pool of
    ``min_connections`` to ``max_connections`` (each tagged ``application_name``); a call waits up to
    ``pool_timeout_seconds`` for one. Safe to share between threads.
    """

    group_commit_writers = 3
    """How many threads of a worker write batches of checkpoints at once (the server commits them in
    parallel; see :class:`~conveyor.engine.group_commit.GroupCommitter`)."""

    # -- work for worker processes ----------------------------------------------------------------------

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
        """Claim up to ``limit`` ready runs for ``owner`` with ``FOR UPDATE SKIP LOCKED`` (see the Backend).

        Also starts listening for new work, so that a notification sent between this claim and the
        caller's next :meth:`wait_for_work` is not missed.
        """
        if limit <= 0:
            return []
        self._listener.listen()
        params = {
            "owner": owner,
            "limit": limit,
            "lease_seconds": float(lease_seconds),
            "max_recoveries": max_recoveries,
            "workflow_names": None if workflow_names is None else sorted(workflow_names),
            "reclaim_own": reclaim_own,
            "exclude": list(exclude),
            "history": self.records_history,
        }
        with self._cursor("claim runs", claims=True) as cursor:
            cursor.execute(self._queries["claim_runs"], params)
            rows = cursor.fetchall()
            records = [record_from_row(row) for row in rows]
            claimed = [
                record
                for record in records
                if record.state is not RunState.DEAD_LETTERED and record.corruption is None
            ]
            for record, row in zip(records, rows, strict=True):
                if row[-2] is not None:  # taken from an owner whose lease ran out
                    if record.state is RunState.DEAD_LETTERED:
                        self._publish_dead_lettered(record, row[-2], int(row[-1]))
                    else:
                        self._publish_taken_over(record, row[-2], int(row[-1]), record.updated_at)
                if record.corruption is not None:  # it fails, alone, instead of stopping the worker
                    self._fail_corrupt(cursor, record, row[EPOCH_COLUMN])
                elif record.state is RunState.DEAD_LETTERED:
                    # A separate statement: until it commits, readers derive the same error from the run.
                    cursor.execute(
                        self._queries["set_run_error"],
                        {"error": failure_to_text(record.error), "workflow_id": record.workflow_id},
                    )
        return claimed

    def extend_leases(self, *, owner: str, leases: Mapping[str, int], lease_seconds: float) -> set[str]:
        """Renew the leases ``owner`` still holds at the given epochs; return the ids whose lease was lost."""
        if not leases:
            return set()
        workflow_ids = sorted(leases)  # one lock order for every caller
        with self._cursor("extend leases") as cursor:
            cursor.execute(
                self._queries["extend_leases"],
                {
                    "owner": owner,
                    "lease_seconds": float(lease_seconds),
                    "workflow_ids": workflow_ids,
                    "epochs": [leases[workflow_id] for workflow_id in workflow_ids],
                },
            )
            kept = {row[0] for row in cursor.fetchall()}
        return set(workflow_ids) - kept

    def release_run(
        self, *, workflow_id: str, epoch: int, wake_at: float | None, wake_for_signals: Collection[str] = ()
    ) -> bool:
        """Hand a claimed run back, claimable at ``wake_at`` (now if None); False if it was taken over.

        Notifies idle workers when the run is claimable at once. With ``wake_for_signals``, claimable now
        if a signal of one of those names is already there.
        """
        if wake_for_signals:
            return self._release_waiting(workflow_id, epoch, wake_at, sorted(wake_for_signals))
        with self._cursor("release a run") as cursor:
            cursor.execute(
                self._queries["release_run"], {"workflow_id": workflow_id, "epoch": epoch, "wake_at": wake_at}
            )
            return cursor.fetchone() is not None

    # -- signals ------------------------------------------------------------------------------------------

    def _release_waiting(self, workflow_id: str, epoch: int, wake_at: float | None, names: list[str]) -> bool:
        params = {"workflow_id": workflow_id, "epoch": epoch, "wake_at": wake_at, "names": names}
        with self._transaction("release a run waiting for a signal") as cursor:
            cursor.execute(signal_sql.LOCK_RUN, params)  # waits for a signal being sent to commit
            cursor.execute(signal_sql.RELEASE_LOCKED, params)
            row = cursor.fetchone()
            if row is not None and row[0]:
                cursor.execute(signal_sql.NOTIFY_WORK)
        return row is not None

    def send_signal(self, workflow_id: str, name: str, payload: str, *, now: float) -> int:
        """Keep a signal for the run (RunNotFoundError, RunFinishedError), wake it and idle workers."""
        params = {"workflow_id": workflow_id, "name": name, "payload": payload, "now": now}
        with self._transaction("send a signal") as cursor:
            cursor.execute(signal_sql.SEND_SIGNAL, params)
            sent = cursor.fetchone()
            if sent is None:  # unknown or ended: say which
                cursor.execute(signal_sql.RUN_STATE, params)
                row = cursor.fetchone()
                if row is None:
                    raise no_such_run(workflow_id)
                raise run_finished(workflow_id, row[0])
            signal_id = int(sent[0])
            self._append(cursor, workflow_id, EventKind.SIGNAL_RECEIVED, signal_data(name, signal_id))
        return signal_id

    def next_signal(self, workflow_id: str, names: Collection[str]) -> Signal | None:
        """The oldest signal of the run named one of ``names`` that no step has consumed, or None."""
        with self._cursor("read a signal") as cursor:
            cursor.execute(signal_sql.NEXT_SIGNAL, {"workflow_id": workflow_id, "names": sorted(names)})
            row = cursor.fetchone()
        return None if row is None else Signal(int(row[0]), str(row[1]), str(row[2]))

    def record_checkpoint_consuming(self, checkpoint: Checkpoint, signal_id: int) -> None:
        """Write ``checkpoint`` and mark the signal ``signal_id`` consumed in one transaction."""
        params = {
            "at": checkpoint.at,
            "step": checkpoint.steps[0].name if checkpoint.steps else None,
            "signal_id": signal_id,
            "workflow_id": checkpoint.workflow_id,
        }
        rows = checkpoint_events(checkpoint) if self.records_history else []
        with self._transaction("record a checkpoint consuming a signal") as cursor:
            cursor.execute(self._queries["write_checkpoint"], checkpoint_params(checkpoint, rows))
            returned = cursor.fetchone()
            if returned is not None:
                cursor.execute(signal_sql.CONSUME_SIGNAL, params)
            if returned is None or cursor.rowcount != 1:
                raise lease_lost(checkpoint.workflow_id)  # rolls the transaction back: nothing written
        self._publish(rows, returned)

    def next_wake_at(
        self, *, workflow_names: Collection[str] | None = None, exclude: Collection[str] = ()
    ) -> float | None:
        """When the earliest run waiting on a timer or a lease's end becomes claimable (database clock)."""
        params = {
            "workflow_names": None if workflow_names is None else sorted(workflow_names),
            "exclude": list(exclude),
        }
        with self._cursor("read the next wake-up time") as cursor:
            cursor.execute(self._queries["next_wake_at"], params)
            row = cursor.fetchone()
        return None if row is None or row[0] is None else float(row[0])

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

    def wait_for_work(self, timeout_seconds: float) -> bool:
        """Wait for ``NOTIFY conveyor_work`` (a submit or release anywhere) up to ``timeout_seconds``.

        Returns True on a notification, False on timeout. Listens on a dedicated connection, opened on
        first use and reopened if it died; never raises for a lost connection.
        """
        return self._listener.wait(timeout_seconds)

    # -- analytics and retention (see backends.postgres_analytics) ---------------------------------------

    def run_figures(self, query: AnalyticsQuery) -> list[RunFigures]:
        """Each workflow's figures over the runs finished in ``query``'s window (one query)."""
        with self._transaction("compute the run figures") as cursor:
            return analytics.run_figures(cursor, query, read_only=self.read_only)

    def step_figures(self, query: AnalyticsQuery) -> list[StepFigures]:
        """Each (workflow, step)'s figures over the runs finished in ``query``'s window (one query)."""
        with self._transaction("compute the step figures") as cursor:
            return analytics.step_figures(cursor, query, read_only=self.read_only)

    def prune_finished_runs(self, *, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` runs finished before ``finished_before``, with all they hold, in one
        statement and one short transaction (rows other transactions hold are skipped); how many."""
        with self._transaction("prune finished runs") as cursor:
            return analytics.prune_finished_runs(cursor, finished_before=finished_before, limit=limit)

    # -- lifetime -----------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"<PostgresBackend {self._where.removeprefix('PostgreSQL at ')}{mode}>"
