"""``PostgresWork``: work for worker processes: runs claimed under leases, handed back, woken by signals.

Workers claim ready runs with ``SELECT … FOR UPDATE SKIP LOCKED`` on connections of their own (see
:data:`~conveyor.backends.postgres_connections.CLAIM_PLANNER_OPTIONS`) and hold them under leases judged
by the database's clock. A submitted (see :mod:`~conveyor.backends.postgres_writes`) or released run, and
a signal sent to a run, are announced with ``NOTIFY conveyor_work``, which wakes idle workers waiting in
:meth:`PostgresWork.wait_for_work`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from conveyor.backends import postgres_signals as signal_sql
from conveyor.backends.history import signal_data
from conveyor.backends.postgres_reads import EPOCH_COLUMN, record_from_row
from conveyor.backends.postgres_writes import PostgresWrites, checkpoint_params
from conveyor.backends.rows import failure_to_text, lease_lost
from conveyor.backends.signals import Signal, no_such_run, run_finished
from conveyor.core.history import EventKind, checkpoint_events
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.core.states import RunState


class PostgresWork(PostgresWrites):
    """Claiming runs, renewing their leases, releasing them, and the signals runs wait for."""

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

    def _release_waiting(self, workflow_id: str, epoch: int, wake_at: float | None, names: list[str]) -> bool:
        params = {"workflow_id": workflow_id, "epoch": epoch, "wake_at": wake_at, "names": names}
        with self._transaction("release a run waiting for a signal") as cursor:
            cursor.execute(signal_sql.LOCK_RUN, params)  # waits for a signal being sent to commit
            cursor.execute(signal_sql.RELEASE_LOCKED, params)
            row = cursor.fetchone()
            if row is not None and row[0]:
                cursor.execute(signal_sql.NOTIFY_WORK)
        return row is not None

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

    def wait_for_work(self, timeout_seconds: float) -> bool:
        """Wait for ``NOTIFY conveyor_work`` (a submit or release anywhere) up to ``timeout_seconds``.

        Returns True on a notification, False on timeout. Listens on a dedicated connection, opened on
        first use and reopened if it died; never raises for a lost connection.
        """
        return self._listener.wait(timeout_seconds)

    # -- signals ------------------------------------------------------------------------------------------

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
