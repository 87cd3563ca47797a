"""Retries follow the step's policy on a fake clock; a step past its timeout fails that attempt."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest

from conveyor import (
    FakeClock,
    Flow,
    InMemoryBackend,
    NonRetryableError,
    RetryPolicy,
    RunState,
    StepState,
    StepTimeoutError,
    run_durable_workflow,
    task,
)


def flaky(failures: int, error: type[Exception] = ConnectionError) -> Any:
    """A step body that fails ``failures`` times, then returns how many attempts it took."""
    attempts = {"count": 0}

    def body(_: Any) -> int:
        attempts["count"] += 1
        if attempts["count"] <= failures:
            raise error(f"attempt {attempts['count']} failed")
        return attempts["count"]

    return body


def run_one(step: Any, clock: FakeClock, **task_options: Any) -> Any:
    workflow = Flow("retry").then(task(name="step", **task_options)(step)).build()
    return run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=clock)


def test_seed_policy_waits_one_two_then_four_seconds() -> None:
    """RetryPolicy(max_retries=3, initial_delay_secs=1.0, backoff_multiplier=2.0): waits 1 s, 2 s, 4 s."""
    clock = FakeClock()
    policy = RetryPolicy(max_retries=3, initial_delay_secs=1.0, backoff_multiplier=2.0)
    status = run_one(flaky(3), clock, retries=policy)
    assert status.is_completed()
    assert status.output() == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert status.step("step").attempts == 4


def test_linear_backoff_grows_by_the_initial_delay() -> None:
    """Linear backoff with a 10 s base waits 10 s, 20 s, 30 s."""
    clock = FakeClock()
    status = run_one(
        flaky(3), clock, retries=RetryPolicy(max_retries=3, initial_delay_secs=10, backoff="linear")
    )
    assert status.is_completed()
    assert clock.sleeps == [10.0, 20.0, 30.0]


def test_fixed_backoff_waits_the_same_each_time() -> None:
    """Fixed backoff with a 30 s delay waits 30 s before each retry."""
    clock = FakeClock()
    status = run_one(
        flaky(2), clock, retries=RetryPolicy(max_attempts=3, initial_delay_secs=30, backoff="fixed")
    )
    assert status.is_completed()
    assert clock.sleeps == [30.0, 30.0]


def test_delays_are_capped_by_max_delay() -> None:
    """Exponential delays stop growing at max_delay_secs."""
    clock = FakeClock()
    policy = RetryPolicy(max_retries=5, initial_delay_secs=1, backoff_multiplier=3, max_delay_secs=10)
    run_one(flaky(5), clock, retries=policy)
    assert clock.sleeps == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_jittered_delays_stay_within_their_bounds() -> None:
    """With jitter 0.5 every delay stays within half of its base either way."""
    clock = FakeClock()
    policy = RetryPolicy(max_retries=4, initial_delay_secs=4, backoff_multiplier=2, jitter=0.5)
    run_one(flaky(4), clock, retries=policy)
    bases = [4.0, 8.0, 16.0, 32.0]
    assert len(clock.sleeps) == 4
    for slept, base in zip(clock.sleeps, bases, strict=True):
        assert base * 0.5 <= slept <= base * 1.5


def test_out_of_retries_fails_the_step_with_the_attempt_count() -> None:
    """A step that keeps failing fails for good after max_retries + 1 attempts, naming itself and why."""
    clock = FakeClock()
    status = run_one(flaky(10), clock, retries=RetryPolicy(max_retries=2, initial_delay_secs=1))
    assert status.state is RunState.FAILED
    error = status.error()
    assert (error.step_name, error.attempts, error.error_type) == ("step", 3, "ConnectionError")
    assert error.message == "attempt 3 failed"
    assert str(error) == "step 'step' failed after 3 attempts: ConnectionError: attempt 3 failed"


def test_non_retryable_error_types_fail_at_once() -> None:
    """An error listed in non_retryable_errors fails the step on its first attempt."""
    clock = FakeClock()
    policy = RetryPolicy(max_retries=5, non_retryable_errors=(ValueError,))
    status = run_one(flaky(10, ValueError), clock, retries=policy)
    assert status.state is RunState.FAILED
    assert status.step("step").attempts == 1
    assert clock.sleeps == []


def test_a_step_raising_non_retryable_error_fails_at_once() -> None:
    """A step may raise NonRetryableError itself to skip its retries."""
    clock = FakeClock()

    def declined(_: Any) -> None:
        raise NonRetryableError("card declined")

    status = run_one(declined, clock, retries=RetryPolicy(max_retries=5))
    assert status.step("step").attempts == 1
    assert status.error().retryable is False
    assert status.error().message == "card declined"


def test_workflow_default_retries_apply_to_steps_without_a_policy() -> None:
    """Flow(retries=...) is the policy of every step that declares none."""
    clock = FakeClock()
    workflow = (
        Flow("defaults", retries=RetryPolicy(max_retries=2, initial_delay_secs=2, backoff="fixed"))
        .then(task(name="step")(flaky(2)))
        .build()
    )
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=clock)
    assert status.is_completed()
    assert clock.sleeps == [2.0, 2.0]


def test_the_next_attempt_time_is_recorded_while_waiting() -> None:
    """While a retry waits, the step is retrying and its next attempt's due time is in the backend."""
    backend = InMemoryBackend()
    seen: list[tuple[StepState, float | None]] = []

    class Watching(FakeClock):
        def sleep(self, seconds: float) -> None:
            record = backend.load_run("w")
            assert record is not None
            step = record.steps["step"]
            seen.append((step.state, step.next_attempt_at))
            super().sleep(seconds)

    clock = Watching()
    start = clock.now()
    workflow = (
        Flow("timer").then(task(name="step", retries=RetryPolicy(initial_delay_secs=7))(flaky(1))).build()
    )
    run_durable_workflow(workflow, "w", {}, backend, clock=clock)
    assert seen == [(StepState.RETRYING, start + 7.0)]


def test_a_step_that_runs_past_its_timeout_fails_that_attempt() -> None:
    """On the fake clock, an attempt that took 31 s of a 30 s timeout fails and is retried."""
    clock = FakeClock()
    durations = iter([31.0, 5.0])

    def slow(_: Any) -> str:
        clock.advance(next(durations))
        return "done"

    status = run_one(slow, clock, timeout_secs=30, retries=RetryPolicy(max_retries=1, initial_delay_secs=1))
    assert status.is_completed()
    step = status.step("step")
    assert step.attempts == 2
    assert clock.sleeps == [1.0]


def test_timeout_error_names_the_step_and_the_limit() -> None:
    """A step that always overruns fails with StepTimeoutError naming the step and its timeout."""
    clock = FakeClock()

    def slow(_: Any) -> str:
        clock.advance(60)
        return "late"

    status = run_one(slow, clock, timeout_secs=30)
    assert status.state is RunState.FAILED
    assert status.error().error_type == StepTimeoutError.__name__
    assert status.error().message == "step 'step' ran past its timeout of 30 s"


def test_a_hung_sync_step_is_abandoned_at_its_timeout() -> None:
    """A sync step blocked for ever fails when its (short, real) timeout passes."""
    never = threading.Event()

    def hung(_: Any) -> None:
        never.wait(30)

    workflow = Flow("hung").then(task(name="step", timeout_secs=0.05)(hung)).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend())
    never.set()
    assert status.state is RunState.FAILED
    assert status.error().error_type == "StepTimeoutError"


def test_a_hung_async_step_is_cancelled_at_its_timeout() -> None:
    """An async step awaiting for ever is cancelled when its timeout passes."""
    cancelled: list[bool] = []

    async def hung(_: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    workflow = Flow("hung-async").then(task(name="step", timeout_secs=0.05)(hung)).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend())
    assert status.state is RunState.FAILED
    assert status.error().error_type == "StepTimeoutError"
    assert cancelled == [True]


@pytest.mark.parametrize("is_async", [False, True])
def test_retry_in_a_fork_branch_waits_on_the_fake_clock(is_async: bool) -> None:
    """A failing branch of a fork is retried after its delay while its sibling completes."""
    clock = FakeClock()
    body = flaky(1)

    async def async_body(value: Any) -> int:
        return int(body(value))

    branch = task(name="flaky", retries=RetryPolicy(initial_delay_secs=3))(async_body if is_async else body)

    @task
    def steady(value: Any) -> str:
        return "ok"

    @task
    def join(results: dict[str, Any]) -> dict[str, Any]:
        return results

    workflow = Flow("fork-retry").fork().branch(branch).branch(steady).join(join).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=clock)
    assert status.output() == {"flaky": 2, "steady": "ok"}
    assert clock.sleeps == [3.0]


def test_a_step_retried_past_attempt_1025_keeps_its_capped_backoff_and_completes() -> None:
    """A step failing 1,100 times under a capped exponential policy waits the cap each time, then completes
    (the delay after attempt 1,025 overflowed a float and the run never settled)."""
    clock = FakeClock()
    policy = RetryPolicy(max_retries=1_200, initial_delay_secs=0.5, max_delay_secs=2.0)
    status = run_one(flaky(1_100), clock, retries=policy)
    assert status.state is RunState.COMPLETED
    assert status.output() == 1_101
    assert clock.sleeps[1_020:1_100] == [2.0] * 80


def test_an_undo_retried_past_attempt_1025_keeps_its_backoff_and_the_run_ends() -> None:
    """An undo that keeps failing under a 1,100-retry compensation policy ends compensation_failed."""
    clock = FakeClock()
    undo_attempts = []

    def undo(_: Any) -> None:
        undo_attempts.append(1)
        raise ConnectionError("the refund service is down")

    @task(compensate=undo, compensation_retries=RetryPolicy(max_retries=1_100, initial_delay_secs=0.01))
    def charge(_: Any) -> str:
        return "pay-1"

    @task
    def ship(_: Any) -> None:
        raise NonRetryableError("no courier")

    workflow = Flow("undo-overflow").then(charge).then(ship).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=clock)
    assert status.state is RunState.COMPENSATION_FAILED
    assert len(undo_attempts) == 1_101
    assert all(math.isfinite(sleep) for sleep in clock.sleeps)
