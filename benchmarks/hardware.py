"""The hardware limits every figure is compared with, measured in the same run.

- SQLite (WAL) commits per second of one-row transactions, with ``synchronous=FULL`` and ``NORMAL``;
- PostgreSQL commits per second of one-row autocommit inserts, on 1 connection and on 8;
- PostgreSQL ``NOTIFY`` → ``LISTEN`` round trip (the floor of a woken worker's latency);
- the bare workloads: the step bodies called directly, with no engine (the in-memory floor).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import threading
import time
from typing import Any

from benchmarks.common import (
    bare_workflow,
    latency_result,
    median,
    order,
    recreate_database,
    remove_sqlite,
    scratch_dir,
)

SECONDS = 2.0


def sqlite_commits(synchronous: str, seconds: float = SECONDS) -> dict:
    """One-row ``BEGIN IMMEDIATE; INSERT; COMMIT`` transactions in WAL mode, for ``seconds``."""
    with scratch_dir("hw-sqlite") as folder:
        path = folder / "hw.db"
        remove_sqlite(path)
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        count = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t (v) VALUES (?)", ("x" * 64,))
            connection.execute("COMMIT")
            count += 1
        elapsed = time.perf_counter() - started
        connection.close()
    return {"kind": "throughput", "value": count / elapsed, "unit": "commits/s", "count": count}


def postgres_commits(connections: int, seconds: float = SECONDS) -> dict:
    """One-row autocommit inserts on ``connections`` connections, for ``seconds``.

    With ``pgbench`` (PostgreSQL's own client, in C) when it is installed, so that the client's cost does
    not hide the server's; else with one Python thread per connection.
    """
    import psycopg

    url = recreate_database("conveyor_bench_hardware")
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
    if shutil.which("pgbench"):
        return _pgbench(url, connections, seconds)
    counts = [0] * connections
    barrier = threading.Barrier(connections + 1)
    deadline: list[float] = []

    def insert(slot: int) -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            barrier.wait()
            while time.perf_counter() < deadline[0]:
                connection.execute("INSERT INTO t (v) VALUES (%s)", ("x" * 64,))
                counts[slot] += 1

    threads = [threading.Thread(target=insert, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"kind": "throughput", "value": sum(counts) / elapsed, "unit": "commits/s", "count": sum(counts)}


def _pgbench(url: str, connections: int, seconds: float) -> dict:
    with scratch_dir("hw-pgbench") as folder:
        script = folder / "insert.sql"
        script.write_text("INSERT INTO t (v) VALUES (repeat('x', 64));\n")
        command = ["pgbench", "-n", "-M", "prepared", "-c", str(connections), "-j", str(min(connections, 2))]
        command += ["-T", str(max(1, round(seconds))), "-f", str(script), url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    tps = re.search(r"tps = ([0-9.]+)", output)
    if tps is None:
        raise RuntimeError(f"pgbench printed no tps: {output[-300:]}")
    return {"kind": "throughput", "value": float(tps.group(1)), "unit": "commits/s", "tool": "pgbench"}


def postgres_notify(samples: int = 200) -> dict:
    """``NOTIFY`` on one connection until a ``LISTEN``-ing connection receives it."""
    import psycopg

    url = recreate_database("conveyor_bench_hardware")
    latencies = []
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as sender:
        listener.execute("LISTEN bench")
        for _ in range(samples):
            started = time.perf_counter()
            sender.execute("NOTIFY bench")
            for _notification in listener.notifies(timeout=5, stop_after=1):
                break
            latencies.append(time.perf_counter() - started)
            time.sleep(0.002)
    return latency_result(latencies)


def bare(shape: str, count: int = 20000) -> dict:
    """The workload's step bodies called directly, workflows per second (median of 5)."""
    inputs = [order(number) for number in range(count)]
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        for value in inputs:
            bare_workflow(shape, value)
        seconds.append(time.perf_counter() - started)
    return {"kind": "throughput", "value": count / median(seconds), "unit": "wf/s", "count": count}


def all_limits(postgres: bool = True) -> dict[str, Any]:
    """Every limit, each as a measurement (or an error)."""
    from benchmarks.common import error_result

    measurements: dict[str, Any] = {
        "sqlite_full": lambda: sqlite_commits("FULL"),
        "sqlite_normal": lambda: sqlite_commits("NORMAL"),
        "bare_seq": lambda: bare("seq"),
        "bare_fj": lambda: bare("fj"),
    }
    if postgres:
        measurements |= {
            "postgres_1": lambda: postgres_commits(1),
            "postgres_8": lambda: postgres_commits(8),
            "postgres_notify": postgres_notify,
        }
    limits = {}
    for name, measure in measurements.items():
        try:
            limits[name] = measure()
        except Exception as exc:
            limits[name] = error_result(exc)
    return limits


MEASUREMENTS = {"all": all_limits}
