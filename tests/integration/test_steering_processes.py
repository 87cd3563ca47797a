"""Cancel and pause runs that real worker processes drive, with workers killed (SIGKILL) meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import worker_app
from worker_support import HERE, read_log, spawn_worker, starts_of, wait_until

from conveyor import RunState, get_workflow_status, start_workflow
from conveyor.backends.urls import open_backend

OPTIONS = ("--lease-seconds", "1", "--poll-interval-seconds", "1")


def cli(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the ``conveyor`` command in its own process, against ``url``, without the workflows' app."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", *arguments, "--backend", url],
        env={**os.environ, "PYTHONPATH": str(HERE)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def events(log: Path, step: str) -> list[str]:
    """The events logged for ``step``, in order."""
    return [row[3] for row in read_log(log) if row[2] == step]


def test_a_cancel_tells_the_running_step_and_the_worker_compensates(
    database_url: str, tmp_path: Path
) -> None:
    """``conveyor cancel`` from another process reaches a running step; book is undone; finish never runs."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.STEERED, "s-1", {}, backend)
    worker = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="30", WORKER_LOG=str(log))
    try:
        wait_until(lambda: starts_of(log, "work") == 1, 30, "the working step to start")
        done = cli(database_url, "cancel", "s-1", "--reason", "customer asked")
        assert done.returncode == 0, done.stderr
        wait_until(lambda: get_workflow_status("s-1", backend).is_cancelled(), 20, "the run to be cancelled")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    status = get_workflow_status("s-1", backend)
    assert status.cancel_reason == "customer asked"
    assert events(log, "book") == ["start", "done", "undo"]
    assert events(log, "work") == ["start"]  # stopped, not swallowed, never done
    assert events(log, "finish") == []
    backend.close()


def test_a_run_cancelled_while_its_worker_is_dead_is_compensated_by_the_next(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL the worker mid-step, cancel, start a new worker: it compensates, never runs another step."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.STEERED, "s-2", {}, backend)
    first = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="30")
    wait_until(lambda: starts_of(log, "work") == 1, 30, "the working step to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    done = cli(database_url, "cancel", "s-2", "--reason", "out of stock")
    assert done.returncode == 0, done.stderr
    assert get_workflow_status("s-2", backend).cancel_reason == "out of stock"  # stored, durable
    second = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="30")
    try:
        wait_until(lambda: get_workflow_status("s-2", backend).is_cancelled(), 30, "the run to be cancelled")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert events(log, "book") == ["start", "done", "undo"]
    assert starts_of(log, "work") == 1  # the cancelled step is not run again
    assert events(log, "finish") == []
    backend.close()


def test_a_paused_run_stays_paused_across_a_killed_worker_and_resumes_where_it_stopped(
    database_url: str, tmp_path: Path
) -> None:
    """Pause mid-step: the step finishes, is recorded; SIGKILL; a new worker starts nothing until resume."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.STEERED, "s-3", {}, backend)
    first = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="1.5")
    wait_until(lambda: starts_of(log, "work") == 1, 30, "the working step to start")
    paused = cli(database_url, "pause", "s-3")
    assert paused.returncode == 0, paused.stderr
    wait_until(lambda: events(log, "work") == ["start", "done"], 30, "the working step to finish")
    wait_until(
        lambda: get_workflow_status("s-3", backend).step("work").state.value == "completed", 30, "its record"
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = spawn_worker(database_url, log, *OPTIONS)
    try:
        time.sleep(2.5)  # past the dead worker's lease: the new one could claim the run, and must not
        status = get_workflow_status("s-3", backend)
        assert status.is_paused()
        assert status.state is RunState.RUNNING
        assert events(log, "finish") == []
        resumed = cli(database_url, "unpause", "s-3")
        assert resumed.returncode == 0, resumed.stderr
        wait_until(lambda: get_workflow_status("s-3", backend).is_completed(), 30, "the run to complete")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert starts_of(log, "book") == 1
    assert starts_of(log, "work") == 1
    assert starts_of(log, "finish") == 1
    cancelled = cli(database_url, "cancel", "s-3")
    assert cancelled.returncode == 1
    assert "already ended (completed)" in cancelled.stderr
    backend.close()


def test_a_run_past_its_deadline_is_cancelled_even_after_its_worker_was_killed(
    database_url: str, tmp_path: Path
) -> None:
    """The deadline is stored with the run: a worker started after the first was killed cancels it."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    app = worker_app.app.using(backend)
    app.start("steered", {}, workflow_id="s-4", deadline_seconds=2.0)
    first = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="30")
    wait_until(lambda: starts_of(log, "work") == 1, 30, "the working step to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="30")
    try:
        wait_until(lambda: get_workflow_status("s-4", backend).is_cancelled(), 30, "the run to be cancelled")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    status = get_workflow_status("s-4", backend)
    assert status.cancel_reason == "the run passed its deadline"
    assert events(log, "book") == ["start", "done", "undo"]
    assert events(log, "finish") == []
    backend.close()


def test_a_running_step_is_stopped_at_the_deadline(database_url: str, tmp_path: Path) -> None:
    """While a step runs past the run's deadline, the heartbeat tells it; the run is compensated."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    worker_app.app.using(backend).start("steered", {}, workflow_id="s-5", deadline_seconds=2.0)
    worker = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="30")
    try:
        wait_until(lambda: get_workflow_status("s-5", backend).is_cancelled(), 30, "the run to be cancelled")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert events(log, "work") == ["start"]
    assert events(log, "book") == ["start", "done", "undo"]
    backend.close()


def test_a_completed_run_is_undone_by_the_cli_and_a_worker_process(database_url: str, tmp_path: Path) -> None:
    """``conveyor compensate`` on a completed run records the request; a worker process runs the undos."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.STEERED, "s-6", {}, backend)
    first = spawn_worker(database_url, log, *OPTIONS, WORK_SECONDS="0.05")
    try:
        wait_until(lambda: get_workflow_status("s-6", backend).is_completed(), 30, "the run to complete")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    done = cli(database_url, "compensate", "s-6", "--reason", "returned")
    assert done.returncode == 0, done.stderr
    assert get_workflow_status("s-6", backend).state is RunState.COMPENSATING  # stored, durable
    second = spawn_worker(database_url, log, *OPTIONS)
    try:
        wait_until(lambda: get_workflow_status("s-6", backend).is_cancelled(), 30, "the run to be undone")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert get_workflow_status("s-6", backend).cancel_reason == "returned"
    assert events(log, "book") == ["start", "done", "undo"]
    assert starts_of(log, "finish") == 1  # nothing ran again
    again = cli(database_url, "compensate", "s-6")
    assert again.returncode == 0, again.stderr  # undone already: harmless
    backend.close()
