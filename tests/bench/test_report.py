"""What ``make bench`` prints: ratios the right way round, targets marked at their bounds, the docs page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks import docs, report
from benchmarks.plan import Cell

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"


def cell(engine: str, result: dict[str, Any], *, target: tuple[str, float] | None = None) -> Cell:
    """A one-client sequential cell on PostgreSQL with ``result``."""
    measured = Cell("one-client", "seq", "postgres", engine, "throughput", {}, target=target)
    measured.result = result
    return measured


def test_a_throughput_ratio_is_conveyor_over_the_peer_and_a_latency_ratio_the_peer_over_conveyor() -> None:
    """Above 1 always means conveyor does better."""
    fast = cell("conveyor", {"kind": "throughput", "value": 300.0})
    slow = cell("dbos", {"kind": "throughput", "value": 100.0})
    assert report.peer_label(fast, [fast, slow]) == f"3.00{report.TIMES} DBOS"

    quick = cell("conveyor", {"kind": "latency", "value": 2.0})
    late = cell("dbos", {"kind": "latency", "value": 70.0})
    assert report.peer_label(quick, [quick, late]) == f"35.00{report.TIMES} DBOS"


@pytest.mark.parametrize(
    ("target", "result", "met"),
    [
        (("min_value", 1000.0), {"value": 1000.0}, True),
        (("min_value", 1000.0), {"value": 999.9}, False),
        (("max_us_per_step", 10.0), {"value": 1.0, "us_per_step": 10.0}, True),
        (("max_us_per_step", 10.0), {"value": 1.0, "us_per_step": 10.01}, False),
        (("max_value", 5.0), {"value": 4.99}, True),
        (("max_value", 5.0), {"value": 5.0}, False),
        (("max_max", 3000.0), {"value": 1.0, "max_ms": 3000.0}, True),
        (("max_max", 3000.0), {"value": 1.0, "max_ms": 3000.5}, False),
        (("max_ratio", 1.2), {"value": 1.0, "ratio": 1.2, "rss_ratio": 1.0}, True),
        (("max_ratio", 1.2), {"value": 1.0, "ratio": 1.21, "rss_ratio": 1.0}, False),
        (("max_ratio", 1.2), {"value": 1.0, "ratio": 1.0, "rss_ratio": 1.21}, False),
    ],
)
def test_targets_are_marked_met_or_missed_at_their_bounds(
    target: tuple[str, float], result: dict[str, Any], met: bool
) -> None:
    """Each kind of target, just inside and just outside its bound."""
    measured = cell("conveyor", {"kind": "throughput", **result}, target=target)
    assert report.target_met(measured) is met
    assert report.target_label(measured).startswith("✓" if met else "✗")


def test_a_failed_measurement_is_neither_met_nor_missed() -> None:
    """A cell whose measurement failed shows its target with a question mark, not a tick."""
    failed = cell("conveyor", {"kind": "error", "error": "boom"}, target=("min_value", 300.0))
    assert report.target_met(failed) is None
    assert report.target_label(failed) == "? ≥300 wf/s"


def test_the_scaling_check_passes_at_20_percent_and_fails_above() -> None:
    """Each operation's ratio of the large size to the small one, marked against 1.2."""
    scale = {
        "kind": "scale",
        "runs": 1_000_000,
        "small": 1000,
        "operations": {
            "start_workflow": {"small_ms": 0.100, "large_ms": 0.120},
            "get_workflow_status": {"small_ms": 0.100, "large_ms": 0.121},
        },
    }
    rows = report.scale_rows(scale)
    assert [(row[0], row[3], row[4]) for row in rows] == [
        ("start_workflow", "1.20", "✓"),
        ("get_workflow_status", "1.21", "✗"),
    ]
    assert "at 1,000 and at 1,000,000 finished runs" in report.scale_lines(scale)


def test_the_docs_page_renders_from_a_committed_full_run() -> None:
    """A results file of a full run renders to the page: the table, the targets, the scale check."""
    path = max(path for path in RESULTS.glob("*.json") if "quick" not in path.name)
    record = json.loads(path.read_text())
    fields = set(Cell.__dataclass_fields__)
    planned = [Cell(**{k: v for k, v in entry.items() if k in fields}) for entry in record["cells"]]
    for planned_cell in planned:
        planned_cell.target = tuple(planned_cell.target) if planned_cell.target else None  # type: ignore[assignment]
    table = report.rows(planned, record["hardware"])

    page = docs.render(record, planned, table, path.name)

    assert page.startswith("# Benchmarks")
    assert "## Results" in page
    assert "## Targets" in page
    assert "## 1,000,000 finished runs in PostgreSQL" in page
    assert len(table) == len(planned)


def test_the_waiting_runs_cell_shows_both_ratios_to_the_empty_queue() -> None:
    """The claim cycle with runs waiting reads against the empty queue, latency and memory both."""
    measured = Cell("waiting", "claim", "postgres", "conveyor", "waiting_runs", {"waiting": 100_000})
    measured.result = {"kind": "latency", "value": 0.26, "ratio": 0.97, "rss_ratio": 1.0, "count": 300}
    assert report.workload_label(measured) == "claim cycle, 100,000 runs waiting"
    assert (
        report.result_label(measured.result)
        == f"p50 0.26 ms (0.97{report.TIMES} empty), RSS 1.00{report.TIMES}"
    )
