"""``SqliteBackend``: the embedded default. One file, many threads and processes on one machine.

The database runs in WAL mode. ``synchronous="FULL"`` (the default) flushes every commit to disk before it
returns, so a completed step survives a power cut; ``"NORMAL"`` is several times faster but a power cut
(not a process crash) may lose the last few commits, so a step that completed just before it may run again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from conveyor.backends import sqlite_analytics as analytics
from conveyor.backends.base import ClosesOnExit
from conveyor.backends.cursors import CursorClaim
from conveyor.backends.history import (
    UNFINISHED_RUNS,
    EventPage,
    as_events,
)
from conveyor.backends.read_only import SqliteReader
from conveyor.backends.sqlite_claims import _NEXT_WAKE as _NEXT_WAKE  # (read by tests: the statement's plan)
from conveyor.backends.sqlite_claims import SqliteClaims
from conveyor.backends.sqlite_connection import (
    Synchronous,
)
from conveyor.backends.sqlite_cursors import claim_cursor, load_cursor, release_cursor, save_cursor
from conveyor.backends.sqlite_history import read_feed, read_history
from conveyor.backends.sqlite_runs import SqliteRuns
from conveyor.backends.sqlite_signals import SqliteSignals
from conveyor.backends.sqlite_steering import SqliteSteering
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures
from conveyor.core.history import Event
from conveyor.errors import BackendError, InvalidArgumentError


def _statements(script: str) -> list[str]:
    """The statements of a migration script, comments left out; a trigger's body keeps its semicolons."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    statements: list[str] = []
    pending = ""
    for piece in code.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # a trigger's BEGIN ... END is complete only at its END
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending)
    return statements


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("conveyor.backends") / "sql" / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class SqliteBackend(SqliteRuns, SqliteClaims, SqliteSignals, SqliteSteering, ClosesOnExit):
    """Stores runs in the SQLite file at ``path`` (``conveyor.db`` by default), created on first use.

    ``read_only=True`` opens an existing file to read (see :mod:`conveyor.backends.read_only`): nothing is
    created or migrated, a missing file or schema is an error naming it, and every write is refused.
    """

    def __init__(
        self,
        path: str | Path = "conveyor.db",
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_seconds: float = 30.0,
        read_only: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidArgumentError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.read_only = bool(read_only)
        """Whether the file was opened only to read (every write is refused)."""
        self._lock = threading.Lock()
        self._work = threading.Condition()
        self._work_signals = 0
        self._reader: SqliteReader | None = None
        self._applied_on_open: list[int] = []
        if self.read_only:
            expected = [version for version, _ in _migrations()]
            self._reader = SqliteReader(
                self.path, timeout_seconds=busy_timeout_seconds, expected_versions=expected
            )
            self._connection = self._reader.connection
            return
        try:
            self._connection = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_seconds,
                cached_statements=64,
            )
            connection = self._connection
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {synchronous}")
            connection.execute("PRAGMA foreign_keys = ON")
            self._applied_on_open = self._migrate()
        except (sqlite3.Error, BackendError) as exc:  # a file that is not a database says so here
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._connection.close()
            if isinstance(exc, BackendError):
                raise
            raise BackendError(f"cannot open the SQLite database at {self.path}: {exc}") from exc

    def migrate(self) -> list[int]:
        """Bring the file's schema up to date; return the versions applied since the backend was opened.

        Opening the file applies what it lacks, so the first call returns those (often none), and later
        calls what they applied. A read-only backend refuses (``conveyor migrate`` opens it to write).
        """
        applied, self._applied_on_open = [*self._applied_on_open, *self._migrate()], []
        return applied

    def _migrate(self) -> list[int]:
        applied: list[int] = []
        with self._transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS conveyor_migrations (version INTEGER PRIMARY KEY)")
            done = {row[0] for row in cursor.execute("SELECT version FROM conveyor_migrations")}
            for version, script in _migrations():
                if version in done:
                    continue
                for statement in _statements(script):
                    cursor.execute(statement)
                cursor.execute("INSERT INTO conveyor_migrations (version) VALUES (?)", (version,))
                applied.append(version)
        return applied

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

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
            else:
                self._connection.close()

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"<SqliteBackend {str(self.path)!r} synchronous={self.synchronous}{mode}>"
