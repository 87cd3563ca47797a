"""A run remembers the definition it was recorded by: another definition of its workflow is refused on its id.

Each run stores its workflow's definition hash (step names, dependencies and kinds, computed once when the
workflow is built). Running or starting a workflow on an id whose run recorded another hash raises
``DefinitionChangedError`` naming the workflow, both hashes and the steps added or removed, on every
backend, instead of returning the other definition's outcome. Runs recorded before the hash existed (a
NULL column, after the migration) are still served.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Backend,
    Conveyor,
    DefinitionChangedError,
    Flow,
    InMemoryBackend,
    SqliteBackend,
    Workflow,
    WorkflowMismatchError,
    task,
)


@task
def validate(order: dict) -> dict:
    """Checks the order."""
    return {**order, "valid": True}


@task
def charge(order: dict) -> dict:
    """Charges it."""
    return {**order, "charged": True}


@task
def reserve(order: dict) -> dict:
    """Reserves its stock."""
    return {**order, "reserved": True}


@task
def combine(results: dict) -> str:
    """Joins the branches."""
    return f"charged={results['charge']['charged']} reserved={results['reserve']['reserved']}"


SEQUENTIAL = Flow("orders").then(validate).then(charge).build()
FORKED = Flow("orders").then(validate).fork().branch(charge).branch(reserve).join(combine).build()
CHAIN = Flow("orders").then(validate).then(charge).then(reserve).build()
REORDERED = Flow("orders").then(validate).then(reserve).then(charge).build()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, over a real database for the SQL ones."""
    if request.param == "memory":
        opened: Backend = InMemoryBackend()
    elif request.param == "sqlite":
        opened = SqliteBackend(tmp_path / "runs.db")
    else:
        from conveyor import PostgresBackend

        opened = PostgresBackend(request.getfixturevalue("postgres_database").url, max_connections=4)
    yield opened
    opened.close()


def test_the_hash_is_stable_across_builds_and_processes() -> None:
    """One definition built twice, here or in another process, has one hash; another definition another."""
    again = Flow("orders").then(validate).then(charge).build()
    assert SEQUENTIAL.definition_hash == again.definition_hash
    assert len({SEQUENTIAL.definition_hash, FORKED.definition_hash, CHAIN.definition_hash}) == 3
    assert CHAIN.definition_hash != REORDERED.definition_hash
    other_process = subprocess.run(
        [sys.executable, "-c", f"import {__name__} as m; print(m.SEQUENTIAL.definition_hash)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
        env={"PYTHONPATH": str(Path(__file__).parent), "PYTHONHASHSEED": "12345"},
    )
    assert other_process.stdout.strip() == SEQUENTIAL.definition_hash


def test_a_forked_flow_on_a_sequential_runs_id_is_refused_naming_the_difference(backend: Backend) -> None:
    """The fork/join flow on an id its sequential namesake recorded: DefinitionChangedError, not the
    sequential run's output."""
    app = Conveyor(backend)
    assert app.run(SEQUENTIAL, {"id": 1}, workflow_id="order-1").is_completed()
    with pytest.raises(DefinitionChangedError) as raised:
        app.run(FORKED, {"id": 1}, workflow_id="order-1")
    error = raised.value
    assert isinstance(error, WorkflowMismatchError)
    assert (error.workflow_name, error.stored_hash, error.new_hash) == (
        "orders",
        SEQUENTIAL.definition_hash,
        FORKED.definition_hash,
    )
    assert error.added_steps == ("reserve", "combine")
    assert error.removed_steps == ()
    message = str(error)
    for text in ("'orders'", SEQUENTIAL.definition_hash, FORKED.definition_hash, "'reserve'", "'combine'"):
        assert text in message
    with pytest.raises(DefinitionChangedError):
        app.start(FORKED, {"id": 1}, workflow_id="order-1")


def test_the_same_steps_in_another_order_are_a_changed_definition(backend: Backend) -> None:
    """Steps reordered (same names): refused, saying no step was added or removed."""
    app = Conveyor(backend)
    app.run(CHAIN, {"id": 2}, workflow_id="order-2")
    with pytest.raises(DefinitionChangedError, match="same steps") as raised:
        app.run(REORDERED, {"id": 2}, workflow_id="order-2")
    assert (raised.value.added_steps, raised.value.removed_steps) == ((), ())


def test_the_same_definition_returns_the_recorded_run(backend: Backend) -> None:
    """The definition a run recorded, built again, gets that run's outcome back (nothing runs twice)."""
    app = Conveyor(backend)
    first = app.run(SEQUENTIAL, {"id": 3}, workflow_id="order-3")
    again = app.run(Flow("orders").then(validate).then(charge).build(), {"id": 3}, workflow_id="order-3")
    assert again.output() == first.output()


def test_the_seed_tutorials_two_order_processing_flows_do_not_share_an_id(tmp_path: Path) -> None:
    """Seed 003 names its sequential and its fork/join flow both "order-processing": the second on the
    first's id raises DefinitionChangedError naming what changed."""
    tutorial = Path(__file__).with_name("test_seed_003_tutorial.py")
    sys.path.insert(0, str(tutorial.parent))
    try:
        import test_seed_003_tutorial as seed
    finally:
        sys.path.remove(str(tutorial.parent))
    namespace: dict[str, Any] = {"__name__": "__main__", "DATABASE": str(tmp_path / "orders.db")}
    seed.run_block(seed.TASKS + seed.SEQUENTIAL, namespace)
    seed.run_block(
        """
from conveyor import SqliteBackend, run_durable_workflow
status = run_durable_workflow(workflow, "order-1001", order_data, SqliteBackend(DATABASE))
""",
        namespace,
    )
    with pytest.raises(DefinitionChangedError) as raised:
        seed.run_block(seed.COMPLETE_EXAMPLE, {"__name__": "__main__", "DATABASE": namespace["DATABASE"]})
    assert raised.value.added_steps == ("check_inventory", "finalize")
    assert raised.value.removed_steps == ("send_confirmation",)
    assert "'order-processing'" in str(raised.value)


def _old_sqlite_database(path: Path) -> None:
    """A SQLite database as conveyor wrote it before definition hashes (schema 2), holding one run."""
    from conveyor.backends.sqlite import _migrations

    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE conveyor_migrations (version INTEGER PRIMARY KEY)")
        for version, script in _migrations():
            if version <= 2:
                connection.executescript(script)
                connection.execute("INSERT INTO conveyor_migrations (version) VALUES (?)", (version,))
        connection.execute(
            "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, "
            "output, correlation_id, step_names, created_at, updated_at) VALUES ('old-1', 'orders', '1', "
            """'completed', '{"id": 1}', '{"id": 1, "valid": true, "charged": true}', 'c', """
            """'["validate", "charge"]', 1.0, 1.0)"""
        )


def test_a_run_recorded_before_definition_hashes_is_still_served_on_sqlite(tmp_path: Path) -> None:
    """After the migration, a run of an old SQLite database (no hash) is returned, not refused."""
    path = tmp_path / "old.db"
    _old_sqlite_database(path)
    with SqliteBackend(path) as backend:
        record = backend.load_run("old-1")
        assert record is not None
        assert record.definition_hash is None
        status = Conveyor(backend).run(SEQUENTIAL, {"id": 1}, workflow_id="old-1")
        assert status.output() == {"id": 1, "valid": True, "charged": True}


def test_a_run_recorded_before_definition_hashes_is_still_served_on_postgres(
    empty_postgres_database: Any,
) -> None:
    """After the migration, a run PostgreSQL recorded under schema 3 (no hash) is returned, not refused."""
    import psycopg

    from conveyor import PostgresBackend
    from conveyor.backends.postgres_sql import apply_migrations

    url = empty_postgres_database.url
    with psycopg.connect(url, autocommit=True) as connection:
        apply_migrations(connection, up_to=3)
        connection.execute(
            "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, "
            "output, correlation_id, step_names, created_at, updated_at) VALUES ('old-1', 'orders', '1', "
            """'completed', '{"id": 1}', '{"id": 1, "valid": true, "charged": true}', 'c', """
            """'["validate", "charge"]', 1.0, 1.0)"""
        )
    with PostgresBackend(url) as backend:
        record = backend.load_run("old-1")
        assert record is not None
        assert record.definition_hash is None
        status = Conveyor(backend).run(SEQUENTIAL, {"id": 1}, workflow_id="old-1")
        assert status.output() == {"id": 1, "valid": True, "charged": True}


@pytest.mark.parametrize(
    ("recorded_by", "worker_has"),
    [(SEQUENTIAL, FORKED), (CHAIN, REORDERED)],
    ids=["forked-worker-on-a-sequential-run", "reordered-worker-on-a-chain-run"],
)
def test_a_worker_drives_only_runs_recorded_by_the_definition_it_has(
    backend: Backend, recorded_by: Workflow, worker_has: Workflow
) -> None:
    """A worker whose "orders" v1 is another definition hands the run back untouched (no step run, no
    crash); a worker that has the definition the run recorded completes it."""
    started = Conveyor(backend).start(recorded_by, {"id": 4}, workflow_id="order-4")
    changed = Conveyor(backend, workflows=[worker_has]).worker(concurrency=1, poll_interval_seconds=0.1)
    thread = threading.Thread(target=changed.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while changed.stats.released == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert changed.stats.released >= 1, changed.stats
        assert changed.stats.errors == 0, changed.stats  # a clean hand-back, not a driver that crashed
        status = started.status()
        assert status.is_running()
        assert [step.attempts for step in status.steps] == [0] * len(recorded_by.step_names)
    finally:
        changed.stop()
        thread.join(timeout=10)
    record = backend.load_run("order-4")
    assert record is not None
    backend.release_run(workflow_id="order-4", epoch=record.epoch, wake_at=None)  # claimable at once
    Conveyor(backend, workflows=[recorded_by]).worker(concurrency=1).run(until_idle=True)
    expected = Conveyor(InMemoryBackend()).run(recorded_by, {"id": 4}).output()
    assert started.status().output() == expected
