"""What ``make bench`` measures: every (workload, backend, engine) cell, with its sizes and its target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENGINES = ("conveyor", "sayiir", "dbos")
GROUPS = ("one-client", "many", "wakeup", "waiting", "failover", "analytics", "api")
MODULES = {
    "conveyor": "engines.conveyor_engine",
    "sayiir": "engines.sayiir_engine",
    "dbos": "engines.dbos_engine",
}
SHAPES = {"seq": "sequential 4 steps", "fj": "fork/join 4 steps"}
BACKENDS = {
    "memory": "memory",
    "sqlite-full": "SQLite FULL",
    "sqlite-normal": "SQLite NORMAL",
    "sqlite": "SQLite",
    "postgres": "PostgreSQL",
}


@dataclass
class Cell:
    """One measurement: an engine running one workload on one backend, in its own process."""

    group: str
    workload: str
    backend: str
    engine: str
    measurement: str
    params: dict[str, Any]
    workers: str = ""
    """How the work is spread: "" (one client), "2 procs", "8 threads"..."""
    compare: str = ""
    """The key peers are matched on (defaults to group/workload/backend/workers)."""
    target: tuple[str, float] | None = None
    """(kind, bound): ``min_value``, ``max_value``, ``max_us_per_step``, ``max_max``, ``max_ratio``,
    ``max_p95``."""
    timeout: float = 900.0
    result: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    """The same measurement at the ``--against`` commit, when one was given."""

    @property
    def key(self) -> str:
        return f"{self.group}/{self.workload}/{self.backend}/{self.engine}/{self.workers}".rstrip("/")

    @property
    def peer_key(self) -> str:
        return self.compare or f"{self.group}/{self.workload}/{self.backend}/{self.workers}"


def cells(quick: bool, engines: set[str], groups: set[str], postgres: bool) -> list[Cell]:
    """Every cell to measure, in the order they run."""
    q = (lambda full, small: small) if quick else (lambda full, small: full)
    planned: list[Cell] = []

    def add(cell: Cell) -> None:
        if cell.engine in engines and cell.group in groups and (postgres or cell.backend != "postgres"):
            planned.append(cell)

    for shape in ("seq", "fj"):
        one = "one-client"
        overhead = ("max_us_per_step", 10.0)
        count = q(5000 if shape == "seq" else 2000, 1000)
        add(
            Cell(
                one,
                shape,
                "memory",
                "conveyor",
                "throughput",
                _tp("memory", shape, count, q(5, 3)),
                target=overhead,
            )
        )
        add(Cell(one, shape, "memory", "sayiir", "throughput", _tp("memory", shape, q(3000, 1000), q(5, 3))))
        sqlite_target = ("min_value", 1000.0) if shape == "seq" else None
        add(
            Cell(
                one,
                shape,
                "sqlite-full",
                "conveyor",
                "throughput",
                _tp("sqlite-full", shape, q(1000, 300), q(5, 3)),
                target=sqlite_target,
            )
        )
        add(Cell(one, shape, "sqlite-full", "dbos", "throughput", _tp("sqlite", shape, q(100, 30), q(3, 2))))
        add(
            Cell(
                one,
                shape,
                "sqlite-normal",
                "conveyor",
                "throughput",
                _tp("sqlite-normal", shape, q(1000, 300), q(5, 3)),
            )
        )
        pg_target = ("min_value", 300.0) if shape == "seq" else None
        add(
            Cell(
                one,
                shape,
                "postgres",
                "conveyor",
                "throughput",
                _tp("postgres", shape, q(500, 150), q(5, 3)),
                target=pg_target,
            )
        )
        add(Cell(one, shape, "postgres", "sayiir", "throughput", _tp("postgres", shape, q(60, 20), q(3, 2))))
        add(Cell(one, shape, "postgres", "dbos", "throughput", _tp("postgres", shape, q(100, 30), q(3, 2))))

    for shape in ("seq", "fj"):
        for backend in ("postgres", "sqlite"):
            for workers in (1, 2, 4):
                target = ("min_value", 1000.0) if backend == "postgres" and workers == 2 else None
                params = {
                    "backend": backend,
                    "workers": workers,
                    "count": q(2000, 500),
                    "repetitions": q(3, 2),
                }
                add(
                    Cell(
                        "many",
                        shape,
                        backend,
                        "conveyor",
                        "concurrent",
                        {**params, "shape": shape},
                        f"{workers} proc{'s' if workers > 1 else ''}",
                        target=target,
                    )
                )
            for workers in (1, 2, 4):
                params = {"backend": backend, "workers": workers, "count": q(300, 80), "repetitions": q(2, 1)}
                add(
                    Cell(
                        "many",
                        shape,
                        backend,
                        "dbos",
                        "concurrent",
                        {**params, "shape": shape},
                        f"{workers} proc{'s' if workers > 1 else ''}",
                    )
                )
        params = {
            "backend": "postgres",
            "threads": 8,
            "count": q(240, 80),
            "repetitions": q(2, 1),
            "shape": shape,
        }
        add(
            Cell(
                "many",
                shape,
                "postgres",
                "sayiir",
                "concurrent",
                params,
                "8 threads",
                compare=f"many/{shape}/postgres/*",
            )
        )

    for backend in ("postgres", "sqlite"):
        target = ("max_value", 5.0) if backend == "postgres" else None
        add(
            Cell(
                "wakeup",
                "start",
                backend,
                "conveyor",
                "wakeup",
                {"backend": backend, "samples": q(200, 50)},
                target=target,
            )
        )
        add(Cell("wakeup", "start", backend, "dbos", "wakeup", {"backend": backend, "samples": q(100, 30)}))

    for backend in ("postgres", "sqlite"):
        target = ("max_value", 5.0) if backend == "postgres" else None
        params = {"backend": backend, "samples": q(100, 30)}
        add(Cell("waiting", "signal", backend, "conveyor", "signal_wakeup", params, target=target))
        params = {"backend": backend, "waiting": 100_000, "samples": q(300, 100)}
        add(Cell("waiting", "claim", backend, "conveyor", "waiting_runs", params, target=("max_ratio", 1.2)))

    lease = 2.0
    for backend in ("postgres", "sqlite"):
        params = {"backend": backend, "mode": "takeover", "samples": q(3, 1), "lease_seconds": lease}
        takeover = ("max_max", (lease + 1) * 1000)
        add(Cell("failover", "takeover", backend, "conveyor", "failover", params, target=takeover))
    for backend in ("postgres", "sqlite"):
        params = {"backend": backend, "mode": "restart", "samples": q(3, 1), "lease_seconds": lease}
        add(Cell("failover", "restart", backend, "conveyor", "failover", params, target=("max_max", 100.0)))
        params = {"backend": backend, "mode": "restart", "samples": q(3, 1)}
        add(Cell("failover", "restart", backend, "dbos", "failover", params))
    # The analytics at 1,000,000 finished runs (30 days of them): the default window (a day) and an hour
    # under the target; a week and the whole table show how the time grows with the runs in the window.
    runs = q(1_000_000, 100_000)
    for query in ("performance", "bottlenecks"):
        for hours, label in ((1, "1h"), (24, "24h"), (168, "7d"), (720, "30d")):
            params = {"query": query, "window_hours": hours, "runs": runs, "samples": q(20, 10)}
            target = ("max_p95", 200.0) if hours <= 24 else None
            add(Cell("analytics", f"{query}-{label}", "postgres", "conveyor", "analytics", params,
                     target=target, timeout=1800.0))  # fmt: skip
    # What the analytics add to the hot path: the checkpoint that finishes a run, with the trigger that
    # records it and without (a step's checkpoint beside it).
    for backend in ("postgres", "sqlite"):
        params = {"backend": backend, "runs": q(500, 200), "rounds": q(6, 2)}
        add(Cell("analytics", "finish", backend, "conveyor", "finish_cost", params))
    # The server over the same 1,000,000 runs: each route a person or a script asks most, under 100 ms p95.
    routes = ("runs", "runs-failed", "runs-correlation", "runs-page-20", "run", "history", "performance",
              "bottlenecks", "dashboard-runs", "dashboard-run")  # fmt: skip
    for route in routes:
        params = {"route": route, "runs": runs, "samples": q(30, 10)}
        target = ("max_p95", 100.0)
        add(Cell("api", route, "postgres", "conveyor", "api", params, target=target, timeout=1800.0))
    return planned


def _tp(backend: str, shape: str, count: int, repetitions: int) -> dict[str, Any]:
    return {"backend": backend, "shape": shape, "count": count, "repetitions": repetitions}
