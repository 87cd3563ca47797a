"""``SqliteBackend``: the embedded default. One file, many threads and processes on one machine.

The database runs in WAL mode. ``synchronous="FULL"`` (the default) flushes every commit to disk before it
returns, so a completed step survives a power cut; ``"NORMAL"`` is several times faster but a power cut
(not a process crash) may lose the last few commits, so a step that completed just before it may run again.

This module opens the file (the connection's settings and the schema's migrations) and closes it; the
backend's parts are mixins from modules of their own, on the connection they share (``sqlite_connection``):
a run's rows (``sqlite_runs``), claims and leases (``sqlite_claims``), signals (``sqlite_signals``), steering
and notes (``sqlite_steering``), and histories, subscribers' cursors and analytics (``sqlite_observability``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from importlib import resources
from pathlib import Path

from conveyor.backends.base import ClosesOnExit
from conveyor.backends.read_only import SqliteReader
from conveyor.backends.sqlite_claims import _NEXT_WAKE as _NEXT_WAKE  # (tests read its plan from here)
from conveyor.backends.sqlite_claims import SqliteClaims
from conveyor.backends.sqlite_connection import Synchronous
from conveyor.backends.sqlite_observability import SqliteObservability
from conveyor.backends.sqlite_runs import SqliteRuns
from conveyor.backends.sqlite_signals import SqliteSignals
from conveyor.backends.sqlite_steering import SqliteSteering
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


class SqliteBackend(
    SqliteRuns, SqliteClaims, SqliteSignals, SqliteSteering, SqliteObservability, ClosesOnExit
):
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
