"""One corrupt run fails alone: a row a worker or a status read cannot decode ends that run, nothing else.

Each case corrupts one column of one run with plain SQL, in a real SQLite file and a real PostgreSQL
database, next to runs that are fine. A real worker then works through them all: the good runs complete,
the worker lives on (and still completes runs started afterwards), the corrupt run's status reads as
failed with a ``CorruptRunError`` naming what is wrong, and the run ends: it is never claimed again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor import Backend, Conveyor, Flow, SqliteBackend, get_workflow_status, task
from conveyor.errors import CorruptRunError

GOOD_RUNS = 4


@task
def first(order: dict) -> dict:
    """The first step: marks the order."""
    return {**order, "first": True}


@task
def second(order: dict) -> str:
    """The second step: the run's output."""
    return f"order {order['id']} done"


FLOW = Flow("corruptible").then(first).then(second).build()


@dataclass(frozen=True)
class Corruption:
    """One way a row can go bad: the SQL doing it on each backend (None: that backend cannot hold it)."""

    sqlite: str | None
    postgres: str | None
    says: str
    """Text the run's error must hold (the column or the value at fault)."""
    claimable: bool = True
    """Whether the run is still one a worker would claim (so it must end in the stored state 'failed')."""
    healed_by_failing: bool = False
    """Whether storing the run's failure overwrites the only bad value (its error, or its timer)."""


def _step_sql(column: str, value: str) -> str:
    return f"UPDATE conveyor_steps SET {column} = {value} WHERE workflow_id = ? AND step_name = 'first'"


def _step_json(index: int, value: str) -> str:
    path = f"'{{first,{index}}}'"
    return f"UPDATE conveyor_runs SET steps = jsonb_set(steps, {path}, '{value}') WHERE workflow_id = %s"


def _run_sql(column: str, value: str, marker: str = "?") -> str:
    return f"UPDATE conveyor_runs SET {column} = {value} WHERE workflow_id = {marker}"


CORRUPTIONS = {
    "unknown step state": Corruption(_step_sql("state", "'bogus'"), _step_json(0, '"bogus"'), "'bogus'"),
    "step result not JSON": Corruption(
        _step_sql("result", "'{not json'"), _step_json(2, '"{not json"'), "result"
    ),
    "step error not JSON": Corruption(_step_sql("error", "'oops'"), _step_json(3, '"oops"'), "error"),
    "step attempts not a number": Corruption(
        _step_sql("attempts", "'many'"), _step_json(1, '"many"'), "attempts"
    ),
    "run input not JSON": Corruption(
        _run_sql("input", "'{not json'"), _run_sql("input", "'{not json'", "%s"), "input"
    ),
    "run error not a failure": Corruption(
        _run_sql("error", """'{"step_name": 1}'"""),
        _run_sql("error", """'{"step_name": 1}'""", "%s"),
        "error",
        healed_by_failing=True,
    ),
    "step names not JSON": Corruption(
        _run_sql("step_names", "'nope'"), _run_sql("step_names", "'nope'", "%s"), "step_names"
    ),
    "recoveries not a number": Corruption(_run_sql("recoveries", "'x'"), None, "recoveries"),
    "wake_at not a number": Corruption(
        _run_sql("wake_at", "'soon'"), None, "wake_at", claimable=False, healed_by_failing=True
    ),
    "steps not an array": Corruption(None, _run_sql("steps", """'{"first": 5}'""", "%s"), "first"),
    "unknown run state": Corruption(
        _run_sql("state", "'bogus'"), _run_sql("state", "'bogus'", "%s"), "'bogus'", claimable=False
    ),
}


@dataclass
class Database:
    """A backend over a real database, and a way to run SQL on that database behind its back."""

    kind: str
    open: Callable[[], Backend]
    execute: Callable[[str, tuple[Any, ...]], None]
    query: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


CASES = [
    pytest.param(kind, case, id=f"{kind}-{case}", marks=[pytest.mark.postgres] if kind == "postgres" else [])
    for kind in ("sqlite", "postgres")
    for case, corruption in CORRUPTIONS.items()
    if getattr(corruption, kind) is not None  # a typed PostgreSQL column cannot hold text, say
]


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A real SQLite file or a real PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        path = tmp_path / "runs.db"

        def execute(sql: str, params: tuple[Any, ...]) -> None:
            with sqlite3.connect(path) as connection:
                connection.execute(sql, params)

        def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as connection:
                return connection.execute(sql, params).fetchall()

        yield Database("sqlite", lambda: SqliteBackend(path), execute, query)
        return
    import psycopg

    from conveyor import PostgresBackend

    url = request.getfixturevalue("postgres_database").url

    def pg_execute(sql: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

    def pg_query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as connection:
            return connection.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]

    yield Database("postgres", lambda: PostgresBackend(url, max_connections=6), pg_execute, pg_query)


def corrupt(database: Database, app: Conveyor, corruption: Corruption, workflow_id: str) -> None:
    """Record ``workflow_id`` as a run half done (its first step completed), then corrupt one column."""
    sql = corruption.sqlite if database.kind == "sqlite" else corruption.postgres
    assert sql is not None
    app.run(FLOW, {"id": workflow_id}, workflow_id=workflow_id)
    database.execute(
        "UPDATE conveyor_runs SET state = 'running', output = NULL, owner = NULL, lease_expires_at = NULL "
        "WHERE workflow_id = ?",
        (workflow_id,),
    )
    database.execute(sql, (workflow_id,))


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize(("database", "case"), CASES, indirect=["database"])
def test_a_corrupt_run_fails_alone_while_the_worker_completes_the_others(
    database: Database, case: str
) -> None:
    """A worker over good runs and one corrupt run: the good ones complete, the worker lives, the corrupt
    run reads as failed with CorruptRunError, and it ends (it is not claimed again)."""
    corruption = CORRUPTIONS[case]
    backend = database.open()
    app = Conveyor(backend, workflows=[FLOW])
    try:
        corrupt(database, app, corruption, "bad")
        good = [f"good-{n}" for n in range(GOOD_RUNS)]
        for workflow_id in good:
            app.start(FLOW, {"id": workflow_id}, workflow_id=workflow_id)
        worker = app.worker(concurrency=2, lease_seconds=5, poll_interval_seconds=0.2)
        died: list[BaseException] = []

        def work() -> None:
            try:
                worker.run()
            except BaseException as exc:
                died.append(exc)
                raise

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: died or all(app.status(w).is_completed() for w in good), "the good runs to complete"
            )
            assert not died, f"the worker died: {died[0]!r}"
            status = get_workflow_status("bad", backend)
            assert status.is_failed(), status.state
            error = status.error()
            assert error is not None
            assert error.error_type == "CorruptRunError"
            assert corruption.says in error.message
            assert "bad" in error.message
            # Still alive: a run started now completes too.
            app.start(FLOW, {"id": "later"}, workflow_id="later")
            wait_until(lambda: died or app.status("later").is_completed(), "a later run to complete")
            assert not died, f"the worker died: {died[0]!r}"
            assert thread.is_alive()
            if corruption.claimable:
                wait_until(
                    lambda: (
                        database.query("SELECT state FROM conveyor_runs WHERE workflow_id = ?", ("bad",))
                        == [("failed",)]
                    ),
                    "the corrupt run to be stored as failed",
                )
            epoch = database.query("SELECT epoch FROM conveyor_runs WHERE workflow_id = ?", ("bad",))
            time.sleep(0.5)  # several claim rounds of an idle worker
            assert database.query("SELECT epoch FROM conveyor_runs WHERE workflow_id = ?", ("bad",)) == epoch
        finally:
            worker.stop()
            thread.join(timeout=10)
    finally:
        app.close()
        backend.close()


@pytest.mark.parametrize(("database", "case"), CASES, indirect=["database"])
def test_status_and_run_of_a_corrupt_run_report_it_failed(database: Database, case: str) -> None:
    """Reading a corrupt run, or running its id again in process, gives its failed status, never a raw
    ValueError; running it stores it failed (when it was a run to drive); retrying it raises
    CorruptRunError."""
    corruption = CORRUPTIONS[case]
    backend = database.open()
    app = Conveyor(backend, workflows=[FLOW])
    try:
        corrupt(database, app, corruption, "bad")
        status = app.status("bad")
        assert status.is_failed()
        assert status.to_dict()["error"]["error_type"] == "CorruptRunError"
        again = app.run(FLOW, {"id": "bad"}, workflow_id="bad")
        assert again.is_failed()
        assert again.error() is not None
        stored = database.query("SELECT state FROM conveyor_runs WHERE workflow_id = ?", ("bad",))
        # A state this conveyor does not know (a newer one's, say) is left as it is; any other run is ended.
        assert stored == [("bogus",) if case == "unknown run state" else ("failed",)]
        if not corruption.healed_by_failing:  # else its row is sound again, and a retry runs it
            with pytest.raises(CorruptRunError, match="bad"):
                app.retry("bad")
    finally:
        app.close()
        backend.close()
