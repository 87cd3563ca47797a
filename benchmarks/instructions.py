"""Instructions per step in memory, counted with valgrind rather than timed.

Wall-clock ratios on shared machines move by tens of percent between identical runs; the number of
instructions a run executes barely moves. This script runs the benchmark's sequential workflow on the
in-memory backend in a child process under ``valgrind --tool=callgrind`` twice (``--few`` and ``--many``
runs after the same warm-up) and reports the difference per step, so start-up and imports cancel out:

    .venv/bin/python -m benchmarks.instructions                 # history off, on, watched
    .venv/bin/python -m benchmarks.instructions --against 25b2bb7   # also an older build, history off

``--against REF`` exports ``src/conveyor`` at REF into a scratch folder and counts it the same way. Each
count takes a minute or two (valgrind runs the interpreter some 50 times slower).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REPO

_CHILD = """
import os, sys
mode, runs = sys.argv[1], int(sys.argv[2])
from benchmarks.common import order
from benchmarks.engines.conveyor_app import SEQ
from conveyor import InMemoryBackend, run_durable_workflow
backend = InMemoryBackend()
if mode == "off":
    backend.records_history = False
if mode == "watched":
    from conveyor.runtime.metrics import Metrics
    metrics = Metrics(lambda: backend)
    backend.add_listener(metrics.count, stored_rows=True)
    backend.add_listener(lambda events: [event.kind for event in events])
inputs = [order(number) for number in range(runs + 100)]
for number in range(100):
    run_durable_workflow(SEQ, f"warm-{number}", inputs[number], backend)
for number in range(runs):
    run_durable_workflow(SEQ, f"run-{number}", inputs[100 + number], backend)
"""
_VALGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
_COLLECTED = re.compile(r"Collected : (\d+)")


def _instructions(mode: str, runs: int, source: Path | None) -> int:
    env = dict(os.environ)
    path = [str(REPO)] if source is None else [str(source), str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(path)
    finished = subprocess.run(
        [*_VALGRIND, sys.executable, "-c", _CHILD, mode, str(runs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = _COLLECTED.search(finished.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no instruction count:\n{finished.stderr[-2000:]}")
    return int(found.group(1))


def per_step(mode: str, few: int, many: int, source: Path | None = None) -> float:
    """Instructions per step of ``mode`` (``off``, ``on``, ``watched``): the difference of two counts."""
    return (_instructions(mode, many, source) - _instructions(mode, few, source)) / (many - few) / 4


def main() -> None:
    """Print instructions per step for each mode (and for ``--against``'s build, history off)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=100, help="runs of the smaller count (default 100)")
    parser.add_argument("--many", type=int, default=400, help="runs of the larger count (default 400)")
    parser.add_argument("--against", metavar="REF", help="also count this commit's build, history off")
    arguments = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("benchmarks.instructions needs valgrind (apt-get install valgrind)")
    counts = {mode: per_step(mode, arguments.few, arguments.many) for mode in ("off", "on", "watched")}
    if arguments.against:
        with tempfile.TemporaryDirectory(prefix="conveyor-build-") as scratch:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", arguments.against, "src/conveyor"],
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
            counts[f"off at {arguments.against}"] = per_step(
                "off", arguments.few, arguments.many, Path(scratch) / "src"
            )
    print("| build and history | instructions / step | against this build, history off |")
    print("| --- | --- | --- |")
    for label, count in counts.items():
        print(f"| {label} | {count:,.0f} | {count / counts['off']:.2f} |")


if __name__ == "__main__":
    main()
