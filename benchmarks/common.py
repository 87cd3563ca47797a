"""What every benchmark shares: the workloads' inputs and expected outputs, timing, and scratch databases.

The two workloads are the issue's order workflows with trivial step bodies, so that the engine's own cost
is what is measured:

- ``seq``: validate → charge → inventory → finalize (four steps, one after the other);
- ``fj``: validate → (charge ∥ inventory) → finalize (a fork and a join; finalize gets both results).

Every engine adapter builds these from the same bodies (below) and checks its outputs against
:func:`expected` before it times anything.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("CONVEYOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server (any database on it): benchmarks create and drop ``conveyor_bench*`` databases."""
DATABASE_PREFIX = "conveyor_bench"
STEPS = {"seq": 4, "fj": 4}
"""Steps per workflow: both workloads run four step bodies."""


# -- the step bodies, shared by every engine ------------------------------------------------------------


def validate_body(order: dict[str, Any]) -> dict[str, Any]:
    """Step 1: mark the order valid."""
    return {**order, "validated": True}


def charge_body(order: dict[str, Any]) -> dict[str, Any]:
    """Charge the order (trivially)."""
    return {**order, "payment_id": f"pay-{order['id']}"}


def inventory_body(order: dict[str, Any]) -> dict[str, Any]:
    """Reserve the stock (trivially)."""
    return {**order, "in_stock": True}


def finalize_body(order: dict[str, Any]) -> dict[str, Any]:
    """Last step of the sequential workflow."""
    return {"id": order["id"], "done": True, "payment_id": order["payment_id"], "in_stock": order["in_stock"]}


def join_body(charged: dict[str, Any], stocked: dict[str, Any]) -> dict[str, Any]:
    """Last step of the fork/join workflow: combine both branches."""
    return {
        "id": charged["id"],
        "done": True,
        "payment_id": charged["payment_id"],
        "in_stock": stocked["in_stock"],
    }


def order(number: int) -> dict[str, Any]:
    """The input of run ``number``."""
    return {"id": number, "amount": 100 + number % 7, "customer": f"c{number % 97}"}


def expected(number: int) -> dict[str, Any]:
    """What both workloads must return for :func:`order` ``(number)``."""
    return {"id": number, "done": True, "payment_id": f"pay-{number}", "in_stock": True}


def bare_workflow(shape: str, value: dict[str, Any]) -> dict[str, Any]:
    """The workload with no engine at all: the floor a workflow engine is measured against."""
    validated = validate_body(value)
    if shape == "seq":
        return finalize_body(inventory_body(charge_body(validated)))
    return join_body(charge_body(validated), inventory_body(validated))


def check(label: str, got: Any, number: int) -> None:
    """Raise AssertionError unless ``got`` is the right output of run ``number``."""
    want = expected(number)
    if got != want:
        raise AssertionError(f"{label}: run {number} returned {got!r}, expected {want!r}")


# -- timing ----------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def throughput_result(
    seconds: list[float], count: int, steps: int, body_seconds: float | None = None
) -> dict:
    """A throughput measurement: ``count`` workflows per repetition, each repetition taking ``seconds``."""
    best = median(seconds)
    result: dict[str, Any] = {
        "kind": "throughput",
        "value": count / best,
        "unit": "wf/s",
        "count": count,
        "repetitions": len(seconds),
        "samples": [count / s for s in seconds],
        "us_per_step": best / count / steps * 1e6,
    }
    if body_seconds is not None:  # engine overhead: the time beyond the step bodies themselves
        result["us_per_step"] = (best - body_seconds) / count / steps * 1e6
        result["us_per_step_total"] = best / count / steps * 1e6
    return result


def latency_result(samples: list[float], **extra: Any) -> dict:
    """A latency measurement from ``samples`` in seconds: p50 as the value, p95 and max alongside."""
    return {
        "kind": "latency",
        "value": median(samples) * 1000,
        "unit": "ms",
        "p95_ms": percentile(samples, 0.95) * 1000,
        "max_ms": max(samples) * 1000 if samples else float("nan"),
        "count": len(samples),
        "samples": [round(s * 1000, 3) for s in samples],
        **extra,
    }


def timed_repetitions(run_once: Callable[[int], None], repetitions: int) -> list[float]:
    """Call ``run_once(repetition)`` ``repetitions`` times; return the seconds each call took."""
    seconds = []
    for repetition in range(repetitions):
        started = time.perf_counter()
        run_once(repetition)
        seconds.append(time.perf_counter() - started)
    return seconds


def error_result(exc: BaseException) -> dict:
    """A measurement that could not be made, with the error that stopped it."""
    lines = traceback.format_exception_only(type(exc), exc)
    return {"kind": "error", "error": "".join(lines).strip()[-600:]}


def emit(result: dict) -> None:
    """Print a measurement for the parent process (the last ``RESULT`` line of stdout)."""
    print("RESULT " + json.dumps(result, default=str), flush=True)


# -- scratch storage ---------------------------------------------------------------------------------------


@contextmanager
def scratch_dir(label: str) -> Iterator[Path]:
    """A fresh directory on the same disk as the repository, removed afterwards."""
    base = Path(tempfile.gettempdir())
    path = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-{label}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def database_url(name: str) -> str:
    """The ``postgresql://`` URL of database ``name`` on the benchmark server."""
    parts = urlsplit(SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def recreate_database(name: str) -> str:
    """Drop and create the database ``name`` (it must start with ``conveyor_bench``); return its URL."""
    import psycopg
    from psycopg import sql

    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"benchmarks only create databases named {DATABASE_PREFIX}*, not {name!r}")
    with psycopg.connect(SERVER_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(name)


def drop_database(name: str) -> None:
    """Drop the benchmark database ``name`` if it exists."""
    import psycopg
    from psycopg import sql

    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"benchmarks only drop databases named {DATABASE_PREFIX}*, not {name!r}")
    with psycopg.connect(SERVER_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def remove_sqlite(path: Path) -> None:
    """Delete a SQLite database with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def wait_for_line(log: Path, predicate: Callable[[list[str]], bool], timeout: float) -> list[str] | None:
    """Poll ``log`` (every millisecond) until ``predicate`` holds for one of its lines; return that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                parts = line.split()
                if parts and predicate(parts):
                    return parts
        time.sleep(0.001)
    return None


def started_by(pid: int, label: str) -> Callable[[list[str]], bool]:
    """A :func:`wait_for_line` predicate: process ``pid`` logged the start of ``label``."""
    return lambda parts: parts[0] == str(pid) and parts[1] == label and parts[2] == "start"


def note_step(event: str, label: str) -> None:
    """Append ``pid label event time`` to $BENCH_STEP_LOG with one unbuffered write (survives SIGKILL)."""
    line = f"{os.getpid()} {label} {event} {time.time():.6f}\n"
    descriptor = os.open(os.environ["BENCH_STEP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)
