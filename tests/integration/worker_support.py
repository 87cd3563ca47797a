"""Helpers for tests that run ``conveyor worker`` in real processes: start one, read its step log, wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conveyor import RunState, get_workflow_status

HERE = Path(__file__).parent
WORKER_COMMAND = (sys.executable, "-m", "conveyor.cli", "-v", "worker", "--app", "worker_app")


def spawn_worker(url: str, log: Path, *extra: str, **env: str) -> subprocess.Popen[str]:
    """Start `conveyor worker` in its own process, importing the test workflows (output: workers.out)."""
    with (log.parent / "workers.out").open("a") as output:
        return subprocess.Popen(
            [*WORKER_COMMAND, "--backend", url, *extra],
            env={**os.environ, "PYTHONPATH": str(HERE), "WORKER_LOG": str(log), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def read_log(log: Path) -> list[tuple[int, str, str, str, float]]:
    """The step log: (pid, workflow_id, step, event, time) per line; empty before the first step."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        pid, workflow_id, step, event, at = line.split()
        rows.append((int(pid), workflow_id, step, event, float(at)))
    return rows


def starts_of(log: Path, step: str) -> int:
    """How many times ``step`` started, by any process."""
    return sum(1 for row in read_log(log) if row[2] == step and row[3] == "start")


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def count_completed(backend: Any, ids: list[str]) -> int:
    """How many of the runs ``ids`` have completed."""
    return sum(get_workflow_status(run, backend).state is RunState.COMPLETED for run in ids)
