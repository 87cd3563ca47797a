"""The scaling check (``--scale``): starting, claiming and reading a run at 1,000,000 runs and at 1,000.

Finished runs (four completed steps each, in the run's row as schema 3 keeps them) are bulk-loaded with
``INSERT … SELECT generate_series`` as pending runs, then finished with one ``UPDATE`` per batch (the life
conveyor gives them): 1,000 into one database and 1,000,000 into another. Three operations are timed one at
a time, in rounds alternating between the two databases: ``start_workflow`` (one new pending run),
``claim_runs`` (one ready run) and ``get_workflow_status`` (of a random finished run). Target: p50 at the
large size within 20 % of the small.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from benchmarks.common import expected, order, recreate_database

BATCH = 100_000
SAMPLES = 500
ROUNDS = 5
_SUBMIT = """
INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id,
                           step_names, created_at, updated_at, epoch, recoveries)
SELECT 'done-' || g, %(name)s, %(version)s, 'pending', '{"id": ' || g || ', "amount": 100, "customer": "c1"}',
       md5(g::text), %(step_names)s, %(at)s::float8 + g * 0.001, %(at)s::float8 + g * 0.001, 0, 0
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""
_FINISH = """
UPDATE conveyor_runs
   SET state = 'completed', epoch = 2, updated_at = created_at + 0.004,
       output = '{"id": ' || g || ', "done": true, "payment_id": "pay-' || g || '", "in_stock": true}',
       steps = (SELECT jsonb_object_agg(s.name, jsonb_build_array(
                           'completed', 1, '{"id": ' || g || ', "step": "' || s.name || '"}', NULL, NULL,
                           created_at + s.position * 0.001, created_at + s.position * 0.001 + 0.0005,
                           s.position, 0, NULL))
                  FROM (VALUES ('validate', 1), ('charge', 2), ('inventory', 3), ('finalize', 4))
                       AS s (name, position))
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
 WHERE workflow_id = 'done-' || g
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
            # Born as conveyor makes them: small pending rows, which then grow as they finish (the grown
            # rows do not fit where they were born, so the pages they leave become free space for new runs,
            # as in a live database; rows bulk-inserted at full size would leave a sliver of space on every
            # page instead, and scatter each new run onto its own cold page).
            with connection.transaction():
                connection.execute(_SUBMIT, {**params, **bounds})
                connection.execute(_FINISH, bounds)
            connection.execute("VACUUM conveyor_runs")
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


def _time(operation: Any, samples: int, label: str, into: list[float]) -> None:
    for sample in range(samples):
        started = time.perf_counter()
        operation(sample, label)
        into.append(time.perf_counter() - started)


def _operations(backend: Any, workflow: Any, size: int) -> dict[str, Any]:
    """The three timed operations on ``backend``, whose database holds ``size`` finished runs."""
    from conveyor import get_workflow_status, start_workflow

    def start(sample: int, label: str) -> None:
        start_workflow(workflow, f"{label}-start-{sample}", order(sample), backend)

    def claim(sample: int, label: str) -> None:
        claimed = backend.claim_runs(
            owner="scale", limit=1, lease_seconds=300, max_recoveries=5, workflow_names={workflow.name}
        )
        assert len(claimed) == 1, claimed

    def status(sample: int, label: str) -> None:
        number = random.randint(1, size)
        found = get_workflow_status(f"done-{number}", backend, workflow)
        assert found.is_completed(), found.state
        assert found.output() == expected(number), found.output()

    return {"start_workflow": start, "claim_runs": claim, "get_workflow_status": status}


def _p50_ms(seconds: list[float]) -> float:
    return sorted(seconds)[len(seconds) // 2] * 1000


def scale(runs: int = 1_000_000, small: int = 1000) -> dict:
    """Time the three operations at ``small`` and at ``runs`` finished runs.

    Each size has a database of its own, and the two are measured in alternating rounds, so that a change
    in the machine's state (another process, the CPU's clock, the server's background writes) falls on both.
    """
    import psycopg

    from benchmarks.engines.conveyor_app import SEQ
    from conveyor.backends.postgres import PostgresBackend

    sizes = {"small": small, "large": runs}
    urls = {name: recreate_database(f"conveyor_bench_scale_{name}") for name in sizes}
    backends = {name: PostgresBackend(url) for name, url in urls.items()}
    try:
        load_seconds = 0.0  # of the large size, the one worth reporting
        for name, backend in backends.items():
            backend.migrate()
            loading = time.perf_counter()
            _load(urls[name], 1, sizes[name], SEQ)
            if name == "large":
                load_seconds = time.perf_counter() - loading
        operations = {name: _operations(backends[name], SEQ, sizes[name]) for name in sizes}
        samples: dict[str, dict[str, list[float]]] = {name: {} for name in sizes}
        for name in sizes:  # warm the caches, and check what the first reads return
            for sample in range(20):
                operations[name]["get_workflow_status"](sample, "warm")
        for round_number in range(ROUNDS):
            for name in sizes:
                label = f"{name}{round_number}"
                for operation, call in operations[name].items():
                    _time(call, SAMPLES // ROUNDS, label, samples[name].setdefault(operation, []))
                _settle(urls[name], label)
        with psycopg.connect(urls["large"], autocommit=True) as connection:
            size = connection.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()
    finally:
        for backend in backends.values():
            backend.close()
    return {
        "kind": "scale",
        "runs": runs,
        "small": small,
        "load_seconds": load_seconds,
        "database_size": size[0] if size else "?",
        "operations": {
            operation: {
                "small_ms": _p50_ms(samples["small"][operation]),
                "large_ms": _p50_ms(samples["large"][operation]),
            }
            for operation in samples["small"]
        },
    }


MEASUREMENTS = {"scale": scale}
