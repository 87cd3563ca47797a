"""What a durable event history costs SQLite in pages, counted rather than timed.

Throughput on these shared machines moves ±20 % from run to run; the number of pages a commit writes does
not. This script counts the WAL frames (one per page written) and the bytes a 4-step run hands to the
kernel, two ways:

- **conveyor itself**: ``SqliteBackend`` with the history off, on, and on with the metrics and a
  subscriber, running the benchmark's sequential workflow one run at a time; and a worker with 8 slots
  driving as many recorded runs, history off and on (its checkpoints share commits);
- **bare SQLite replays** of the same five transactions per run (start, four step checkpoints), with no
  conveyor code, in the layouts a history could take: none; a table of events with a per-run index (what
  conveyor stores); that table without the per-run index; the events kept in the run's own row, with and
  without an index ordering the durable feed.

The replays bound what any design can reach: on SQLite NORMAL the time of a commit follows its pages, so
a layout's frames per run against "none" is the floor of its cost. Run it with
``.venv/bin/python -m benchmarks.history_pages`` (a minute); ``--runs N`` changes the sample, and
``--postgres`` adds the WAL bytes per run PostgreSQL writes with the history off and on (its WAL position
is server-wide, so count on an otherwise idle server).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FRAME_BYTES = 4096 + 24
"""A WAL frame: one 4 kB page and its header."""
_RUNS_TABLE = """
CREATE TABLE runs (workflow_id TEXT PRIMARY KEY, workflow_name TEXT, state TEXT, input TEXT, output TEXT,
  correlation_id TEXT, created_at REAL, updated_at REAL, wake_at REAL, epoch INT DEFAULT 1, owner TEXT,
  event_seq INT DEFAULT 0, events TEXT, feed_position INT);
CREATE INDEX runs_ready ON runs (wake_at) WHERE state IN ('pending', 'running');
CREATE INDEX runs_queue ON runs (coalesce(wake_at, created_at)) WHERE state IN ('pending', 'running');
CREATE INDEX runs_newest ON runs (created_at DESC, workflow_id DESC);
CREATE INDEX runs_newest_by_workflow ON runs (workflow_name, created_at DESC, workflow_id DESC);
CREATE INDEX runs_by_correlation_id ON runs (correlation_id, created_at DESC, workflow_id DESC);
CREATE TABLE steps (workflow_id TEXT, step_name TEXT, state TEXT, attempts INT, result TEXT,
  started_at REAL, finished_at REAL, PRIMARY KEY (workflow_id, step_name)) WITHOUT ROWID;
CREATE TABLE events (event_id INTEGER PRIMARY KEY, workflow_id TEXT, seq INT, kind TEXT, step_name TEXT,
  attempt INT, at REAL, worker TEXT, correlation_id TEXT, workflow_name TEXT, data TEXT);
"""
LAYOUTS = {
    "none": "no history",
    "event rows": "a row per event, indexed by (run, seq): conveyor's layout",
    "event rows, no run index": "a row per event, ordered by its id only (a run's history unreadable)",
    "in the run row + feed index": "the run's events in its own row, an index ordering the feed",
    "in the run row, no feed": "the run's events in its own row, no durable feed at all",
}
_PAYLOAD = json.dumps({"id": 1, "amount": 12.5, "items": [1, 2, 3], "customer": "c@example.com"})
_INSERT_EVENT = (
    "INSERT INTO events (workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id, "
    "workflow_name, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _replay(connection: sqlite3.Connection, layout: str) -> Callable[[str], None]:
    """One run's five transactions in ``layout``, as a function of the run's id."""
    rows = layout.startswith("event rows")
    in_row = layout.startswith("in the run row")
    feed = layout == "in the run row + feed index"
    if layout == "event rows":
        connection.execute("CREATE UNIQUE INDEX events_by_run ON events (workflow_id, seq)")
    if feed:
        connection.execute("CREATE INDEX runs_feed ON runs (feed_position) WHERE feed_position IS NOT NULL")
    position = [0]

    def next_position() -> int | None:
        position[0] += 1
        return position[0] if feed else None

    def run(workflow_id: str) -> None:
        now = time.time()
        execute = connection.execute
        execute("BEGIN IMMEDIATE")
        execute(
            "INSERT INTO runs (workflow_id, workflow_name, state, input, correlation_id, created_at, "
            "updated_at, owner) VALUES (?, 'bench_seq', 'running', ?, ?, ?, ?, 'me')",
            (workflow_id, _PAYLOAD, workflow_id, now, now),
        )
        if rows:
            execute("UPDATE runs SET event_seq = 1 WHERE workflow_id = ?", (workflow_id,))
            execute(
                _INSERT_EVENT, (workflow_id, 1, "run.started", None, None, now, "me", workflow_id, "s", None)
            )
        elif in_row:
            started = json.dumps([[1, "run.started", None, None, now, None]])
            execute(
                "UPDATE runs SET events = ?, feed_position = ? WHERE workflow_id = ?",
                (started, next_position(), workflow_id),
            )
        execute("COMMIT")
        for number in range(4):
            step, last = f"step{number}", number == 3
            output = _PAYLOAD if last else None
            execute("BEGIN IMMEDIATE")
            if rows:
                seq = execute(
                    "UPDATE runs SET output = ?, updated_at = ?, event_seq = event_seq + 2 "
                    "WHERE workflow_id = ? AND epoch = 1 RETURNING event_seq",
                    (output, now, workflow_id),
                ).fetchone()[0]
            elif in_row:
                events = json.dumps(
                    [
                        [2 * number + 2, "step.started", step, 1, now, None],
                        [2 * number + 3, "step.completed", step, 1, now, {"duration_seconds": 0.1}],
                    ]
                )
                execute(
                    "UPDATE runs SET output = ?, updated_at = ?, events = events || ?, feed_position = ? "
                    "WHERE workflow_id = ? AND epoch = 1",
                    (output, now, events, next_position(), workflow_id),
                )
            else:
                execute(
                    "UPDATE runs SET output = ?, updated_at = ? WHERE workflow_id = ? AND epoch = 1",
                    (output, now, workflow_id),
                )
            execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, 'completed', 1, ?, ?, ?)",
                (workflow_id, step, _PAYLOAD, now, now),
            )
            if rows:
                data = '{"duration_seconds": 0.1}'
                connection.executemany(
                    _INSERT_EVENT,
                    [
                        (workflow_id, seq - 1, "step.started", step, 1, now, "me", workflow_id, "s", None),
                        (workflow_id, seq, "step.completed", step, 1, now, "me", workflow_id, "s", data),
                    ],
                )
            if last:
                execute(
                    "UPDATE runs SET state = 'completed', owner = NULL WHERE workflow_id = ?", (workflow_id,)
                )
            execute("COMMIT")

    return run


def _written_bytes() -> int:
    """Bytes this process has handed to write() so far (Linux), or 0 where that cannot be read."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _count(
    connection: sqlite3.Connection, wal: Path, run: Callable[[str], None], runs: int
) -> dict[str, Any]:
    """Frames and bytes per run over ``runs`` runs (after a warm-up), with the WAL never checkpointed."""
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    for number in range(200):
        run(f"warm-{number:06d}")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    written = _written_bytes()
    started = time.perf_counter()
    for number in range(runs):
        run(f"run-{number:06d}")
    return _figures(wal, written, started, runs)


def _figures(wal: Path, written: int, started: float, runs: int) -> dict[str, Any]:
    """Per run since ``started`` (perf_counter) and ``written`` (bytes): WAL frames, kB written, µs."""
    seconds = time.perf_counter() - started
    return {
        "frames_per_run": wal.stat().st_size / FRAME_BYTES / runs,
        "kb_written_per_run": (_written_bytes() - written) / 1024 / runs,
        "us_per_run": seconds / runs * 1e6,
    }


def replayed(layout: str, runs: int, synchronous: str) -> dict[str, Any]:
    """Count one bare-SQLite layout."""
    with tempfile.TemporaryDirectory(prefix="conveyor-pages-") as scratch:
        path = Path(scratch) / "replay.db"
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.executescript(_RUNS_TABLE)
        try:
            return _count(connection, Path(f"{path}-wal"), _replay(connection, layout), runs)
        finally:
            connection.close()


def conveyor_cell(mode: str, runs: int, synchronous: str) -> dict[str, Any]:
    """Count conveyor's SqliteBackend running the sequential workflow: history ``off``, ``on``, or
    ``watched`` (on, with the metrics and an in-process subscriber)."""
    from benchmarks.common import order
    from benchmarks.engines.conveyor_app import SEQ
    from conveyor import Conveyor, SqliteBackend
    from conveyor.runtime.metrics import Metrics

    with tempfile.TemporaryDirectory(prefix="conveyor-pages-") as scratch:
        path = Path(scratch) / "conveyor.db"
        backend = SqliteBackend(path, synchronous=synchronous)
        backend.records_history = mode != "off"
        if mode == "watched":
            metrics = Metrics(lambda: backend)
            backend.add_listener(metrics.count, stored_rows=True)
            backend.add_listener(lambda events: None)
        app = Conveyor(backend, workflows=[SEQ])
        inputs = [order(number) for number in range(runs + 200)]
        numbers = iter(range(len(inputs)))

        def run(workflow_id: str) -> None:
            app.run(SEQ, inputs[next(numbers)], workflow_id=workflow_id)

        try:
            return _count(backend._connection, Path(f"{path}-wal"), run, runs)
        finally:
            app.close()


def worker_cell(mode: str, runs: int, synchronous: str, concurrency: int = 8) -> dict[str, Any]:
    """Count a worker (``concurrency`` slots, in this process) driving ``runs`` recorded runs to the end:
    its checkpoints are written many runs to a commit, so the history's pages are shared among them."""
    from benchmarks.common import order
    from benchmarks.engines.conveyor_app import SEQ
    from conveyor import Conveyor, SqliteBackend

    with tempfile.TemporaryDirectory(prefix="conveyor-pages-") as scratch:
        path = Path(scratch) / "conveyor.db"
        backend = SqliteBackend(path, synchronous=synchronous)
        backend.records_history = mode != "off"
        app = Conveyor(backend, workflows=[SEQ])
        try:
            backend._connection.execute("PRAGMA wal_autocheckpoint = 0")
            for number in range(runs):
                app.start(SEQ, order(number), workflow_id=f"run-{number:06d}")
            backend._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            written = _written_bytes()
            started = time.perf_counter()
            app.worker(concurrency=concurrency).run(until_idle=True)
            return _figures(Path(f"{path}-wal"), written, started, runs)
        finally:
            app.close()


def postgres_cell(mode: str, runs: int) -> dict[str, Any]:
    """Count the WAL bytes the PostgreSQL server writes per run of conveyor's sequential workflow, one
    client, history ``off`` or ``on``. The server's WAL position is server-wide: count on an idle server."""
    import psycopg

    from benchmarks.common import SERVER_URL, drop_database, order, recreate_database
    from benchmarks.engines.conveyor_app import SEQ
    from conveyor import Conveyor
    from conveyor.backends.postgres import PostgresBackend

    database = "conveyor_bench_pages"
    backend = PostgresBackend(recreate_database(database))
    try:
        backend.migrate()
        backend.records_history = mode != "off"
        app = Conveyor(backend, workflows=[SEQ])
        inputs = [order(number) for number in range(runs + 200)]
        for number in range(200):
            app.run(SEQ, inputs[number], workflow_id=f"warm-{number:06d}")
        with psycopg.connect(SERVER_URL, autocommit=True) as server:
            before = server.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            started = time.perf_counter()
            for number in range(runs):
                app.run(SEQ, inputs[200 + number], workflow_id=f"run-{number:06d}")
            seconds = time.perf_counter() - started
            row = server.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before,)
            ).fetchone()
        app.close()
    finally:
        backend.close()
        drop_database(database)
    return {"wal_kb_per_run": float(row[0]) / 1024 / runs, "us_per_run": seconds / runs * 1e6}


def main() -> None:
    """Print the table (and write it as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs counted per cell (default 2000)")
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also count PostgreSQL's WAL bytes per run ($CONVEYOR_BENCH_POSTGRES_URL; an idle server)",
    )
    arguments = parser.parse_args()
    cells: list[tuple[str, str, dict[str, Any]]] = []
    for mode in ("off", "on", "watched"):
        cells.append(
            ("conveyor", f"history {mode}", conveyor_cell(mode, arguments.runs, arguments.synchronous))
        )
    for mode in ("off", "on"):
        cells.append(
            ("conveyor worker", f"history {mode}", worker_cell(mode, arguments.runs, arguments.synchronous))
        )
    for layout, description in LAYOUTS.items():
        cells.append(
            (
                "bare SQLite",
                f"{layout}: {description}",
                replayed(layout, arguments.runs, arguments.synchronous),
            )
        )
    baselines = {"conveyor": cells[0][2], "conveyor worker": cells[3][2], "bare SQLite": cells[5][2]}
    print(
        f"SQLite {arguments.synchronous}, sequential 4-step runs, {arguments.runs} per cell "
        f"({os.uname().machine})"
    )
    print("| what | layout | WAL frames / run | against none | kB written / run | µs / run (noisy) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for what, layout, figures in cells:
        ratio = figures["frames_per_run"] / baselines[what]["frames_per_run"]
        print(
            f"| {what} | {layout} | {figures['frames_per_run']:.1f} | {ratio:.2f} | "
            f"{figures['kb_written_per_run']:.0f} | {figures['us_per_run']:.0f} |"
        )
    if arguments.postgres:
        wal = {mode: postgres_cell(mode, arguments.runs) for mode in ("off", "on")}
        print()
        print("| PostgreSQL, one client | WAL kB / run | against off | µs / run (noisy) |")
        print("| --- | --- | --- | --- |")
        for mode, figures in wal.items():
            ratio = figures["wal_kb_per_run"] / wal["off"]["wal_kb_per_run"]
            print(
                f"| history {mode} | {figures['wal_kb_per_run']:.1f} | {ratio:.2f} | "
                f"{figures['us_per_run']:.0f} |"
            )
        cells += [("PostgreSQL", f"history {mode}", figures) for mode, figures in wal.items()]
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                [{"what": what, "layout": layout, **figures} for what, layout, figures in cells], indent=2
            )
        )


if __name__ == "__main__":
    main()
