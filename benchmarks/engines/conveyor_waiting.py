"""conveyor with runs that wait: how fast a signal resumes one, and what 100,000 waiting runs cost a worker.

``signal_wakeup``: one idle worker; a run waits for a signal (handed back, no slot held); the time from
``send_signal`` until the step after the wait starts, p50 (target on PostgreSQL: under 5 ms).

``waiting_runs``: two databases, one empty and one holding ``waiting`` runs that sleep or wait for a signal.
Each sample is what a worker does when a run arrives: a claim that takes it, a claim that finds nothing
more, and the question of when the next run becomes claimable by itself; samples alternate between the
two databases. Alongside: the resident memory of an idle worker process on each. Target: the claim cycle
at ``waiting`` runs within 20 % of the empty queue's (no scan of waiting runs), and memory flat.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import latency_result, median, percentile, recreate_database, scratch_dir
from benchmarks.processes import WorkerGroup, python_command

APP = "benchmarks.engines.conveyor_app"
WAIT_FOREVER = 253402300799.0  # conveyor.core.waits.WAIT_FOREVER: a signal wait without a timeout
_INSERT = (
    "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id, "
    "step_names, created_at, updated_at, epoch, recoveries, wake_at) VALUES ({})"
)
_PG_LOAD = """
INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id,
                           step_names, created_at, updated_at, epoch, recoveries, wake_at)
SELECT 'waiting-' || g, %(name)s, %(version)s, 'running', '{"n": ' || g || '}', md5(g::text), %(steps)s,
       %(at)s, %(at)s, 1, 0, CASE WHEN g %% 2 = 0 THEN %(forever)s ELSE %(at)s + 86400 + g END
  FROM generate_series(1, %(count)s) AS g
"""


def _worker_command(url: str) -> list[str]:
    return python_command(
        "-m", "conveyor.cli", "worker", "--backend", url, "--app", APP, "--concurrency", "8"
    )


def _open(backend: str, folder: Path, name: str) -> tuple[Any, str]:
    """A new, migrated database: the backend object and its URL."""
    from conveyor import PostgresBackend, SqliteBackend

    if backend == "postgres":
        url = recreate_database(f"conveyor_bench_{name}")
        client: Any = PostgresBackend(url)
        client.migrate()
        return client, url
    path = folder / f"{name}.db"
    return SqliteBackend(path), f"sqlite:///{path}"


def _load_waiting(backend: str, url: str, count: int) -> None:
    """``count`` runs of the sequential workflow, half waiting for a signal and half asleep for a day."""
    from benchmarks.engines.conveyor_app import SEQ

    at = time.time()
    steps = orjson.dumps(list(SEQ.step_names)).decode()
    if backend == "postgres":
        import psycopg

        params = {"name": SEQ.name, "version": SEQ.version, "steps": steps, "at": at, "count": count}
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(_PG_LOAD, {**params, "forever": WAIT_FOREVER})
            connection.execute("ANALYZE conveyor_runs")
        return
    fixed = (SEQ.name, SEQ.version, "running", "{}", "c", steps, at, at, 1, 0)
    rows = [(f"waiting-{n}", *fixed, WAIT_FOREVER if n % 2 else at + 86400 + n) for n in range(count)]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.executemany(_INSERT.format(", ".join("?" * 12)), rows)
        connection.execute("ANALYZE")


def _claim_cycle(client: Any, number: int) -> float:
    """Start a run (not timed), then time a worker's cycle: claim it, claim again, ask for the next wake."""
    from benchmarks.engines.conveyor_app import SEQ
    from conveyor import start_workflow
    from conveyor.core.records import Checkpoint
    from conveyor.core.states import RunState

    workflow_id = f"arrival-{number}"
    start_workflow(SEQ, workflow_id, {"id": number}, client)
    names = {SEQ.name}
    started = time.perf_counter()
    claimed = client.claim_runs(
        owner="bench", limit=8, lease_seconds=30, max_recoveries=5, workflow_names=names
    )
    client.claim_runs(owner="bench", limit=7, lease_seconds=30, max_recoveries=5, workflow_names=names)
    client.next_wake_at(workflow_names=names)
    seconds = time.perf_counter() - started
    if [run.workflow_id for run in claimed] != [workflow_id]:
        raise AssertionError(f"the claim took {[run.workflow_id for run in claimed]}, not {workflow_id}")
    [run] = claimed  # finished at once, so that held runs do not pile up sample after sample
    client.record_checkpoint(
        Checkpoint(workflow_id, run.epoch, (), RunState.COMPLETED, "null", None, None, time.time())
    )
    return seconds


def _idle_worker_rss_mb(url: str, folder: Path) -> float:
    """The resident memory of a worker process after two seconds idle on the database at ``url``."""
    group = WorkerGroup(folder)
    try:
        worker = group.spawn(_worker_command(url))
        group.wait_ready()
        time.sleep(2.0)
        status = Path(f"/proc/{worker.pid}/status").read_text()
        kilobytes = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kilobytes / 1024
    finally:
        group.stop()


def waiting_runs(backend: str, waiting: int, samples: int) -> dict:
    """The claim cycle and an idle worker's memory with ``waiting`` runs waiting, against an empty queue."""
    with scratch_dir("conveyor-waiting") as folder:
        empty, empty_url = _open(backend, folder, "waiting_empty")
        loaded, loaded_url = _open(backend, folder, "waiting_loaded")
        try:
            _load_waiting(backend, loaded_url, waiting)
            for number in range(-20, 0):  # warm-up, not counted
                _claim_cycle(empty, number)
                _claim_cycle(loaded, number)
            at_empty, at_loaded = [], []
            for number in range(samples):
                at_empty.append(_claim_cycle(empty, number))
                at_loaded.append(_claim_cycle(loaded, number))
            rss_empty = _idle_worker_rss_mb(empty_url, folder / "rss-empty")
            rss_loaded = _idle_worker_rss_mb(loaded_url, folder / "rss-loaded")
        finally:
            empty.close()
            loaded.close()
    result = latency_result(at_loaded, waiting=waiting)
    result["empty_ms"] = median(at_empty) * 1000
    result["empty_p95_ms"] = percentile(at_empty, 0.95) * 1000
    result["ratio"] = result["value"] / result["empty_ms"]
    result["rss_mb"] = round(rss_loaded, 1)
    result["empty_rss_mb"] = round(rss_empty, 1)
    result["rss_ratio"] = rss_loaded / rss_empty
    return result


def signal_wakeup(backend: str, samples: int) -> dict:
    """``send_signal`` to a run handed back while it waits, until the step after the wait starts."""
    from benchmarks.engines.conveyor_app import SIGNALLED
    from conveyor import get_workflow_status, send_signal, start_workflow

    if SIGNALLED is None:
        raise RuntimeError("this build of conveyor has no signals (Flow.wait_for_signal) to measure")
    with scratch_dir("conveyor-signal") as folder:
        client, url = _open(backend, folder, "signal")
        group = WorkerGroup(folder)
        try:
            group.spawn(_worker_command(url))
            group.wait_ready()
            latencies = []
            for number in range(-5, samples):  # five warm-up runs, not counted
                workflow_id = f"s{number}"
                handle = start_workflow(SIGNALLED, workflow_id, {"n": number}, client)
                deadline = time.monotonic() + 30
                while not get_workflow_status(workflow_id, client).is_waiting():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"run {workflow_id} never waited for its signal: {group.tail()}")
                    time.sleep(0.002)
                time.sleep(random.uniform(0.02, 0.04))  # handed back, and the worker idle again
                sent = time.time()
                send_signal(workflow_id, "go", {"n": number}, client)
                output = handle.result(timeout=30)
                if output["n"] != number:
                    raise AssertionError(f"signal probe {number} returned {output!r}")
                if number >= 0:
                    latencies.append(output["started"] - sent)
            return latency_result(latencies)
        finally:
            group.stop()
            client.close()
