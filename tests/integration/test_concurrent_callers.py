"""Many callers of one workflow_id at once: one of them drives the run, every step runs once, all get its end.

Threads of one process and separate processes, on SQLite and PostgreSQL; a caller that asks not to wait is
told the run is already running; a run whose driver died is taken over at once, one whose driver lives never.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import (
    Backend,
    Flow,
    InMemoryBackend,
    RunAlreadyRunningError,
    SqliteBackend,
    get_workflow_status,
    run_durable_workflow,
    task,
)

ROOT = Path(__file__).resolve().parents[2]
CALLERS = 50

calls: Counter[str] = Counter()
calls_lock = threading.Lock()
first_step_entered = threading.Event()


def _count(name: str) -> None:
    with calls_lock:
        calls[name] += 1


@task
def reserve(order: dict) -> dict:
    _count("reserve")
    first_step_entered.set()
    time.sleep(0.05)  # long enough for every other caller to arrive while it runs
    return {**order, "reserved": True}


@task
def charge(order: dict) -> dict:
    _count("charge")
    return {**order, "charged": True}


@task
def confirm(order: dict) -> str:
    _count("confirm")
    return f"order {order['id']} confirmed"


CHECKOUT = Flow("checkout-once").then(reserve).then(charge).then(confirm).build()


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    calls.clear()
    first_step_entered.clear()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Backend]]:
    """A way to open the same backend again (a new object over the same database, for SQL backends)."""
    opened: list[Backend] = []
    if request.param == "memory":
        shared = InMemoryBackend()
        opened.append(shared)

        def factory() -> Backend:
            return shared

    elif request.param == "sqlite":

        def factory() -> Backend:
            backend = SqliteBackend(tmp_path / "runs.db")
            opened.append(backend)
            return backend

    else:
        database = request.getfixturevalue("postgres_database")
        from conveyor import PostgresBackend

        def factory() -> Backend:
            backend = PostgresBackend(database.url, max_connections=4)
            opened.append(backend)
            return backend

    yield factory
    for backend in opened:
        backend.close()


def _call_together(count: int, call: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(count)
    outcomes: list[object] = [None] * count

    def one(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = call()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_fifty_threads_sharing_a_backend_run_each_step_once(backend_factory: Callable[[], Backend]) -> None:
    """50 threads calling run_durable_workflow with one id on one backend: each step once, all completed."""
    backend = backend_factory()
    outcomes = _call_together(CALLERS, lambda: run_durable_workflow(CHECKOUT, "order-1", {"id": 1}, backend))
    assert calls == {"reserve": 1, "charge": 1, "confirm": 1}
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException), outcome
        assert outcome.is_completed()  # type: ignore[attr-defined]
        assert outcome.output() == "order 1 confirmed"  # type: ignore[attr-defined]


def test_fifty_threads_each_with_its_own_backend_object_run_each_step_once(
    backend_factory: Callable[[], Backend],
) -> None:
    """Callers holding separate backend objects over one database meet in the database's lease."""
    backends = [backend_factory() for _ in range(10)]
    counter = iter(range(CALLERS))
    lock = threading.Lock()

    def call() -> object:
        with lock:
            backend = backends[next(counter) % len(backends)]
        return run_durable_workflow(CHECKOUT, "order-2", {"id": 2}, backend)

    outcomes = _call_together(CALLERS, call)
    assert calls == {"reserve": 1, "charge": 1, "confirm": 1}
    assert all(getattr(outcome, "is_completed", lambda: False)() for outcome in outcomes), outcomes


def test_a_caller_that_asks_not_to_wait_is_told_the_run_is_already_running(
    backend_factory: Callable[[], Backend],
) -> None:
    """if_running="fail" raises RunAlreadyRunningError while another caller drives the run."""
    backend = backend_factory()
    first = threading.Thread(target=run_durable_workflow, args=(CHECKOUT, "order-3", {"id": 3}, backend))
    first.start()
    assert first_step_entered.wait(10)
    with pytest.raises(RunAlreadyRunningError, match="order-3"):
        run_durable_workflow(CHECKOUT, "order-3", {"id": 3}, backend_factory(), if_running="fail")
    first.join(timeout=30)
    assert calls == {"reserve": 1, "charge": 1, "confirm": 1}
    assert get_workflow_status("order-3", backend).is_completed()


CALLER_SCRIPT = """
import sys, time
from conveyor import Flow, SqliteBackend, PostgresBackend, run_durable_workflow, task

url, workflow_id, log, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def note(name):
    with open(log, "a") as out:
        out.write(name + "\\n")

@task
def reserve(order: dict) -> dict:
    note("reserve")
    time.sleep(pause)
    return order

@task
def charge(order: dict) -> dict:
    note("charge")
    return order

flow = Flow("checkout-processes").then(reserve).then(charge).build()
backend = SqliteBackend(url) if not url.startswith("postgresql") else PostgresBackend(url)
status = run_durable_workflow(flow, workflow_id, {"id": 1}, backend)
print(status.state.value)
"""


def _spawn(url: str, workflow_id: str, log: Path, pause: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CALLER_SCRIPT, url, workflow_id, str(log), str(pause)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL several processes can share."""
    if request.param == "sqlite":
        return str(tmp_path / "shared.db")
    return str(request.getfixturevalue("postgres_database").url)


def test_processes_calling_one_id_at_once_run_each_step_once(database_url: str, tmp_path: Path) -> None:
    """Six processes call run_durable_workflow with one id: each step runs once, all see it completed."""
    log = tmp_path / "calls.log"
    callers = [_spawn(database_url, "order-p", log, 0.5) for _ in range(6)]
    outputs = [caller.communicate(timeout=60) for caller in callers]
    assert [caller.returncode for caller in callers] == [0] * 6, outputs
    assert [out.strip() for out, _ in outputs] == ["completed"] * 6, outputs
    assert Counter(log.read_text().split()) == {"reserve": 1, "charge": 1}


def test_a_run_whose_process_was_killed_is_taken_over_at_once(database_url: str, tmp_path: Path) -> None:
    """A caller of a run whose driver was SIGKILLed on this machine resumes it without awaiting its lease."""
    log = tmp_path / "calls.log"
    victim = _spawn(database_url, "order-k", log, 60.0)
    deadline = time.monotonic() + 30
    while "reserve" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, victim.communicate(timeout=5)
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    started = time.monotonic()
    survivor = _spawn(database_url, "order-k", log, 0.0)
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    assert out.strip() == "completed"
    assert time.monotonic() - started < 10  # the lease is 15 s: it was not waited out
    assert Counter(log.read_text().split()) == {"reserve": 2, "charge": 1}
