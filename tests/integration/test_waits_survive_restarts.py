"""Durable sleep and signals across real worker processes: SIGKILL the worker while a run sleeps or waits
(or in the middle of consuming a signal), and a new worker process finishes the run correctly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import worker_app
from worker_support import read_log, spawn_worker, wait_until

from conveyor import RunState, StepState, get_workflow_status, send_signal, start_workflow
from conveyor.backends.base import Backend
from conveyor.backends.urls import open_backend

OPTIONS = ("--concurrency", "1", "--lease-seconds", "1", "--poll-interval-seconds", "1")


def step_state(backend: Backend, workflow_id: str, step: str) -> StepState:
    return get_workflow_status(workflow_id, backend).step(step).state


def kill(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)


def stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_sleep_survives_a_killed_worker_and_wakes_at_the_time_recorded_before(
    database_url: str, tmp_path: Path
) -> None:
    """The wake time is recorded when the sleep starts; after SIGKILL a new worker wakes the run then, not a
    full sleep after its own start. Meanwhile the sleeping run holds no slot: with one slot, another run
    completes while it sleeps."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.SLEEPING, "nap-1", {"id": "nap-1"}, backend)
    first = spawn_worker(database_url, log, *OPTIONS)
    try:
        wait_until(lambda: step_state(backend, "nap-1", "nap") is StepState.WAITING, 30, "the sleep to start")
        wake = get_workflow_status("nap-1", backend).step("nap").next_attempt_at
        assert wake is not None
        start_workflow(worker_app.ORDERS, "other-1", {"id": "other-1"}, backend)
        wait_until(
            lambda: get_workflow_status("other-1", backend).is_completed(), 30, "a run beside the sleeper"
        )
        assert get_workflow_status("nap-1", backend).state is RunState.RUNNING
    finally:
        kill(first)
    restarted_at = time.time()
    second = spawn_worker(database_url, log, *OPTIONS)
    try:
        wait_until(lambda: get_workflow_status("nap-1", backend).is_completed(), 30, "the sleeper to finish")
    finally:
        stop(second)
    assert get_workflow_status("nap-1", backend).output() == "confirmed nap-1"
    confirmed = [at for pid, run, step, event, at in read_log(log) if run == "nap-1" and step == "confirm"]
    assert confirmed[0] >= wake.timestamp()
    assert confirmed[0] < restarted_at + worker_app.SLEEPING.step("nap").waits.seconds  # type: ignore[union-attr]
    assert (
        len([row for row in read_log(log) if row[1] == "nap-1" and row[2] == "reserve"]) == 2
    )  # start, done
    backend.close()


def test_a_signal_sent_while_no_worker_lives_resumes_the_run_in_a_new_worker(
    database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.TWO_TICKS, "ticks-1", None, backend)
    first = spawn_worker(database_url, log, *OPTIONS)
    try:
        wait_until(lambda: step_state(backend, "ticks-1", "first") is StepState.WAITING, 30, "the wait")
    finally:
        kill(first)
    send_signal("ticks-1", "tick", {"n": 1}, backend)
    send_signal("ticks-1", "tick", {"n": 2}, backend)
    second = spawn_worker(database_url, log, *OPTIONS)
    try:
        wait_until(lambda: get_workflow_status("ticks-1", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(second)
    status = get_workflow_status("ticks-1", backend)
    assert status.step("first").result == {"n": 1}
    assert status.step("second").result == {"n": 2}
    backend.close()


def _run_killed_around_consuming(database_url: str, tmp_path: Path, when: str) -> None:
    log = tmp_path / "steps.log"
    marks = tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(worker_app.TWO_TICKS, "ticks-2", None, backend)
    for n in (1, 2, 3):  # quick successive signals of one name, all sent before the run reaches its waits
        send_signal("ticks-2", "tick", n, backend)
    dying = spawn_worker(database_url, log, *OPTIONS, KILL_ON_CONSUME=when, KILL_MARKS=str(marks))
    assert dying.wait(30) == 3  # it died in the middle of consuming the first signal
    status = get_workflow_status("ticks-2", backend)
    expected_first = StepState.COMPLETED if when == "after" else StepState.WAITING
    assert status.step("first").state in (expected_first, StepState.PENDING)
    survivor = spawn_worker(database_url, log, *OPTIONS, KILL_ON_CONSUME=when, KILL_MARKS=str(marks))
    try:
        wait_until(lambda: get_workflow_status("ticks-2", backend).is_completed(), 30, "the run to finish")
    finally:
        stop(survivor)
    status = get_workflow_status("ticks-2", backend)
    assert (status.step("first").result, status.step("second").result) == (1, 2)  # none lost, none twice
    assert status.output() == 2
    left = backend.next_signal("ticks-2", ["tick"])
    assert left is not None
    assert left.payload == "3"  # the third is still kept for a later wait
    backend.close()


def test_a_worker_killed_before_consuming_a_signal_commits_loses_none(
    database_url: str, tmp_path: Path
) -> None:
    _run_killed_around_consuming(database_url, tmp_path, "before")


def test_a_worker_killed_just_after_consuming_a_signal_duplicates_none(
    database_url: str, tmp_path: Path
) -> None:
    _run_killed_around_consuming(database_url, tmp_path, "after")


def test_a_signal_wakes_an_idle_worker_promptly(database_url: str, tmp_path: Path) -> None:
    """A worker whose fallback poll is 30 s resumes a waiting run within a second of the signal."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.TWO_TICKS, "ticks-3", None, backend)
    worker = spawn_worker(database_url, log, "--poll-interval-seconds", "30")
    try:
        wait_until(lambda: step_state(backend, "ticks-3", "first") is StepState.WAITING, 30, "the wait")
        time.sleep(0.5)  # the worker is idle now
        sent = time.time()
        send_signal("ticks-3", "tick", "a", backend)
        send_signal("ticks-3", "tick", "b", backend)
        wait_until(lambda: get_workflow_status("ticks-3", backend).is_completed(), 10, "the run to finish")
        assert time.time() - sent < 1.5
    finally:
        stop(worker)
    backend.close()
