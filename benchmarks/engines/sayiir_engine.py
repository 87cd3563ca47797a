"""Sayiir (pinned 1.0.0) under the benchmarks: ``@task``, ``Flow`` and ``run_durable_workflow``.

In memory with ``InMemoryBackend``, on PostgreSQL with ``PostgresBackend``; the concurrent case runs
workflows on threads of one process, each calling ``run_durable_workflow`` (Sayiir's engine is Rust and
releases the GIL while it checkpoints). Sayiir has no SQLite backend.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.common import (
    STEPS,
    bare_workflow,
    charge_body,
    check,
    finalize_body,
    inventory_body,
    join_body,
    median,
    order,
    recreate_database,
    throughput_result,
    timed_repetitions,
    validate_body,
)

WARM_UP = 20


def _workflows() -> dict[str, Any]:
    from sayiir import Flow, task

    @task
    def validate(value: dict) -> dict:
        return validate_body(value)

    @task
    def charge(value: dict) -> dict:
        return charge_body(value)

    @task
    def inventory(value: dict) -> dict:
        return inventory_body(value)

    @task
    def finalize(value: dict) -> dict:
        return finalize_body(value)

    @task
    def join(results: dict) -> dict:
        return join_body(results["charge"], results["inventory"])

    return {
        "seq": Flow("bench_seq").then(validate).then(charge).then(inventory).then(finalize).build(),
        "fj": Flow("bench_fj").then(validate).fork().branch(charge).branch(inventory).join(join).build(),
    }


def _backend(backend: str) -> Any:
    from sayiir import InMemoryBackend, PostgresBackend

    if backend == "memory":
        return InMemoryBackend()
    return PostgresBackend(recreate_database("conveyor_bench_sayiir"), max_connections=16)


def _run(workflow: Any, workflow_id: str, number: int, backend: Any) -> Any:
    from sayiir import run_durable_workflow

    status = run_durable_workflow(workflow, workflow_id, order(number), backend=backend)
    return status


def throughput(backend: str, shape: str, count: int, repetitions: int) -> dict:
    """Sequential ``run_durable_workflow`` calls on one thread."""
    workflow = _workflows()[shape]
    shared = _backend(backend)
    for number in range(WARM_UP):
        status = _run(workflow, f"warm-{number}", number, shared)
        assert status.is_completed(), status
        check("sayiir", status.output, number)
    backends = [shared if backend != "memory" else _backend(backend) for _ in range(repetitions)]

    def run_once(repetition: int) -> None:
        target = backends[repetition]
        for number in range(count):
            _run(workflow, f"r{repetition}-{number}", number, target)

    seconds = timed_repetitions(run_once, repetitions)
    body = None
    if backend == "memory":
        inputs = [order(number) for number in range(count)]
        body = median(timed_repetitions(lambda _: [bare_workflow(shape, i) for i in inputs], 5))
    return throughput_result(seconds, count, STEPS[shape], body)


def concurrent(backend: str, threads: int, count: int, repetitions: int, shape: str = "seq") -> dict:
    """``count`` workflows on ``threads`` threads of this process, each running its share one by one."""
    workflow = _workflows()[shape]
    seconds = []
    for repetition in range(repetitions):
        target = _backend(backend)
        check("sayiir", _run(workflow, f"warm-{repetition}", 7, target).output, 7)

        def share(offset: int, repetition: int = repetition, target: Any = target) -> None:
            for number in range(offset, count, threads):
                status = _run(workflow, f"t{repetition}-{number}", number, target)
                check("sayiir", status.output, number)

        def run_once(_: int) -> None:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(share, range(threads)))

        seconds.extend(timed_repetitions(run_once, 1))
    result = throughput_result(seconds, count, STEPS[shape])
    result["threads"] = threads
    return result


MEASUREMENTS = {"throughput": throughput, "concurrent": concurrent}
