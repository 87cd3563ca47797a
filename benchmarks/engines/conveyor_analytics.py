"""conveyor's analytics at 1,000,000 finished runs on PostgreSQL: ``Conveyor.performance`` and
``Conveyor.bottlenecks`` over windows of an hour, a day (the default), a week and the whole 30 days.

The runs are bulk-loaded once into ``conveyor_bench_analytics`` (``INSERT … SELECT generate_series`` in
batches of 100,000, then ``VACUUM ANALYZE``) and kept for the next measurement, which finds the load's
parameters in a marker table and reuses it. They look as conveyor leaves finished runs: rows of three
workflows (checkout: 4 steps, 60 % of runs; refund: 3, 30 %; signup: 2, 10 %) spread evenly over the 30
days before the load, each with its steps in the row's ``jsonb``, its ``finished_at`` and its step counts;
95 % completed, the rest compensated, cancelled, failed, compensation_failed or dead_lettered; step
durations spread over an order of magnitude around each step's own scale; 2 % of step executions retried
(5 % of charges). The step outcomes are derived from the runs' steps by ``conveyor_executed_steps``, the
function the trigger of schema 14 uses when a run finishes. Each timed call is the public method, through
a real ``PostgresBackend`` (its transaction, the report built); p50 and p95 over ``samples`` calls after
three warm-up calls. The first of those is timed on its own (``first_call_ms``): over a window of whole
hours it writes their rollups (schema 16), once.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import latency_result, recreate_database

DATABASE = "conveyor_bench_analytics"
LOAD_VERSION = 4
"""Bump when the load below changes, so that a kept database is loaded again."""
SPAN_SECONDS = 30 * 86400.0
BATCH = 100_000

_MARKER = """
CREATE TABLE IF NOT EXISTS bench_analytics_load (runs bigint, version integer, schema integer, ended float8)
"""
_STEPS = """
CREATE TEMP TABLE bench_steps (workflow_name text, step_name text, position integer, scale float8,
                               retry_rate float8)
"""
_STEP_ROWS = [
    ("checkout", "validate", 1, 0.02, 0.01),
    ("checkout", "charge", 2, 1.5, 0.05),
    ("checkout", "reserve", 3, 0.2, 0.02),
    ("checkout", "ship", 4, 0.4, 0.02),
    ("refund", "lookup", 1, 0.05, 0.01),
    ("refund", "refund", 2, 1.0, 0.03),
    ("refund", "notify", 3, 0.3, 0.02),
    ("signup", "create", 1, 0.1, 0.01),
    ("signup", "welcome", 2, 0.5, 0.02),
]
_LOAD = """
INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, output, correlation_id,
                           step_names, created_at, updated_at, finished_at, executed_steps, retried_steps,
                           epoch, recoveries, steps)
SELECT 'run-' || g, w.name, '1', o.state, '{"id": ' || g || ', "amount": 100, "customer": "c1"}',
       CASE WHEN o.state = 'completed' THEN '{"id": ' || g || ', "done": true}' END,
       md5(g::text), w.step_names, c.created, c.created + s.total, c.created + s.total, s.executed, s.retried,
       2, 0, s.steps
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
 CROSS JOIN LATERAL (
    SELECT CASE WHEN g %% 10 < 6 THEN 'checkout' WHEN g %% 10 < 9 THEN 'refund' ELSE 'signup' END AS name,
           CASE WHEN g %% 10 < 6 THEN '["validate", "charge", "reserve", "ship"]'
                WHEN g %% 10 < 9 THEN '["lookup", "refund", "notify"]'
                ELSE '["create", "welcome"]' END AS step_names,
           random() AS draw) AS w
 CROSS JOIN LATERAL (
    SELECT CASE WHEN w.draw < 0.950 THEN 'completed' WHEN w.draw < 0.970 THEN 'compensated'
                WHEN w.draw < 0.980 THEN 'cancelled' WHEN w.draw < 0.995 THEN 'failed'
                WHEN w.draw < 0.998 THEN 'compensation_failed' ELSE 'dead_lettered' END AS state) AS o
 CROSS JOIN LATERAL (SELECT %(start)s::float8 + g * %(spacing)s::float8 AS created) AS c
 CROSS JOIN LATERAL (
    SELECT jsonb_object_agg(d.step_name, jsonb_build_array(
               CASE WHEN d.last AND o.state IN ('failed', 'compensated', 'compensation_failed') THEN 'failed'
                    WHEN o.state = 'compensated' THEN 'compensated' ELSE 'completed' END,
               d.attempts,
               CASE WHEN NOT (d.last AND o.state IN ('failed', 'compensated', 'compensation_failed'))
                    THEN '{"ok": true}' END,
               NULL, NULL,
               c.created + d.offset_seconds, c.created + d.offset_seconds + d.duration, d.position, 0, NULL,
               NULL)) AS steps,
           sum(d.duration) AS total, count(*) AS executed, count(*) FILTER (WHERE d.attempts > 1) AS retried
      FROM (SELECT b.step_name, b.position, b.duration, b.attempts,
                   sum(b.duration) OVER (ORDER BY b.position) - b.duration AS offset_seconds,
                   b.position = max(b.position) OVER () AS last
              FROM (SELECT t.step_name, t.position, t.scale * exp(random() * 2.3 - 1.15) AS duration,
                           1 + (random() < t.retry_rate)::integer AS attempts
                      FROM bench_steps AS t
                     WHERE t.workflow_name = w.name) AS b) AS d) AS s
"""
_OUTCOMES = """
INSERT INTO conveyor_step_outcomes (workflow_name, step_name, finished_at, workflow_id, state, attempts,
                                    duration)
SELECT r.workflow_name, s.step_name, r.finished_at, r.workflow_id, s.state, s.attempts, s.duration
  FROM conveyor_runs AS r, conveyor_executed_steps(r.steps) AS s
 WHERE r.finished_at IS NOT NULL
"""


def _loaded(url: str, runs: int) -> float | None:
    """When the kept database's runs end, if it holds this load at this schema; else None."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
            found = connection.execute(
                "SELECT runs, version, schema, ended FROM bench_analytics_load"
            ).fetchone()
            schema = connection.execute("SELECT max(version) FROM conveyor_migrations").fetchone()
    except psycopg.Error:
        return None
    if found is None or schema is None or tuple(found[:3]) != (runs, LOAD_VERSION, schema[0]):
        return None
    return float(found[3])


def load(runs: int) -> tuple[str, float, float]:
    """The database URL (loading it first unless a kept one matches), when its runs end, seconds loading."""
    import psycopg

    from benchmarks.common import database_url
    from conveyor.backends.postgres import PostgresBackend

    url = database_url(DATABASE)
    ended = _loaded(url, runs)
    if ended is not None:
        return url, ended, 0.0
    began = time.perf_counter()
    url = recreate_database(DATABASE)
    with PostgresBackend(url) as backend:
        backend.migrate()
    ended = time.time()
    spacing = SPAN_SECONDS / runs
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(_STEPS)
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO bench_steps VALUES (%s, %s, %s, %s, %s)", _STEP_ROWS)
        connection.execute("SELECT setseed(0.25)")
        for first in range(1, runs + 1, BATCH):
            bounds = {"first": first, "last": min(runs, first + BATCH - 1)}
            connection.execute(_LOAD, {**bounds, "start": ended - SPAN_SECONDS - 60, "spacing": spacing})
        connection.execute(_OUTCOMES)
        connection.execute("VACUUM ANALYZE conveyor_runs")
        connection.execute("VACUUM ANALYZE conveyor_step_outcomes")
        connection.execute("CHECKPOINT")
        schema = connection.execute("SELECT max(version) FROM conveyor_migrations").fetchone()
        connection.execute(_MARKER)
        connection.execute(
            "INSERT INTO bench_analytics_load VALUES (%s, %s, %s, %s)",
            (runs, LOAD_VERSION, schema[0] if schema else 0, ended),
        )
    return url, ended, time.perf_counter() - began


def analytics(query: str, window_hours: float, runs: int = 1_000_000, samples: int = 20) -> dict[str, Any]:
    """Time ``Conveyor.<query>`` (performance or bottlenecks) over the last ``window_hours`` of ``runs``."""
    from conveyor import Conveyor
    from conveyor.backends.postgres import PostgresBackend

    url, ended, load_seconds = load(runs)
    since, until = ended - window_hours * 3600, ended
    seconds = []
    with PostgresBackend(url) as backend:
        app = Conveyor(backend)
        call = app.performance if query == "performance" else app.bottlenecks
        began = time.perf_counter()  # the first call writes the window's hourly rollups (PostgreSQL 16)
        report: Any = call(since=since, until=until)
        first_seconds = time.perf_counter() - began
        for _ in range(2):
            report = call(since=since, until=until)
        for _ in range(samples):
            began = time.perf_counter()
            report = call(since=since, until=until)
            seconds.append(time.perf_counter() - began)
        in_window = app.performance(since=since, until=until).finished
    if query == "performance":
        assert report.finished == in_window, report
        assert len(report.workflows) == 3, report
        shape = {"workflows": len(report.workflows), "health_score": report.health_score}
    else:
        assert len(report.steps) == 9, report
        assert sum(step.executions for step in report.of_workflow("signup")) > 0, report
        shape = {"steps": len(report.steps), "top": report.steps[0].step}
    return latency_result(
        seconds,
        runs=runs,
        runs_in_window=in_window,
        load_seconds=round(load_seconds, 1),
        first_call_ms=round(first_seconds * 1000, 1),
        **shape,
    )


# -- what finishing a run costs: the checkpoint that ends a run, with the analytics' trigger and without ----

_RUNNING = """
INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id,
                           step_names, created_at, updated_at, epoch, recoveries, owner)
VALUES ({marks})
"""


def _checkpoints(workflow_id: str, at: float) -> tuple[Any, Any]:
    """The two last checkpoints of a four-step run: its third step (the run runs on), its fourth (it ends)."""
    from conveyor.core.records import Checkpoint, StepRecord
    from conveyor.core.states import RunState, StepState

    def done(name: str, order: int) -> StepRecord:
        return StepRecord(name, StepState.COMPLETED, 1, '{"ok": true}', None, None, at, at + 0.001, order)

    step = Checkpoint(workflow_id, 1, (done("inventory", 3),), RunState.RUNNING, None, None, None, at)
    end = Checkpoint(
        workflow_id, 1, (done("finalize", 4),), RunState.COMPLETED, '{"done": true}', None, None, at
    )
    return step, end


def finish_cost(backend: str, runs: int = 500, rounds: int = 6) -> dict[str, Any]:
    """The checkpoint that finishes a four-step run and the one before it (a step's), timed one by one with
    the trigger that records the finished run (SQLite 13, PostgreSQL 14) and without it, in alternating
    rounds of ``runs`` runs on one database (after a round that warms it up). The difference is what the
    analytics add to a run's hot path.
    """
    import orjson

    from benchmarks.common import remove_sqlite, scratch_dir
    from conveyor.core.analytics import AnalyticsQuery

    steps = orjson.dumps(["validate", "charge", "inventory", "finalize"]).decode()
    timings: dict[tuple[bool, str], list[float]] = {}
    with scratch_dir("finish") as folder:
        if backend == "postgres":
            from conveyor.backends.postgres import PostgresBackend

            url = recreate_database("conveyor_bench_finish")
            store: Any = PostgresBackend(url)
            store.migrate()
            marks = ", ".join(["%s"] * 12)

            def trigger(on: bool) -> None:
                import psycopg

                with psycopg.connect(url, autocommit=True) as connection:
                    action = "ENABLE" if on else "DISABLE"
                    statement = f"ALTER TABLE conveyor_runs {action} TRIGGER conveyor_run_finished"
                    connection.execute(statement.encode())

            def insert(rows: list[tuple[Any, ...]]) -> None:
                import psycopg

                with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
                    cursor.executemany(_RUNNING.format(marks=marks).encode(), rows)

        else:
            from conveyor.backends import sqlite as sqlite_module
            from conveyor.backends.sqlite import SqliteBackend

            path = folder / "finish.db"
            store = SqliteBackend(path)
            script = dict(sqlite_module._migrations())[13]
            create = next(s for s in sqlite_module._statements(script) if "CREATE TRIGGER" in s)
            marks = ", ".join(["?"] * 12)

            def trigger(on: bool) -> None:
                with store._lock:
                    store._connection.execute(create if on else "DROP TRIGGER conveyor_run_finished")

            def insert(rows: list[tuple[Any, ...]]) -> None:
                with store._lock:
                    store._connection.execute("BEGIN")
                    store._connection.executemany(_RUNNING.format(marks=marks), rows)
                    store._connection.execute("COMMIT")

        try:
            for round_number in range(rounds + 1):  # round 0 warms the caches up, and is not counted
                on = round_number % 2 == 0
                trigger(on)
                now = time.time()
                ids = [f"r{round_number}-{number}" for number in range(runs)]
                insert([(i, "seq", "1", "running", "{}", i, steps, now, now, 1, 0, "w") for i in ids])
                for workflow_id in ids:
                    step, end = _checkpoints(workflow_id, time.time())
                    for kind, checkpoint in (("step", step), ("finish", end)):
                        began = time.perf_counter()
                        store.record_checkpoint(checkpoint)
                        if round_number:
                            timings.setdefault((on, kind), []).append(time.perf_counter() - began)
                if not on:
                    trigger(True)
            finished = store.run_figures(AnalyticsQuery(0, 1e12))
        finally:
            store.close()
            if backend != "postgres":
                remove_sqlite(folder / "finish.db")

    def p50_us(on: bool, kind: str) -> float:
        ordered = sorted(timings[(on, kind)])
        return ordered[len(ordered) // 2] * 1e6

    with_finish, without_finish = p50_us(True, "finish"), p50_us(False, "finish")
    recorded = sum(found.finished for found in finished)
    assert recorded == runs * (rounds // 2 + 1), recorded  # the runs finished with the trigger on, alone
    return {
        "kind": "latency",
        "value": with_finish / 1000,
        "unit": "ms",
        "p95_ms": sorted(timings[(True, "finish")])[int(0.95 * len(timings[(True, "finish")]))] * 1000,
        "count": len(timings[(True, "finish")]),
        "finish_with_us": with_finish,
        "finish_without_us": without_finish,
        "step_with_us": p50_us(True, "step"),
        "step_without_us": p50_us(False, "step"),
        "overhead_us": with_finish - without_finish,
        "runs_recorded": recorded,
    }


MEASUREMENTS = {"analytics": analytics, "finish_cost": finish_cost}
