"""``PostgresBackend``: runs kept in PostgreSQL, shared by worker processes on any number of machines.

Workers claim ready runs with ``SELECT … FOR UPDATE SKIP LOCKED`` and hold them under leases judged by the
database's clock; every write about a run is fenced by its epoch. A submitted or released run is announced
with ``NOTIFY conveyor_work``, which wakes idle workers waiting in :meth:`PostgresBackend.wait_for_work`.
Each call is one statement, so one round trip: a run is one row, its steps included. A borrowed connection
the server has ended (a restart, a killed session) is noticed without a query and replaced, so the next
call after such an event works; only a call whose connection dies under it fails, raising
:class:`~conveyor.errors.BackendError` (a retry gets a fresh connection).

The class is put together from parts with one job each: :mod:`~conveyor.backends.postgres_connections`
(the pools, cursors and transactions, errors, the clock), :mod:`~conveyor.backends.postgres_reads`
(loading and listing runs), :mod:`~conveyor.backends.postgres_history` (the event history, subscribers'
cursors), :mod:`~conveyor.backends.postgres_writes` (starting and submitting runs, checkpoints),
:mod:`~conveyor.backends.postgres_work` (claims, leases, releases, signals) and
:mod:`~conveyor.backends.postgres_steering` (steering requests, notes); the analytics are here.

Needs psycopg 3: ``pip install "conveyor[postgres]"``.
"""

from __future__ import annotations

from conveyor.backends import postgres_analytics as analytics
from conveyor.backends.postgres_connections import (
    CLAIM_PLANNER_OPTIONS,
    READ_ONLY_OPTIONS,
    READ_ONLY_SQLSTATE,
)
from conveyor.backends.postgres_steering import PostgresSteering
from conveyor.backends.postgres_work import PostgresWork
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures

__all__ = ["CLAIM_PLANNER_OPTIONS", "READ_ONLY_OPTIONS", "READ_ONLY_SQLSTATE", "PostgresBackend"]


class PostgresBackend(PostgresWork, PostgresSteering):
    """Stores runs in the PostgreSQL database at ``url``; creates its tables on first use.

    ``url`` is a ``postgresql://`` URL or a libpq conninfo string. Calls borrow a connection from a pool of
    ``min_connections`` to ``max_connections`` (each tagged ``application_name``); a call waits up to
    ``pool_timeout_seconds`` for one. Safe to share between threads.
    """

    group_commit_writers = 3
    """How many threads of a worker write batches of checkpoints at once (the server commits them in
    parallel; see :class:`~conveyor.engine.group_commit.GroupCommitter`)."""

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

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"<PostgresBackend {self._where.removeprefix('PostgreSQL at ')}{mode}>"
