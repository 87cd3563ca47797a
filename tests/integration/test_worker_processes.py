"""Worker processes sharing one database: a killed worker's runs are resumed by the others, SIGTERM lets a
step finish, and a run that kills every worker is dead-lettered."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import worker_app
from worker_support import count_completed, read_log, spawn_worker, wait_until

from conveyor import RunState, get_workflow_status, start_workflow
from conveyor.backends.urls import open_backend
from postgres_support import PostgresDatabase, terminate_sessions


def test_three_workers_share_300_runs_while_one_is_killed(database_url: str, tmp_path: Path) -> None:
    """Every run completes, no completed step runs twice, and the victim's runs resume within TTL + 1 s."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    ids = [f"order-{n}" for n in range(300)]
    for run in ids:
        start_workflow(worker_app.ORDERS, run, {"id": run}, backend)
    lease = 1.0
    options = ("--concurrency", "4", "--lease-seconds", str(lease), "--poll-interval-seconds", "1")
    workers = [spawn_worker(database_url, log, *options, STEP_SECONDS="0.01") for _ in range(3)]
    try:
        wait_until(lambda: count_completed(backend, ids) >= 60, 60, "60 completed runs")
        victim = workers[0]
        # Kill it mid-step (so that it dies holding runs), not while it happens to be idle.
        wait_until(lambda: _in_a_step(log, victim.pid), 30, "the victim to be in the middle of a step")
        victim.send_signal(signal.SIGKILL)
        killed_at = time.time()
        victim.wait(10)
        wait_until(lambda: count_completed(backend, ids) == 300, 90, "all 300 runs to complete")
    finally:
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        exits = [worker.wait(30) for worker in workers[1:]]
    assert exits == [0, 0]

    starts: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for pid, run, step, event, at in read_log(log):
        if event == "start":
            starts[(run, step)].append((pid, at))
    assert set(starts) == {(run, step) for run in ids for step in ("reserve", "charge", "confirm")}
    repeated = {key: runs for key, runs in starts.items() if len(runs) > 1}
    # Only steps the victim was in the middle of ran again, each once more, by a survivor.
    assert len(repeated) <= 4
    for first, *again in repeated.values():
        assert first[0] == victim.pid
        assert len(again) == 1
        assert again[0][0] != victim.pid
        assert again[0][1] - killed_at <= lease + 1.0
    assert len(repeated) >= 1  # the victim died holding runs, and they were recovered
    # Each recovered run recorded a step since: none counts a recovery towards dead-lettering any more.
    assert all(get_workflow_status(run, backend).recoveries == 0 for run in ids)
    backend.close()


def test_sigterm_lets_the_step_in_flight_finish(database_url: str, tmp_path: Path) -> None:
    """A worker told to stop mid-step finishes the step, records it, and exits cleanly."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.SLOW, "slow-1", {}, backend)
    worker = spawn_worker(database_url, log, "--grace-seconds", "10")
    wait_until(lambda: log.exists() and "slow start" in log.read_text(), 20, "the step to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert [row[3] for row in read_log(log)] == ["start", "done"]
    status = get_workflow_status("slow-1", backend)
    assert status.is_completed()
    assert status.output() == "slow done"
    backend.close()


def test_a_run_that_kills_every_worker_is_dead_lettered(database_url: str, tmp_path: Path) -> None:
    """After max_recoveries recoveries the run is set aside as dead_lettered, saying why."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.CRASHING, "doomed", {}, backend)
    options = ("--until-idle", "--lease-seconds", "0.2", "--max-recoveries", "2")
    for _ in range(6):
        if get_workflow_status("doomed", backend).state is RunState.DEAD_LETTERED:
            break
        time.sleep(0.25)  # let the dead worker's lease expire
        spawn_worker(database_url, log, *options).wait(20)
    status = get_workflow_status("doomed", backend)
    assert status.state is RunState.DEAD_LETTERED
    assert len(read_log(log)) == 3  # the first claim and two recoveries
    error = status.error()
    assert error is not None
    assert error.step_name == "crash"
    assert error.error_type == "DeadLettered"
    assert "died 3 times" in error.message
    backend.close()


def test_a_paused_worker_cannot_commit_over_the_worker_that_took_its_run(
    database_url: str, tmp_path: Path
) -> None:
    """SIGSTOP past the lease: another worker takes the run over; after SIGCONT the first one's write is
    refused, and counted."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.SLOW, "paused-1", {}, backend)
    options = ("--concurrency", "1", "--lease-seconds", "0.5", "--poll-interval-seconds", "0.2")
    paused = spawn_worker(database_url, log, *options)
    wait_until(lambda: log.exists() and "slow start" in log.read_text(), 20, "the step to start")
    paused.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.0)  # the paused worker's lease (0.5 s) runs out
        taker = spawn_worker(database_url, log, *options)
        wait_until(lambda: get_workflow_status("paused-1", backend).is_completed(), 30, "the takeover")
    finally:
        paused.send_signal(signal.SIGCONT)
    wait_until(lambda: _done_by(log, paused.pid), 20, "the paused worker's step to end")
    time.sleep(0.3)  # let the resumed worker try (and fail) to record its step
    for worker in (paused, taker):
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    output = (tmp_path / "workers.out").read_text()
    stats = [
        line for line in output.splitlines() if "stopped: WorkerStats" in line and f":{paused.pid}:" in line
    ]
    assert len(stats) == 1
    assert "leases_lost=1" in stats[0]
    status = get_workflow_status("paused-1", backend)
    assert status.output() == "slow done"
    assert status.recoveries == 0  # the taker recorded the step: progress since its one recovery
    backend.close()


def _in_a_step(log: Path, pid: int) -> bool:
    """Whether worker ``pid`` has started a step it has not finished (as its log says now)."""
    open_steps: set[tuple[str, str]] = set()
    for row_pid, run, step, event, _at in read_log(log):
        if row_pid == pid:
            (open_steps.add if event == "start" else open_steps.discard)((run, step))
    return bool(open_steps)


def _done_by(log: Path, pid: int) -> bool:
    return any(row[0] == pid and row[3] == "done" for row in read_log(log))


def test_workers_survive_their_connections_being_killed(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    """pg_terminate_backend on every conveyor connection mid-run: all 200 runs complete, and new work is
    picked up through LISTEN/NOTIFY again, long before the 30 s fallback poll."""
    log = tmp_path / "steps.log"
    url = postgres_database.url
    backend = open_backend(url)
    ids = [f"order-{n}" for n in range(200)]
    for run in ids:
        start_workflow(worker_app.ORDERS, run, {"id": run}, backend)
    options = ("--concurrency", "4", "--lease-seconds", "2", "--poll-interval-seconds", "30")
    workers = [spawn_worker(url, log, *options, STEP_SECONDS="0.005") for _ in range(2)]
    try:
        wait_until(lambda: count_completed(backend, ids) >= 40, 60, "40 completed runs")
        assert terminate_sessions(postgres_database.server, postgres_database.name) > 0
        wait_until(lambda: count_completed(backend, ids) == 200, 90, "all 200 runs to complete")
        time.sleep(0.5)  # the workers are idle, waiting on LISTEN
        started = time.monotonic()
        start_workflow(worker_app.ORDERS, "late", {"id": "late"}, backend)
        wait_until(lambda: get_workflow_status("late", backend).is_completed(), 10, "the late run")
        assert time.monotonic() - started < 5
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits = [worker.wait(30) for worker in workers]
    assert exits == [0, 0]
    backend.close()
