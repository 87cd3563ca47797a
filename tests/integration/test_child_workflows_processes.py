"""Child workflows in real worker processes, with a worker killed (SIGKILL) while a parent waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from worker_support import HERE, read_log, starts_of, wait_until

from conveyor import RunState, get_workflow_status, start_workflow
from conveyor.backends.urls import open_backend

WORKER = (sys.executable, "-m", "conveyor.cli", "-v", "worker", "--app", "children_app")
OPTIONS = ("--lease-seconds", "1", "--poll-interval-seconds", "1", "--concurrency", "2")


def spawn(url: str, log: Path, **env: str) -> subprocess.Popen[str]:
    """``conveyor worker --app children_app`` in its own process."""
    with (log.parent / "workers.out").open("a") as output:
        return subprocess.Popen(
            [*WORKER, "--backend", url, *OPTIONS],
            env={**os.environ, "PYTHONPATH": str(HERE), "WORKER_LOG": str(log), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def test_a_worker_killed_while_a_parent_waits_for_its_child_leaves_both_for_the_next(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL mid-child: a new worker process finishes the child, whose end wakes the parent; one child."""
    import children_app

    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(children_app.PARCEL, "k-1", {"id": 5}, backend)
    first = spawn(database_url, log, PACK_SECONDS="30")
    try:
        wait_until(lambda: starts_of(log, "pack") == 1, 30, "the child's first step to start")
        parent = get_workflow_status("k-1", backend)
        assert parent.is_waiting()
        assert parent.step("shipping").state.value == "waiting"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    second = spawn(database_url, log, PACK_SECONDS="0.01")
    try:
        wait_until(lambda: get_workflow_status("k-1", backend).is_completed(), 60, "the parent to complete")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    parent = get_workflow_status("k-1", backend)
    assert parent.output() == "confirmed: label for P-5"
    child = get_workflow_status("k-1/shipping", backend)
    assert child.state is RunState.COMPLETED
    assert child.parent_id == "k-1"
    assert starts_of(log, "reserve") == 1  # the parent's finished step never ran again
    assert starts_of(log, "pack") == 2  # the killed attempt, and the next worker's
    assert starts_of(log, "confirm") == 1
    assert {row[1] for row in read_log(log) if row[2] in ("pack", "label")} == {"k-1/shipping"}  # one child
    backend.close()


def test_a_parent_and_its_child_complete_on_one_worker_process(database_url: str, tmp_path: Path) -> None:
    """The child runs on the worker like any run; its end wakes the parent, which completes with it."""
    import children_app

    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(children_app.PARCEL, "k-2", {"id": 6}, backend)
    first = spawn(database_url, log, PACK_SECONDS="0.01")
    try:
        wait_until(lambda: get_workflow_status("k-2", backend).is_completed(), 60, "the parent to complete")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    assert get_workflow_status("k-2", backend).output() == "confirmed: label for P-6"
    backend.close()
