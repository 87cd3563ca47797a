"""Finished runs in the SQL backends' own tables: what prune deletes row by row, and what the schema
migration that adds ``finished_at`` (SQLite 13, PostgreSQL 14) fills in for runs finished before it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, FakeClock, Flow, task
from conveyor.backends import Backend, PostgresBackend, SqliteBackend, postgres_analytics, sqlite_analytics
from conveyor.backends import sqlite as sqlite_module
from conveyor.backends.postgres_sql import apply_migrations
from conveyor.core.analytics import AnalyticsQuery

T0 = 1_700_000_000.0
DAY = 86400.0


@dataclass
class Database:
    """A SQL backend under test and plain SQL on its database, beside it."""

    backend: Backend
    run_sql: Callable[[str], list[tuple[Any, ...]]]
    kind: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "conveyor.db"
        backend: Backend = SqliteBackend(path)

        def run_sql(sql: str) -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(path)) as connection, connection:
                return connection.execute(sql).fetchall()

    else:
        url = request.getfixturevalue("postgres_database").url
        backend = PostgresBackend(url)

        def run_sql(sql: str) -> list[tuple[Any, ...]]:
            with psycopg.connect(url, autocommit=True) as connection:
                cursor = connection.execute(sql.encode())
                return cursor.fetchall() if cursor.description else []

    try:
        yield Database(backend, run_sql, request.param)
    finally:
        backend.close()


@task
def pack(order: dict[str, Any]) -> dict[str, Any]:
    return order


APPROVAL = Flow("approval").wait_for_signal("approved").then(pack).build()


def test_a_pruned_runs_rows_go_from_every_history_table_and_a_kept_runs_stay(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps (SQLite) or step outcomes (PostgreSQL), signals, and any table named in RUN_HISTORY_TABLES (here
    one made up for the test) lose the pruned run's rows in the prune's own transaction; an unfinished
    run's rows are left."""
    tables = ("conveyor_steps", "conveyor_signals", "conveyor_test_history")
    monkeypatch.setattr(sqlite_analytics, "RUN_HISTORY_TABLES", tables)
    monkeypatch.setattr(postgres_analytics, "RUN_HISTORY_TABLES", tables)
    database.run_sql("CREATE TABLE conveyor_test_history (workflow_id text NOT NULL, what text NOT NULL)")
    clock = FakeClock(T0)
    app = Conveyor(database.backend, workflows=[APPROVAL], clock=clock)
    app.start(APPROVAL, {}, workflow_id="done")
    app.send_signal("done", "approved", True)
    assert app.run(APPROVAL, {}, workflow_id="done").is_completed()
    app.start(APPROVAL, {}, workflow_id="waiting")
    app.send_signal("waiting", "approved", True)
    database.run_sql("INSERT INTO conveyor_test_history VALUES ('done', 'x'), ('waiting', 'y')")
    clock.advance(31 * DAY)
    table = "conveyor_step_outcomes" if database.kind == "postgres" else "conveyor_steps"
    steps = f"SELECT DISTINCT workflow_id FROM {table}"  # the waiting run never ran a step
    assert database.run_sql(steps) == [("done",)]

    assert app.prune(older_than="30d") == 1

    assert database.run_sql("SELECT workflow_id FROM conveyor_signals") == [("waiting",)]
    assert database.run_sql("SELECT workflow_id FROM conveyor_test_history") == [("waiting",)]
    assert database.run_sql("SELECT workflow_id FROM conveyor_runs") == [("waiting",)]
    assert database.run_sql(steps) == []


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_runs_finished_before_the_migration_get_their_finish_time_and_count(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A database whose runs finished under the schema before finished_at is migrated in place: each
    finished run gets finished_at = updated_at (so the analytics see it and prune can find it), and its
    steps count; a running run is left unfinished."""
    if kind == "sqlite":
        path = tmp_path / "old.db"
        every = sqlite_module._migrations
        monkeypatch.setattr(sqlite_module, "_migrations", lambda: [m for m in every() if m[0] < 13])
        SqliteBackend(path).close()
        monkeypatch.setattr(sqlite_module, "_migrations", every)

        def run_sql(sql: str) -> None:
            with closing(sqlite3.connect(path)) as connection, connection:
                connection.execute(sql)

        def reopen() -> Backend:
            return SqliteBackend(path)

    else:
        url = request.getfixturevalue("empty_postgres_database").url
        with psycopg.connect(url, autocommit=True) as connection:
            apply_migrations(connection, up_to=13)

        def run_sql(sql: str) -> None:
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(sql.encode())

        def reopen() -> Backend:
            return PostgresBackend(url)

    steps = '["pack"]'
    rows = (("old-done", "completed", T0 + 3), ("old-running", "running", T0 + 1))
    for workflow_id, state, updated in rows:
        run_sql(
            "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, "
            "correlation_id, step_names, created_at, updated_at, epoch, recoveries) VALUES "
            f"('{workflow_id}', 'packing', '1', '{state}', '{{}}', 'c', '{steps}', {T0}, {updated}, 1, 0)"
        )
    if kind == "sqlite":
        run_sql(
            "INSERT INTO conveyor_steps (workflow_id, step_name, state, attempts, result, started_at, "
            f"finished_at, completion_order) VALUES ('old-done', 'pack', 'completed', 2, '{{}}', {T0 + 1}, "
            f"{T0 + 3}, 1)"
        )
    else:
        run_sql(
            "UPDATE conveyor_runs SET steps = jsonb_build_object('pack', jsonb_build_array('completed', 2, "
            f"'{{}}', NULL, NULL, {T0 + 1}, {T0 + 3}, 1, 0, NULL, NULL)) WHERE workflow_id = 'old-done'"
        )

    migrated = reopen()
    try:
        window = AnalyticsQuery(T0, T0 + 10)
        [runs] = migrated.run_figures(window)
        assert (runs.workflow_name, runs.finished, runs.duration_p50) == ("packing", 1, 3.0)
        assert (runs.step_executions, runs.retried_steps) == (1, 1)
        [step] = migrated.step_figures(window)
        assert (step.step_name, step.executions, step.attempts, step.duration_p50) == ("pack", 1, 2, 2.0)
        assert migrated.prune_finished_runs(finished_before=T0 + 10, limit=10) == 1
        assert migrated.load_run("old-done") is None
        assert migrated.load_run("old-running") is not None
    finally:
        migrated.close()


@task
def refuse(order: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("card declined")


def test_finished_at_is_when_the_run_ended_and_goes_when_it_reopens(database: Database) -> None:
    """Set when the run ends, whoever ends it (its last step, a cancel), and cleared by a retry by hand."""
    clock = FakeClock(T0)
    failing = Flow("failing").then(pack).then(refuse).build()
    app = Conveyor(database.backend, workflows=[APPROVAL, failing], clock=clock)
    finished = "SELECT workflow_id, finished_at, updated_at, state FROM conveyor_runs ORDER BY workflow_id"

    app.start(APPROVAL, {}, workflow_id="a-done")
    app.send_signal("a-done", "approved", True)
    clock.advance(5)
    assert app.run(APPROVAL, {}, workflow_id="a-done").is_completed()
    app.start(APPROVAL, {}, workflow_id="b-cancelled")
    clock.advance(5)
    app.cancel("b-cancelled", "customer changed their mind")
    clock.advance(5)
    assert app.run(failing, {}, workflow_id="c-failed").state.value in ("failed", "compensated")
    rows = database.run_sql(finished)
    assert [(row[0], row[1] == row[2], row[3] != "running") for row in rows] == [
        ("a-done", True, True),
        ("b-cancelled", True, True),
        ("c-failed", True, True),
    ]
    assert {row[1] for row in rows} == {T0 + 5, T0 + 10, T0 + 15}

    clock.advance(5)
    app.retry("c-failed", wait=False)  # reopened: no longer finished
    assert database.run_sql("SELECT finished_at FROM conveyor_runs WHERE workflow_id = 'c-failed'") == [
        (None,)
    ]
