"""Each kind of event, on every backend, from real runs: timeouts, waits, loops, routes, undos that keep
failing, undoing a completed run, and an operator's skip."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from conveyor import Conveyor, Flow, LoopResult, RetryPolicy, task
from conveyor.backends.base import Backend
from conveyor.core.states import RunState


@task
def passthrough(value: dict[str, Any]) -> dict[str, Any]:
    return value


@task(timeout_secs=0.05)
async def too_slow(value: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(2)
    return value


@task(compensation_retries=RetryPolicy(max_retries=3, initial_delay_secs=0.001))
def kept(value: dict[str, Any]) -> dict[str, Any]:
    return value


@kept.compensate
def undo_that_breaks(value: dict[str, Any]) -> None:
    raise RuntimeError("undo broke")


@task
def boom(value: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("boom")


def count_to_two(state: dict[str, Any]) -> LoopResult[dict[str, Any]]:
    done = state.get("n", 0)
    return LoopResult.done(state) if done >= 2 else LoopResult.again({**state, "n": done + 1})


def fast(value: dict[str, Any]) -> str:
    return "fast"


FLOWS = [
    Flow("timeouts").then(too_slow).build(),
    Flow("undo_fails").then(kept).then(boom).build(),
    Flow("skippable").then(passthrough).then(boom).build(),
    Flow("loops")
    .loop(count_to_two, max_iterations=5)
    .route(fast, branches={"fast": passthrough, "slow": [kept]})
    .then(passthrough, name="end")
    .build(),
    Flow("waits").then(passthrough).wait_for_signal("go").then(passthrough, name="after").build(),
]


def kinds_of(app: Conveyor, workflow_id: str) -> list[tuple[str, str | None]]:
    return [(event.kind, event.step) for event in app.history(workflow_id)]


def test_a_timeout_is_its_own_event_before_the_failure(backend: Backend) -> None:
    app = Conveyor(backend, workflows=FLOWS)
    assert app.run("timeouts", {}, workflow_id="t").state is RunState.FAILED
    assert kinds_of(app, "t") == [
        ("run.started", None),
        ("step.started", "too_slow"),
        ("step.timed_out", "too_slow"),
        ("step.failed", "too_slow"),
        ("run.failed", None),
    ]


def test_an_undo_that_keeps_failing_records_each_attempt_and_the_runs_end(backend: Backend) -> None:
    app = Conveyor(backend, workflows=FLOWS)
    assert app.run("undo_fails", {}, workflow_id="u").state is RunState.COMPENSATION_FAILED
    events = app.history("u")
    undos = [event for event in events if event.kind == "undo.failed"]
    assert [event.attempt for event in undos] == list(range(1, len(undos) + 1))
    assert undos[-1].data["final"] is True
    assert all(event.data["final"] is False for event in undos[:-1])
    assert undos[0].error_message == "undo broke"
    assert events[-1].kind == "run.compensation_failed"


def test_loops_progress_routes_skip_and_undoing_a_completed_run_is_recorded(backend: Backend) -> None:
    app = Conveyor(backend, workflows=FLOWS)
    assert app.run("loops", {}, workflow_id="l").state is RunState.COMPLETED
    assert kinds_of(app, "l")[:8] == [
        ("run.started", None),
        ("step.progressed", "count_to_two"),
        ("step.progressed", "count_to_two"),
        ("step.started", "count_to_two"),
        ("step.completed", "count_to_two"),
        ("step.started", "fast"),
        ("step.completed", "fast"),
        ("step.skipped", "kept"),
    ]
    assert app.compensate("l", "returned").state is RunState.CANCELLED
    assert kinds_of(app, "l")[-4:] == [
        ("run.completed", None),
        ("run.compensation_requested", None),
        ("run.compensating", None),
        ("run.cancelled", None),
    ]


def test_a_wait_for_a_signal_records_the_wait_and_the_signal(backend: Backend) -> None:
    app = Conveyor(backend, workflows=FLOWS)
    driving = threading.Thread(target=lambda: app.run("waits", {}, workflow_id="w"))
    driving.start()
    deadline = time.monotonic() + 30
    waiting = False
    while not waiting and time.monotonic() < deadline:  # (read_history: the run may not be recorded yet)
        waiting = any(event.kind == "step.waiting" for event in backend.read_history("w"))
        time.sleep(0.01)
        time.sleep(0.01)
    app.send_signal("w", "go", {"by": "ann"})
    driving.join(30)
    recorded = kinds_of(app, "w")
    waiting = next(step for kind, step in recorded if kind == "step.waiting")
    assert recorded.index(("step.waiting", waiting)) < recorded.index(("signal.received", None))
    assert recorded[-1] == ("run.completed", None)


def test_a_step_skipped_by_hand_is_an_operator_action(backend: Backend) -> None:
    app = Conveyor(backend, workflows=FLOWS)
    app.run("skippable", {}, workflow_id="s")
    app.skip_step("s", "boom", {}, by="ann", reason="done by phone")
    events = app.history("s")
    action = next(event for event in events if event.kind == "operator.action")
    assert action.data["by"] == "ann"
    assert action.data["reason"] == "done by phone"
    assert action.data["step"] == "boom"
    assert [event.kind for event in events[-3:]] == ["step.completed", "run.completed", "operator.action"]
