"""``--against REF``: conveyor measured twice in one run, at this build and at another commit, side by side.

Machines differ and are noisy, so a change is judged by the ratio of two builds measured in the same run,
each conveyor cell at one build right after the other (the order alternates from cell to cell, so that a
drift in the machine's load falls on both). The other build is REF's ``src/conveyor``, taken with
``git archive`` into a scratch folder and imported ahead of this checkout's; the benchmark code itself is
this checkout's, so REF must speak the same public API.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import REPO
from benchmarks.plan import Cell

SLOWER_BOUND = 0.95
"""A cell is flagged when this build does less than 95 % as well as the baseline."""


def export(ref: str) -> tuple[Path, str]:
    """Copy REF's ``src/conveyor`` into a scratch folder; return the folder and REF's short commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if commit.returncode != 0:
        raise SystemExit(f"bench: --against {ref!r} is not a commit here: {commit.stderr.strip()}")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit.stdout.strip(), "src/conveyor"],
        cwd=REPO, capture_output=True, check=True,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-baseline-"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder, commit.stdout.strip()


def environment(folder: Path | None) -> dict[str, str]:
    """The environment a baseline measurement runs in: REF's conveyor first on the path; with no folder
    (``--against-quiet``), this build with its observation off."""
    if folder is None:
        return {**os.environ, "BENCH_OBSERVE": "quiet"}
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder / "src"), path]))}


def remove(folder: Path) -> None:
    """Delete the scratch copy."""
    shutil.rmtree(folder, ignore_errors=True)


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The best of repeated measurements (the most throughput, the least latency), errors last.

    Another process on the machine only ever slows a measurement down, so the best of a few is the one
    least disturbed; every value is kept in ``values``.
    """
    good = [result for result in results if result.get("kind") in ("throughput", "latency")]
    if not good:
        return results[-1]
    if good[0]["kind"] == "throughput":
        chosen = max(good, key=lambda result: float(result["value"]))
    else:
        chosen = min(good, key=lambda result: float(result["value"]))
    return {**chosen, "values": [result["value"] for result in good]}


def ratio(cell: Cell) -> float | None:
    """This build against the baseline, above 1 when this build does better (None without both results)."""
    mine, theirs = cell.result, cell.baseline
    if mine.get("kind") not in ("throughput", "latency") or mine.get("kind") != theirs.get("kind"):
        return None
    if not mine.get("value") or not theirs.get("value"):
        return None
    if mine["kind"] == "throughput":
        return float(mine["value"] / theirs["value"])
    return float(theirs["value"] / mine["value"])


def lines(planned: list[Cell], ref: str, label: Any) -> str:
    """The side-by-side table: each conveyor cell at this build and at REF, and their ratio."""
    compared = [cell for cell in planned if cell.baseline]
    if not compared:
        return f"no conveyor cell was measured against {ref}"
    rows = [("cell", "this build", ref, "ratio", "")]
    for cell in compared:
        value = ratio(cell)
        flag = "" if value is None or value >= SLOWER_BOUND else "slower by more than 5 %"
        shown = "n/a" if value is None else f"{value:.3f}"
        rows.append((cell.key, label(cell.result), label(cell.baseline), shown, flag))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = []
    for index, row in enumerate(rows):
        out.append("  ".join(part.ljust(width) for part, width in zip(row, widths, strict=False)).rstrip())
        out[-1] += f"  {row[4]}" if row[4] else ""
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    out.append(f"ratio above 1: this build does better (throughput ÷ throughput, or latency of {ref} ÷ this)")
    return "\n".join(out)
