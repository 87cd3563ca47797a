"""``make bench --against REF``: the other build is REF's own source, and ratios point the right way."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from benchmarks import baseline, report
from benchmarks.common import REPO
from benchmarks.plan import Cell


def compared(mine: dict[str, Any], theirs: dict[str, Any]) -> Cell:
    """A memory cell measured at both builds."""
    cell = Cell("one-client", "seq", "memory", "conveyor", "throughput", {})
    cell.result, cell.baseline = mine, theirs
    return cell


def test_the_best_of_repeated_throughputs_is_the_highest_and_of_latencies_the_lowest() -> None:
    """Interference only slows a measurement, so the best one is kept, with every value beside it."""
    runs = [{"kind": "throughput", "value": v} for v in (90.0, 120.0, 100.0)]
    assert baseline.best(runs) == {"kind": "throughput", "value": 120.0, "values": [90.0, 120.0, 100.0]}
    waits = [{"kind": "latency", "value": v} for v in (3.0, 2.0, 4.0)]
    assert baseline.best(waits)["value"] == 2.0
    failed = [{"kind": "error", "error": "boom"}]
    assert baseline.best(failed) == failed[0]


def test_a_ratio_above_one_means_this_build_does_better() -> None:
    """Throughput over the baseline's, the baseline's latency over this build's."""
    assert baseline.ratio(
        compared({"kind": "throughput", "value": 110.0}, {"kind": "throughput", "value": 100.0})
    ) == pytest.approx(1.1)
    assert baseline.ratio(
        compared({"kind": "latency", "value": 2.0}, {"kind": "latency", "value": 3.0})
    ) == pytest.approx(1.5)
    assert baseline.ratio(compared({"kind": "error"}, {"kind": "throughput", "value": 1.0})) is None


def test_a_cell_more_than_five_percent_slower_is_flagged() -> None:
    """The table names the cells this build lost more than 5 % on, and only those."""
    slow = compared({"kind": "throughput", "value": 94.0}, {"kind": "throughput", "value": 100.0})
    even = Cell("one-client", "fj", "memory", "conveyor", "throughput", {})
    even.result, even.baseline = {"kind": "throughput", "value": 96.0}, {"kind": "throughput", "value": 100.0}
    lines = baseline.lines([slow, even], "abc1234", report.result_label).splitlines()
    assert "slower by more than 5 %" in next(line for line in lines if line.startswith(slow.key))
    assert "slower" not in next(line for line in lines if line.startswith(even.key))


def test_the_baseline_is_the_commits_own_source() -> None:
    """The exported folder holds REF's src/conveyor, byte for byte."""
    folder, commit = baseline.export("HEAD")
    try:
        shown = subprocess.run(
            ["git", "show", "HEAD:src/conveyor/__init__.py"], cwd=REPO, capture_output=True, check=True
        ).stdout
        assert (folder / "src" / "conveyor" / "__init__.py").read_bytes() == shown
        assert len(commit) >= 7
        assert str(folder / "src") in baseline.environment(folder)["PYTHONPATH"]
    finally:
        baseline.remove(folder)
    assert not folder.exists()


def test_an_unknown_ref_is_one_clear_line() -> None:
    """A ref that names no commit stops the run before anything is measured."""
    with pytest.raises(SystemExit, match="not a commit here"):
        baseline.export("no-such-ref-anywhere")
