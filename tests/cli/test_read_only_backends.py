"""Backends opened read-only (``open_backend(url, read_only=True)``): what the commands that only read use.

They never create a file, a table, a migration row or SQLite's ``-wal``/``-shm`` files; a missing database
or schema is one error naming it; every write is refused, by the database itself.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from conveyor import BackendError, Conveyor, Flow, task
from conveyor.backends.postgres_sql import apply_migrations, migrations
from conveyor.backends.urls import open_backend
from postgres_support import PostgresDatabase


@task
def greet(name: str) -> str:
    return f"hello {name}"


GREET = Flow("greet").then(greet).build()


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: its content's hash and its modification time."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
    }


def test_a_missing_sqlite_file_is_an_error_naming_it_and_is_not_created(tmp_path: Path) -> None:
    """Opening a path that holds no database for reading says so; no file appears."""
    with pytest.raises(BackendError, match=r"no SQLite database at .*typo\.db"):
        open_backend(f"sqlite:///{tmp_path / 'typo.db'}", read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_sqlite_file_leaves_its_folder_as_it_was(tmp_path: Path) -> None:
    """No -wal or -shm file left behind, the database file unchanged to the byte and the nanosecond."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Conveyor(url, workflows=[GREET]) as app:
        app.run("greet", "ada", workflow_id="g-1")
    before = fingerprint(tmp_path)
    assert list(before) == ["c.db"]
    with Conveyor(url, read_only=True) as reader:
        assert reader.status("g-1").output() == "hello ada"
        assert [run.workflow_id for run in reader.runs()] == ["g-1"]
        assert [event.kind for event in reader.history("g-1")][-1] == "run.completed"
        assert reader.performance().finished == 1
    assert fingerprint(tmp_path) == before


def test_reading_a_sqlite_file_a_writer_holds_open_leaves_its_files_to_it(tmp_path: Path) -> None:
    """While a worker has the database open, a reader uses its -wal and -shm and sees its commits."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Conveyor(url, workflows=[GREET]) as writer:
        writer.run("greet", "ada", workflow_id="g-1")
        assert {path.name for path in tmp_path.iterdir()} == {"c.db", "c.db-wal", "c.db-shm"}
        with Conveyor(url, read_only=True) as reader:
            writer.run("greet", "bob", workflow_id="g-2")
            assert reader.status("g-2").output() == "hello bob"
        writer.run("greet", "cy", workflow_id="g-3")  # the writer's files still work
    assert [path.name for path in tmp_path.iterdir()] == ["c.db"]


def test_a_read_only_sqlite_backend_refuses_every_write(tmp_path: Path) -> None:
    """Starting, cancelling or pruning through it is one error naming the file; nothing is written."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Conveyor(url, workflows=[GREET]) as app:
        app.start("greet", "ada", workflow_id="g-1")
    before = fingerprint(tmp_path)
    with Conveyor(url, workflows=[GREET], read_only=True) as reader:
        for write in (
            lambda: reader.start("greet", "bob", workflow_id="g-2"),
            lambda: reader.cancel("g-1", "no"),
            lambda: reader.prune(older_than="1d"),
        ):
            with pytest.raises(BackendError, match=r"c\.db is open read-only: refused to write"):
                write()
        assert reader.status("g-1").state.value == "pending"
    assert fingerprint(tmp_path) == before


def test_a_sqlite_file_without_the_schema_is_not_migrated(tmp_path: Path) -> None:
    """A SQLite file of someone else's: 'no conveyor schema in it', and no table is added."""
    database = tmp_path / "other.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE mine (x)")
    connection.close()
    before = fingerprint(tmp_path)
    with pytest.raises(BackendError, match=r"no conveyor schema in the SQLite database at .*other\.db"):
        open_backend(f"sqlite:///{database}", read_only=True)
    assert fingerprint(tmp_path) == before


def test_a_sqlite_schema_older_than_the_code_is_reported_not_migrated(tmp_path: Path) -> None:
    """A schema missing a migration: named, with `conveyor migrate` as the fix; no row is added."""
    database = tmp_path / "old.db"
    open_backend(f"sqlite:///{database}").close()
    with sqlite3.connect(database) as connection:
        newest = connection.execute("SELECT max(version) FROM conveyor_migrations").fetchone()[0]
        connection.execute("DELETE FROM conveyor_migrations WHERE version = ?", (newest,))
    connection.close()
    with pytest.raises(BackendError, match=rf"lacks migration {newest}\): run `conveyor migrate`"):
        open_backend(f"sqlite:///{database}", read_only=True)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT max(version) FROM conveyor_migrations").fetchone()[0] < newest
    connection.close()


def test_a_file_that_is_not_a_database_says_so(tmp_path: Path) -> None:
    """A text file given as the database: one error naming it, the file untouched."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, but long enough to have a header " * 4)
    with pytest.raises(BackendError, match=r"notes\.txt.*not a database"):
        open_backend(f"sqlite:///{notes}", read_only=True)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_a_backend_object_cannot_be_made_read_only_by_the_runtime(tmp_path: Path) -> None:
    """read_only applies to a URL the runtime opens; a backend object is refused, saying how instead."""
    from conveyor import InvalidArgumentError, SqliteBackend

    with SqliteBackend(tmp_path / "c.db") as backend, pytest.raises(InvalidArgumentError, match="read_only"):
        Conveyor(backend, read_only=True)


def tables_and_versions(url: str) -> tuple[set[str], list[int]]:
    """The tables of the public schema, and the migration versions recorded (none without the table)."""
    import psycopg

    with psycopg.connect(url) as connection:
        tables = {
            row[0]
            for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        versions = []
        if "conveyor_migrations" in tables:
            versions = [
                row[0] for row in connection.execute("SELECT version FROM conveyor_migrations ORDER BY 1")
            ]
    return tables, versions


@pytest.mark.postgres
def test_postgres_without_the_schema_says_run_migrate_and_creates_nothing(
    empty_postgres_database: PostgresDatabase,
) -> None:
    """An empty database read: 'no conveyor schema in ... (run `conveyor migrate`)'; no table appears."""
    refused = r"no conveyor schema in PostgreSQL at .*/conveyor_test_\w+ \(run `conveyor migrate`\)"
    with pytest.raises(BackendError, match=refused):
        open_backend(empty_postgres_database.url, read_only=True)
    assert tables_and_versions(empty_postgres_database.url) == (set(), [])


@pytest.mark.postgres
def test_postgres_schema_older_than_the_code_is_reported_not_migrated(
    empty_postgres_database: PostgresDatabase,
) -> None:
    """A database migrated only part of the way: the missing versions named; no migration is applied."""
    import psycopg

    with psycopg.connect(empty_postgres_database.url, autocommit=True) as connection:
        apply_migrations(connection, up_to=12)
    before = tables_and_versions(empty_postgres_database.url)
    lacking = ", ".join(str(found.version) for found in migrations() if found.version > 12)
    refused = rf"older than this conveyor \(it lacks migration {lacking}\)"
    with (
        Conveyor(empty_postgres_database.url, read_only=True) as reader,
        pytest.raises(BackendError, match=refused),
    ):
        reader.runs()
    assert tables_and_versions(empty_postgres_database.url) == before


@pytest.mark.postgres
def test_a_read_only_postgres_backend_reads_and_the_server_refuses_its_writes(
    postgres_database: PostgresDatabase,
) -> None:
    """Reads answer; a start, a cancel and a migrate are refused naming the database; nothing changes."""
    url = postgres_database.url
    with Conveyor(url, workflows=[GREET]) as app:
        app.run("greet", "ada", workflow_id="g-1")
        app.start("greet", "bob", workflow_id="g-2")
    before = tables_and_versions(url)
    with Conveyor(url, workflows=[GREET], read_only=True) as reader:
        assert reader.status("g-1").output() == "hello ada"
        assert reader.bottlenecks().steps[0].step == "greet"
        with pytest.raises(
            BackendError, match=r"PostgreSQL at .* is open read-only: refused to submit a run"
        ):
            reader.start("greet", "cy", workflow_id="g-3")
        with pytest.raises(BackendError, match="is open read-only: refused to"):
            reader.cancel("g-2", "no")
        backend = reader.backend
        with pytest.raises(BackendError, match="is open read-only: refused to apply schema migrations"):
            backend.migrate()  # type: ignore[attr-defined]
        assert reader.status("g-2").state.value == "pending"
        assert [run.workflow_id for run in reader.runs()] == ["g-2", "g-1"]
    assert tables_and_versions(url) == before
