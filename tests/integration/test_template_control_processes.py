"""Loops and maps declared in a YAML template, across real worker processes: a worker dies (os._exit or
SIGKILL) in the middle, and a new worker process carries the run on from its last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import template_app
from worker_support import HERE, read_log, wait_until

from conveyor import StepState, get_workflow_status, start_workflow
from conveyor.backends.urls import open_backend

OPTIONS = ("--concurrency", "1", "--lease-seconds", "1", "--poll-interval-seconds", "1")
COMMAND = (sys.executable, "-m", "conveyor.cli", "-v", "worker", "--app", "template_app")


def spawn(url: str, log: Path, marks: Path) -> subprocess.Popen[str]:
    """Start `conveyor worker --app template_app` in its own process (output: workers.out)."""
    with (log.parent / "workers.out").open("a") as output:
        return subprocess.Popen(
            [*COMMAND, "--backend", url, *OPTIONS],
            env={**os.environ, "PYTHONPATH": str(HERE), "WORKER_LOG": str(log), "KILL_MARKS": str(marks)},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def events(log: Path, run: str, step: str) -> dict[int, list[str]]:
    """Each process's events for ``step`` of ``run``, in order."""
    found: dict[int, list[str]] = {}
    for pid, workflow_id, name, event, _at in read_log(log):
        if workflow_id == run and name == step:
            found.setdefault(pid, []).append(event)
    return found


def test_a_worker_killed_mid_template_loop_is_followed_by_one_that_resumes_at_its_iteration(
    database_url: str, tmp_path: Path
) -> None:
    """Iterations 0 to 2 were checkpointed before the worker died in iteration 3: the next worker runs
    iteration 3 again, with the value iteration 2 passed on, and goes on; 0, 1 and 2 never run again."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(template_app.TEMPLATED, "yloop-1", {"lines": [0, 1]}, backend)
    dying = spawn(database_url, log, marks)
    assert dying.wait(30) == 3  # died in iteration 3
    progress = get_workflow_status("yloop-1", backend).step("climb").progress
    assert progress == {"iteration": 3, "value": {"n": 3}}
    survivor = spawn(database_url, log, marks)
    try:
        wait_until(lambda: get_workflow_status("yloop-1", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(survivor)
    assert get_workflow_status("yloop-1", backend).output()["count"] == {"sent": [0, 1], "top": 4}
    first, second = events(log, "yloop-1", "climb").values()
    assert first == ["start0", "done0", "start1", "done1", "start2", "done2", "start3"]
    assert second == ["start3", "done3", "start4", "done4"]
    backend.close()


def test_a_worker_killed_mid_template_map_is_followed_by_one_that_runs_only_the_unfinished_elements(
    database_url: str, tmp_path: Path
) -> None:
    """Elements 0 to 2 were checkpointed, 3 and 4 hang in flight, 5 waits for a slot: the worker is
    SIGKILLed. The next worker runs 3, 4 and 5 and never 0, 1 or 2 again; the result keeps the order."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    (marks / "ymap-1.climb3").touch()  # the loop runs through: this test kills the worker in the map
    backend = open_backend(database_url)
    start_workflow(template_app.TEMPLATED, "ymap-1", {"lines": list(range(6)), "hang": True}, backend)
    dying = spawn(database_url, log, marks)

    def stuck() -> bool:
        progress = get_workflow_status("ymap-1", backend).step("pack").progress
        started = {event for pid_events in events(log, "ymap-1", "pack").values() for event in pid_events}
        return progress is not None and len(progress["results"]) == 3 and {"start3", "start4"} <= started

    try:
        wait_until(stuck, 30, "elements 0-2 recorded and 3, 4 running")
    finally:
        dying.send_signal(signal.SIGKILL)
        dying.wait(30)
    status = get_workflow_status("ymap-1", backend)
    assert status.step("pack").state is StepState.PENDING
    assert status.step("pack").elements == {"count": 6, "done": 3, "failed": 0, "undone": 0, "undo_failed": 0}
    survivor = spawn(database_url, log, marks)
    try:
        wait_until(lambda: get_workflow_status("ymap-1", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(survivor)
    assert get_workflow_status("ymap-1", backend).output()["count"] == {"sent": list(range(6)), "top": 4}
    first, second = (
        sorted(event for event in pid_events if event.startswith("start"))
        for pid_events in events(log, "ymap-1", "pack").values()
    )
    assert first == ["start0", "start1", "start2", "start3", "start4"]
    assert second == ["start3", "start4", "start5"]  # only the unfinished elements
    backend.close()
