"""``SqliteBackend``: the embedded default. One file, many threads and processes on one machine.

The database runs in WAL mode. ``synchronous="FULL"`` (the default) flushes every commit to disk before it
returns, so a completed step survives a power cut; ``"NORMAL"`` is several times faster but a power cut
(not a process crash) may lose the last few commits, so a step that completed just before it may run again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Literal, Self

import orjson

from conveyor.backends.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    failure_to_text,
    run_from_rows,
    step_to_row,
)
from conveyor.core.records import Checkpoint, NewRun, RunRecord
from conveyor.errors import BackendError, InvalidArgumentError, LeaseLostError

Synchronous = Literal["FULL", "NORMAL"]

_SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM conveyor_runs WHERE workflow_id = ?"
_SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM conveyor_steps WHERE workflow_id = ?"
_INSERT_RUN = (
    "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, "
    "correlation_id, step_names, created_at, updated_at, epoch, recoveries, owner) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?)"
)
_TAKE_OVER = (
    "UPDATE conveyor_runs SET epoch = epoch + 1, recoveries = recoveries + 1, owner = ?, updated_at = ? "
    "WHERE workflow_id = ?"
)
_FENCED_UPDATE = (
    "UPDATE conveyor_runs SET state = ?, output = ?, error = ?, wake_at = ?, updated_at = ?, generation = ? "
    "WHERE workflow_id = ? AND epoch = ?"
)
_UPSERT_STEP = f"INSERT OR REPLACE INTO conveyor_steps (workflow_id, {STEP_COLUMNS}) VALUES ({'?, ' * 11}?)"


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("conveyor.backends") / "sql" / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class SqliteBackend:
    """Stores runs in the SQLite file at ``path`` (``conveyor.db`` by default), created on first use."""

    def __init__(
        self,
        path: str | Path = "conveyor.db",
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidArgumentError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._lock = threading.Lock()
        try:
            self._connection = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_seconds,
                cached_statements=64,
            )
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the SQLite database at {self.path}: {exc}") from exc
        connection = self._connection
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS conveyor_migrations (version INTEGER PRIMARY KEY)")
            applied = {row[0] for row in cursor.execute("SELECT version FROM conveyor_migrations")}
            for version, script in _migrations():
                if version in applied:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        cursor.execute(statement)
                cursor.execute("INSERT INTO conveyor_migrations (version) VALUES (?)", (version,))

    @contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            connection = self._connection
            relaxed = not durable and self.synchronous == "FULL"
            if relaxed:
                connection.execute("PRAGMA synchronous = NORMAL")
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed: {exc}") from exc
            finally:
                cursor.close()
                if relaxed:
                    connection.execute("PRAGMA synchronous = FULL")

    def start_run(
        self, run: NewRun, *, owner: str, now: float, durable: bool = True
    ) -> tuple[RunRecord, bool]:
        """Record ``run`` or take over the existing one (see :class:`~conveyor.backends.base.Backend`)."""
        step_names = orjson.dumps(run.step_names).decode()
        with self._transaction(durable=durable) as cursor:
            row = cursor.execute(_SELECT_RUN, (run.workflow_id,)).fetchone()
            if row is None:
                cursor.execute(
                    _INSERT_RUN,
                    (
                        run.workflow_id,
                        run.workflow_name,
                        run.workflow_version,
                        run.state.value,
                        run.input,
                        run.correlation_id,
                        step_names,
                        now,
                        now,
                        owner,
                    ),
                )
                created = (
                    *(run.workflow_id, run.workflow_name, run.workflow_version, run.state.value),
                    *(run.input, None, None, run.correlation_id, step_names, now, now, None, 1, 0, 0),
                )
                return run_from_rows(created, ()), True
            record = run_from_rows(row, cursor.execute(_SELECT_STEPS, (run.workflow_id,)))
            if not record.is_final:
                cursor.execute(_TAKE_OVER, (owner, now, run.workflow_id))
                record.epoch += 1
                record.recoveries += 1
                record.updated_at = now
            return record, False

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` in one transaction, unless the run's epoch moved on."""
        with self._transaction() as cursor:
            cursor.execute(
                _FENCED_UPDATE,
                (
                    checkpoint.state.value,
                    checkpoint.output,
                    failure_to_text(checkpoint.error),
                    checkpoint.wake_at,
                    checkpoint.at,
                    checkpoint.generation,
                    checkpoint.workflow_id,
                    checkpoint.epoch,
                ),
            )
            if cursor.rowcount != 1:
                raise LeaseLostError(
                    f"run {checkpoint.workflow_id!r} was taken over by another process; "
                    "this write was refused",
                    workflow_id=checkpoint.workflow_id,
                )
            workflow_id = checkpoint.workflow_id
            if len(checkpoint.steps) == 1:
                cursor.execute(_UPSERT_STEP, (workflow_id, *step_to_row(checkpoint.steps[0])))
            elif checkpoint.steps:
                cursor.executemany(
                    _UPSERT_STEP,
                    [(workflow_id, *step_to_row(record)) for record in checkpoint.steps],
                )

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record, or ``None``."""
        with self._lock:
            try:
                cursor = self._connection.cursor()
                cursor.execute("BEGIN")
                row = cursor.execute(_SELECT_RUN, (workflow_id,)).fetchone()
                steps = cursor.execute(_SELECT_STEPS, (workflow_id,)).fetchall() if row else []
                cursor.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite at {self.path} failed: {exc}") from exc
        return None if row is None else run_from_rows(row, steps)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqliteBackend {str(self.path)!r} synchronous={self.synchronous}>"
