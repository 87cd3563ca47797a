"""The pure half of operator actions: which steps a retry from a step resets, what a skip and a completion
by hand record."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Flow, task
from conveyor.core.operator import complete_by_hand, reopen_from_step, skip_step, steps_from
from conveyor.core.records import RunRecord, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.errors import InvalidTransitionError


@task
def prepare(order: dict[str, Any]) -> int:
    return 1


@task
def label(value: int) -> str:
    return "L"


@task
def invoice(value: int) -> str:
    return "I"


@task
def post(results: dict[str, Any]) -> str:
    return "posted"


FORKED = Flow("forked").then(prepare).fork().branch(label).branch(invoice).join(post).build()


def record(state: RunState, **steps: tuple[StepState, str | None]) -> RunRecord:
    """A run of FORKED in ``state`` whose steps are as given (completed ones in the order given)."""
    records = {}
    for order, (name, (step_state, result)) in enumerate(steps.items(), start=1):
        done = step_state is StepState.COMPLETED
        records[name] = StepRecord(name, step_state, 1, result, None, None, 1.0, 2.0, order if done else None)
    completed = sum(r.state is StepState.COMPLETED for r in records.values())
    return RunRecord(
        "f-1", "forked", "1", state, "{}", "corr", FORKED.step_names, records, 0.0, 3.0,
        epoch=2, completed_count=completed, last_completion_order=len(records),
    )  # fmt: skip


DONE = StepState.COMPLETED, '"x"'


def test_steps_from_a_step_are_it_and_everything_that_depends_on_it_in_order() -> None:
    """A branch reaches the join, not the other branch; the first step reaches every step."""
    assert steps_from(FORKED, "label") == ("label", "post")
    assert steps_from(FORKED, "prepare") == FORKED.step_names
    assert steps_from(FORKED, "post") == ("post",)


def test_reopening_a_completed_run_from_a_step_resets_it_and_its_dependents_only() -> None:
    """label and post go back to pending, the run runs again at a new generation; prepare, invoice kept."""
    run = record(RunState.COMPLETED, prepare=DONE, label=DONE, invoice=DONE, post=DONE)
    new, checkpoint = reopen_from_step(FORKED, run, "label", 9.0)
    assert new.state is RunState.RUNNING
    assert new.generation == 1
    assert {name: step.state for name, step in new.steps.items()} == {
        "prepare": StepState.COMPLETED,
        "label": StepState.PENDING,
        "invoice": StepState.COMPLETED,
        "post": StepState.PENDING,
    }
    assert new.completed_count == 2
    assert sorted(step.name for step in checkpoint.steps) == ["label", "post"]


def test_skipping_a_failed_step_completes_it_with_the_result_and_reopens_the_run() -> None:
    """The failed branch is completed with the given result; the run runs on to the join."""
    run = record(
        RunState.FAILED,
        prepare=DONE,
        label=(StepState.FAILED, None),
        invoice=DONE,
        post=(StepState.PENDING, None),
    )
    new, checkpoint = skip_step(FORKED, run, "label", '"by hand"', 9.0)
    assert new.state is RunState.RUNNING
    assert new.steps["label"].state is StepState.COMPLETED
    assert new.steps["label"].result == '"by hand"'
    assert new.steps["label"].completion_order == 4
    assert [step.name for step in checkpoint.steps] == ["label"]
    assert checkpoint.state is RunState.RUNNING


def test_skipping_the_last_missing_step_completes_the_run_with_its_output() -> None:
    """Nothing left to run: the run completes in the same checkpoint, with the workflow's output."""
    run = record(RunState.FAILED, prepare=DONE, label=DONE, invoice=DONE, post=(StepState.FAILED, None))
    new, checkpoint = skip_step(FORKED, run, "post", '"posted"', 9.0)
    assert (new.state, new.output) == (RunState.COMPLETED, '"posted"')
    assert (checkpoint.state, checkpoint.output) == (RunState.COMPLETED, '"posted"')


def test_only_a_failed_step_can_be_skipped() -> None:
    """A completed step is not skipped again."""
    run = record(RunState.FAILED, prepare=DONE, label=(StepState.FAILED, None))
    with pytest.raises(InvalidTransitionError, match="step 'prepare' is completed"):
        skip_step(FORKED, run, "prepare", '"x"', 9.0)


def test_completing_by_hand_changes_no_step() -> None:
    """The run is completed with the output; the checkpoint writes no step and clears the error."""
    run = record(RunState.COMPENSATING, prepare=DONE, label=(StepState.FAILED, None))
    new, checkpoint = complete_by_hand(run, '{"ok": true}', 9.0)
    assert (new.state, new.output, new.error) == (RunState.COMPLETED, '{"ok": true}', None)
    assert checkpoint.steps == ()
    assert checkpoint.epoch == run.epoch
    assert new.steps == run.steps
