"""A step's (or an undo's) own ``TimeoutError`` is that attempt's failure, like any other exception; only
the engine's own deadline makes a :class:`~conveyor.StepTimeoutError`."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    FakeClock,
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RunState,
    StepState,
    StepTimeoutError,
    load_template,
    run_durable_workflow,
    task,
)

KINDS = [
    pytest.param(False, None, id="sync"),
    pytest.param(False, 30, id="sync-timeout"),
    pytest.param(True, None, id="async"),
    pytest.param(True, 30, id="async-timeout"),
]


def raising_timeout(times: int, is_async: bool) -> Any:
    """A function that raises its own TimeoutError ``times`` times, then returns "done"."""
    calls = {"count": 0}

    def body(*_: Any) -> str:
        calls["count"] += 1
        if calls["count"] <= times:
            raise TimeoutError(f"the gateway timed out (call {calls['count']})")
        return "done"

    async def async_body(*arguments: Any) -> str:
        await asyncio.sleep(0)
        return body(*arguments)

    return async_body if is_async else body


@pytest.mark.parametrize(("is_async", "timeout"), KINDS)
def test_a_steps_own_timeout_error_is_retried_like_any_failure(is_async: bool, timeout: int | None) -> None:
    """A step raising TimeoutError once is retried per its policy and completes on its second attempt."""
    step = task(name="call", timeout_secs=timeout, retries=RetryPolicy(max_retries=1, initial_delay_secs=2))(
        raising_timeout(1, is_async)
    )
    clock = FakeClock()
    status = run_durable_workflow(Flow("own").then(step).build(), "w", {}, InMemoryBackend(), clock=clock)
    assert status.state is RunState.COMPLETED
    assert status.output() == "done"
    assert status.step("call").attempts == 2
    assert clock.sleeps == [2.0]


@pytest.mark.parametrize(("is_async", "timeout"), KINDS)
def test_a_steps_own_timeout_error_is_recorded_as_itself(is_async: bool, timeout: int | None) -> None:
    """A step that keeps raising TimeoutError fails with that error and message, not a StepTimeoutError."""
    step = task(name="call", timeout_secs=timeout)(raising_timeout(99, is_async))
    status = run_durable_workflow(
        Flow("own").then(step).build(), "w", {}, InMemoryBackend(), clock=FakeClock()
    )
    assert status.state is RunState.FAILED
    error = status.error()
    assert (error.error_type, error.message) == ("TimeoutError", "the gateway timed out (call 1)")


@pytest.mark.parametrize(("is_async", "timeout"), KINDS)
def test_an_undos_own_timeout_error_is_retried_like_any_failure(is_async: bool, timeout: int | None) -> None:
    """An undo raising TimeoutError once is retried per the compensation policy; the run ends compensated."""
    undo = raising_timeout(1, is_async)
    reserve = task(
        name="reserve",
        timeout_secs=timeout,
        compensate=undo,
        compensation_retries=RetryPolicy(max_retries=1, initial_delay_secs=3),
    )(lambda order: "res-1")

    @task
    def charge(reservation: str) -> str:
        raise ValueError("card declined")

    clock = FakeClock()
    workflow = Flow("own-undo").then(reserve).then(charge).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=clock)
    assert status.state is RunState.COMPENSATED
    record = status.step("reserve")
    assert record.state is StepState.COMPENSATED
    assert record.compensation_attempts == 2
    assert clock.sleeps == [3.0]


@pytest.mark.parametrize(("is_async", "timeout"), KINDS)
def test_an_undos_own_timeout_error_is_recorded_as_itself(is_async: bool, timeout: int | None) -> None:
    """An undo that keeps raising TimeoutError ends compensation_failed with that error, not a timeout."""
    reserve = task(
        name="reserve",
        timeout_secs=timeout,
        compensate=raising_timeout(99, is_async),
        compensation_retries=RetryPolicy(max_retries=0),
    )(lambda order: "res-1")

    @task
    def charge(reservation: str) -> str:
        raise ValueError("card declined")

    workflow = Flow("own-undo").then(reserve).then(charge).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.COMPENSATION_FAILED
    failure = status.step("reserve").compensation_error
    assert failure is not None
    assert (failure.error_type, failure.message) == ("TimeoutError", "the gateway timed out (call 1)")


class TimingOutHandler:
    """A YAML step handler whose gateway call times out on its own."""

    async def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("inventory service timed out")


def test_a_yaml_handlers_own_timeout_error_fails_its_step(tmp_path: Path) -> None:
    """An async YAML handler raising TimeoutError fails its step with that error; the run ends failed."""
    path = tmp_path / "template.yaml"
    path.write_text("name: stock\nstep_templates:\n  - name: check\n    handler_class: Shop::Stock\n")
    workflow = load_template(path, handlers={"Shop::Stock": TimingOutHandler}, registry=None)
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.FAILED
    assert status.error().error_type == "TimeoutError"
    assert status.error().message == "inventory service timed out"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_hung_undo_is_abandoned_at_the_steps_timeout(is_async: bool) -> None:
    """An undo blocked past the step's (short, real) timeout fails that attempt with StepTimeoutError."""
    never = threading.Event()

    def hung(_: Any) -> None:
        never.wait(30)

    async def hung_async(_: Any) -> None:
        await asyncio.sleep(30)

    reserve = task(
        name="reserve",
        timeout_secs=0.05,
        compensate=hung_async if is_async else hung,
        compensation_retries=RetryPolicy(max_retries=0),
    )(lambda order: "res-1")

    @task
    def charge(reservation: str) -> str:
        raise ValueError("card declined")

    workflow = Flow("hung-undo").then(reserve).then(charge).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend())
    never.set()
    assert status.state is RunState.COMPENSATION_FAILED
    failure = status.step("reserve").compensation_error
    assert failure is not None
    assert failure.error_type == StepTimeoutError.__name__
    assert failure.message == "step 'reserve' ran past its timeout of 0.05 s"
