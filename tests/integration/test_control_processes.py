"""Routes, loops and maps across real worker processes: a worker dies (SIGKILL or os._exit) in the middle,
and a new worker process carries the run on from its last checkpoint, never redoing finished work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import flow_app
from worker_support import HERE, read_log, starts_of, wait_until

from conveyor import RunState, StepState, get_workflow_status, start_workflow
from conveyor.backends.urls import open_backend

OPTIONS = ("--concurrency", "1", "--lease-seconds", "1", "--poll-interval-seconds", "1")
COMMAND = (sys.executable, "-m", "conveyor.cli", "-v", "worker", "--app", "flow_app")


def spawn(url: str, log: Path, *extra: str, **env: str) -> subprocess.Popen[str]:
    """Start `conveyor worker --app flow_app` in its own process (output: workers.out)."""
    with (log.parent / "workers.out").open("a") as output:
        return subprocess.Popen(
            [*COMMAND, "--backend", url, *OPTIONS, *extra],
            env={**os.environ, "PYTHONPATH": str(HERE), "WORKER_LOG": str(log), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_worker_dying_in_the_chosen_branch_leaves_the_choice_and_the_skips_to_the_next(
    database_url: str, tmp_path: Path
) -> None:
    """The route's choice and the skipped branch were checkpointed before the branch ran: the next worker
    runs the chosen branch again (not the route), and the skipped branch never runs."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(flow_app.ROUTED, "route-1", {"id": "route-1", "speed": "express"}, backend)
    dying = spawn(database_url, log, KILL_MARKS=str(marks))
    assert dying.wait(30) == 3  # died in the express step, after the route was recorded
    status = get_workflow_status("route-1", backend)
    assert status.step("by_speed").result == "express"
    assert status.step("standard").state is StepState.SKIPPED
    survivor = spawn(database_url, log, KILL_MARKS=str(marks))
    try:
        wait_until(lambda: get_workflow_status("route-1", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(survivor)
    status = get_workflow_status("route-1", backend)
    assert status.output() == "sent express route-1"
    assert status.step("standard").state is StepState.SKIPPED
    assert (starts_of(log, "by_speed"), starts_of(log, "express"), starts_of(log, "standard")) == (1, 2, 0)
    assert len({pid for pid, *_ in read_log(log)}) == 2
    backend.close()


def test_a_worker_killed_mid_loop_is_followed_by_one_that_resumes_at_the_iteration_it_was_in(
    database_url: str, tmp_path: Path
) -> None:
    """Iterations 0 to 2 were checkpointed before the worker died in iteration 3: the next worker runs
    iteration 3 again and goes on, and never runs 0, 1 or 2 again."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(flow_app.LOOPING, "loop-1", 0, backend)
    dying = spawn(database_url, log, KILL_MARKS=str(marks))
    assert dying.wait(30) == 3  # died in iteration 3
    assert get_workflow_status("loop-1", backend).step("climb").progress == {"iteration": 3, "value": 3}
    survivor = spawn(database_url, log, KILL_MARKS=str(marks))
    try:
        wait_until(lambda: get_workflow_status("loop-1", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(survivor)
    assert get_workflow_status("loop-1", backend).output() == "sent 4"
    events = [event for _pid, run, step, event, _at in read_log(log) if run == "loop-1" and step == "climb"]
    assert events == [
        "start0", "done0", "start1", "done1", "start2", "done2", "start3",  # the first worker
        "start3", "done3", "start4", "done4",  # the second
    ]  # fmt: skip
    backend.close()


def test_a_worker_killed_mid_fan_out_is_followed_by_one_that_runs_only_the_unfinished_elements(
    database_url: str, tmp_path: Path
) -> None:
    """Elements 0 to 2 of a map were checkpointed, 3 and 4 hang in flight, 5 waits for a slot: the worker is
    SIGKILLed. The next worker runs 3, 4 and 5 (3 and 4 with the same keys) and never 0, 1 or 2 again; the
    result keeps the order of the list."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(flow_app.MAPPED, "map-1", list(range(6)), backend)
    dying = spawn(database_url, log, KILL_MARKS=str(marks))

    def stuck() -> bool:
        progress = get_workflow_status("map-1", backend).step("pack").progress
        started = {event for _pid, _run, step, event, _at in read_log(log) if step == "pack"}
        return progress is not None and len(progress["results"]) == 3 and {"start3", "start4"} <= started

    try:
        wait_until(stuck, 30, "elements 0-2 recorded and 3, 4 running")
    finally:
        dying.send_signal(signal.SIGKILL)
        dying.wait(30)
    status = get_workflow_status("map-1", backend)
    assert status.step("pack").state is StepState.PENDING
    assert sorted(status.step("pack").progress["results"]) == ["0", "1", "2"]
    assert status.step("pack").elements == {"count": 6, "done": 3, "failed": 0, "undone": 0, "undo_failed": 0}
    survivor = spawn(database_url, log, KILL_MARKS=str(marks))
    try:
        wait_until(lambda: get_workflow_status("map-1", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(survivor)
    assert get_workflow_status("map-1", backend).output() == "sent 6: " + ", ".join(
        f"box {n}" for n in range(6)
    )
    by_process: dict[int, list[str]] = {}
    for pid, run, step, event, _at in read_log(log):
        if run == "map-1" and step == "pack" and event.startswith("start"):
            by_process.setdefault(pid, []).append(event)
    first, second = by_process.values()
    assert sorted(first) == ["start0", "start1", "start2", "start3", "start4"]
    assert sorted(second) == ["start3", "start4", "start5"]  # only the unfinished elements
    backend.close()


def test_a_worker_killed_mid_compensation_of_a_map_never_undoes_an_element_twice(
    database_url: str, tmp_path: Path
) -> None:
    """The step after a map fails: its four elements are undone newest first. The worker is SIGKILLed in
    the second undo, once the first is recorded. The next worker undoes the second again (it was running)
    and the other two, and never the first; the run ends compensated."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(flow_app.UNMAPPED, "unmap-1", [0, 1, 2, 3], backend)
    dying = spawn(database_url, log, KILL_MARKS=str(marks))

    def undo_events() -> list[tuple[int, str]]:
        return [
            (pid, event)
            for pid, _run, _step, event, _at in read_log(log)
            if event.startswith("undo") and not event.startswith("undone")
        ]

    def hanging() -> bool:
        progress = get_workflow_status("unmap-1", backend).step("hold").progress
        return progress is not None and len(progress["undone"]) == 1 and len(undo_events()) == 2

    try:
        wait_until(hanging, 30, "one undo recorded and the second one running")
    finally:
        dying.send_signal(signal.SIGKILL)
        dying.wait(30)
    status = get_workflow_status("unmap-1", backend)
    assert status.state is RunState.COMPENSATING
    done = status.step("hold").progress["done"]
    first = status.step("hold").progress["undone"]
    assert first == [done[-1]]  # the newest element was undone first
    survivor = spawn(database_url, log, KILL_MARKS=str(marks))
    try:
        wait_until(lambda: get_workflow_status("unmap-1", backend).is_failed(), 30, "the run to end")
    finally:
        stop(survivor)
    status = get_workflow_status("unmap-1", backend)
    assert status.state is RunState.COMPENSATED
    assert status.step("hold").progress["undone"] == list(reversed(done))
    undone_by = undo_events()
    (first_pid, _), *_ = undone_by
    second_pid = next(pid for pid, _event in undone_by if pid != first_pid)
    assert [event for pid, event in undone_by if pid == first_pid] == [f"undo{done[-1]}", f"undo{done[-2]}"]
    assert [event for pid, event in undone_by if pid == second_pid] == [
        f"undo{n}" for n in reversed(done[:-1])
    ]
    backend.close()
