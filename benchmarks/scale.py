"""The scaling check (``--scale``): starting, claiming and reading a run at 1,000,000 runs and at 1,000.

Finished runs (four completed steps each, in the run's row as schema 3 keeps them) are bulk-loaded into
a dedicated database with ``INSERT … SELECT generate_series``, first 1,000 and then the rest; at each size
the three operations are timed one at a time: ``start_workflow`` (one new pending run), ``claim_runs`` (one
ready run) and ``get_workflow_status`` (of a random finished run). Target: p50 at the large size within
20 % of the small.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from benchmarks.common import expected, order, recreate_database

BATCH = 100_000
SAMPLES = 500
_RUNS = """
INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, output, correlation_id,
                           step_names, created_at, updated_at, epoch, recoveries, steps)
SELECT 'done-' || g, %(name)s, %(version)s, 'completed',
       '{"id": ' || g || ', "amount": 100, "customer": "c1"}',
       '{"id": ' || g || ', "done": true, "payment_id": "pay-' || g || '", "in_stock": true}',
       md5(g::text), %(step_names)s, %(at)s::float8 + g * 0.001, %(at)s::float8 + g * 0.001 + 0.004, 2, 0,
       (SELECT jsonb_object_agg(s.name, jsonb_build_array(
                   'completed', 1, '{"id": ' || g || ', "step": "' || s.name || '"}', NULL, NULL,
                   %(at)s::float8 + g * 0.001 + s.position * 0.001,
                   %(at)s::float8 + g * 0.001 + s.position * 0.001 + 0.0005, s.position, 0, NULL))
          FROM (VALUES ('validate', 1), ('charge', 2), ('inventory', 3), ('finalize', 4))
               AS s (name, position))
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""


def _load(url: str, first: int, last: int, workflow: Any) -> None:
    import psycopg

    params = {
        "name": workflow.name,
        "version": workflow.version,
        "step_names": orjson.dumps(list(workflow.step_names)).decode(),
        "at": time.time() - 86400,
    }
    with psycopg.connect(url, autocommit=True) as connection:
        for start in range(first, last + 1, BATCH):
            bounds = {"first": start, "last": min(last, start + BATCH - 1)}
            with connection.transaction():
                connection.execute(_RUNS, {**params, **bounds})
        connection.execute("VACUUM ANALYZE conveyor_runs")
        # Write the load back now, so that its checkpoint does not land on the timed commits.
        connection.execute("CHECKPOINT")


def _settle(url: str, label: str) -> None:
    """End the runs one phase started and claimed, so that the next phase sees the same live set."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "UPDATE conveyor_runs SET state = 'completed', owner = NULL, lease_expires_at = NULL "
            "WHERE workflow_id LIKE %s",
            (f"{label}-start-%",),
        )


def _time(operation: Any, samples: int) -> float:
    seconds = []
    for sample in range(samples):
        started = time.perf_counter()
        operation(sample)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return seconds[len(seconds) // 2] * 1000


def _operations(backend: Any, workflow: Any, size: int, label: str) -> dict[str, float]:
    from conveyor import get_workflow_status, start_workflow

    def start(sample: int) -> None:
        start_workflow(workflow, f"{label}-start-{sample}", order(sample), backend)

    def claim(sample: int) -> None:
        claimed = backend.claim_runs(
            owner="scale", limit=1, lease_seconds=300, max_recoveries=5, workflow_names={workflow.name}
        )
        assert len(claimed) == 1, claimed

    def status(sample: int) -> None:
        number = random.randint(1, size)
        found = get_workflow_status(f"done-{number}", backend, workflow)
        assert found.is_completed(), found.state
        assert found.output() == expected(number), found.output()

    for sample in range(20):  # warm caches, then check what the first read returns
        status(sample)
    return {
        "start_workflow": _time(start, SAMPLES),
        "claim_runs": _time(claim, SAMPLES),
        "get_workflow_status": _time(status, SAMPLES),
    }


def scale(runs: int = 1_000_000, small: int = 1000) -> dict:
    """Time the three operations at ``small`` and at ``runs`` finished runs."""
    import psycopg

    from benchmarks.engines.conveyor_app import SEQ
    from conveyor.backends.postgres import PostgresBackend

    url = recreate_database("conveyor_bench_scale")
    backend = PostgresBackend(url)
    try:
        backend.migrate()
        _load(url, 1, small, SEQ)
        at_small = _operations(backend, SEQ, small, "small")
        _settle(url, "small")
        loading = time.perf_counter()
        _load(url, small + 1, runs, SEQ)
        load_seconds = time.perf_counter() - loading
        at_large = _operations(backend, SEQ, runs, "large")
        with psycopg.connect(url, autocommit=True) as connection:
            size = connection.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()
    finally:
        backend.close()
    return {
        "kind": "scale",
        "runs": runs,
        "small": small,
        "load_seconds": load_seconds,
        "database_size": size[0] if size else "?",
        "operations": {name: {"small_ms": at_small[name], "large_ms": at_large[name]} for name in at_small},
    }


MEASUREMENTS = {"scale": scale}
