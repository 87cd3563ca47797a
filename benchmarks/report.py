"""Turns measurements into the table (ratios to the peers and to the hardware, targets) and the docs page."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import STEPS
from benchmarks.plan import BACKENDS, SHAPES, Cell

TIMES = "\u00d7"

HEADERS = ("workload", "engine", "backend", "result", "µs/step", "vs peer", "vs hardware", "target")
ENGINE_NAMES = {"conveyor": "conveyor", "sayiir": "Sayiir", "dbos": "DBOS"}
GROUP_NAMES = {
    "one-client": "one client",
    "many": "many, worker processes",
    "wakeup": "start → first step",
    "failover": "worker death → resume",
}


def number(value: float, digits: int = 0) -> str:
    """``value`` with thousands separators (or ``n/a``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _significant(value: float) -> str:
    if value >= 100:
        return number(value)
    if value >= 10:
        return number(value, 1)
    return number(value, 2)


def _ratio(value: float) -> str:
    """Two significant digits below 0.1 (0.012), else two decimals."""
    return f"{value:.2g}" if value < 0.1 else f"{value:.2f}"


API_ROUTES = {
    "runs": "/api/runs (first page)",
    "runs-failed": "/api/runs?state=failed",
    "runs-correlation": "/api/runs?correlation_id=…",
    "runs-page-20": "/api/runs?workflow=…, 21st page",
    "run": "/api/runs/{id}",
    "history": "/api/runs/{id}/history",
    "performance": "/api/analytics/performance (a day)",
    "bottlenecks": "/api/analytics/bottlenecks (a day)",
    "dashboard-runs": "the dashboard's runs list",
    "dashboard-run": "the dashboard's run page",
}
"""The server's routes the ``api`` group times, as its table names them."""


def workload_label(cell: Cell) -> str:
    """The table's first column."""
    if cell.group == "one-client":
        return f"{SHAPES[cell.workload]}, one client"
    if cell.group == "many":
        return f"{SHAPES[cell.workload]}, many"
    if cell.group == "wakeup":
        return "start → first step (idle worker)"
    if cell.workload == "signal":
        return "signal → waiting run resumes (idle worker)"
    if cell.workload == "claim":
        return f"claim cycle, {cell.params['waiting']:,} runs waiting"
    if cell.group == "analytics" and cell.workload == "finish":
        return "the checkpoint that finishes a run (the analytics' trigger)"
    if cell.group == "analytics":
        query, window = cell.workload.split("-")
        return f"{query}(), last {window} of {cell.params['runs']:,} finished runs"
    if cell.group == "api":
        return f"GET {API_ROUTES[cell.workload]}, {cell.params['runs']:,} finished runs"
    if cell.workload == "takeover":
        return "worker killed → another takes over"
    return "worker killed → restarted worker resumes"


def engine_label(cell: Cell) -> str:
    """The engine column: the engine, and how many workers or threads."""
    name = ENGINE_NAMES[cell.engine]
    return f"{name} ({cell.workers})" if cell.workers else name


def backend_label(cell: Cell) -> str:
    """The backend column."""
    if cell.engine == "dbos" and cell.backend.startswith("sqlite"):
        return "SQLite (DBOS: journal, FULL)"
    if cell.group in ("many", "wakeup", "waiting", "failover") and cell.backend == "sqlite":
        return "SQLite FULL"
    return BACKENDS[cell.backend]


def result_label(result: dict[str, Any]) -> str:
    """The result column: throughput, or p50 latency with p95 or max."""
    kind = result.get("kind")
    if kind == "throughput":
        return f"{_significant(result['value'])} wf/s"
    if kind == "latency" and "ratio" in result:  # against the empty queue, with an idle worker's memory
        return (
            f"p50 {_significant(result['value'])} ms ({_ratio(result['ratio'])}{TIMES} empty), "
            f"RSS {_ratio(result['rss_ratio'])}{TIMES}"
        )
    if kind == "latency" and "overhead_us" in result:  # a finishing checkpoint, with the trigger, without
        return (
            f"p50 {result['finish_with_us']:,.0f} µs (without the trigger "
            f"{result['finish_without_us']:,.0f}; a step's {result['step_with_us']:,.0f} and "
            f"{result['step_without_us']:,.0f})"
        )
    if kind == "latency" and "runs_in_window" in result:  # the analytics: how many runs the window held
        return (
            f"p50 {_significant(result['value'])} ms (p95 {_significant(result['p95_ms'])}), "
            f"{result['runs_in_window']:,} runs in the window"
        )
    if kind == "latency":
        if result.get("count", 0) <= 5:
            return f"p50 {_significant(result['value'])} ms (max {_significant(result['max_ms'])})"
        return f"p50 {_significant(result['value'])} ms (p95 {_significant(result['p95_ms'])})"
    if kind == "skipped":
        return f"skipped: {result.get('reason', '')}"[:70]
    error = str(result.get("error", "no result")).splitlines()[-1]
    return f"error: {error}"[:70]


def hardware_limit(cell: Cell, hardware: dict[str, Any]) -> tuple[float, str] | None:
    """The bound this cell is compared with, in the cell's own unit, and how it was derived."""

    def value(name: str) -> float | None:
        entry = hardware.get(name, {})
        return entry.get("value") if entry.get("kind") in ("throughput", "latency") else None

    steps = STEPS.get(cell.workload, 4)
    if cell.group == "one-client":
        if cell.backend == "memory":
            bare = value(f"bare_{cell.workload}")
            return None if bare is None else (bare, "step bodies alone")
        source = {"sqlite-full": "sqlite_full", "sqlite-normal": "sqlite_normal", "postgres": "postgres_1"}
        commits = value(source[cell.backend])
        return None if commits is None else (commits / steps, f"1 commit per step ({source[cell.backend]})")
    if cell.group == "many":
        name = "postgres_8" if cell.backend == "postgres" else "sqlite_full"
        commits = value(name)
        return None if commits is None else (commits / steps, f"1 commit per step ({name})")
    if cell.group == "wakeup":
        if cell.backend == "postgres":
            notify = value("postgres_notify")
            return None if notify is None else (notify, "NOTIFY→LISTEN p50")
        commits = value("sqlite_full")
        return None if commits is None else (1000 / commits, "one FULL commit")
    return None


def hardware_label(cell: Cell, hardware: dict[str, Any]) -> str:
    """The ratio to the hardware limit: share of it reached (throughput), or limit ÷ latency."""
    limit = hardware_limit(cell, hardware)
    result = cell.result
    if limit is None or result.get("kind") not in ("throughput", "latency") or not result.get("value"):
        return "—"
    bound, _ = limit
    if result["kind"] == "throughput":
        return f"{_ratio(result['value'] / bound)}{TIMES} of {_significant(bound)}"
    return f"{_ratio(bound / result['value'])}{TIMES} ({_significant(bound)} ms)"


def peers_of(cell: Cell, everything: list[Cell]) -> list[Cell]:
    """The peer cells measured on the same workload and backend (and worker count)."""
    found = []
    for other in everything:
        if other.engine == cell.engine or other.result.get("kind") not in ("throughput", "latency"):
            continue
        key = other.peer_key
        if key == cell.peer_key or (key.endswith("/*") and cell.peer_key.startswith(key[:-1])):
            found.append(other)
    return found


def peer_label(cell: Cell, everything: list[Cell]) -> str:
    """conveyor ÷ peer for throughput, peer ÷ conveyor for latency: above 1 means conveyor does better."""
    if cell.engine != "conveyor" or cell.result.get("kind") not in ("throughput", "latency"):
        return "—"
    parts = []
    for peer in peers_of(cell, everything):
        mine, theirs = cell.result["value"], peer.result["value"]
        ratio = mine / theirs if cell.result["kind"] == "throughput" else theirs / mine
        parts.append(f"{_ratio(ratio)}{TIMES} {ENGINE_NAMES[peer.engine]}")
    return ", ".join(parts) or "—"


def target_met(cell: Cell) -> bool | None:
    """Whether the cell meets its target (None without one, or without a result)."""
    if cell.target is None or cell.result.get("kind") not in ("throughput", "latency"):
        return None
    kind, bound = cell.target
    result = cell.result
    if kind == "max_us_per_step":
        return bool(result["us_per_step"] <= bound)
    if kind == "min_value":
        return bool(result["value"] >= bound)
    if kind == "max_value":
        return bool(result["value"] < bound)
    if kind == "max_ratio":  # to the same measurement on an empty queue, and memory likewise
        return bool(result["ratio"] <= bound and result.get("rss_ratio", 1.0) <= bound)
    if kind == "max_p95":
        return bool(result["p95_ms"] < bound)
    return bool(result["max_ms"] <= bound)


def target_text(cell: Cell) -> str:
    """The target, as the table states it."""
    if cell.target is None:
        return ""
    kind, bound = cell.target
    return {
        "max_us_per_step": f"≤{number(bound)} µs/step",
        "min_value": f"≥{number(bound)} wf/s",
        "max_value": f"p50 <{number(bound)} ms",
        "max_max": f"max ≤{number(bound)} ms",
        "max_ratio": f"≤{bound:g}{TIMES} empty queue",
        "max_p95": f"p95 <{number(bound)} ms",
    }[kind]


def target_label(cell: Cell) -> str:
    """✓ or ✗ with the target, or — when the cell has none."""
    met = target_met(cell)
    if cell.target is None:
        return "—"
    if met is None:
        return f"? {target_text(cell)}"
    return f"{'✓' if met else '✗'} {target_text(cell)}"


def us_label(cell: Cell) -> str:
    """Microseconds per step: engine overhead (in memory) or total time per step."""
    us = cell.result.get("us_per_step")
    if us is None:
        return "—"
    return f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def rows(planned: list[Cell], hardware: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per cell, in the table's column order."""
    return [
        (
            workload_label(cell),
            engine_label(cell),
            backend_label(cell),
            result_label(cell.result),
            us_label(cell),
            peer_label(cell, planned),
            hardware_label(cell, hardware),
            target_label(cell),
        )
        for cell in planned
    ]


def text_table(table: list[tuple[str, ...]]) -> str:
    """The table for a terminal, columns padded, a rule under the headers and between workloads."""
    widths = [max(len(str(row[i])) for row in [HEADERS, *table]) for i in range(len(HEADERS))]
    line = "  ".join("-" * width for width in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)), line]
    previous = None
    for row in table:
        if previous is not None and row[0] != previous:
            out.append("")
        out.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        previous = row[0]
    return "\n".join(out)


def markdown_table(table: list[tuple[str, ...]]) -> str:
    """The same table in Markdown."""
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(out)


SCALE_BOUND = 1.2
"""The scaling target: each operation at the large size within 20 % of the small one."""


def scale_rows(scale: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The scaling check's rows: operation, p50 at each size, their ratio, and whether it is in bound."""
    rows = []
    for name, entry in scale["operations"].items():
        ratio = entry["large_ms"] / entry["small_ms"]
        rows.append(
            (
                name,
                f"{entry['small_ms']:.3f} ms",
                f"{entry['large_ms']:.3f} ms",
                f"{ratio:.2f}",
                "✓" if ratio <= SCALE_BOUND else "✗",
            )
        )
    return rows


def scale_lines(scale: dict[str, Any]) -> str:
    """The scaling check for a terminal."""
    if scale.get("kind") == "error":
        return f"{number(1_000_000)}-run scaling check: error: {scale['error']}"
    large = number(scale["runs"])
    lines = [
        f"at {number(scale['small'])} and at {large} finished runs in PostgreSQL (p50, target within 20 %):"
    ]
    for name, small, big, ratio, mark in scale_rows(scale):
        lines.append(f"  {name:20s} {small:>10s} {big:>10s}  {ratio}{TIMES}  {mark}")
    return "\n".join(lines)
