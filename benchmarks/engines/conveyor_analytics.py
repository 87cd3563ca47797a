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
three warm-up calls.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import latency_result, recreate_database

DATABASE = "conveyor_bench_analytics"
LOAD_VERSION = 3
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
        for _ in range(3):
            report: Any = call(since=since, until=until)
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
        seconds, runs=runs, runs_in_window=in_window, load_seconds=round(load_seconds, 1), **shape
    )


MEASUREMENTS = {"analytics": analytics}
