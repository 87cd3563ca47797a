"""DBOS Transact (pinned 3.4.0) under the benchmarks: workflows in process, and queue worker processes.

One client: the workflow functions called directly after ``DBOS.launch()`` (SQLite or PostgreSQL system
database). Many: worker processes (``benchmarks.engines.dbos_app``) listening on one queue with
``worker_concurrency=8``, each with its own executor id; the backlog is enqueued with ``DBOSClient`` in one
transaction, so that every worker sees all of it at the same moment.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    STEPS,
    check,
    database_url,
    drop_database,
    latency_result,
    order,
    remove_sqlite,
    scratch_dir,
    started_by,
    throughput_result,
    timed_repetitions,
    wait_for_line,
)
from benchmarks.processes import WorkerGroup, python_command

WARM_UP = 10


def _url(backend: str, folder: Path, name: str) -> str:
    """A fresh system database: DBOS creates it on launch."""
    if backend == "sqlite":
        path = folder / f"{name}.sqlite"
        remove_sqlite(path)
        return f"sqlite:///{path}"
    drop_database(name)
    return database_url(name)


def _call(shape: str, number: int) -> Any:
    from benchmarks.engines import dbos_app

    if shape == "seq":
        return dbos_app.seq_order(order(number))
    return asyncio.run(dbos_app.fj_order(order(number)))


def throughput(backend: str, shape: str, count: int, repetitions: int) -> dict:
    """Workflow functions called one after the other in this process."""
    from dbos import DBOS

    from benchmarks.engines import dbos_app

    with scratch_dir("dbos") as folder:
        dbos_app.start(_url(backend, folder, "conveyor_bench_dbos_client"))
        try:
            for number in range(WARM_UP):
                check("dbos", _call(shape, number), number)

            def run_once(_: int) -> None:
                for number in range(count):
                    _call(shape, number)

            seconds = timed_repetitions(run_once, repetitions)
            return throughput_result(seconds, count, STEPS[shape])
        finally:
            DBOS.destroy()


def _client(url: str) -> Any:
    from dbos import DBOSClient

    return DBOSClient(system_database_url=url)


def _engine(url: str) -> Any:
    import sqlalchemy

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sqlalchemy.create_engine(url)


def _worker(group: WorkerGroup, url: str, executor: str, **env: str) -> Any:
    command = python_command("-m", "benchmarks.engines.dbos_app", url)
    return group.spawn(command, BENCH_EXECUTOR_ID=executor, **env)


def concurrent(backend: str, workers: int, count: int, repetitions: int, shape: str = "seq") -> dict:
    """``count`` workflows enqueued at once (one transaction) to ``workers`` waiting queue workers."""
    from benchmarks.engines import dbos_app

    workflow_name = "seq_order" if shape == "seq" else "fj_order"
    seconds = []
    with scratch_dir("dbos-workers") as folder:
        for repetition in range(repetitions):
            url = _url(backend, folder, "conveyor_bench_dbos_workers")
            group = WorkerGroup(folder / f"rep-{repetition}")
            client = None
            try:
                for worker in range(workers):
                    _worker(group, url, f"w{worker}")
                group.wait_ready(timeout=120)
                client = _client(url)
                options = {"queue_name": dbos_app.QUEUE, "workflow_name": workflow_name}
                warm = client.enqueue(options, order(0))
                check("dbos", warm.get_result(polling_interval_sec=0.01), 0)
                engine = _engine(url)
                started = time.perf_counter()
                with engine.begin() as connection:
                    handles = [
                        client.enqueue_in_transaction(connection, options, order(number))
                        for number in range(count)
                    ]
                for number, handle in enumerate(handles):
                    check("dbos", handle.get_result(polling_interval_sec=0.005), number)
                seconds.append(time.perf_counter() - started)
                engine.dispose()
            finally:
                if client is not None:
                    client.destroy()
                group.stop()
    result = throughput_result(seconds, count, STEPS[shape])
    result["workers"] = workers
    result["concurrency"] = dbos_app.WORKER_CONCURRENCY
    return result


def wakeup(backend: str, samples: int) -> dict:
    """Enqueue-to-first-step latency with one idle queue worker."""
    from benchmarks.engines import dbos_app

    with scratch_dir("dbos-wakeup") as folder:
        url = _url(backend, folder, "conveyor_bench_dbos_wakeup")
        group = WorkerGroup(folder)
        client = None
        try:
            _worker(group, url, "w0")
            group.wait_ready(timeout=120)
            client = _client(url)
            options = {"queue_name": dbos_app.QUEUE, "workflow_name": "latency_probe"}
            latencies = []
            for number in range(-3, samples):
                time.sleep(random.uniform(0.02, 0.04))
                started = time.time()
                output = client.enqueue(options, {"n": number}).get_result(polling_interval_sec=0.005)
                if output["n"] != number:
                    raise AssertionError(f"latency probe {number} returned {output!r}")
                if number >= 0:
                    latencies.append(output["started"] - started)
            return latency_result(latencies, polling_interval_seconds=dbos_app.POLLING_INTERVAL_SECONDS)
        finally:
            if client is not None:
                client.destroy()
            group.stop()


def failover(backend: str, mode: str, samples: int) -> dict:
    """SIGKILL the queue worker mid-step and start it again (same executor id): DBOS recovers on launch.

    Only ``restart`` exists: DBOS hands a dead executor's workflows to another only through Conductor.
    """
    from benchmarks.engines import dbos_app

    if mode != "restart":
        raise NotImplementedError("DBOS recovers another executor's workflows only with DBOS Conductor")
    measured, from_spawn, from_kill = [], [], []
    with scratch_dir("dbos-failover") as folder:
        url = _url(backend, folder, "conveyor_bench_dbos_failover")
        client = None
        try:
            for sample in range(samples):
                log = folder / f"steps-{sample}.log"
                group = WorkerGroup(folder / f"sample-{sample}")
                try:
                    doomed = _worker(group, url, "w0", BENCH_STEP_LOG=str(log), BENCH_SLOW_SECONDS="60")
                    group.wait_ready(timeout=120)
                    client = client or _client(url)
                    label = f"f{sample}"
                    options = {"queue_name": dbos_app.QUEUE, "workflow_name": "failover_order"}
                    handle = client.enqueue(options, order(sample), label)
                    if not wait_for_line(log, started_by(doomed.pid, f"{label}:slow"), 60):
                        raise TimeoutError(f"the worker never started the slow step: {group.tail()}")
                    time.sleep(random.uniform(0, 0.5))
                    killed = time.time()
                    doomed.kill()
                    doomed.wait()
                    spawned = time.time()
                    survivor = _worker(group, url, "w0", BENCH_STEP_LOG=str(log), BENCH_SLOW_SECONDS="0.01")
                    line = wait_for_line(log, started_by(survivor.pid, f"{label}:slow"), 120)
                    if line is None:
                        raise TimeoutError(f"the restarted worker did not resume the run: {group.tail()}")
                    resumed = float(line[3])
                    up = group.up_at(survivor)
                    assert up is not None
                    measured.append(resumed - up)
                    from_spawn.append(resumed - spawned)
                    from_kill.append(resumed - killed)
                    output = handle.get_result(polling_interval_sec=0.01)
                    expected = {**order(sample), "prepared": True, "slow": True, "finished": True}
                    if output != expected:
                        raise AssertionError(f"failover run {label} returned {output!r}")
                finally:
                    group.stop()
        finally:
            if client is not None:
                client.destroy()
    result = latency_result(measured, mode=mode)
    result["from_kill_ms"] = [round(s * 1000, 1) for s in from_kill]
    result["from_spawn_ms"] = [round(s * 1000, 1) for s in from_spawn]
    return result


MEASUREMENTS = {"throughput": throughput, "concurrent": concurrent, "wakeup": wakeup, "failover": failover}
