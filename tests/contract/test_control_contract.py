"""Routes, loops and maps on every backend (the contract): what they write is stored, read back and acted
on the same way by memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson

from conveyor import Conveyor, Flow, LoopResult, NonRetryableError, RunState, StepContext, StepState, task
from conveyor.backends.base import Backend


class Log:
    """What the test workflows did and undid."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.undone: list[str] = []
        self.fail_notify = False


def shipping(log: Log) -> Any:
    """check -> route on speed: express | standard -> label -> notify (fails when asked)."""

    @task(compensate=lambda result: log.undone.append("check"))
    def check(order: dict[str, Any]) -> dict[str, Any]:
        log.done.append("check")
        return order

    def speed(order: dict[str, Any]) -> str:
        log.done.append("speed")
        return str(order["speed"])

    @task(compensate=lambda result: log.undone.append("express"))
    def express(order: dict[str, Any]) -> str:
        log.done.append("express")
        return "express"

    @task(compensate=lambda result: log.undone.append("standard"))
    def standard(order: dict[str, Any]) -> str:
        log.done.append("standard")
        return "standard"

    @task(compensate=lambda result: log.undone.append("label"))
    def label(shipment: str) -> str:
        log.done.append("label")
        return f"{shipment} labelled"

    @task
    def notify(shipment: str) -> str:
        if log.fail_notify:
            raise ValueError("mail server down")
        log.done.append("notify")
        return f"sent {shipment}"

    flow = Flow("ship").then(check).route(speed, branches={"express": express, "standard": [standard, label]})
    return flow.then(notify).build()


def test_a_route_choice_and_its_skipped_steps_are_stored_and_read_back(backend: Backend) -> None:
    """The route's result and the skipped steps come back from the backend as written."""
    log = Log()
    app = Conveyor(backend, workflows=[shipping(log)])
    assert app.run("ship", {"speed": "express"}, workflow_id="r-1").is_completed()
    stored = backend.load_run("r-1")
    assert stored is not None
    assert stored.state is RunState.COMPLETED
    assert stored.steps["speed"].result == '"express"'
    assert stored.steps["standard"].state is StepState.SKIPPED
    assert stored.steps["label"].state is StepState.SKIPPED
    assert stored.completed_count == 6  # every step is done: completed or skipped
    assert app.status("r-1").output() == "sent express"
    assert log.done == ["check", "speed", "express", "notify"]


def test_a_failure_after_a_route_undoes_the_chosen_branch_only_and_a_retry_keeps_the_choice(
    backend: Backend,
) -> None:
    """Compensation walks the chosen branch newest first; skipped steps have no undo; a retry by hand
    keeps the route's choice and runs only the failed step again."""
    log = Log()
    log.fail_notify = True
    app = Conveyor(backend, workflows=[shipping(log)])
    status = app.run("ship", {"speed": "standard"}, workflow_id="r-2")
    assert status.state is RunState.COMPENSATED
    assert log.undone == ["label", "standard", "check"]
    assert status.step("express").state is StepState.SKIPPED
    log.fail_notify = False
    log.done.clear()
    retried = app.retry("r-2")
    assert retried.is_completed()
    assert retried.output() == "sent standard labelled"
    assert retried.step("express").state is StepState.SKIPPED
    assert log.done == ["check", "standard", "label", "notify"]  # undone steps run again; the route kept


def test_a_loops_progress_is_stored_and_the_loop_resumes_from_it(backend: Backend) -> None:
    """Paused in iteration 2, the stored step holds its progress; a fresh runtime on the same backend
    resumes at iteration 3, each iteration having run once, with keys distinct per iteration."""
    calls: list[tuple[int, str]] = []
    holder: dict[str, Conveyor] = {}

    @task
    def climb(n: int, context: StepContext) -> LoopResult[dict[str, int]]:
        calls.append((n, context.idempotency_key))
        if n == 2 and "paused" not in holder:
            holder["paused"] = holder["app"]
            holder["app"].pause(context.workflow_id)
        return LoopResult.done({"top": n}) if n >= 4 else LoopResult.again(n + 1)

    workflow = Flow("climbing").loop(climb, max_iterations=10).build()
    holder["app"] = app = Conveyor(backend, workflows=[workflow])
    assert app.run("climbing", 0, workflow_id="l-1").is_paused()
    stored = backend.load_run("l-1")
    assert stored is not None
    record = stored.steps["climb"]
    assert (record.state, record.progress) == (StepState.PENDING, '{"iteration":3,"value":3}')
    again = Conveyor(backend, workflows=[workflow])
    again.resume("l-1")
    status = again.run("climbing", 0, workflow_id="l-1")
    assert status.output() == {"top": 4}
    assert status.step("climb").progress is None
    assert [n for n, _key in calls] == [0, 1, 2, 3, 4]
    assert [key for _n, key in calls] == [f"l-1:climb:{n}" for n in range(5)]


class Counter:
    """How many calls run at once, at most (a threading counter)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1


def test_a_map_with_a_failing_element_compensates_exactly_the_succeeded_ones_newest_first(
    backend: Backend,
) -> None:
    """Element 0 fails for good while 1 and 2 run; they end, and are undone newest first, each once; the
    stored step holds which elements succeeded, failed and were undone."""
    undone: list[int] = []
    gate = threading.Event()

    @task(compensate=lambda result, line: undone.append(line["n"]))
    def reserve(line: dict[str, int]) -> int:
        if line["n"] == 0:
            gate.set()
            time.sleep(0.02)
            raise NonRetryableError("out of stock")
        gate.wait(5)
        time.sleep(0.05)
        return line["n"]

    workflow = Flow("reserving").map(reserve, max_concurrency=3).build()
    app = Conveyor(backend, workflows=[workflow])
    status = app.run("reserving", [{"n": n} for n in range(6)], workflow_id="m-1")
    assert status.state is RunState.COMPENSATED
    stored = backend.load_run("m-1")
    assert stored is not None
    record = stored.steps["reserve"]
    assert record.state is StepState.COMPENSATED
    assert record.progress is not None
    progress = orjson.loads(record.progress)
    assert sorted(progress["done"]) == [1, 2]
    assert progress["failed"] == [0]
    assert undone == list(reversed(progress["done"])) == progress["undone"]
    assert app.status("m-1").step("reserve").elements == {
        "count": 6, "done": 2, "failed": 1, "undone": 2, "undo_failed": 0,
    }  # fmt: skip


def test_a_map_runs_no_more_elements_at_once_than_its_limit(backend: Backend) -> None:
    """Ten slow elements, max_concurrency=4: at most four at once (and four do), results in order."""
    counter = Counter()

    def pick(n: int) -> int:
        with counter:
            time.sleep(0.03)
        return n * n

    workflow = Flow("picking").map(pick, max_concurrency=4).build()
    status = Conveyor(backend, workflows=[workflow]).run("picking", list(range(10)), workflow_id="m-2")
    assert status.output() == [n * n for n in range(10)]
    assert counter.most == 4


def test_a_maps_stored_progress_is_read_back_and_only_the_unfinished_elements_run_again(
    backend: Backend,
) -> None:
    """Paused while elements run, the stored step holds the finished elements; a fresh runtime on the same
    backend runs only the others, and the result keeps the order of the list."""
    calls: list[tuple[int, str]] = []
    holder: dict[str, Conveyor] = {}
    paused = threading.Event()

    def pack(n: int, context: StepContext) -> str:
        calls.append((n, context.idempotency_key))
        if n == 1 and "paused" not in holder:
            holder["paused"] = holder["app"]
            holder["app"].pause(context.workflow_id)
            paused.set()
        elif not paused.is_set():  # the other slot waits for the pause: on a slow database the pause's
            paused.wait(10)  # writes took long enough for the other slot to run every element meanwhile
        return f"box {n}"

    workflow = Flow("packing").map(pack, max_concurrency=2).build()
    holder["app"] = app = Conveyor(backend, workflows=[workflow])
    assert app.run("packing", [0, 1, 2, 3, 4], workflow_id="m-3").is_paused()
    stored = backend.load_run("m-3")
    assert stored is not None
    record = stored.steps["pack"]
    assert record.state is StepState.PENDING
    assert record.progress is not None
    finished = sorted(int(index) for index in orjson.loads(record.progress)["results"])
    assert finished == sorted(n for n, _key in calls)
    again = Conveyor(backend, workflows=[workflow])
    again.resume("m-3")
    status = again.run("packing", [0, 1, 2, 3, 4], workflow_id="m-3")
    assert status.output() == [f"box {n}" for n in range(5)]
    assert sorted(n for n, _key in calls) == [0, 1, 2, 3, 4]  # each element ran once
    assert sorted(key for _n, key in calls) == [f"m-3:pack:{n}" for n in range(5)]
