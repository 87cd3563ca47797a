"""``make bench``: conveyor and its peers on the same workloads, in one run, as one table.

    .venv-bench/bin/python benchmarks/run.py            # everything (about 10 minutes)
    .venv-bench/bin/python benchmarks/run.py --quick    # smaller sizes, a few minutes; docs left alone
    .venv-bench/bin/python benchmarks/run.py --only conveyor --groups one-client
    .venv-bench/bin/python benchmarks/run.py --skip-peers --scale   # conveyor, with the 1,000,000-run check

Every measurement runs in its own process (``benchmarks/measure.py``). Results go to
``benchmarks/results/<time>.json``; a full run also rewrites ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import baseline, docs, report
from benchmarks.common import REPO, SERVER_URL, error_result
from benchmarks.plan import ENGINES, GROUPS, MODULES, Cell, cells

RESULTS = REPO / "benchmarks" / "results"
PEER_PACKAGES = {"sayiir": "sayiir", "dbos": "dbos"}


def measure(
    module: str, name: str, params: dict[str, Any], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its result (or the error that stopped it)."""
    command = [sys.executable, "-m", "benchmarks.measure", module, name, json.dumps(params)]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the measurement and the workers it started
        process.communicate()
        return {"kind": "error", "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            if result.get("kind") == "error":
                result["stderr"] = stderr[-2000:]
            return result
    return {"kind": "error", "error": f"exited {process.returncode} without a result: {stderr[-600:]}"}


class LoadMonitor:
    """Samples /proc/loadavg every few seconds while the benchmarks run."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.before = loadavg()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.samples.append(loadavg()[0])

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        samples = self.samples or [self.before[0]]
        return {
            "before": self.before,
            "after": loadavg(),
            "during_1min_mean": round(sum(samples) / len(samples), 2),
            "during_1min_max": max(samples),
            "samples": len(samples),
        }


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [float(part) for part in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [float("nan")] * 3


def machine(postgres: bool) -> dict[str, Any]:
    """The machine the run is on: CPU, memory, versions, and the databases' durability settings."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {},
        "conveyor_source": _source(),
    }
    for package in ("conveyor", "sayiir", "dbos", "psycopg", "orjson", "pydantic"):
        try:
            info["packages"][package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info["packages"][package] = None
    if postgres:
        try:
            import psycopg

            with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as connection:
                info["postgres"] = connection.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
                settings = ("synchronous_commit", "fsync", "wal_sync_method", "full_page_writes")
                settings += ("shared_buffers", "max_connections", "commit_delay")
                info["postgres_settings"] = {
                    name: connection.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                    for name in settings
                }
        except Exception as exc:
            info["postgres"] = f"unreachable: {exc}"
    return info


def snapshot_source() -> tuple[Path, str]:
    """Copy src/conveyor aside and make every measurement import it from there.

    Others may change src/ while a run lasts 20 minutes; the copy keeps one run on one version of conveyor.
    Returns the copy's folder (removed by the caller) and which version it is.
    """
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-src-"))
    version = _source()
    shutil.copytree(
        REPO / "src" / "conveyor", folder / "conveyor", ignore=shutil.ignore_patterns("__pycache__")
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return folder, version


def _source() -> str:
    """The commit conveyor was measured at, and whether src/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    changes = len(dirty.stdout.splitlines())
    return head.stdout.strip() + (f" with {changes} uncommitted files in src/" if changes else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return float("nan")


def postgres_reachable() -> str | None:
    """None when the benchmark server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {SERVER_URL} is not usable: {str(exc).strip()[:200]}"
    return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    parser.add_argument("--only", action="append", choices=ENGINES, help="only this engine (repeatable)")
    parser.add_argument("--skip-peers", action="store_true", help="conveyor only")
    parser.add_argument("--groups", action="append", choices=GROUPS, help="only these workload groups")
    parser.add_argument("--skip-postgres", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--match", action="append", metavar="TEXT",
                        help="only cells whose key holds TEXT, e.g. many/seq/sqlite")  # fmt: skip
    parser.add_argument("--scale", action=argparse.BooleanOptionalAction, default=None,
                        help="the 1,000,000-run scaling check (default: on for a full run)")  # fmt: skip
    parser.add_argument("--scale-runs", type=int, default=1_000_000, help="finished runs for --scale")
    parser.add_argument("--no-profile", action="store_true", help="do not profile conveyor's hot path")
    parser.add_argument("--doc", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite docs/benchmarks.md (default: on for a full run)")  # fmt: skip
    parser.add_argument("--no-hardware", action="store_true", help="skip the hardware limits")
    parser.add_argument("--against", metavar="REF",
                        help="measure conveyor at commit REF too, cell by cell; print ratios")  # fmt: skip
    parser.add_argument("--against-quiet", action="store_true",
                        help="measure this build with its observation (history, metrics, a subscriber) "
                        "on and off, side by side")  # fmt: skip
    parser.add_argument("--pairs", type=int, default=3,
                        help="with --against: measure each cell this many times at each build")  # fmt: skip
    parser.add_argument("--from-results", type=Path, metavar="JSON",
                        help="print a results file's table and rewrite the docs from it")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write the results (and the docs page)."""
    arguments = parse(argv)
    if arguments.from_results:
        return rerender(arguments.from_results)
    engines = set(arguments.only or ENGINES)
    if arguments.skip_peers:
        engines = {"conveyor"}
    groups = set(arguments.groups or GROUPS)
    full_run = not (arguments.quick or arguments.only or arguments.skip_peers or arguments.groups)
    full_run = full_run and not arguments.match
    full_run = full_run and not arguments.skip_postgres
    write_doc = full_run if arguments.doc is None else arguments.doc
    started = time.time()
    snapshot, source = snapshot_source()
    against: tuple[Path | None, str] | None = (
        baseline.export(arguments.against) if arguments.against else None
    )
    if arguments.against_quiet:
        against = (None, "history off")
    monitor = LoadMonitor()
    postgres_problem = None if arguments.skip_postgres else postgres_reachable()
    planned = cells(arguments.quick, engines, groups, postgres=not arguments.skip_postgres)
    if arguments.match:
        planned = [cell for cell in planned if any(text in cell.key for text in arguments.match)]
    missing = {
        engine: f"{package} is not installed here (make bench installs it into .venv-bench)"
        for engine, package in PEER_PACKAGES.items()
        if importlib.util.find_spec(package) is None
    }
    log(f"{len(planned)} measurements of conveyor {source}; load average {monitor.before}")

    hardware: dict[str, Any] = {}
    if not arguments.no_hardware:
        hardware = measure(
            "hardware", "all", {"postgres": postgres_problem is None and not arguments.skip_postgres}, 300
        )
        if hardware.get("kind") == "error":
            hardware = {"error": hardware}
        log(
            "hardware: "
            + ", ".join(f"{k} {v.get('value', 0):,.1f}" for k, v in hardware.items() if "value" in v)
        )

    for index, cell in enumerate(planned, 1):
        if cell.engine in missing:
            cell.result = {"kind": "error", "error": missing[cell.engine]}
        elif cell.backend == "postgres" and postgres_problem:
            cell.result = {"kind": "error", "error": postgres_problem}
        elif against is None or cell.engine != "conveyor":
            cell.result = timed(cell)
        else:  # both builds, one right after the other, in turns, the best of each kept
            other = baseline.environment(against[0])
            mine, theirs = [], []
            for turn in range(arguments.pairs):
                if (index + turn) % 2:
                    mine.append(timed(cell))
                    theirs.append(timed(cell, other))
                else:
                    theirs.append(timed(cell, other))
                    mine.append(timed(cell))
            cell.result, cell.baseline = baseline.best(mine), baseline.best(theirs)
        log(f"[{index}/{len(planned)}] {cell.key}: {report.result_label(cell.result)}")
        if cell.baseline:
            log(f"    at {against[1] if against else ''}: {report.result_label(cell.baseline)}")

    extra: dict[str, Any] = {}
    if "conveyor" in engines and not arguments.no_profile:
        for backend, shape in (("memory", "seq"), ("sqlite-full", "seq"), ("memory", "fj")):
            params = {"backend": backend, "shape": shape}
            name = backend if shape == "seq" else f"{backend}-{shape}"
            extra.setdefault("profile", {})[name] = measure("profile_hot", "profile", params, 300)
            log(f"profiled conveyor, {shape}, {backend}")
    if full_run if arguments.scale is None else arguments.scale:
        if postgres_problem:
            extra["scale"] = {"kind": "error", "error": postgres_problem}
        else:
            extra["scale"] = measure("scale", "scale", {"runs": arguments.scale_runs}, 3600)
        log(f"scale: {json.dumps(extra['scale'])[:300]}")

    load = monitor.stop()
    finished = time.time()
    shutil.rmtree(snapshot, ignore_errors=True)
    table = report.rows(planned, hardware)
    print()
    print(report.text_table(table))
    print()
    if against is not None:
        if against[0] is not None:
            baseline.remove(against[0])
        print(baseline.lines(planned, against[1], report.result_label))
        print()
    if "scale" in extra:
        print(report.scale_lines(extra["scale"]))
        print()
    print(
        f"load average before {load['before']}, during (1 min) mean {load['during_1min_mean']} "
        f"max {load['during_1min_max']}, after {load['after']}; took {finished - started:.0f} s"
    )

    record = {
        "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(finished - started, 1),
        "arguments": vars(arguments),
        "full_run": full_run,
        "machine": machine(postgres_problem is None and not arguments.skip_postgres)
        | {"conveyor_source": source},
        "load": load,
        "hardware": hardware,
        "cells": [{**cell.__dict__, "key": cell.key} for cell in planned],
        "table": [dict(zip(report.HEADERS, row, strict=True)) for row in table],
        **extra,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}{'-quick' if arguments.quick else ''}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=1, default=str) + "\n")
    temporary.replace(path)
    log(f"results: {path.relative_to(REPO)}")
    if write_doc:
        page = REPO / "docs" / "benchmarks.md"
        page.write_text(docs.render(record, planned, table, path.relative_to(REPO).as_posix()))
        log(f"wrote {page.relative_to(REPO)}")
    return 0


def timed(cell: Cell, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure one cell (with ``env``, at another build) and note how long it took."""
    began = time.perf_counter()
    result = measure(MODULES[cell.engine], cell.measurement, cell.params, cell.timeout, env)
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def rerender(path: Path) -> int:
    """Print a results file's table and rewrite docs/benchmarks.md from it (after editing the analysis)."""
    record = json.loads(path.read_text())
    fields = set(Cell.__dataclass_fields__)
    planned = [Cell(**{k: v for k, v in cell.items() if k in fields}) for cell in record["cells"]]
    for cell in planned:
        cell.target = tuple(cell.target) if cell.target else None  # type: ignore[assignment]
    table = report.rows(planned, record.get("hardware", {}))
    print(report.text_table(table))
    page = REPO / "docs" / "benchmarks.md"
    page.write_text(docs.render(record, planned, table, path.resolve().relative_to(REPO).as_posix()))
    log(f"wrote {page.relative_to(REPO)} from {path}")
    return 0


def log(message: str) -> None:
    """Progress, on stderr, so that stdout holds the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        print(error_result(exc)["error"], file=sys.stderr)
        raise
