"""What only the SQLite backend promises: a file that outlives the process, WAL, migrations, fsync."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends import SqliteBackend
from conveyor.backends.sqlite import _migrations
from conveyor.core.records import Checkpoint, NewRun, RunRecord, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.errors import BackendError, InvalidArgumentError, LeaseLostError

NewRunFactory = Callable[..., NewRun]
OpenSqlite = Callable[..., SqliteBackend]

T0 = 1_700_000_000.25
T1 = 1_700_000_010.5
T2 = 1_700_000_020.75

SYNCHRONOUS_NORMAL = 1
SYNCHRONOUS_FULL = 2
"""What ``PRAGMA synchronous`` reports for each level."""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database file lives."""
    return tmp_path / "conveyor.db"


@pytest.fixture
def open_sqlite(db_path: Path) -> Iterator[OpenSqlite]:
    """Open SqliteBackend objects on ``db_path`` (or another path); every one is closed after the test."""
    opened: list[SqliteBackend] = []

    def open_backend(path: Path | None = None, **options: Any) -> SqliteBackend:
        backend = SqliteBackend(db_path if path is None else path, **options)
        opened.append(backend)
        return backend

    yield open_backend
    for backend in opened:
        backend.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a separate, short-lived sqlite3 connection to ``path``."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def private_synchronous(backend: SqliteBackend) -> int:
    """The synchronous level of the backend's own connection (it is set per connection)."""
    return int(backend._connection.execute("PRAGMA synchronous").fetchone()[0])


def completed(name: str, order: int) -> StepRecord:
    """A step that completed on its first attempt."""
    return StepRecord(
        name, state=StepState.COMPLETED, attempts=1, result='"ok"', finished_at=T1, completion_order=order
    )


def write(
    backend: SqliteBackend,
    *,
    epoch: int = 1,
    steps: tuple[StepRecord, ...] = (),
    state: RunState = RunState.RUNNING,
    output: str | None = None,
    at: float = T1,
) -> None:
    """Record a checkpoint for run-1."""
    backend.record_checkpoint(
        Checkpoint(
            workflow_id="run-1",
            epoch=epoch,
            steps=steps,
            state=state,
            output=output,
            error=None,
            wake_at=None,
            at=at,
        )
    )


def must_load(backend: SqliteBackend, workflow_id: str = "run-1") -> RunRecord:
    """Load a run that must exist."""
    record = backend.load_run(workflow_id)
    assert record is not None, f"run {workflow_id!r} is missing"
    return record


def test_runs_survive_closing_and_reopening_the_file(open_sqlite: OpenSqlite, new_run: NewRunFactory) -> None:
    """A run and its steps written before close() load identically from a new backend on the same file."""
    first = open_sqlite()
    first.start_run(new_run(), owner="worker-1", now=T0)
    write(first, steps=(completed("a", 1), completed("b", 2)), state=RunState.COMPLETED, output='{"y": 2}')
    before = must_load(first)
    first.close()

    reopened = open_sqlite()

    after = must_load(reopened)
    assert after == before
    assert after.state is RunState.COMPLETED
    assert after.output == '{"y": 2}'
    assert after.steps == {"a": completed("a", 1), "b": completed("b", 2), "c": StepRecord("c")}


def test_non_durable_start_survives_closing_and_reopening(
    open_sqlite: OpenSqlite, new_run: NewRunFactory
) -> None:
    """A run started with durable=False is committed: a clean close and reopen still finds it."""
    first = open_sqlite()
    first.start_run(new_run(), owner="worker-1", now=T0, durable=False)
    first.close()

    assert must_load(open_sqlite()).epoch == 1


def test_opening_creates_the_file_and_its_tables(
    open_sqlite: OpenSqlite, db_path: Path, new_run: NewRunFactory
) -> None:
    """Opening a new path creates the database with conveyor's runs, steps and migrations tables."""
    assert not db_path.exists()

    open_sqlite()

    assert db_path.exists()
    tables = {row[0] for row in query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conveyor_runs", "conveyor_steps", "conveyor_migrations"} <= tables


ALL_VERSIONS = [(version,) for version, _ in _migrations()]
"""Every migration this conveyor ships, as conveyor_migrations records them."""


def test_the_migrations_shipped_are_numbered_from_one_without_repeats() -> None:
    """Each migration file has a number of its own; the first is 1."""
    versions = [version for (version,) in ALL_VERSIONS]
    assert versions[0] == 1
    assert len(set(versions)) == len(versions)


def test_opening_twice_runs_migrations_once(open_sqlite: OpenSqlite, db_path: Path) -> None:
    """Opening a file twice (once while open, once after close) records each migration version once."""
    first = open_sqlite()
    open_sqlite()
    first.close()
    open_sqlite()

    assert query(db_path, "SELECT version FROM conveyor_migrations ORDER BY version") == ALL_VERSIONS


def test_a_file_at_schema_1_gets_the_claim_order_index_and_keeps_its_runs(
    open_sqlite: OpenSqlite, db_path: Path, new_run: NewRunFactory
) -> None:
    """A file an earlier conveyor made (schema 1 only) is brought up to date on open; its runs stay."""
    first = open_sqlite()
    first.submit_run(new_run(), now=T0)
    first.close()
    with closing(sqlite3.connect(db_path)) as connection, connection:
        connection.execute("DROP INDEX conveyor_runs_queue")
        connection.execute("DELETE FROM conveyor_migrations WHERE version = 2")

    backend = open_sqlite()

    assert query(db_path, "SELECT version FROM conveyor_migrations ORDER BY version") == ALL_VERSIONS
    assert query(db_path, "SELECT name FROM sqlite_master WHERE name = 'conveyor_runs_queue'") == [
        ("conveyor_runs_queue",)
    ]
    [claimed] = backend.claim_runs(owner="w", limit=5, lease_seconds=30, max_recoveries=5)
    assert claimed.workflow_id == new_run().workflow_id


def test_reopening_keeps_existing_rows_through_migrations(
    open_sqlite: OpenSqlite, db_path: Path, new_run: NewRunFactory
) -> None:
    """Re-running migrations on an existing file does not drop or duplicate stored runs."""
    open_sqlite().start_run(new_run(), owner="worker-1", now=T0)
    open_sqlite()

    assert query(db_path, "SELECT workflow_id, epoch FROM conveyor_runs") == [("run-1", 1)]


def test_journal_mode_is_wal(open_sqlite: OpenSqlite, db_path: Path) -> None:
    """The database file is in WAL journal mode, seen from a separate connection and the backend's own."""
    backend = open_sqlite()

    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert backend._connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_synchronous_is_full_by_default(open_sqlite: OpenSqlite) -> None:
    """By default the backend's connection runs with synchronous=FULL (2)."""
    backend = open_sqlite()

    assert backend.synchronous == "FULL"
    assert private_synchronous(backend) == SYNCHRONOUS_FULL


def test_synchronous_is_normal_on_request(open_sqlite: OpenSqlite) -> None:
    """synchronous="NORMAL" makes the backend's connection run with synchronous=NORMAL (1)."""
    backend = open_sqlite(synchronous="NORMAL")

    assert backend.synchronous == "NORMAL"
    assert private_synchronous(backend) == SYNCHRONOUS_NORMAL


def test_non_durable_start_restores_full_synchronous_afterwards(
    open_sqlite: OpenSqlite, new_run: NewRunFactory
) -> None:
    """A durable=False start_run relaxes only its own write: synchronous is FULL again afterwards."""
    backend = open_sqlite()

    backend.start_run(new_run(), owner="worker-1", now=T0, durable=False)

    assert private_synchronous(backend) == SYNCHRONOUS_FULL


@pytest.mark.parametrize("value", ["OFF", "EXTRA", "full", ""])
def test_invalid_synchronous_raises_invalid_argument_error(db_path: Path, value: str) -> None:
    """A synchronous value other than "FULL" or "NORMAL" raises InvalidArgumentError before opening."""
    with pytest.raises(InvalidArgumentError, match="synchronous"):
        SqliteBackend(db_path, synchronous=value)  # type: ignore[arg-type]

    assert not db_path.exists()


def test_unopenable_path_raises_backend_error(tmp_path: Path) -> None:
    """A path in a directory that does not exist raises BackendError naming the path."""
    with pytest.raises(BackendError, match="missing"):
        SqliteBackend(tmp_path / "missing" / "conveyor.db")


def test_default_path_is_conveyor_db_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SqliteBackend() with no path creates conveyor.db in the working directory."""
    monkeypatch.chdir(tmp_path)

    backend = SqliteBackend()
    try:
        assert backend.path == Path("conveyor.db")
        assert (tmp_path / "conveyor.db").exists()
    finally:
        backend.close()


def test_second_backend_on_the_same_file_sees_the_first_ones_writes(
    open_sqlite: OpenSqlite, new_run: NewRunFactory
) -> None:
    """Two SqliteBackend objects on one file in one process: each write is visible to the other at once."""
    first = open_sqlite()
    second = open_sqlite()
    assert second.load_run("run-1") is None

    first.start_run(new_run(), owner="worker-1", now=T0)
    assert must_load(second).epoch == 1

    write(first, steps=(completed("a", 1),), at=T1)
    seen = must_load(second)
    assert seen.steps["a"] == completed("a", 1)
    assert seen.updated_at == T1
    assert seen == must_load(first)


def test_take_over_through_a_second_backend_fences_the_first(
    open_sqlite: OpenSqlite, new_run: NewRunFactory
) -> None:
    """When a second backend object takes the run over, the first one's epoch-1 checkpoint is refused."""
    first = open_sqlite()
    second = open_sqlite()
    first.start_run(new_run(), owner="worker-1", now=T0)

    record, created = second.start_run(new_run(), owner="worker-2", now=T1)
    assert (created, record.epoch, record.recoveries) == (False, 2, 1)

    with pytest.raises(LeaseLostError):
        write(first, epoch=1, steps=(completed("a", 1),), state=RunState.COMPLETED, at=T2)

    write(second, epoch=2, steps=(completed("b", 1),), at=T2)
    loaded = must_load(first)
    assert loaded.steps == {"a": StepRecord("a"), "b": completed("b", 1), "c": StepRecord("c")}
    assert (loaded.state, loaded.epoch) == (RunState.RUNNING, 2)


def test_refused_checkpoint_is_rolled_back(
    open_sqlite: OpenSqlite, db_path: Path, new_run: NewRunFactory
) -> None:
    """After a stale-epoch refusal no transaction is left open and another connection sees the old state."""
    writer = open_sqlite()
    writer.start_run(new_run(), owner="worker-1", now=T0)
    write(writer, steps=(completed("a", 1),), at=T1)
    writer.start_run(new_run(), owner="worker-2", now=T2)
    before = must_load(writer)

    with pytest.raises(LeaseLostError):
        write(writer, epoch=1, steps=(completed("b", 2), completed("c", 3)), state=RunState.COMPLETED)

    assert writer._connection.in_transaction is False
    observer = open_sqlite(busy_timeout_seconds=1.0)
    assert must_load(observer) == before
    assert query(db_path, "SELECT step_name, state FROM conveyor_steps") == [("a", "completed")]
    assert query(db_path, "SELECT state, epoch FROM conveyor_runs") == [("running", 2)]
    # The write lock was released: another connection can write straight away.
    write(observer, epoch=2, steps=(completed("b", 2),), at=T2)
    assert must_load(writer).steps["b"] == completed("b", 2)


def test_checkpoint_for_an_unknown_run_leaves_no_rows(open_sqlite: OpenSqlite, db_path: Path) -> None:
    """A refused checkpoint for a run never started writes no run row and no step row."""
    backend = open_sqlite()

    with pytest.raises(LeaseLostError):
        write(backend, steps=(completed("a", 1),))

    assert backend._connection.in_transaction is False
    assert query(db_path, "SELECT COUNT(*) FROM conveyor_runs") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM conveyor_steps") == [(0,)]


def test_a_checkpoint_that_keeps_the_run_state_leaves_state_timer_and_claim_indexes(
    open_sqlite: OpenSqlite, new_run: NewRunFactory, db_path: Path
) -> None:
    """A step completion settle marks as keeping the run's state and timer assigns neither column: a wake-up
    time set meanwhile (a pause's, say) stays, and the step and the time are written."""
    backend = open_sqlite()
    backend.start_run(new_run(), owner="worker-1", now=T0)
    with closing(sqlite3.connect(db_path)) as outside:
        outside.execute("UPDATE conveyor_runs SET wake_at = 123.0 WHERE workflow_id = 'run-1'")
        outside.commit()
    backend.record_checkpoint(
        Checkpoint("run-1", 1, (completed("a", 1),), RunState.RUNNING, None, None, None, T1, 0, True)
    )
    stored = must_load(backend)
    assert (stored.state, stored.wake_at, stored.updated_at) == (RunState.RUNNING, 123.0, T1)
    assert stored.steps["a"].state is StepState.COMPLETED
    backend.record_checkpoint(
        Checkpoint("run-1", 1, (completed("b", 2),), RunState.RUNNING, None, None, None, T1 + 1, 0, False)
    )
    assert must_load(backend).wake_at is None  # without the mark, the checkpoint's own timer is written


def test_a_step_completion_that_keeps_the_run_state_writes_no_claim_index_page(
    open_sqlite: OpenSqlite, new_run: NewRunFactory, db_path: Path
) -> None:
    """The point of the narrow write: the WAL grows by the run's page and the step's, not by index pages."""
    backend = open_sqlite()
    backend.start_run(new_run(), owner="worker-1", now=T0)
    wal = db_path.with_name(db_path.name + "-wal")

    def frames_written(same: bool, name: str, order: int) -> int:
        before = wal.stat().st_size
        backend.record_checkpoint(
            Checkpoint("run-1", 1, (completed(name, order),), RunState.RUNNING, None, None, None, T1, 0, same)
        )
        return (wal.stat().st_size - before) // 4120  # a frame: a 4096-byte page and its 24-byte header

    frames_written(False, "a", 1)  # the step rows' page is in the WAL from here on
    wide = frames_written(False, "b", 2)
    narrow = frames_written(True, "c", 3)
    assert narrow < wide, (narrow, wide)
