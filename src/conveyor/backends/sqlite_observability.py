"""Seeing every run in SQLite (see docs/observability.md): the event history and its durable feed, the
cursors of durable subscribers, the counts of unfinished runs the metrics report, and the analytics.

Each method hands the backend's connection to the module that holds the SQL (``sqlite_history``,
``sqlite_cursors``, ``sqlite_analytics``); pruning finished runs is here too, as ``sqlite_analytics`` keeps
it with the analytics.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.backends import sqlite_analytics as analytics
from conveyor.backends.cursors import CursorClaim
from conveyor.backends.history import UNFINISHED_RUNS, EventPage, as_events
from conveyor.backends.sqlite_connection import SqliteConnection
from conveyor.backends.sqlite_cursors import claim_cursor, load_cursor, release_cursor, save_cursor
from conveyor.backends.sqlite_history import read_feed, read_history
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures
from conveyor.core.history import Event
from conveyor.errors import BackendError


class SqliteObservability(SqliteConnection):
    """The part of :class:`~conveyor.backends.sqlite.SqliteBackend` for seeing every run: histories, the
    feed and its subscribers' cursors, counts, analytics and pruning."""

    # -- the event history (see backends.history) --------------------------------------------------------

    def count_unfinished_runs(self) -> dict[tuple[str, str], int]:
        """Unfinished runs by (workflow name, status): queued, waiting or running (see UNFINISHED_RUNS)."""
        with self._lock:
            try:
                rows = self._connection.execute(UNFINISHED_RUNS.format(now="?"), (self.now(),) * 2).fetchall()
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed counting runs: {exc}") from exc
        return {(str(name), str(status)): int(count) for name, status, count in rows}

    def read_history(self, workflow_id: str, *, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        """The run's events after ``after_seq``, in order (none for an unknown run)."""
        with self._lock:
            try:
                rows = read_history(self._connection, workflow_id, after_seq, limit)
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed reading a history: {exc}") from exc
        return as_events(rows)

    def read_events(self, *, after: str | None = None, limit: int = 500) -> EventPage:
        """Every run's events written after position ``after``, in commit order (see EventPage)."""
        with self._lock:
            try:
                rows, position = read_feed(self._connection, after, limit)
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed reading events: {exc}") from exc
        return EventPage(tuple(as_events(rows)), position)

    # -- durable subscribers' cursors (see backends.cursors) ----------------------------------------------

    def claim_event_cursor(
        self, name: str, *, owner: str, lease_seconds: float, take_over_from: str | None = None
    ) -> CursorClaim:
        """Claim the cursor ``name`` for ``owner`` unless another owner holds a live lease on it."""
        with self._transaction() as cursor:
            return claim_cursor(cursor, name, owner, lease_seconds, take_over_from, self.now())

    def save_event_cursor(self, name: str, position: str | None, *, owner: str, lease_seconds: float) -> bool:
        """Store the cursor's position and renew its lease; False if ``owner`` no longer holds it."""
        with self._transaction() as cursor:
            return save_cursor(cursor, name, position, owner, lease_seconds, self.now())

    def release_event_cursor(self, name: str, *, owner: str) -> None:
        """Let go of the cursor, keeping its position."""
        with self._transaction() as cursor:
            release_cursor(cursor, name, owner)

    def load_event_cursor(self, name: str) -> str | None:
        """The position saved for the cursor ``name``."""
        with self._lock:
            try:
                return load_cursor(self._connection, name)
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed reading a cursor: {exc}") from exc

    # -- analytics and retention (see backends.sqlite_analytics) -----------------------------------------

    def run_figures(self, query: AnalyticsQuery) -> list[RunFigures]:
        """Each workflow's figures over the runs finished in ``query``'s window."""
        with self._reading() as cursor:
            return analytics.run_figures(cursor, query)

    def step_figures(self, query: AnalyticsQuery) -> list[StepFigures]:
        """Each (workflow, step)'s figures over the runs finished in ``query``'s window."""
        with self._reading() as cursor:
            return analytics.step_figures(cursor, query)

    def prune_finished_runs(self, *, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` runs finished before ``finished_before``, with all they hold, in one
        transaction; how many."""
        with self._transaction() as cursor:
            return analytics.prune_finished_runs(cursor, finished_before=finished_before, limit=limit)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor for one read (a single statement: it sees one snapshot and takes no write lock)."""
        with self._lock:
            cursor = self._connection.cursor()
            try:
                yield cursor
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed computing analytics: {exc}") from exc
            finally:
                cursor.close()
