"""Durable sleep and signals, driven as a worker drives them (claim, drive, release) on a fake clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from conveyor import (
    Conveyor,
    DefinitionError,
    EncodingError,
    FakeClock,
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RunFinishedError,
    RunNotFoundError,
    RunState,
    Saga,
    StepState,
    delay,
    from_result,
    step,
    task,
    wait_for_signal,
)
from conveyor.backends.base import Backend
from conveyor.definition.waits import parse_duration
from conveyor.engine.api import new_run
from conveyor.engine.driver import FINISHED, DriveOutcome, RunDriver, WaitUntil
from conveyor.engine.status import WorkflowStatus

calls: list[str] = []


@task
def prepare(order: dict[str, Any]) -> dict[str, Any]:
    calls.append("prepare")
    return {**order, "prepared": True}


@task
def ship(order: dict[str, Any]) -> str:
    calls.append("ship")
    return f"shipped {order['id']}"


@task
def decide_on(answer: Any) -> Any:
    calls.append("decide_on")
    return answer


@pytest.fixture(autouse=True)
def _forget_calls() -> None:
    calls.clear()


class Harness:
    """One backend on a fake clock, and a worker's moves on it: claim a ready run, drive it, hand it back."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.backend: Backend = InMemoryBackend(time_source=self.clock.now)
        self.app = Conveyor(backend=self.backend, clock=self.clock)

    def start(self, workflow: Any, workflow_id: str, value: Any) -> None:
        self.backend.submit_run(new_run(workflow, workflow_id, value, None), now=self.clock.now())

    def turn(self, workflow: Any) -> DriveOutcome | None:
        """Claim one ready run and drive it as a worker does; None if nothing was ready."""
        claimed = self.backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)
        if not claimed:
            return None
        run = claimed[0]
        outcome = RunDriver(workflow, run, self.backend, self.clock).drive()
        if isinstance(outcome, WaitUntil):
            self.backend.release_run(
                workflow_id=run.workflow_id,
                epoch=run.epoch,
                wake_at=outcome.at,
                wake_for_signals=outcome.signals,
            )
        return outcome

    def status(self, workflow_id: str) -> WorkflowStatus:
        return self.app.status(workflow_id)


# -- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0), ("1.5s", 1.5), ("250ms", 0.25), (" 1h 5s ", 3605.0)],
)
def test_durations_are_read_from_text(text: str, expected: float) -> None:
    assert parse_duration(text, what="d") == expected


def test_durations_are_read_from_timedeltas_and_seconds() -> None:
    assert parse_duration(timedelta(minutes=2), what="d") == 120.0
    assert parse_duration(7, what="d") == 7.0


@pytest.mark.parametrize("bad", ["5 minutes", "m5", "", "1h-5m", "-5m", True, None, [5]])
def test_a_bad_duration_is_a_definition_error_naming_the_delay(bad: Any) -> None:
    with pytest.raises(DefinitionError, match="delay 'cool_off'"):
        Flow("f").then(prepare).delay("cool_off", bad)


def test_a_timeout_of_zero_is_refused() -> None:
    with pytest.raises(DefinitionError, match="more than zero"):
        Flow("f").wait_for_signal("approved", timeout=0)


# -- durable sleep ----------------------------------------------------------------------------------------

SLEEPY = Flow("sleepy").then(prepare).delay("cool_off", "1h30m").then(ship).build()


def test_a_sleep_hands_the_run_back_with_its_wake_time_and_the_next_step_gets_the_value_before_it() -> None:
    harness = Harness()
    harness.start(SLEEPY, "s1", {"id": "o-1"})
    started = harness.clock.now()
    outcome = harness.turn(SLEEPY)
    assert outcome == WaitUntil(started + 5400.0)
    nap = harness.status("s1").step("cool_off")
    assert nap.state is StepState.WAITING
    assert nap.next_attempt_at is not None
    assert nap.next_attempt_at.timestamp() == pytest.approx(started + 5400.0)
    assert harness.turn(SLEEPY) is None  # not claimable before its wake time: no slot, no scan
    harness.clock.advance(5399)
    assert harness.turn(SLEEPY) is None
    harness.clock.advance(1)
    assert harness.turn(SLEEPY) is FINISHED
    status = harness.status("s1")
    assert status.state is RunState.COMPLETED
    assert status.output() == "shipped o-1"
    assert calls == ["prepare", "ship"]


def test_the_wake_time_is_recorded_once_and_never_computed_again_after_a_restart() -> None:
    """A new driver (a restarted worker) taking the sleeping run keeps the recorded wake time."""
    harness = Harness()
    harness.start(SLEEPY, "s2", {"id": "o-2"})
    first = harness.turn(SLEEPY)
    assert isinstance(first, WaitUntil)
    harness.clock.advance(3000)
    record = harness.backend.load_run("s2")
    assert record is not None
    again = RunDriver(SLEEPY, record, harness.backend, harness.clock).drive()  # as if taken over
    assert again == WaitUntil(first.at)


def test_a_sleep_in_a_workflow_class_and_in_process_runs_through() -> None:
    class Cooling(Saga):
        @step
        def weigh(self, grams: int) -> int:
            return grams * 2

        cool_off = delay(timedelta(days=2))

        @step(weight=from_result("weigh"))
        def pack(self, weight: int) -> str:
            return f"packed {weight}"

    clock = FakeClock()
    app = Conveyor(backend=InMemoryBackend(time_source=clock.now), clock=clock)
    status = app.run(Cooling, {"grams": 21})
    assert status.output() == {"weigh": 42, "cool_off": None, "pack": "packed 42"}
    assert status.step("cool_off").state is StepState.COMPLETED
    assert clock.sleeps == [172800.0]


# -- signals ------------------------------------------------------------------------------------------------

APPROVAL = Flow("approval").then(prepare).wait_for_signal("approved", timeout="2d").then(decide_on).build()


def test_a_waiting_run_is_handed_back_and_a_signal_resumes_it_with_its_payload() -> None:
    harness = Harness()
    harness.start(APPROVAL, "a1", {"id": "o-1"})
    outcome = harness.turn(APPROVAL)
    assert isinstance(outcome, WaitUntil)
    assert outcome.signals == ("approved",)
    assert harness.status("a1").step("approved").state is StepState.WAITING
    assert harness.turn(APPROVAL) is None  # a waiting run is not claimable
    harness.app.send_signal("a1", "approved", {"by": "ann"})
    assert harness.turn(APPROVAL) is FINISHED
    assert harness.status("a1").output() == {"by": "ann"}


def test_a_signal_sent_before_the_run_reaches_its_wait_is_kept() -> None:
    harness = Harness()
    harness.start(APPROVAL, "a2", {"id": "o-2"})
    harness.app.send_signal("a2", "approved", "early")
    assert harness.turn(APPROVAL) is FINISHED
    assert harness.status("a2").output() == "early"


def test_quick_successive_signals_are_each_kept_and_consumed_in_order_one_per_wait() -> None:
    twice = (
        Flow("twice")
        .wait_for_signal("tick", step_name="first")
        .wait_for_signal("tick", step_name="second")
        .then(decide_on)
        .build()
    )
    harness = Harness()
    harness.start(twice, "t1", None)
    for n in range(3):
        harness.app.send_signal("t1", "tick", n)
    assert harness.turn(twice) is FINISHED
    status = harness.status("t1")
    assert orjson.loads(status.step("first").result_json or "") == 0
    assert orjson.loads(status.step("second").result_json or "") == 1
    assert harness.backend.next_signal("t1", ["tick"]) is not None  # the third stays kept, unconsumed


def test_waiting_for_the_first_of_several_signals_says_which_came() -> None:
    verdict = Flow("verdict").wait_for_signal(["approved", "rejected"]).then(decide_on).build()
    harness = Harness()
    harness.start(verdict, "v1", None)
    assert isinstance(harness.turn(verdict), WaitUntil)
    harness.app.send_signal("v1", "ignored", 1)
    assert harness.turn(verdict) is not FINISHED  # woken, but not by one of its signals: waits on
    harness.app.send_signal("v1", "rejected", {"reason": "stock"})
    assert harness.turn(verdict) is FINISHED
    assert harness.status("v1").output() == {"signal": "rejected", "payload": {"reason": "stock"}}


def test_a_timeout_is_a_failure_of_that_step_retried_then_compensated() -> None:
    undone: list[str] = []

    @task
    def hold(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @hold.compensate
    def release(order: dict[str, Any]) -> None:
        undone.append(order["id"])

    flow = (
        Flow("timed")
        .then(hold)
        .wait_for_signal("approved", timeout=60, retries=RetryPolicy(max_attempts=2, initial_delay_secs=1))
        .then(decide_on)
        .build()
    )
    harness = Harness()
    harness.start(flow, "x1", {"id": "o-9"})
    assert harness.turn(flow) == WaitUntil(harness.clock.now() + 60, ("approved",))
    harness.clock.advance(60)
    assert isinstance(harness.turn(flow), WaitUntil)  # failed once: the retry waits again
    status = harness.status("x1")
    assert status.step("approved").attempts == 1
    assert status.step("approved").error is not None
    harness.clock.advance(100)
    while harness.turn(flow) not in (None, FINISHED):
        harness.clock.advance(100)
    status = harness.status("x1")
    assert status.state is RunState.COMPENSATED
    error = status.error()
    assert error is not None
    assert error.error_type == "SignalTimeoutError"
    assert undone == ["o-9"]


def test_a_signal_to_an_unknown_or_finished_run_is_a_clear_error() -> None:
    harness = Harness()
    with pytest.raises(RunNotFoundError, match="no run 'nobody'"):
        harness.app.send_signal("nobody", "approved")
    harness.start(APPROVAL, "done", {"id": "o"})
    harness.app.send_signal("done", "approved", True)
    assert harness.turn(APPROVAL) is FINISHED
    with pytest.raises(RunFinishedError, match="has ended"):
        harness.app.send_signal("done", "approved", True)


def test_a_payload_that_cannot_be_stored_is_refused_with_its_path() -> None:
    harness = Harness()
    harness.start(APPROVAL, "p1", {"id": "o"})
    with pytest.raises(EncodingError, match=r"payload of signal 'approved'\.amount"):
        harness.app.send_signal("p1", "approved", {"amount": float("nan")})
    assert harness.backend.next_signal("p1", ["approved"]) is None


def test_a_workflow_class_step_waits_for_a_signal_and_reads_its_payload() -> None:
    class Approval(Saga):
        @step
        def request(self, order_id: str) -> str:
            return order_id

        approved = wait_for_signal("approved", timeout="1h")

        @step(decision=from_result("approved"), order_id=from_result("request"))
        def fulfil(self, decision: dict[str, str], order_id: str) -> str:
            return f"{order_id} approved by {decision['by']}"

    harness = Harness()
    workflow = Approval.workflow
    harness.start(workflow, "c1", {"order_id": "o-5"})
    assert isinstance(harness.turn(workflow), WaitUntil)
    harness.app.send_signal("c1", "approved", {"by": "bo"})
    assert harness.turn(workflow) is FINISHED
    assert harness.status("c1").output()["fulfil"] == "o-5 approved by bo"


def test_wait_steps_change_the_definition_hash_and_keep_others_as_they_were() -> None:
    plain = Flow("h").then(prepare).then(ship).build()
    assert plain.definition_hash == Flow("h").then(prepare).then(ship).build().definition_hash
    slept = Flow("h").then(prepare).delay("d", "1m").then(ship).build()
    longer = Flow("h").then(prepare).delay("d", "2m").then(ship).build()
    assert slept.definition_hash != longer.definition_hash


def test_the_status_says_what_a_run_waits_for() -> None:
    harness = Harness()
    harness.start(SLEEPY, "w1", {"id": "o"})
    harness.turn(SLEEPY)
    status = harness.status("w1")
    assert status.is_waiting()
    assert [step.name for step in status.waiting] == ["cool_off"]
    shown = status.to_dict()["waiting"]
    assert shown[0]["step"] == "cool_off"
    assert shown[0]["until"] is not None


def test_sayiirs_spelling_names_the_step_first_and_the_signal_with_signal_name() -> None:
    flow = Flow("sayiir").wait_for_signal("approval", signal_name="manager_approval", timeout=60).build()
    harness = Harness()
    harness.start(flow, "sy1", None)
    harness.app.send_signal("sy1", "manager_approval", "yes")
    assert harness.turn(flow) is FINISHED
    assert harness.status("sy1").step("approval").result == "yes"


def test_a_run_driven_in_process_waits_for_a_signal_sent_from_another_thread() -> None:
    """app.run blocks in its caller while the run waits, and returns once the signal is there."""
    import threading
    import time

    app = Conveyor(backend=InMemoryBackend())
    sender = threading.Timer(0.2, lambda: app.send_signal("in-1", "approved", "ok"))
    sender.start()
    started = time.monotonic()
    status = app.run(APPROVAL, {"id": "o-1"}, workflow_id="in-1")
    sender.join()
    assert status.output() == "ok"
    assert 0.2 <= time.monotonic() - started < 2.0


def test_a_retry_by_hand_starts_a_wait_cut_short_by_the_failure_over() -> None:
    """A wait still waiting when another step failed for good is reset, so its timeout starts afresh."""
    from dataclasses import replace

    from conveyor.core.records import StepRecord
    from conveyor.core.settle import reopen_for_retry

    harness = Harness()
    harness.start(APPROVAL, "r1", {"id": "o"})
    harness.turn(APPROVAL)
    record = harness.backend.load_run("r1")
    assert record is not None
    assert record.steps["approved"].state is StepState.WAITING
    failed = replace(
        record, state=RunState.FAILED, steps={**record.steps, "decide_on": StepRecord("decide_on")}
    )
    reopened, _ = reopen_for_retry(APPROVAL, failed, harness.clock.now())
    assert reopened.steps["approved"].state is StepState.PENDING


class Checked:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"n": context["n"]}


class Approved:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"by": results["approved"]["by"], "n": results["checked"]["n"]}


WAITING_TEMPLATE = """
name: templated
step_templates:
  - name: checked
    handler_class: handlers.Checked
  - name: cool_off
    delay: 10m
    depends_on_step: checked
  - name: approved
    wait_for_signal: approved
    timeout: 3600000
    depends_on_step: cool_off
  - name: shipped
    handler_class: handlers.Approved
    depends_on_step: approved
"""


def test_a_yaml_template_declares_a_delay_and_a_wait_for_a_signal(tmp_path: Any) -> None:
    from conveyor import load_template

    path = tmp_path / "t.yaml"
    path.write_text(WAITING_TEMPLATE)
    workflow = load_template(path, handlers={"handlers.Checked": Checked, "handlers.Approved": Approved})
    harness = Harness()
    harness.start(workflow, "y1", {"n": 3})
    assert harness.turn(workflow) == WaitUntil(harness.clock.now() + 600)
    harness.clock.advance(600)
    outcome = harness.turn(workflow)
    assert isinstance(outcome, WaitUntil)
    assert outcome.signals == ("approved",)
    assert outcome.at == pytest.approx(harness.clock.now() + 3600)
    harness.app.send_signal("y1", "approved", {"by": "cy"})
    assert harness.turn(workflow) is FINISHED
    assert harness.status("y1").output()["shipped"] == {"by": "cy", "n": 3}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("    delay: soon\n", "the delay of step 'w'"),
        ("    delay: 5m\n    timeout: 10\n", "a delay has no timeout"),
        ("    wait_for_signal: 7\n", "waits for a signal name or a list"),
        ("    delay: 5m\n    handler_class: handlers.Checked\n", "not handler_class and delay"),
    ],
)
def test_a_yaml_wait_that_is_wrong_is_a_template_error_naming_the_step(
    tmp_path: Any, step: str, message: str
) -> None:
    from conveyor import TemplateError, load_template

    path = tmp_path / "t.yaml"
    path.write_text(f"name: bad\nstep_templates:\n  - name: w\n{step}")
    with pytest.raises(TemplateError, match=message):
        load_template(path, handlers={"handlers.Checked": Checked})


def test_a_run_woken_at_its_timeout_with_the_signal_there_keeps_no_stale_wake_time() -> None:
    """The checkpoint that consumes a signal does not carry the run's spent wake time ('forever', for a run
    taken over while it waited) on into the row, where it would keep workers from the run if this driver
    died."""
    written: list[Any] = []

    class Watched(InMemoryBackend):
        def record_checkpoint_consuming(self, checkpoint: Any, signal_id: int) -> None:
            written.append(checkpoint)
            super().record_checkpoint_consuming(checkpoint, signal_id)

    harness = Harness()
    harness.backend = Watched(time_source=harness.clock.now)
    harness.app = Conveyor(backend=harness.backend, clock=harness.clock)
    harness.start(APPROVAL, "st1", {"id": "o"})
    harness.turn(APPROVAL)
    record = harness.backend.load_run("st1")
    assert record is not None
    record.wake_at = 253402300799.0  # as a take-over of a run handed back to wait forever reads it
    harness.app.send_signal("st1", "approved", 1)
    assert RunDriver(APPROVAL, record, harness.backend, harness.clock).drive() is FINISHED
    assert [checkpoint.wake_at for checkpoint in written] == [None]
