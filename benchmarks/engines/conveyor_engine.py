"""conveyor under the benchmarks: one client in process, worker processes, wake-up, and worker death."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    STEPS,
    bare_workflow,
    check,
    latency_result,
    median,
    order,
    recreate_database,
    remove_sqlite,
    scratch_dir,
    started_by,
    throughput_result,
    timed_repetitions,
    wait_for_line,
)
from benchmarks.engines.conveyor_analytics import analytics, finish_cost
from benchmarks.engines.conveyor_api import api
from benchmarks.engines.conveyor_observing import observed
from benchmarks.engines.conveyor_waiting import signal_wakeup, waiting_runs
from benchmarks.processes import WorkerGroup, python_command

APP = "benchmarks.engines.conveyor_app"
WARM_UP = 20


def _workflow(shape: str) -> Any:
    from benchmarks.engines import conveyor_app

    return conveyor_app.SEQ if shape == "seq" else conveyor_app.FJ


def _postgres(database: str) -> tuple[Any, str]:
    from conveyor.backends.postgres import PostgresBackend

    url = recreate_database(database)
    backend = PostgresBackend(url)
    backend.migrate()
    return backend, url


def _sqlite_url(path: Path, synchronous: str = "FULL") -> str:
    return f"sqlite:///{path}" + ("" if synchronous == "FULL" else f"?synchronous={synchronous}")


def _verify(workflow: Any, backend: Any, ids: list[tuple[str, int]]) -> list[Any]:
    """Check that every run completed with the right output; return their statuses."""
    from conveyor import get_workflow_status

    statuses = []
    for workflow_id, number in ids:
        status = get_workflow_status(workflow_id, backend, workflow)
        if not status.is_completed():
            raise AssertionError(f"run {workflow_id} ended {status.state.value}: {status.error()}")
        check(f"conveyor {workflow_id}", status.output(), number)
        statuses.append(status)
    return statuses


# -- one client: run_durable_workflow in this process ---------------------------------------------------


def throughput(backend: str, shape: str, count: int, repetitions: int) -> dict:
    """Sequential ``run_durable_workflow`` calls on memory, sqlite-full, sqlite-normal or postgres."""
    from conveyor import InMemoryBackend, SqliteBackend, run_durable_workflow

    workflow = _workflow(shape)
    with scratch_dir("conveyor") as folder:
        shared: Any = None
        if backend == "postgres":
            shared, _ = _postgres("conveyor_bench_client")
            observed(shared)

        def open_backend(repetition: int) -> Any:
            if backend == "memory":
                return observed(InMemoryBackend())
            if backend.startswith("sqlite"):
                path = folder / f"client-{repetition}.db"
                remove_sqlite(path)
                synchronous = "FULL" if backend == "sqlite-full" else "NORMAL"
                return observed(SqliteBackend(path, synchronous=synchronous))
            return shared

        try:
            checked = open_backend(-1)
            for number in range(WARM_UP):  # correctness first (and warm caches, connections)
                status = run_durable_workflow(workflow, f"warm-{number}", order(number), checked)
                check("conveyor", status.output(), number)
            backends = [open_backend(repetition) for repetition in range(repetitions)]
            inputs = [order(number) for number in range(count)]

            def run_once(repetition: int) -> None:
                target = backends[repetition]
                for number in range(count):
                    run_durable_workflow(workflow, f"r{repetition}-{number}", inputs[number], target)

            seconds = timed_repetitions(run_once, repetitions)
            for repetition, target in enumerate(backends):
                _verify(workflow, target, [(f"r{repetition}-{n}", n) for n in range(0, count, 7)])
            body = None
            if backend == "memory":
                body = median(timed_repetitions(lambda _: [bare_workflow(shape, i) for i in inputs], 5))
            return throughput_result(seconds, count, STEPS[shape], body)
        finally:
            if shared is not None:
                shared.close()


# -- worker processes -----------------------------------------------------------------------------------


def _worker_command(url: str, *extra: str) -> list[str]:
    return python_command("-m", "conveyor.cli", "worker", "--backend", url, "--app", APP, *extra)


def _stable_names() -> bool:
    """Whether ``conveyor worker`` takes ``--name`` (restarted under it, a worker takes its runs back)."""
    from conveyor.cli import parser

    for action in parser()._actions:  # the worker subcommand's own options
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and "worker" in choices:
            return "--name" in choices["worker"].format_help()
    return False


def concurrent(
    backend: str, workers: int, count: int, repetitions: int, concurrency: int = 8, shape: str = "seq"
) -> dict:
    """``count`` runs submitted with ``start_workflow``, then drained by ``workers`` worker processes.

    The workers start, import and connect first, then wait on a go file; the time is from their release
    to the last step's end (read from the runs' statuses), so process start-up is not counted.
    """
    from conveyor import SqliteBackend, start_workflow

    workflow = _workflow(shape)
    seconds: list[float] = []
    submit_rates: list[float] = []
    with scratch_dir("conveyor-workers") as folder:
        for repetition in range(repetitions):
            if backend == "postgres":
                client, url = _postgres("conveyor_bench_workers")
            else:
                path = folder / f"workers-{repetition}.db"
                client, url = SqliteBackend(path), _sqlite_url(path)
            group = WorkerGroup(folder / f"rep-{repetition}", hold=True)
            try:
                started = time.perf_counter()
                ids = []
                for number in range(count):
                    workflow_id = f"c{repetition}-{number}"
                    start_workflow(workflow, workflow_id, order(number), client)
                    ids.append((workflow_id, number))
                submit_rates.append(count / (time.perf_counter() - started))
                for _ in range(workers):
                    group.spawn(_worker_command(url, "--concurrency", str(concurrency), "--until-idle"))
                group.wait_ready()
                released = group.release()
                group.wait_exit(timeout=max(120.0, count / 20))
                statuses = _verify(workflow, client, ids)
                last = max(
                    step.finished_at.timestamp() for s in statuses for step in s.steps if step.finished_at
                )
                seconds.append(last - released)
            finally:
                group.stop()
                client.close()
    result = throughput_result(seconds, count, STEPS[shape])
    result["submit_wf_per_s"] = median(submit_rates)
    result["workers"] = workers
    result["concurrency"] = concurrency
    return result


def wakeup(backend: str, samples: int) -> dict:
    """Start-to-first-step latency with one idle worker: ``start_workflow`` until the first step starts."""
    from benchmarks.engines import conveyor_app
    from conveyor import SqliteBackend, start_workflow

    with scratch_dir("conveyor-wakeup") as folder:
        if backend == "postgres":
            client, url = _postgres("conveyor_bench_wakeup")
        else:
            path = folder / "wakeup.db"
            client, url = SqliteBackend(path), _sqlite_url(path)
        group = WorkerGroup(folder)
        try:
            group.spawn(_worker_command(url, "--concurrency", "8"))
            group.wait_ready()
            latencies = []
            for number in range(-5, samples):  # five warm-up runs, not counted
                time.sleep(random.uniform(0.02, 0.04))  # let the worker go idle again
                started = time.time()
                handle = start_workflow(conveyor_app.LATENCY, f"w{number}", {"n": number}, client)
                output = handle.result(timeout=30)
                if output["n"] != number:
                    raise AssertionError(f"latency probe {number} returned {output!r}")
                if number >= 0:
                    latencies.append(output["started"] - started)
            return latency_result(latencies)
        finally:
            group.stop()
            client.close()


def failover(backend: str, mode: str, samples: int, lease_seconds: float = 2.0) -> dict:
    """SIGKILL a worker mid-step; time until the step runs again.

    ``takeover``: another idle worker (already running) resumes the run, measured from the kill.
    ``restart``: a new worker is started right after the kill, measured from when it is up (its workflows
    imported); spawn-to-resume and kill-to-resume are reported too.
    """
    from benchmarks.engines import conveyor_app
    from conveyor import SqliteBackend, start_workflow

    measured: list[float] = []
    from_spawn: list[float] = []
    from_kill: list[float] = []
    named = mode == "restart" and _stable_names()
    with scratch_dir("conveyor-failover") as folder:
        if backend == "postgres":
            client, url = _postgres("conveyor_bench_failover")
        else:
            path = folder / "failover.db"
            client, url = SqliteBackend(path), _sqlite_url(path)
        try:
            for sample in range(samples):
                log = folder / f"steps-{sample}.log"
                group = WorkerGroup(folder / f"sample-{sample}")
                extra: tuple[str, ...] = ("--concurrency", "4", "--lease-seconds", str(lease_seconds))
                if named:  # the restarted worker comes back under the dead one's name
                    extra += ("--name", f"bench-worker-{sample}")
                try:
                    doomed = group.spawn(
                        _worker_command(url, *extra), BENCH_STEP_LOG=str(log), BENCH_SLOW_SECONDS="60"
                    )
                    group.wait_ready()
                    workflow_id = f"f{sample}"
                    handle = start_workflow(conveyor_app.FAILOVER, workflow_id, order(sample), client)
                    label = f"{workflow_id}:slow"
                    if not wait_for_line(log, started_by(doomed.pid, label), 30):
                        raise TimeoutError(f"the first worker never started the slow step: {group.tail()}")
                    survivor_env = {"BENCH_STEP_LOG": str(log), "BENCH_SLOW_SECONDS": "0.01"}
                    if mode == "takeover":
                        survivor = group.spawn(_worker_command(url, *extra), **survivor_env)
                        group.wait_ready(processes=[survivor])
                        time.sleep(0.5)  # the survivor is past its first claim and idle
                        time.sleep(random.uniform(0, lease_seconds / 3))  # anywhere in the renewal cycle
                        killed = time.time()
                        doomed.kill()
                    else:
                        time.sleep(random.uniform(0, lease_seconds / 3))
                        killed = time.time()
                        doomed.kill()
                        doomed.wait()
                        spawned = time.time()
                        survivor = group.spawn(_worker_command(url, *extra), **survivor_env)
                    line = wait_for_line(log, started_by(survivor.pid, label), 120)
                    if line is None:
                        raise TimeoutError(f"no worker resumed the run within 120 s: {group.tail()}")
                    resumed = float(line[3])
                    from_kill.append(resumed - killed)
                    if mode == "takeover":
                        measured.append(resumed - killed)
                    else:
                        up = group.up_at(survivor)
                        assert up is not None
                        measured.append(resumed - up)
                        from_spawn.append(resumed - spawned)
                    output = handle.result(timeout=60)
                    expected = {**order(sample), "prepared": True, "slow": True, "finished": True}
                    if output != expected:
                        raise AssertionError(f"failover run {workflow_id} returned {output!r}")
                finally:
                    group.stop()
        finally:
            client.close()
    result = latency_result(measured, lease_seconds=lease_seconds, mode=mode, stable_name=named)
    result["from_kill_ms"] = [round(s * 1000, 1) for s in from_kill]
    if from_spawn:
        result["from_spawn_ms"] = [round(s * 1000, 1) for s in from_spawn]
    return result


MEASUREMENTS = {
    "throughput": throughput,
    "concurrent": concurrent,
    "wakeup": wakeup,
    "failover": failover,
    "signal_wakeup": signal_wakeup,
    "waiting_runs": waiting_runs,
    "analytics": analytics,
    "finish_cost": finish_cost,
    "api": api,
}
