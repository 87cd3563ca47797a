"""A worker with nothing to claim asks when a run next becomes claimable: the answer must not read the runs
that sleep or wait for a signal (issue 11: 100,000 of them must leave a claim as fast as an empty queue).

Measured in ``make bench`` (the ``waiting`` group); here, the plans: no scan of ``conveyor_runs``, and on
PostgreSQL, the rows a real execution touched, with thousands of waiting runs in the table.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from conveyor.backends import PostgresBackend, SqliteBackend
from conveyor.backends.postgres_sql import queries
from conveyor.backends.sqlite import _NEXT_WAKE
from conveyor.core.waits import WAIT_FOREVER
from postgres_support import PostgresDatabase

WAITING = 5000
NOW = time.time()


def waiting_rows() -> list[tuple[Any, ...]]:
    """Half the runs wait for a signal (no timeout), half sleep for a day or more; none is held."""
    steps = orjson.dumps(["a", "b"]).decode()
    return [
        (
            f"wait-{n}",
            "flow",
            "1",
            "running",
            "{}",
            "c",
            steps,
            NOW,
            NOW,
            1,
            0,
            WAIT_FOREVER if n % 2 else NOW + 86400 + n,
        )
        for n in range(WAITING)
    ]


INSERT = (
    "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id, "
    "step_names, created_at, updated_at, epoch, recoveries, wake_at) VALUES ({})"
)


def test_sqlite_next_wake_reads_neither_the_waiting_runs_nor_the_table(tmp_path: Path) -> None:
    """The plan walks the timer index (stopping at the first) and the index of held runs; it never scans."""
    path = tmp_path / "waiting.db"
    backend = SqliteBackend(path)
    with sqlite3.connect(path) as connection:
        connection.executemany(INSERT.format(", ".join("?" * 12)), waiting_rows())
        connection.execute("ANALYZE")
    assert backend.next_wake_at(workflow_names={"flow"}, exclude={"x"}) == NOW + 86400
    query = _NEXT_WAKE.format(filters=" AND +workflow_id NOT IN (?) AND +workflow_name IN (?)")
    plan = [row[3] for row in backend._connection.execute("EXPLAIN QUERY PLAN " + query, ["x", "flow"] * 2)]
    backend.close()
    assert not [step for step in plan if step.startswith("SCAN conveyor_runs")], plan
    assert any("USING INDEX conveyor_runs_ready" in step for step in plan), plan
    assert any("USING INDEX conveyor_runs_held" in step for step in plan), plan


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the executed plan took from conveyor_runs, kept or filtered out, over all its nodes."""
    own = 0
    if plan.get("Relation Name") == "conveyor_runs":
        loops = plan.get("Actual Loops", 1)
        own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.postgres
def test_postgres_next_wake_reads_a_handful_of_rows_among_thousands_waiting(
    postgres_database: PostgresDatabase,
) -> None:
    """Executed for real with 5,000 waiting runs (and statistics), the query reads at most a few rows."""
    backend = PostgresBackend(postgres_database.url)
    with psycopg.connect(postgres_database.url, autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.executemany(INSERT.format(", ".join(["%s"] * 12)), waiting_rows())
        connection.execute("ANALYZE conveyor_runs")
        assert backend.next_wake_at(workflow_names={"flow"}, exclude={"x"}) == NOW + 86400
        params = {"workflow_names": ["flow"], "exclude": ["x"]}
        explained = connection.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries()["next_wake_at"], params
        ).fetchone()
    backend.close()
    assert explained is not None
    plan = explained[0] if isinstance(explained[0], list) else json.loads(explained[0])
    assert _rows_read(plan[0]["Plan"]) <= 5, json.dumps(plan, indent=1)
