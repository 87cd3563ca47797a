"""Renders ``docs/benchmarks.md`` from one run's record; the analysis is ``benchmarks/analysis.md``."""

from __future__ import annotations

from typing import Any

from benchmarks import report
from benchmarks.common import REPO
from benchmarks.plan import Cell

ANALYSIS = REPO / "benchmarks" / "analysis.md"

METHOD = """\
## How each figure is measured

- **Workloads.** `sequential`: validate → charge → inventory → finalize. `fork/join`: validate →
  (charge ∥ inventory) → finalize. Step bodies are one dict copy each (`benchmarks/common.py`), shared by
  every engine, so engine cost is what is measured. Before timing, every workload checks its outputs
  against the expected ones (and conveyor's timed runs are checked again afterwards, from their status).
- **One client**: `run_durable_workflow` called in a loop on one thread (Sayiir: its
  `run_durable_workflow`; DBOS: the `@DBOS.workflow` function, fork/join as an async workflow gathering two
  async steps). Median of the repetitions; each repetition on a fresh in-memory backend or SQLite file.
  *µs/step* is the total time per step, except **in memory**, where it is the engine's overhead:
  (time per workflow - time of the step bodies called directly) ÷ 4.
- **Many**: conveyor: N runs recorded with `start_workflow`, then 1, 2 or 4 `conveyor worker
  --concurrency 8 --until-idle` processes, started and held at import until all are up, are released
  together; time from release to the end of the last step (from the runs' statuses). DBOS: 1, 2 or 4
  queue-worker processes (`worker_concurrency=8`, own executor ids, queue polled every 0.1 s) already
  launched; N workflows enqueued with `DBOSClient.enqueue_in_transaction` in one transaction; time from
  the enqueue to the last result. Sayiir: N workflows on 8 threads of one process (its Python API has no
  SQLite backend).
- **Start → first step**: one idle worker; the client records the time, starts a one-step run, and the step
  returns `time.time()`; p50 and p95 of the difference (same machine, same clock).
- **Worker death**: a worker (lease 2 s, `--lease-seconds 2`; other settings at their defaults) is
  SIGKILLed in the middle of a step. *Takeover*: another worker, already running and idle, re-runs the
  step; measured from the kill. *Restart*: a new worker process is started right after the kill, under the
  dead one's `--name` when `conveyor worker` has that option; measured from the moment it is up (its
  workflows imported); spawn-to-resume and kill-to-resume are in the JSON. DBOS recovers a dead executor's
  workflows when that executor restarts (takeover by another executor needs DBOS Conductor, so it has no
  DBOS row).
- **Analytics** (conveyor only): `Conveyor.performance()` and `Conveyor.bottlenecks()` on PostgreSQL holding
  1,000,000 finished runs of three workflows spread over 30 days (bulk-loaded once with `generate_series`,
  `VACUUM ANALYZE`d, kept in `conveyor_bench_analytics` for the next run), over the last hour, day (the
  default window), week and 30 days; p50 and p95 of 20 calls after 3 warm-up calls (the first of which,
  writing the rollups of schema 16 over a window of whole hours, is timed alone: `first_call_ms`).
  Target: p95 under 200 ms for the hour and the day. *Finishing a run*: the checkpoint that ends a
  four-step run, timed one by one in alternating rounds with the trigger that records finished runs and
  without it (a step's
  checkpoint beside it), `benchmarks/engines/conveyor_analytics.py`.
- **Server** (conveyor only): `conveyor serve` (uvicorn, its own process, on loopback) over the same
  1,000,000 runs, asked by one kept-alive `httpx2` client with an admin token: the runs list (first page,
  by state, by correlation id, the 21st page of one workflow), a run, its history, the analytics of a
  day, the dashboard's runs list and run page; p50 and p95 of 30 whole HTTP exchanges after 3 warm-up
  ones. Target: p95 under 100 ms. `benchmarks/engines/conveyor_api.py`.
- **Ratios.** *vs peer*: conveyor ÷ peer for throughput, peer ÷ conveyor for latency: above 1 means conveyor
  does better. *vs hardware*: the share of the limit reached; the limit of a durable workload is one commit
  per step (commits/s ÷ 4, on 1 connection for one client and on 8 for many), in memory it is the step
  bodies called with no engine, for wake-up it is a bare PostgreSQL NOTIFY→LISTEN round trip (SQLite: one
  FULL commit).
"""

REFERENCE = """\
## Reference figures from the issue

Sayiir 1.0 in memory ~9,000 to 11,000 wf/s (~21 to 27 µs/step), on PostgreSQL ~26 to 94 wf/s;
DBOS 3.4 on SQLite ~48 wf/s, on PostgreSQL ~35 wf/s. Many on PostgreSQL: Sayiir ~227 wf/s (8 threads),
DBOS ~78 wf/s (2 queue workers). Hardware: SQLite WAL ~5,700 commits/s FULL, ~32,000 NORMAL; PostgreSQL
~3,000/s on one connection, ~7,000/s on eight.
"""


def render(
    record: dict[str, Any], planned: list[Cell], table: list[tuple[str, ...]], results_path: str
) -> str:
    """The whole page."""
    parts = [
        "# Benchmarks",
        "",
        "conveyor against its peers (Sayiir 1.0.0 and DBOS 3.4.0, installed only into `.venv-bench`) on the "
        "same workloads, with every figure also set against the peer and against the hardware limit measured "
        "in the same run. Generated by `make bench` (`benchmarks/run.py`); do not edit by hand: the analysis "
        "lives in `benchmarks/analysis.md`.",
        "",
        "```bash",
        "make bench                                      # creates .venv-bench if missing, runs everything "
        "(with the 1,000,000-run check)",
        ".venv-bench/bin/python benchmarks/run.py --quick   # smaller sizes; leaves this page alone",
        ".venv-bench/bin/python benchmarks/run.py --only conveyor --groups one-client",
        ".venv-bench/bin/python benchmarks/run.py --skip-peers --scale   # conveyor, with the scale check",
        "make bench BENCH_ARGS='--skip-peers --no-scale --against HEAD~1'  # beside the last commit",
        ".venv/bin/python -m benchmarks.history_pages    # WAL pages per run on SQLite, counted",
        ".venv/bin/python -m benchmarks.instructions     # instructions per step in memory (valgrind)",
        "```",
        "",
        _run_summary(record, results_path),
        "",
        "## Results",
        "",
        report.markdown_table(table),
        "",
        _targets(planned),
        "",
        _hardware(record.get("hardware", {})),
        "",
        _machine(record["machine"]),
        "",
        METHOD,
        REFERENCE,
        _profile(record.get("profile")),
        "",
        _scale(record.get("scale")),
        "",
        _errors(planned),
    ]
    if ANALYSIS.exists():
        parts += ["", ANALYSIS.read_text().strip()]
    return "\n".join(part for part in parts if part is not None).rstrip() + "\n"


def _run_summary(record: dict[str, Any], results_path: str) -> str:
    load = record["load"]
    return (
        f"Run of {record['started']} UTC, {record['seconds'] / 60:.1f} minutes, raw results in "
        f"`{results_path}`. Load average (1, 5, 15 min) before the run {load['before']}, during it "
        f"(1 min, sampled every 5 s) mean {load['during_1min_mean']} and max {load['during_1min_max']}, "
        f"after {load['after']}, on {record['machine']['cores']} cores: the benchmarks themselves load the "
        "machine, and other work ran beside them, so figures are noisy (each is a median)."
    )


def _targets(planned: list[Cell]) -> str:
    lines = ["## Targets", ""]
    for cell in planned:
        if cell.target is None:
            continue
        met = report.target_met(cell)
        mark = {True: "✓ met", False: "✗ missed", None: "? not measured"}[met]
        measured = report.result_label(cell.result)
        if cell.target[0] == "max_us_per_step" and "us_per_step" in cell.result:
            measured = f"{cell.result['us_per_step']:.1f} µs/step of engine overhead"
        if cell.target[0] == "max_max" and "max_ms" in cell.result:
            measured = f"max {report.number(cell.result['max_ms'])} ms over {cell.result['count']} samples"
        lines.append(
            f"- {mark}: {report.workload_label(cell)}, {report.engine_label(cell)}, "
            f"{report.backend_label(cell)}: target {report.target_text(cell)}, measured {measured}."
        )
    return "\n".join(lines)


def _hardware(hardware: dict[str, Any]) -> str:
    names = {
        "sqlite_full": "SQLite WAL, synchronous=FULL, one-row transactions",
        "sqlite_normal": "SQLite WAL, synchronous=NORMAL, one-row transactions",
        "postgres_1": "PostgreSQL one-row commits, 1 connection",
        "postgres_8": "PostgreSQL one-row commits, 8 connections",
        "postgres_notify": "PostgreSQL NOTIFY → LISTEN round trip (p50)",
        "bare_seq": "sequential workload, step bodies called directly",
        "bare_fj": "fork/join workload, step bodies called directly",
    }
    lines = ["## Hardware limits (measured in this run)", "", "| limit | measured |", "|---|---|"]
    for name, label in names.items():
        entry = hardware.get(name)
        if entry is None:
            continue
        if "value" in entry:
            tool = f" ({entry['tool']})" if entry.get("tool") else ""
            lines.append(f"| {label} | {report.number(entry['value'], 2 if entry['unit'] == 'ms' else 0)} "
                         f"{entry['unit']}{tool} |")  # fmt: skip
        else:
            lines.append(f"| {label} | error: {entry.get('error', '')[:120]} |")
    return "\n".join(lines)


def _machine(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in info.get("packages", {}).items() if version)
    lines = [
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; memory {info['memory_gib']} GiB; "
        f"Linux {info['kernel']}",
        f"- Python {info['python']}; SQLite {info['sqlite']}; {packages}",
        f"- conveyor measured at commit {info.get('conveyor_source', 'unknown')} (src/ copied aside when the "
        "run started, so that the whole run measures one version)",
        f"- {info.get('postgres', 'PostgreSQL not used')}, on the same machine (loopback)",
    ]
    settings = info.get("postgres_settings")
    if settings:
        lines.append("- PostgreSQL durability: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "\n".join(lines)


def _profile(profile: dict[str, Any] | None) -> str:
    if not profile:
        return "## Profile\n\nNot run (`--no-profile`, or conveyor was not measured)."
    lines = ["## Profile of conveyor's hottest path", ""]
    titles = {
        "memory": "sequential, in memory",
        "sqlite-full": "sequential, SQLite FULL",
        "memory-fj": "fork/join, in memory",
    }
    for backend, result in profile.items():
        lines.append(f"### {titles.get(backend, backend)}")
        lines.append("")
        if "own" not in result:
            lines += [f"error: {result.get('error', '')}", ""]
            continue
        lines.append(
            f"{result['tool']}, {result['samples']:,} samples inside `run_durable_workflow`; "
            "shares are of those."
        )
        lines += [
            "",
            "| own time (function) | share | inclusive time (function) | share |",
            "|---|---|---|---|",
        ]
        inclusive = [row for row in result["inclusive"] if "benchmarks/" not in row[0]][2:]
        for index in range(max(len(result["own"]), 12)):
            own = result["own"][index] if index < len(result["own"]) else ("", "")
            incl = inclusive[index] if index < len(inclusive) else ("", "")
            if not own[0] and not incl[0]:
                break
            lines.append(
                f"| `{own[0]}` | {own[1]} % | `{incl[0]}` | {incl[1]} % |".replace("`` ", " ").replace(
                    "|  %", "| "
                )
            )
        lines += [
            "",
            "Own time by module: " + ", ".join(f"{name} {share} %" for name, share in result["modules"]),
            "",
        ]
    return "\n".join(lines)


def _scale(scale: dict[str, Any] | None) -> str:
    lines = ["## 1,000,000 finished runs in PostgreSQL", ""]
    if not scale:
        lines.append(
            "Not run here (a full run or `--scale` adds it). It bulk-loads finished runs, with their four "
            "steps each, into two databases (1,000 and 1,000,000 runs) and times starting a run, claiming "
            "work and reading a run's status in rounds alternating between them; the target is within 20 %."
        )
        return "\n".join(lines)
    if scale.get("kind") == "error":
        lines.append(f"error: {scale['error']}")
        return "\n".join(lines)
    large = report.number(scale["runs"])
    lines += [f"| operation | at 1,000 runs (p50) | at {large} runs (p50) | ratio | within 20 % |"]
    lines += ["|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in report.scale_rows(scale)]
    lines += [
        "",
        f"Loading the runs took {scale['load_seconds']:.0f} s; database size {scale['database_size']}. "
        "The runs are loaded as conveyor makes them, born pending and grown as they finish, and each "
        "size has its own database; the two are timed in alternating rounds (p50 over 500 samples each).",
    ]
    return "\n".join(lines)


def _errors(planned: list[Cell]) -> str:
    failed = [cell for cell in planned if cell.result.get("kind") == "error"]
    if not failed:
        return ""
    lines = ["## Measurements that could not be made", ""]
    for cell in failed:
        lines.append(f"- {cell.key}: `{str(cell.result.get('error', '')).strip()[:400]}`")
    return "\n".join(lines)
