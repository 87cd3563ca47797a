"""Handing runs to workers in SQLite: claiming the ready runs, renewing and losing leases, handing a run
back, and waiting until a run may be ready (see the Backend contract).

A run is ready when its state is one a driver advances, its timer (if any) is due and no live lease holds
it; the claim reads those runs off the index over their due time, the earliest first. A run whose
recoveries (take-overs since its last progress) would pass ``max_recoveries`` is dead-lettered instead.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

import orjson

from conveyor.backends.history import failure_data
from conveyor.backends.rows import (
    corrupt_value,
    corruption_failure,
    dead_letter_failure,
    failure_to_text,
)
from conveyor.backends.sqlite_connection import FAIL_CORRUPT, SELECT_RUN, SELECT_STEPS, SqliteConnection
from conveyor.backends.sqlite_signals import oldest_signal
from conveyor.backends.steering import PAUSED_WAKE_AT
from conveyor.core.history import EventKind
from conveyor.core.records import RunRecord

_CHANGE_POLL_SECONDS = 0.005

_READY = (
    "state IN ('pending', 'running', 'compensating') AND (wake_at IS NULL OR wake_at <= :now) "
    # the index bound: the scan of conveyor_runs_queue stops before the runs that sleep or wait for a signal
    "AND coalesce(wake_at, created_at) <= :now + 60 "
    "AND (owner IS NULL OR (lease_expires_at IS NOT NULL "
    "AND (lease_expires_at < :now OR (:reclaim_own AND owner = :owner))))"
)
_SELECT_READY = (
    f"SELECT workflow_id, workflow_name, state, owner, recoveries, epoch, step_names FROM conveyor_runs "
    f"WHERE {_READY} ORDER BY coalesce(wake_at, created_at) LIMIT :limit"
)
_CLAIM = (
    "UPDATE conveyor_runs SET owner = ?, lease_expires_at = ?, epoch = epoch + 1, recoveries = ?, "
    "updated_at = ?, state = CASE state WHEN 'pending' THEN 'running' ELSE state END WHERE workflow_id = ?"
)
_DEAD_LETTER = (
    "UPDATE conveyor_runs SET state = 'dead_lettered', error = ?, recoveries = ?, epoch = epoch + 1, "
    "owner = NULL, lease_expires_at = NULL, wake_at = NULL, updated_at = ? WHERE workflow_id = ?"
)
_EXTEND = (
    "UPDATE conveyor_runs SET lease_expires_at = ? WHERE workflow_id = ? AND epoch = ? AND owner = ? "
    "AND lease_expires_at IS NOT NULL"
)
_RELEASE = (
    "UPDATE conveyor_runs SET owner = NULL, lease_expires_at = NULL, "
    f"wake_at = CASE WHEN paused THEN {PAUSED_WAKE_AT!r} ELSE ? END WHERE workflow_id = ? AND epoch = ?"
)
"""A paused run handed back keeps its paused timer (see backends.steering)."""
_NEXT_WAKE = (
    "SELECT min(due) FROM ("
    "SELECT * FROM (SELECT wake_at AS due FROM conveyor_runs "
    "WHERE state IN ('pending', 'running', 'compensating') "
    f"AND wake_at IS NOT NULL AND wake_at < {PAUSED_WAKE_AT!r} AND owner IS NULL{{filters}} "
    "ORDER BY wake_at LIMIT 1) "
    "UNION ALL "
    "SELECT max(lease_expires_at, coalesce(wake_at, 0)) FROM conveyor_runs "
    "WHERE lease_expires_at IS NOT NULL AND state IN ('pending', 'running', 'compensating') "
    f"AND owner IS NOT NULL AND coalesce(wake_at, 0) < {PAUSED_WAKE_AT!r}{{filters}})"
)
"""The next time a run may become claimable by itself, without reading the waiting runs: the earliest timer
of an unheld run comes off conveyor_runs_ready (walked in timer order, stopping at the first), the earliest
lease end off conveyor_runs_held (only the runs under a lease). ``{filters}`` takes the caller's
conditions."""
_ANY_READY = f"SELECT 1 FROM conveyor_runs WHERE {_READY} LIMIT 1"


def _names(step_names: object) -> list[str]:
    """A run's step names, or none if its ``step_names`` column cannot be read."""
    try:
        names = orjson.loads(step_names)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return []
    return [name for name in names if type(name) is str] if type(names) is list else []


class SqliteClaims(SqliteConnection):
    """The part of :class:`~conveyor.backends.sqlite.SqliteBackend` that hands runs to workers and takes
    them back."""

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
        claimed_ids: list[str] = []
        written = self._history()
        with self._transaction() as cursor:
            now = self.now()
            scan = (limit if workflow_names is None else max(limit * 4, 64)) + len(exclude)
            for workflow_id, name, _state, previous_owner, recoveries, _epoch, step_names in cursor.execute(
                _SELECT_READY, {"now": now, "limit": scan, "owner": owner, "reclaim_own": reclaim_own}
            ).fetchall():
                if len(claimed_ids) >= limit:
                    break
                if (workflow_names is not None and name not in workflow_names) or workflow_id in exclude:
                    continue
                if type(recoveries) is not int:  # a run whose row is corrupt: it fails, alone, here
                    error = corrupt_value(workflow_id, "recoveries", recoveries, "which is not a count")
                    failure = corruption_failure(error)
                    cursor.execute(FAIL_CORRUPT, (failure_to_text(failure), now, workflow_id))
                    self._note(cursor, written, workflow_id, EventKind.RUN_FAILED, failure_data(failure))
                    continue
                recoveries += 1 if previous_owner is not None else 0
                if recoveries > max_recoveries:
                    completed = [
                        step
                        for (step,) in cursor.execute(
                            "SELECT step_name FROM conveyor_steps WHERE workflow_id = ? AND state = ?",
                            (workflow_id, "completed"),
                        )
                    ]
                    failure = dead_letter_failure(_names(step_names), completed, recoveries)
                    cursor.execute(_DEAD_LETTER, (failure_to_text(failure), recoveries, now, workflow_id))
                    self._note(
                        cursor, written, workflow_id, EventKind.RUN_DEAD_LETTERED, failure_data(failure)
                    )
                    continue
                cursor.execute(_CLAIM, (owner, now + lease_seconds, recoveries, now, workflow_id))
                if previous_owner is not None:
                    data = {"previous_owner": previous_owner, "recoveries": recoveries}
                    self._note(cursor, written, workflow_id, EventKind.RUN_TAKEN_OVER, data, by_owner=True)
                claimed_ids.append(workflow_id)
            claimed = []
            for workflow_id in claimed_ids:
                row = cursor.execute(SELECT_RUN, (workflow_id,)).fetchone()
                record = self._record(row, cursor.execute(SELECT_STEPS, (workflow_id,)))
                if record.corruption is None:
                    claimed.append(record)
                else:  # a run whose rows cannot be read: it fails, alone, instead of stopping the worker
                    cursor.execute(FAIL_CORRUPT, (failure_to_text(record.error), now, workflow_id))
                    self._note(cursor, written, workflow_id, EventKind.RUN_FAILED, failure_data(record.error))
        self._publish(written)
        return claimed

    def extend_leases(self, *, owner: str, leases: Mapping[str, int], lease_seconds: float) -> set[str]:
        """Renew ``owner``'s leases; return the ids whose lease was lost."""
        lost: set[str] = set()
        if not leases:
            return lost
        with self._transaction() as cursor:
            until = self.now() + lease_seconds
            for workflow_id, epoch in leases.items():
                cursor.execute(_EXTEND, (until, workflow_id, epoch, owner))
                if cursor.rowcount != 1:
                    lost.add(workflow_id)
        return lost

    def release_run(
        self, *, workflow_id: str, epoch: int, wake_at: float | None, wake_for_signals: Collection[str] = ()
    ) -> bool:
        """Hand a claimed run back, claimable again at ``wake_at`` (now if one of ``wake_for_signals`` is
        already there); False if it was taken over."""
        with self._transaction() as cursor:
            if wake_for_signals and oldest_signal(cursor, workflow_id, wake_for_signals) is not None:
                wake_at = None
            cursor.execute(_RELEASE, (wake_at, workflow_id, epoch))
            released = cursor.rowcount == 1
        if released and (wake_at is None or wake_at <= self.now()):
            self._signal_work()
        return released

    def next_wake_at(
        self, *, workflow_names: Collection[str] | None = None, exclude: Collection[str] = ()
    ) -> float | None:
        """When the earliest run waiting on a timer or a lease's end becomes claimable, or None."""
        params = list(exclude)
        # (the unary + keeps the planner off the indexes over these columns: see _NEXT_WAKE)
        filters = f" AND +workflow_id NOT IN ({', '.join('?' * len(params))})" if params else ""
        if workflow_names is not None:
            names = sorted(workflow_names)
            filters += f" AND +workflow_name IN ({', '.join('?' * len(names))})"
            params.extend(names)
        with self._lock:
            row = self._connection.execute(_NEXT_WAKE.format(filters=filters), params * 2).fetchone()
        # SQLite orders numbers before text: a time that is not a number (a corrupt row) comes out only
        # when no run has a real one.
        return None if row is None or type(row[0]) not in (int, float) else float(row[0])

    def wait_for_work(self, timeout_seconds: float) -> bool:
        """Block until a run may have become ready, or the timeout passes.

        Within this process a submit or release wakes waiters at once. Other processes' writes are
        noticed through SQLite's ``data_version``, checked every few milliseconds (a local, cheap read).
        """
        deadline = time.monotonic() + timeout_seconds
        with self._work:
            seen = self._work_signals
        version = self._data_version()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._work:
                if self._work.wait_for(
                    lambda: self._work_signals != seen, timeout=min(remaining, _CHANGE_POLL_SECONDS)
                ):
                    return True
            current = self._data_version()
            if current != version:
                version = current
                with self._lock:
                    ready = {"now": self.now(), "owner": "", "reclaim_own": False}
                    if self._connection.execute(_ANY_READY, ready).fetchone():
                        return True

    def _data_version(self) -> int:
        with self._lock:
            return int(self._connection.execute("PRAGMA data_version").fetchone()[0])
