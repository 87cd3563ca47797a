"""decide() and settle() (core.decide, core.settle), driven with plain values: no engine, backend or clock.

Every settle here goes through the helpers below, which also check that the record they were given is left
exactly as it was and that the new record's counters are what its steps say.
"""

import copy

import pytest

import conveyor
from conveyor import RetryPolicy
from conveyor.core.decide import FINISHED, WAIT_FOR_IN_FLIGHT, Action, Decision, compensation_order, decide
from conveyor.core.records import (
    MAX_TRACEBACK_CHARS,
    Checkpoint,
    Failure,
    RunRecord,
    StepRecord,
    completion_counts,
    pending_steps,
)
from conveyor.core.settle import (
    StepFailed,
    StepSucceeded,
    UndoFailed,
    UndoSucceeded,
    dead_letter,
    merge_checkpoints,
    recover,
    reopen_for_retry,
    settle,
)
from conveyor.core.states import FINAL_RUN_STATES, RunState, StepState
from conveyor.definition import StepDefinition, build_workflow
from conveyor.definition.binding import FromPrevious
from conveyor.definition.task import make_task_spec
from conveyor.errors import InvalidTransitionError

# --- step functions ----------------------------------------------------------------------------------------


def a(value):
    return value


def b(value):
    return value


def b2(value):
    return value


def c(value):
    return value


def e(value):
    return value


def d(results):
    return results


def undo(result):
    return None


@conveyor.task(compensate=undo)
def start(value):
    return value


@conveyor.task(compensate=undo)
def left(value):
    return value


@conveyor.task(compensate=undo)
def right(value):
    return value


def merge(results):
    return results


def release(reservation):
    return None


def refund(receipt):
    return None


@conveyor.task(compensate=release)
def reserve(order):
    return order


@conveyor.task(compensate=refund)
def charge(order):
    return order


def ship(order):
    return order


@conveyor.task(compensate=undo, compensation_retries=RetryPolicy(max_retries=0))
def fragile(value):
    return value


# --- workflows ---------------------------------------------------------------------------------------------

CHAIN = conveyor.Flow("chain").then(a).then(b).then(c).build()
PLAIN_FORK = conveyor.Flow("plain_fork").then(a).fork().branch(b).branch(c).join(d).build()
FORK = conveyor.Flow("fork").then(start).fork().branch(left).branch(right).join(merge).build()
SAGA = conveyor.Flow("saga").then(reserve).then(charge).then(ship).build()
RETRY_POLICY = RetryPolicy(max_retries=2, initial_delay_secs=10, backoff_multiplier=3)
RETRYING_CHAIN = conveyor.Flow("retrying_chain", retries=RETRY_POLICY).then(a).then(b).build()
RETRYING_FORK = (
    conveyor.Flow("retrying_fork", retries=RETRY_POLICY).then(a).fork().branch(b).branch(c).join(d).build()
)
NOTHING: frozenset[str] = frozenset()


def make_run(workflow, *, state=RunState.RUNNING, steps=(), error=None, generation=0):
    """A run of ``workflow`` as recorded: its steps pending but for the ``steps`` records given."""
    records = pending_steps(workflow.step_names)
    for record in steps:
        records[record.name] = record
    completed, last_order = completion_counts(records.values())
    return RunRecord(
        workflow_id="run-1",
        workflow_name=workflow.name,
        workflow_version=workflow.version,
        state=state,
        input='{"order":7}',
        correlation_id="corr-1",
        step_names=workflow.step_names,
        steps=records,
        created_at=0.0,
        updated_at=0.0,
        epoch=3,
        error=error,
        generation=generation,
        completed_count=completed,
        last_completion_order=last_order,
    )


def settled(workflow, run, name, outcome, in_flight=NOTHING):
    """settle() one outcome of step ``name``; check that ``run`` was left alone and the counters agree."""
    before = copy.deepcopy(run)
    new, checkpoint = settle(workflow, run, workflow.step(name), outcome, in_flight)
    assert run == before, "settle changed the record it was given"
    assert new is not run
    assert (new.completed_count, new.last_completion_order) == completion_counts(new.steps.values())
    assert checkpoint.at == new.updated_at
    return new, checkpoint


def succeeded(workflow, run, name, result="1", at=10.0, in_flight=NOTHING):
    """The run and checkpoint after a successful attempt of step ``name`` finishing at ``at``."""
    return settled(workflow, run, name, StepSucceeded(result, at - 1.0, at), in_flight)


def complete(workflow, run, name, result="1", at=10.0, in_flight=NOTHING):
    """The run after a successful attempt of step ``name`` finishing at ``at``."""
    return succeeded(workflow, run, name, result, at, in_flight)[0]


def failed(workflow, run, name, error=None, *, retryable=True, at=100.0, random_unit=0.5, in_flight=NOTHING):
    """The run and checkpoint after a failed attempt of step ``name`` finishing at ``at``."""
    outcome = StepFailed(
        error if error is not None else RuntimeError("boom"), retryable, at - 1.0, at, random_unit
    )
    return settled(workflow, run, name, outcome, in_flight)


def fail(workflow, run, name, error=None, *, retryable=True, at=100.0, random_unit=0.5, in_flight=NOTHING):
    """The run after a failed attempt of step ``name`` finishing at ``at``."""
    return failed(
        workflow, run, name, error, retryable=retryable, at=at, random_unit=random_unit, in_flight=in_flight
    )[0]


def undone(workflow, run, name, at=5.0, in_flight=NOTHING):
    """The run and checkpoint after the undo of step ``name`` succeeded at ``at``."""
    return settled(workflow, run, name, UndoSucceeded(at), in_flight)


def undo_failed(workflow, run, name, error=None, *, retryable=True, at=10.0, random_unit=0.5):
    """The run and checkpoint after an attempt at undoing step ``name`` failed at ``at``."""
    outcome = UndoFailed(error if error is not None else RuntimeError("x"), retryable, at, random_unit)
    return settled(workflow, run, name, outcome)


def names(decision):
    return [spec.name for spec in decision.steps]


def failed_saga():
    """The saga after reserve and charge completed and ship failed for good: now compensating."""
    run = make_run(SAGA)
    run = complete(SAGA, run, "reserve", '"r-1"', at=1.0)
    run = complete(SAGA, run, "charge", '"c-1"', at=2.0)
    return fail(SAGA, run, "ship", at=3.0)


# --- decide: what runs next --------------------------------------------------------------------------------


def test_workflows_used_here_have_the_expected_shapes():
    """The chain is a chain and the forks are not, so both decide paths are exercised."""
    assert CHAIN.is_chain is True
    assert SAGA.is_chain is True
    assert RETRYING_CHAIN.is_chain is True
    assert PLAIN_FORK.is_chain is False
    assert FORK.is_chain is False
    assert RETRYING_FORK.is_chain is False


def test_decide_runs_the_first_step_of_a_fresh_chain():
    """A fresh chain runs its first step, and only that step."""
    decision = decide(CHAIN, make_run(CHAIN), 0.0)
    assert decision == Decision(Action.RUN_STEPS, (CHAIN.step("a"),))
    assert decision.at is None


def test_decide_picks_the_step_after_the_completed_ones_in_a_chain():
    """Each completion in a chain makes the following step the next to run."""
    run = complete(CHAIN, make_run(CHAIN), "a")
    assert names(decide(CHAIN, run, 11.0)) == ["b"]
    run = complete(CHAIN, run, "b")
    assert names(decide(CHAIN, run, 12.0)) == ["c"]


def test_decide_on_a_completed_chain_is_finished():
    """Once the last step of a chain completes the run is completed and decide says finished."""
    run = make_run(CHAIN)
    for name in ("a", "b", "c"):
        run = complete(CHAIN, run, name)
    assert run.state is RunState.COMPLETED
    assert decide(CHAIN, run, 20.0) is FINISHED


def test_decide_does_not_rerun_an_in_flight_chain_step():
    """A chain step already running is not handed out again; decide waits for it."""
    assert decide(CHAIN, make_run(CHAIN), 0.0, {"a"}) is WAIT_FOR_IN_FLIGHT


def test_decide_skips_a_chain_step_in_flight_whose_retry_is_due():
    """A retrying chain step that is in flight is not handed out again, even once its retry is due."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=95.0)
    assert decide(RETRYING_CHAIN, run, 200.0, {"a"}) is WAIT_FOR_IN_FLIGHT


def test_fork_returns_every_branch_ready_at_once():
    """After the step before a fork completes, all its branches are ready together."""
    run = make_run(PLAIN_FORK)
    assert names(decide(PLAIN_FORK, run, 0.0)) == ["a"]
    run = complete(PLAIN_FORK, run, "a")
    decision = decide(PLAIN_FORK, run, 11.0)
    assert decision.action is Action.RUN_STEPS
    assert decision.steps == (PLAIN_FORK.step("b"), PLAIN_FORK.step("c"))


def test_fork_at_the_start_runs_every_branch_immediately():
    """A flow starting with a fork runs all its branches first."""
    workflow = conveyor.Flow("fork_first").fork().branch(b).branch(c).branch(e).join(d).build()
    assert names(decide(workflow, make_run(workflow), 0.0)) == ["b", "c", "e"]


def test_branch_chain_runs_its_steps_in_order_alongside_other_branches():
    """A branch of two steps runs its second step only once its first completed."""
    workflow = conveyor.Flow("long_branch").then(a).fork().branch(b, b2).branch(c).join(d).build()
    run = complete(workflow, make_run(workflow), "a")
    assert names(decide(workflow, run, 11.0)) == ["b", "c"]
    run = complete(workflow, run, "b", in_flight={"c"})
    assert names(decide(workflow, run, 12.0, {"c"})) == ["b2"]


def test_join_waits_while_a_branch_is_in_flight():
    """The join does not run while one branch is still running."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    run = complete(PLAIN_FORK, run, "b", in_flight={"c"})
    assert decide(PLAIN_FORK, run, 12.0, {"c"}) is WAIT_FOR_IN_FLIGHT


def test_join_waits_for_a_branch_not_yet_started():
    """With one branch done and the other not started, the other branch runs, not the join."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    run = complete(PLAIN_FORK, run, "b")
    assert names(decide(PLAIN_FORK, run, 12.0)) == ["c"]


def test_join_runs_once_every_branch_completed():
    """When every branch completed, the join is the one step to run."""
    run = make_run(PLAIN_FORK)
    for name in ("a", "b", "c"):
        run = complete(PLAIN_FORK, run, name)
    assert decide(PLAIN_FORK, run, 13.0) == Decision(Action.RUN_STEPS, (PLAIN_FORK.step("d"),))


def test_in_flight_branches_are_not_run_again():
    """Branches in flight are left out of the steps to run."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    assert names(decide(PLAIN_FORK, run, 11.0, {"b"})) == ["c"]
    assert decide(PLAIN_FORK, run, 11.0, {"b", "c"}) is WAIT_FOR_IN_FLIGHT


def test_decide_does_not_change_the_run_or_the_in_flight_set():
    """decide only reads the run record and the steps in flight."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    in_flight = {"b"}
    before = copy.deepcopy(run)
    decide(PLAIN_FORK, run, 11.0, in_flight)
    assert run == before
    assert in_flight == {"b"}


@pytest.mark.parametrize("state", sorted(FINAL_RUN_STATES), ids=lambda s: s.value)
def test_decide_on_a_final_run_is_finished(state):
    """A run in any final state has nothing left to do."""
    decision = decide(CHAIN, make_run(CHAIN, state=state), 0.0)
    assert decision is FINISHED
    assert decision == Decision(Action.FINISHED, (), None)


def test_chain_fast_path_and_search_agree_after_a_retry_by_hand_undid_earlier_steps():
    """A chain whose completed step is not its first one runs every step whose dependencies completed."""
    workflow = conveyor.Flow("undo_then_plain").then(start).then(a).then(b).build()
    run = make_run(
        workflow,
        steps=[StepRecord("a", StepState.COMPLETED, 1, '"a"', completion_order=2)],
    )
    assert run.completed_count == 1
    assert names(decide(workflow, run, 0.0)) == ["start", "b"]


# --- decide: retries -------------------------------------------------------------------------------------


def test_chain_retry_due_later_waits_until_the_exact_due_time():
    """A chain step retrying at 105 makes decide wait until exactly 105."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=95.0)
    assert run.steps["a"].next_attempt_at == 105.0
    assert decide(RETRYING_CHAIN, run, 100.0) == Decision(Action.WAIT_UNTIL, (), 105.0)


@pytest.mark.parametrize("now", [105.0, 105.5, 1000.0])
def test_chain_retry_runs_once_now_reaches_the_due_time(now):
    """At or after the due time the retrying chain step runs again."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=95.0)
    assert decide(RETRYING_CHAIN, run, now) == Decision(Action.RUN_STEPS, (RETRYING_CHAIN.step("a"),))


def test_fork_retry_due_later_does_not_hold_back_a_ready_branch():
    """A branch waiting for its retry does not stop its sibling from running now."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "b", at=100.0)
    assert names(decide(RETRYING_FORK, run, 101.0)) == ["c"]


def test_fork_retry_due_later_waits_until_its_time_when_nothing_else_is_ready():
    """With the sibling in flight, decide waits until the retry is due (the driver watches in-flight)."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "b", at=100.0, in_flight={"c"})
    assert decide(RETRYING_FORK, run, 101.0, {"c"}) == Decision(Action.WAIT_UNTIL, (), 110.0)
    assert names(decide(RETRYING_FORK, run, 110.0, {"c"})) == ["b"]


def test_fork_waits_until_the_earliest_of_several_retries():
    """Two branches retrying at 110 and 130 make decide wait until 110, then 130."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "c", at=120.0)
    run = fail(RETRYING_FORK, run, "b", at=100.0)
    assert decide(RETRYING_FORK, run, 105.0) == Decision(Action.WAIT_UNTIL, (), 110.0)
    assert decide(RETRYING_FORK, run, 115.0, {"b"}) == Decision(Action.WAIT_UNTIL, (), 130.0)
    assert names(decide(RETRYING_FORK, run, 130.0, {"b"})) == ["c"]


def test_fork_runs_every_retry_already_due():
    """Retries that are both due are handed out together."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "b", at=100.0)
    run = fail(RETRYING_FORK, run, "c", at=101.0)
    assert names(decide(RETRYING_FORK, run, 111.0)) == ["b", "c"]


def test_failed_step_with_sibling_in_flight_starts_nothing_new():
    """After a step fails for good, a ready branch is not started; decide waits for the one in flight."""
    workflow = conveyor.Flow("three").then(a).fork().branch(b).branch(c).branch(e).join(d).build()
    run = complete(workflow, make_run(workflow), "a")
    run = fail(workflow, run, "b", retryable=False, in_flight={"c"})
    assert run.state is RunState.RUNNING
    assert run.steps["e"].state is StepState.PENDING
    assert decide(workflow, run, 101.0, {"c"}) is WAIT_FOR_IN_FLIGHT


def test_running_run_with_an_error_and_nothing_in_flight_is_finished():
    """A running run that recorded an error but has nothing in flight gets no more steps."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    boom = Failure("b", "RuntimeError", "boom", 1, retryable=False)
    run = make_run(PLAIN_FORK, steps=[*run.steps.values(), StepRecord("b", StepState.FAILED)], error=boom)
    assert decide(PLAIN_FORK, run, 11.0) is FINISHED


def test_running_chain_with_an_error_and_a_retry_due_is_finished():
    """A chain whose run recorded an error starts nothing, not even a retry that is due."""
    boom = Failure("a", "RuntimeError", "boom", 1, retryable=False)
    retrying = StepRecord("a", StepState.RETRYING, 1, next_attempt_at=5.0)
    run = make_run(RETRYING_CHAIN, steps=[retrying], error=boom)
    assert decide(RETRYING_CHAIN, run, 10.0) is FINISHED


# --- settle: a step succeeded ------------------------------------------------------------------------------


def test_settle_success_records_the_result_on_the_step():
    """A success stores the result text, the timing and the completion order on the step."""
    run, _ = settled(CHAIN, make_run(CHAIN), "a", StepSucceeded('{"id":1}', 4.0, 6.5))
    record = run.steps["a"]
    assert record.state is StepState.COMPLETED
    assert record.attempts == 1
    assert record.result == '{"id":1}'
    assert record.error is None
    assert (record.started_at, record.finished_at) == (4.0, 6.5)
    assert record.duration_seconds == 2.5
    assert record.completion_order == 1
    assert run.completed_count == 1
    assert run.last_completion_order == 1
    assert run.state is RunState.RUNNING


def test_settle_success_returns_the_checkpoint_to_write():
    """The checkpoint carries the run id, epoch, the one changed step, the state and the time."""
    run, checkpoint = settled(CHAIN, make_run(CHAIN), "a", StepSucceeded('"x"', 4.0, 6.5))
    assert checkpoint == Checkpoint(
        workflow_id="run-1",
        epoch=3,
        steps=(run.steps["a"],),
        state=RunState.RUNNING,
        output=None,
        error=None,
        wake_at=None,
        at=6.5,
        generation=0,
        same_state_and_timer=True,
        previous_state=RunState.RUNNING,
    )
    assert checkpoint.steps[0] is run.steps["a"]
    assert run.updated_at == 6.5


def test_settle_says_when_a_success_keeps_the_run_state_and_timer():
    """A success the run runs on after says so (the backend may leave both columns); one that completes the
    run, or moves its timer, does not."""
    _, going_on = settled(CHAIN, make_run(CHAIN), "a", StepSucceeded('"x"', 4.0, 6.5))
    assert going_on.same_state_and_timer
    run = make_run(CHAIN)
    for name in CHAIN.step_names[:-1]:
        run = complete(CHAIN, run, name)
    _, last = settled(CHAIN, run, CHAIN.step_names[-1], StepSucceeded('"x"', 4.0, 6.5))
    assert last.state is RunState.COMPLETED
    assert not last.same_state_and_timer
    retried = make_run(CHAIN)
    retried.steps["a"] = retried.steps["a"]._replace(state=StepState.RETRYING, next_attempt_at=5.0)
    retried.wake_at = 5.0
    _, after_retry = settled(CHAIN, retried, "a", StepSucceeded('"x"', 5.0, 6.5))
    assert after_retry.wake_at is None
    assert not after_retry.same_state_and_timer
    _, failed = settled(CHAIN, make_run(CHAIN), "a", StepFailed(ValueError("no"), False, 4.0, 6.5))
    assert not failed.same_state_and_timer


def test_settle_keeps_what_a_step_outcome_does_not_change():
    """The new record keeps the run's identity, input, epoch, recoveries, generation, lease and owner."""
    run = make_run(CHAIN, generation=2)
    run.recoveries, run.leased_until, run.owner = 4, 99.0, "worker-7"
    new = complete(CHAIN, run, "a")
    kept = ("workflow_id", "workflow_name", "workflow_version", "input", "correlation_id", "step_names")
    assert [getattr(new, name) for name in kept] == [getattr(run, name) for name in kept]
    assert (new.created_at, new.epoch, new.recoveries, new.generation) == (0.0, 3, 4, 2)
    assert (new.leased_until, new.owner) == (99.0, "worker-7")
    assert new.steps["b"] is run.steps["b"]
    assert new.steps is not run.steps


def test_completion_order_counts_up_across_steps():
    """Steps are numbered 1, 2, 3 in the order they complete."""
    run = make_run(CHAIN)
    for name in ("a", "b", "c"):
        run = complete(CHAIN, run, name)
    assert [run.steps[name].completion_order for name in ("a", "b", "c")] == [1, 2, 3]
    assert run.last_completion_order == 3


def test_settle_success_of_the_last_step_completes_the_run_with_its_output():
    """The last chain step's JSON text becomes the run's output and the run is completed."""
    run = complete(CHAIN, make_run(CHAIN), "a", '"first"')
    run = complete(CHAIN, run, "b", '"second"')
    run, checkpoint = succeeded(CHAIN, run, "c", '{"total":3,"items":["x"]}', at=30.0)
    assert run.state is RunState.COMPLETED
    assert run.output == '{"total":3,"items":["x"]}'
    assert run.wake_at is None
    assert run.completed_count == 3
    assert checkpoint.state is RunState.COMPLETED
    assert checkpoint.output == '{"total":3,"items":["x"]}'
    assert checkpoint.at == 30.0


def test_fork_output_is_the_join_steps_result():
    """A joined fork's output is the join step's result, not a branch's."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a", "1")
    run = complete(PLAIN_FORK, run, "c", "3")
    run = complete(PLAIN_FORK, run, "b", "2")
    assert run.state is RunState.RUNNING
    run = complete(PLAIN_FORK, run, "d", '{"b":2,"c":3}')
    assert run.state is RunState.COMPLETED
    assert run.output == '{"b":2,"c":3}'


def test_output_without_an_output_step_is_a_dict_of_every_result():
    """A workflow with no output step outputs every step's result keyed by step name."""
    workflow = build_workflow(
        "no_output",
        [
            StepDefinition("a", make_task_spec(a), FromPrevious(None)),
            StepDefinition("b", make_task_spec(b), FromPrevious("a")),
        ],
    )
    assert workflow.output_step is None
    run = complete(workflow, make_run(workflow), "a", "1")
    run = complete(workflow, run, "b", '{"n":"two"}')
    assert run.state is RunState.COMPLETED
    assert run.output == '{"a":1,"b":{"n":"two"}}'


def test_success_after_a_retry_clears_the_retry_and_counts_both_attempts():
    """A retried step that succeeds has two attempts, no error and no pending retry."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=100.0)
    assert run.wake_at == 110.0
    run, checkpoint = succeeded(RETRYING_CHAIN, run, "a", '"ok"', at=111.0)
    record = run.steps["a"]
    assert record.state is StepState.COMPLETED
    assert record.attempts == 2
    assert record.error is None
    assert record.next_attempt_at is None
    assert run.wake_at is None
    assert checkpoint.wake_at is None


def test_success_after_a_retry_moves_wake_at_to_the_next_due_retry():
    """When one of two retrying branches succeeds, wake_at becomes the other's due time."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "b", at=100.0)
    run = fail(RETRYING_FORK, run, "c", at=120.0)
    assert run.wake_at == 110.0
    run, checkpoint = succeeded(RETRYING_FORK, run, "b", at=112.0)
    assert run.wake_at == 130.0
    assert checkpoint.wake_at == 130.0


def test_success_of_a_step_never_retried_keeps_the_runs_wake_time():
    """A branch that succeeds at once leaves the run waking for its sibling's retry."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "b", at=100.0)
    run, checkpoint = succeeded(RETRYING_FORK, run, "c", at=101.0)
    assert run.wake_at == 110.0
    assert checkpoint.wake_at == 110.0


def test_settle_success_of_an_already_completed_step_is_refused():
    """A step cannot complete twice; the record given is left as it was."""
    run = complete(CHAIN, make_run(CHAIN), "a")
    before = copy.deepcopy(run)
    with pytest.raises(InvalidTransitionError, match="step 'a' cannot go from 'completed' to 'completed'"):
        complete(CHAIN, run, "a")
    assert run == before


def test_settle_success_of_a_failed_step_is_refused():
    """A step that failed for good cannot then complete."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    run = fail(PLAIN_FORK, run, "b", retryable=False, in_flight={"c"})
    with pytest.raises(InvalidTransitionError, match="from 'failed' to 'completed'") as refused:
        complete(PLAIN_FORK, run, "b")
    assert refused.value.step_name == "b"


def test_a_success_settled_while_the_run_compensates_finishes_the_compensation():
    """A success reaching a compensating run (a late outcome) moves it on as its steps now say."""
    run = make_run(
        FORK,
        state=RunState.COMPENSATING,
        steps=[StepRecord("start", StepState.COMPENSATED, 1, '"s"', completion_order=1)],
        error=Failure("left", "RuntimeError", "boom", 1, retryable=False),
    )
    run, checkpoint = succeeded(FORK, run, "merge", at=9.0)
    assert run.state is RunState.COMPENSATED
    assert checkpoint.state is RunState.COMPENSATED
    assert run.wake_at is None


# --- settle: a step failed ---------------------------------------------------------------------------------


def test_failure_with_retries_left_schedules_the_retry():
    """A first failure with retries left makes the step retrying, due at finished + the first delay."""
    run, checkpoint = failed(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", RuntimeError("flaky"), at=100.0)
    record = run.steps["a"]
    assert record.state is StepState.RETRYING
    assert record.attempts == 1
    assert record.next_attempt_at == 110.0
    assert (record.started_at, record.finished_at) == (99.0, 100.0)
    assert record.error is not None
    assert (record.error.step_name, record.error.error_type, record.error.message) == (
        "a",
        "RuntimeError",
        "flaky",
    )
    assert record.error.attempts == 1
    assert record.error.retryable is True
    assert record.completion_order is None
    assert run.error is None
    assert run.wake_at == 110.0
    assert run.state is RunState.RUNNING
    assert run.updated_at == 100.0
    assert checkpoint.state is RunState.RUNNING
    assert checkpoint.wake_at == 110.0
    assert checkpoint.error is None
    assert checkpoint.steps == (record,)
    assert checkpoint.at == 100.0


def test_second_failure_waits_the_second_delay():
    """The second failure waits initial x multiplier: finished + 30."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=100.0)
    run = fail(RETRYING_CHAIN, run, "a", at=200.0)
    record = run.steps["a"]
    assert record.state is StepState.RETRYING
    assert record.attempts == 2
    assert record.error.attempts == 2
    assert record.next_attempt_at == 230.0
    assert run.wake_at == 230.0


def test_failure_out_of_retries_fails_the_step_and_the_run():
    """The third failure of a two-retry step fails it for good; with nothing to undo the run fails."""
    run = make_run(RETRYING_CHAIN)
    for at in (100.0, 200.0):
        run = fail(RETRYING_CHAIN, run, "a", at=at)
    run, checkpoint = failed(RETRYING_CHAIN, run, "a", ValueError("still broken"), at=300.0)
    record = run.steps["a"]
    assert record.state is StepState.FAILED
    assert record.attempts == 3
    assert record.next_attempt_at is None
    assert record.error is not None
    assert record.error.retryable is False
    assert record.error.attempts == 3
    assert record.error.error_type == "ValueError"
    assert run.error is record.error
    assert run.state is RunState.FAILED
    assert run.wake_at is None
    assert checkpoint.state is RunState.FAILED
    assert checkpoint.error is record.error
    assert checkpoint.wake_at is None


def test_random_unit_drives_the_jitter_of_the_retry_delay():
    """settle hands random_unit to the policy: 0 gives the lowest jittered delay, near 1 the highest."""
    policy = RetryPolicy(max_retries=1, initial_delay_secs=10, jitter=0.5)
    workflow = conveyor.Flow("jittery", retries=policy).then(a).build()
    low = fail(workflow, make_run(workflow), "a", at=100.0, random_unit=0.0)
    high = fail(workflow, make_run(workflow), "a", at=100.0, random_unit=0.99)
    assert low.steps["a"].next_attempt_at == pytest.approx(105.0)
    assert high.steps["a"].next_attempt_at == pytest.approx(114.9)
    assert high.wake_at == pytest.approx(114.9)


def test_a_failure_without_a_random_unit_takes_the_middle_of_the_jitter():
    """StepFailed's random_unit defaults to 0.5: no jitter either way."""
    policy = RetryPolicy(max_retries=1, initial_delay_secs=10, jitter=0.5)
    workflow = conveyor.Flow("jittery", retries=policy).then(a).build()
    run, _ = settled(workflow, make_run(workflow), "a", StepFailed(RuntimeError("x"), True, 99.0, 100.0))
    assert run.steps["a"].next_attempt_at == pytest.approx(110.0)


def test_non_retryable_failure_fails_at_once_despite_retries_left():
    """retryable=False fails the step for good on its first attempt."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", retryable=False)
    assert run.steps["a"].state is StepState.FAILED
    assert run.steps["a"].error.retryable is False
    assert run.state is RunState.FAILED


def test_error_listed_as_non_retryable_fails_at_once():
    """An error type in the policy's non_retryable_errors fails the step on its first attempt."""
    policy = RetryPolicy(max_retries=5, non_retryable_errors=(KeyError,))
    workflow = conveyor.Flow("strict", retries=policy).then(a).build()
    run = fail(workflow, make_run(workflow), "a", KeyError("sku"))
    assert run.steps["a"].state is StepState.FAILED
    assert run.steps["a"].attempts == 1
    assert run.steps["a"].error.retryable is False
    assert run.state is RunState.FAILED
    other = fail(workflow, make_run(workflow), "a", ValueError("sku"))
    assert other.steps["a"].state is StepState.RETRYING


def test_step_without_a_retry_policy_fails_at_once():
    """By default a workflow does not retry: the first failure is final."""
    run = fail(CHAIN, make_run(CHAIN), "a")
    assert run.steps["a"].state is StepState.FAILED
    assert run.steps["a"].error.retryable is False
    assert run.state is RunState.FAILED


def test_failure_with_no_completed_undo_fails_the_run():
    """When the completed steps have no undo, a step failing for good fails the run."""
    run = complete(CHAIN, make_run(CHAIN), "a")
    run = complete(CHAIN, run, "b")
    run = fail(CHAIN, run, "c", ValueError("bad"))
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert str(run.error) == "step 'c' failed after 1 attempt: ValueError: bad"
    assert compensation_order(CHAIN, run) == []


def test_first_step_failing_in_a_saga_fails_the_run_without_compensation():
    """If nothing completed, even a saga just fails: there is nothing to undo."""
    run = fail(SAGA, make_run(SAGA), "reserve")
    assert run.state is RunState.FAILED


def test_failure_after_a_completed_undoable_step_starts_compensation():
    """A step failing for good after a step with an undo completed moves the run to compensating."""
    run = complete(SAGA, make_run(SAGA), "reserve", '"r-1"', at=1.0)
    run, checkpoint = failed(SAGA, run, "charge", RuntimeError("card declined"), at=2.0)
    assert run.state is RunState.COMPENSATING
    assert run.error is not None
    assert run.error.step_name == "charge"
    assert run.error.message == "card declined"
    assert run.wake_at is None
    assert checkpoint.state is RunState.COMPENSATING
    assert checkpoint.error is run.error


def test_a_step_failing_for_good_while_a_sibling_retries_keeps_the_runs_wake_time():
    """The run still wakes for the retrying sibling while the failed step waits for it to settle."""
    run = complete(RETRYING_FORK, make_run(RETRYING_FORK), "a")
    run = fail(RETRYING_FORK, run, "c", at=100.0)
    run, checkpoint = failed(RETRYING_FORK, run, "b", retryable=False, at=101.0, in_flight={"c"})
    assert run.state is RunState.RUNNING
    assert run.wake_at == 110.0
    assert checkpoint.wake_at == 110.0


def test_sibling_in_flight_delays_compensation_until_it_settles():
    """The run stays running while a sibling is in flight and compensates once it completes."""
    run = complete(FORK, make_run(FORK), "start", at=1.0)
    run, checkpoint = failed(FORK, run, "left", at=2.0, retryable=False, in_flight={"right"})
    assert run.state is RunState.RUNNING
    assert checkpoint.state is RunState.RUNNING
    assert run.error is not None
    assert run.error.step_name == "left"
    assert decide(FORK, run, 2.5, {"right"}) is WAIT_FOR_IN_FLIGHT
    run = complete(FORK, run, "right", at=3.0)
    assert run.state is RunState.COMPENSATING
    assert [record.name for record in compensation_order(FORK, run)] == ["right", "start"]


def test_sibling_failing_too_keeps_the_first_error():
    """When the in-flight sibling also fails, the run compensates and keeps the first failure as its error."""
    run = complete(FORK, make_run(FORK), "start", at=1.0)
    run = fail(FORK, run, "left", ValueError("first"), at=2.0, retryable=False, in_flight={"right"})
    run = fail(FORK, run, "right", ValueError("second"), at=3.0, retryable=False)
    assert run.state is RunState.COMPENSATING
    assert run.error.message == "first"
    assert run.steps["right"].error.message == "second"
    assert [record.name for record in compensation_order(FORK, run)] == ["start"]


def test_sibling_settling_with_nothing_to_undo_fails_the_run():
    """If no completed step has an undo, the run fails once the in-flight sibling settles."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    run = fail(PLAIN_FORK, run, "b", retryable=False, in_flight={"c"})
    assert run.state is RunState.RUNNING
    run = complete(PLAIN_FORK, run, "c", at=120.0)
    assert run.state is RunState.FAILED
    assert run.wake_at is None


def test_settle_failure_of_a_completed_step_is_refused():
    """A completed step cannot fail afterwards, for good or for a retry."""
    run = complete(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a")
    with pytest.raises(InvalidTransitionError, match="from 'completed' to 'failed'") as refused:
        fail(RETRYING_CHAIN, run, "a", retryable=False)
    assert refused.value.step_name == "a"
    with pytest.raises(InvalidTransitionError, match="from 'completed' to 'retrying'") as refused:
        fail(RETRYING_CHAIN, run, "a")
    assert refused.value.step_name == "a"


def test_a_retry_policy_that_raises_leaves_the_run_as_it_was():
    """A policy raising while a failure is settled leaves the record given unchanged (nothing to restore)."""

    class BrokenBackoff(RetryPolicy):
        def delay_after(self, attempts_made, random_unit=0.5):
            raise OverflowError("backoff")

    workflow = conveyor.Flow("broken", retries=BrokenBackoff(max_retries=3)).then(a).build()
    run = make_run(workflow)
    before = copy.deepcopy(run)
    with pytest.raises(OverflowError):
        settle(workflow, run, workflow.step("a"), StepFailed(RuntimeError("x"), True, 1.0, 2.0))
    assert run == before


def test_settle_refuses_what_is_not_an_outcome():
    """Only the four outcome kinds can be settled."""
    with pytest.raises(TypeError, match="not an outcome"):
        settle(CHAIN, make_run(CHAIN), CHAIN.step("a"), ("1", 1.0, 2.0))  # type: ignore[arg-type]


# --- compensation ------------------------------------------------------------------------------------------


def test_compensation_order_is_newest_completion_first():
    """The saga undoes charge (completed second) before reserve (completed first); ship has no undo."""
    run = failed_saga()
    assert run.state is RunState.COMPENSATING
    assert [record.name for record in compensation_order(SAGA, run)] == ["charge", "reserve"]


def test_compensation_order_follows_completion_not_declaration():
    """Branches are undone in reverse of when they completed, whatever order they were declared in."""
    run = complete(FORK, make_run(FORK), "start", at=1.0)
    run = complete(FORK, run, "right", at=2.0)
    run = complete(FORK, run, "left", at=3.0)
    run = fail(FORK, run, "merge", at=4.0)
    assert [record.name for record in compensation_order(FORK, run)] == ["left", "right", "start"]


def test_compensation_order_keeps_retrying_undos_and_drops_settled_ones():
    """Undos being retried stay in the order; undone, given-up and undo-less steps do not."""
    workflow = conveyor.Flow("mixed").then(start).then(a).then(left).then(right).then(b).build()

    def with_right(state):
        return make_run(
            workflow,
            state=RunState.COMPENSATING,
            steps=[
                StepRecord("start", StepState.COMPLETED, completion_order=1),
                StepRecord("a", StepState.COMPLETED, completion_order=2),
                StepRecord("left", StepState.COMPENSATED, completion_order=3),
                StepRecord("right", state, completion_order=4),
            ],
        )

    order = compensation_order(workflow, with_right(StepState.COMPENSATING))
    assert [record.name for record in order] == ["right", "start"]
    order = compensation_order(workflow, with_right(StepState.COMPENSATION_FAILED))
    assert [record.name for record in order] == ["start"]


def test_decide_runs_the_newest_undo_while_compensating():
    """A compensating run hands out the undo of the newest completed step, one at a time."""
    run = failed_saga()
    assert decide(SAGA, run, 4.0) == Decision(Action.RUN_COMPENSATION, (SAGA.step("charge"),))


def test_decide_waits_for_an_undo_in_flight():
    """While the newest undo runs, decide waits rather than starting the next one."""
    assert decide(SAGA, failed_saga(), 4.0, {"charge"}) is WAIT_FOR_IN_FLIGHT


def test_decide_waits_until_a_retried_undo_is_due():
    """An undo retrying at 11.0 makes decide wait until exactly then, and run it from then."""
    run, _ = undo_failed(SAGA, failed_saga(), "charge", at=10.0)
    assert run.steps["charge"].next_attempt_at == 11.0
    assert decide(SAGA, run, 10.5) == Decision(Action.WAIT_UNTIL, (), 11.0)
    assert decide(SAGA, run, 11.0) == Decision(Action.RUN_COMPENSATION, (SAGA.step("charge"),))


def test_decide_on_a_compensating_run_with_nothing_left_is_finished():
    """A compensating run whose undos are all settled has nothing to run."""
    run = make_run(SAGA, state=RunState.COMPENSATING)
    assert decide(SAGA, run, 0.0) is FINISHED


def test_compensation_success_marks_the_step_compensated():
    """A successful undo marks the step compensated and uncounts it as completed."""
    saga = failed_saga()
    run, checkpoint = undone(SAGA, saga, "charge", at=5.0)
    record = run.steps["charge"]
    assert record.state is StepState.COMPENSATED
    assert record.compensation_attempts == 1
    assert record.next_attempt_at is None
    assert record.result == '"c-1"'
    kept = saga.steps["charge"]
    assert (record.attempts, record.completion_order, record.started_at, record.finished_at) == (
        kept.attempts,
        kept.completion_order,
        kept.started_at,
        kept.finished_at,
    )
    assert run.completed_count == 1
    assert run.last_completion_order == 2
    assert run.state is RunState.COMPENSATING
    assert run.error is saga.error
    assert checkpoint.steps == (record,)
    assert checkpoint.state is RunState.COMPENSATING
    assert checkpoint.at == 5.0
    assert run.updated_at == 5.0


def test_last_successful_undo_ends_the_run_compensated():
    """When every undo succeeded the run is compensated and stops waking."""
    run = undone(SAGA, failed_saga(), "charge", at=5.0)[0]
    assert decide(SAGA, run, 5.0) == Decision(Action.RUN_COMPENSATION, (SAGA.step("reserve"),))
    run, checkpoint = undone(SAGA, run, "reserve", at=6.0)
    assert run.state is RunState.COMPENSATED
    assert run.wake_at is None
    assert run.completed_count == 0
    assert checkpoint.state is RunState.COMPENSATED
    assert run.error.step_name == "ship"
    assert decide(SAGA, run, 7.0) is FINISHED


def test_compensation_failure_with_retries_left_schedules_the_undo_again():
    """A failed undo with retries left stays compensating, due after the first undo delay."""
    run, checkpoint = undo_failed(SAGA, failed_saga(), "charge", RuntimeError("gateway down"), at=10.0)
    record = run.steps["charge"]
    assert record.state is StepState.COMPENSATING
    assert record.compensation_attempts == 1
    assert record.next_attempt_at == 11.0
    assert record.compensation_error is not None
    assert record.compensation_error.step_name == "charge"
    assert record.compensation_error.message == "gateway down"
    assert record.compensation_error.attempts == 1
    assert record.compensation_error.retryable is True
    assert record.error is None
    assert record.result == '"c-1"'
    assert record.completion_order == 2
    assert run.completed_count == 1
    assert run.wake_at == 11.0
    assert run.state is RunState.COMPENSATING
    assert run.error is not None
    assert run.error.step_name == "ship"
    assert run.updated_at == 10.0
    assert checkpoint.wake_at == 11.0
    assert checkpoint.error is run.error
    assert checkpoint.steps == (record,)


def test_repeated_compensation_failures_back_off_and_count_once_as_uncompleted():
    """A second failed undo waits twice as long and does not uncount the step again."""
    run = undo_failed(SAGA, failed_saga(), "charge", at=10.0)[0]
    run, checkpoint = undo_failed(SAGA, run, "charge", at=20.0)
    record = run.steps["charge"]
    assert record.compensation_attempts == 2
    assert record.compensation_error.attempts == 2
    assert record.next_attempt_at == 22.0
    assert run.wake_at == 22.0
    assert checkpoint.wake_at == 22.0
    assert run.completed_count == 1


def test_random_unit_drives_the_jitter_of_an_undos_retry_delay():
    """The compensation policy's jitter follows random_unit: 0 the shortest delay, near 1 the longest."""
    policy = RetryPolicy(max_retries=2, initial_delay_secs=10, jitter=0.5)
    workflow = conveyor.Flow("jittery_undo", compensation_retries=policy).then(start).then(a).build()
    run = fail(workflow, complete(workflow, make_run(workflow), "start", at=1.0), "a", at=2.0)
    low = undo_failed(workflow, run, "start", at=100.0, random_unit=0.0)[0]
    high = undo_failed(workflow, run, "start", at=100.0, random_unit=0.99)[0]
    middle, _ = settled(workflow, run, "start", UndoFailed(RuntimeError("x"), True, 100.0))
    assert low.steps["start"].next_attempt_at == pytest.approx(105.0)
    assert high.steps["start"].next_attempt_at == pytest.approx(114.9)
    assert middle.steps["start"].next_attempt_at == pytest.approx(110.0)
    assert (low.wake_at, high.wake_at) == (pytest.approx(105.0), pytest.approx(114.9))


def test_an_undo_error_the_compensation_policy_lists_as_non_retryable_is_given_up_at_once():
    """An error in the compensation policy's non_retryable_errors gives the undo up on its first failure."""
    policy = RetryPolicy(max_retries=5, initial_delay_secs=1, non_retryable_errors=(PermissionError,))
    workflow = conveyor.Flow("strict_undo", compensation_retries=policy).then(start).then(a).build()
    run = fail(workflow, complete(workflow, make_run(workflow), "start", at=1.0), "a", at=2.0)
    refused, checkpoint = undo_failed(workflow, run, "start", PermissionError("no"), at=3.0)
    assert refused.steps["start"].state is StepState.COMPENSATION_FAILED
    assert refused.steps["start"].compensation_error.retryable is False
    assert refused.steps["start"].next_attempt_at is None
    assert refused.state is RunState.COMPENSATION_FAILED
    assert checkpoint.state is RunState.COMPENSATION_FAILED
    assert refused.wake_at is None
    retried = undo_failed(workflow, run, "start", ValueError("later"), at=3.0)[0]
    assert retried.steps["start"].state is StepState.COMPENSATING
    assert retried.steps["start"].compensation_error.retryable is True


def test_compensation_success_after_a_retry_counts_every_undo_attempt():
    """An undo that succeeds on its second try is compensated after two attempts."""
    run = undo_failed(SAGA, failed_saga(), "charge", at=10.0)[0]
    run = undone(SAGA, run, "charge", at=11.5)[0]
    record = run.steps["charge"]
    assert record.state is StepState.COMPENSATED
    assert record.compensation_attempts == 2
    assert record.next_attempt_at is None
    assert record.compensation_error is not None
    assert run.completed_count == 1


def test_compensation_success_after_a_retry_clears_the_runs_wake_time():
    """Once a retried undo succeeds, the run no longer wakes for that retry (as a step's success does)."""
    run = undo_failed(SAGA, failed_saga(), "charge", at=10.0)[0]
    assert run.wake_at == 11.0
    run, checkpoint = undone(SAGA, run, "charge", at=11.5)
    assert run.state is RunState.COMPENSATING
    assert run.wake_at is None
    assert checkpoint.wake_at is None


def test_undo_failing_for_good_is_given_up_and_the_rest_still_undone():
    """A non-retryable undo failure gives up on that step, then the older undos still run."""
    run, checkpoint = undo_failed(SAGA, failed_saga(), "charge", RuntimeError("no"), retryable=False, at=5.0)
    record = run.steps["charge"]
    assert record.state is StepState.COMPENSATION_FAILED
    assert record.next_attempt_at is None
    assert record.compensation_error.retryable is False
    assert run.completed_count == 1
    assert run.state is RunState.COMPENSATING
    assert run.wake_at is None
    assert checkpoint.wake_at is None
    assert decide(SAGA, run, 5.0) == Decision(Action.RUN_COMPENSATION, (SAGA.step("reserve"),))
    run, checkpoint = undone(SAGA, run, "reserve", at=6.0)
    assert run.steps["reserve"].state is StepState.COMPENSATED
    assert run.state is RunState.COMPENSATION_FAILED
    assert checkpoint.state is RunState.COMPENSATION_FAILED
    assert run.wake_at is None


def test_an_undo_given_up_after_a_retry_stops_the_run_waking_for_it():
    """An undo that failed, was retried and then failed for good leaves no wake time behind."""
    run = undo_failed(SAGA, failed_saga(), "charge", at=10.0)[0]
    assert run.wake_at == 11.0
    run, checkpoint = undo_failed(SAGA, run, "charge", retryable=False, at=11.0)
    assert run.steps["charge"].state is StepState.COMPENSATION_FAILED
    assert run.wake_at is None
    assert checkpoint.wake_at is None


def test_undo_out_of_retries_is_given_up():
    """An undo whose compensation policy allows no retry is given up after its first failure."""
    workflow = conveyor.Flow("fragile_saga").then(fragile).then(a).build()
    run = fail(workflow, complete(workflow, make_run(workflow), "fragile"), "a")
    assert run.state is RunState.COMPENSATING
    run = undo_failed(workflow, run, "fragile", at=20.0)[0]
    assert run.steps["fragile"].state is StepState.COMPENSATION_FAILED
    assert run.steps["fragile"].compensation_attempts == 1
    assert run.state is RunState.COMPENSATION_FAILED
    assert run.completed_count == 0


def test_undo_exhausting_the_flows_compensation_retries_is_given_up():
    """With one undo retry allowed by the flow, the second undo failure is final."""
    workflow = (
        conveyor.Flow("two_tries", compensation_retries=RetryPolicy(max_retries=1, initial_delay_secs=2))
        .then(start)
        .then(a)
        .build()
    )
    run = fail(workflow, complete(workflow, make_run(workflow), "start"), "a")
    run = undo_failed(workflow, run, "start", at=30.0)[0]
    assert run.steps["start"].state is StepState.COMPENSATING
    assert run.steps["start"].next_attempt_at == 32.0
    run = undo_failed(workflow, run, "start", at=40.0)[0]
    assert run.steps["start"].state is StepState.COMPENSATION_FAILED
    assert run.steps["start"].compensation_attempts == 2
    assert run.state is RunState.COMPENSATION_FAILED


def test_last_undo_failing_for_good_ends_the_run_compensation_failed():
    """When the only remaining undo fails for good the run ends compensation_failed."""
    run = undone(SAGA, failed_saga(), "charge", at=5.0)[0]
    run, checkpoint = undo_failed(SAGA, run, "reserve", retryable=False, at=6.0)
    assert run.state is RunState.COMPENSATION_FAILED
    assert checkpoint.state is RunState.COMPENSATION_FAILED
    assert decide(SAGA, run, 7.0) is FINISHED


def test_compensation_success_of_a_failed_step_is_refused():
    """A step that never completed cannot be compensated."""
    with pytest.raises(InvalidTransitionError, match="from 'failed' to 'compensated'") as refused:
        undone(SAGA, failed_saga(), "ship", at=5.0)
    assert refused.value.step_name == "ship"


def test_compensation_failure_of_a_step_never_completed_is_refused():
    """A step that never completed has no undo to fail."""
    with pytest.raises(InvalidTransitionError, match="from 'failed' to 'compensating'") as refused:
        undo_failed(SAGA, failed_saga(), "ship")
    assert refused.value.step_name == "ship"


def test_a_compensation_policy_that_raises_leaves_the_run_as_it_was():
    """An undo's retry policy raising while its failure is settled changes nothing it was given."""

    class BrokenBackoff(RetryPolicy):
        def delay_after(self, attempts_made, random_unit=0.5):
            raise OverflowError("backoff")

    workflow = (
        conveyor.Flow("broken_undo", compensation_retries=BrokenBackoff(max_retries=3))
        .then(start)
        .then(a)
        .build()
    )
    run = fail(workflow, complete(workflow, make_run(workflow), "start"), "a")
    before = copy.deepcopy(run)
    with pytest.raises(OverflowError):
        settle(workflow, run, workflow.step("start"), UndoFailed(RuntimeError("x"), True, 5.0))
    assert run == before


def test_full_saga_walkthrough_with_decide_and_settle():
    """Driving the saga by decisions alone: run, fail, then undo charge and reserve, ending compensated."""
    run = make_run(SAGA)
    now = 0.0
    actions = []
    while True:
        decision = decide(SAGA, run, now)
        if decision.action is Action.FINISHED:
            break
        spec = decision.steps[0]
        actions.append((decision.action.value, spec.name))
        now += 1.0
        if decision.action is Action.RUN_STEPS and spec.name == "ship":
            run = fail(SAGA, run, "ship", at=now)
        elif decision.action is Action.RUN_STEPS:
            run = complete(SAGA, run, spec.name, '"ok"', at=now)
        else:
            run = undone(SAGA, run, spec.name, at=now)[0]
    assert actions == [
        ("run_steps", "reserve"),
        ("run_steps", "charge"),
        ("run_steps", "ship"),
        ("run_compensation", "charge"),
        ("run_compensation", "reserve"),
    ]
    assert run.state is RunState.COMPENSATED


# --- inputs are never changed ------------------------------------------------------------------------------

OUTCOMES = {
    "step succeeded": ("reserve", StepSucceeded('"r"', 1.0, 2.0), make_run(SAGA)),
    "step failed": ("reserve", StepFailed(RuntimeError("x"), True, 1.0, 2.0), make_run(SAGA)),
    "step failed for good": ("reserve", StepFailed(RuntimeError("x"), False, 1.0, 2.0), make_run(SAGA)),
    "undo succeeded": ("charge", UndoSucceeded(5.0), failed_saga()),
    "undo failed": ("charge", UndoFailed(RuntimeError("x"), True, 5.0), failed_saga()),
    "undo failed for good": ("charge", UndoFailed(RuntimeError("x"), False, 5.0), failed_saga()),
}


@pytest.mark.parametrize("kind", list(OUTCOMES))
def test_settle_leaves_the_run_it_is_given_unchanged(kind):
    """Every kind of outcome returns a new record and changes nothing of the one it was given."""
    name, outcome, run = OUTCOMES[kind]
    before = copy.deepcopy(run)
    steps_before = dict(run.steps)
    new, checkpoint = settle(SAGA, run, SAGA.step(name), outcome)
    assert run == before
    assert run.steps == steps_before
    assert all(run.steps[key] is record for key, record in steps_before.items())
    assert new is not run
    assert new.steps is not run.steps
    assert new.steps[name] is checkpoint.steps[0]
    assert new.steps[name] != run.steps[name]


@pytest.mark.parametrize("kind", list(OUTCOMES))
def test_settle_leaves_the_in_flight_set_unchanged(kind):
    """The steps in flight are the driver's: settle reads them and never changes them."""
    name, outcome, run = OUTCOMES[kind]
    in_flight = {"ship"}
    settle(SAGA, run, SAGA.step(name), outcome, in_flight)
    assert in_flight == {"ship"}


def test_step_records_cannot_be_changed():
    """A step record is a value: changing one means building a new one."""
    record = StepRecord("a")
    with pytest.raises(AttributeError):
        record.state = StepState.COMPLETED  # type: ignore[misc]


def test_checkpoints_cannot_be_changed():
    """A checkpoint is a value too."""
    checkpoint = succeeded(CHAIN, make_run(CHAIN), "a")[1]
    with pytest.raises(AttributeError):
        checkpoint.state = RunState.FAILED  # type: ignore[misc]


# --- recover -----------------------------------------------------------------------------------------------


def test_recover_moves_a_running_run_with_a_failed_step_into_compensation():
    """A running run left with a failed step while a sibling ran starts compensating on recovery."""
    run = complete(FORK, make_run(FORK), "start", at=1.0)
    run = fail(FORK, run, "left", at=2.0, retryable=False, in_flight={"right"})
    assert run.state is RunState.RUNNING
    before = copy.deepcopy(run)
    settled_ = recover(FORK, run, 50.0)
    assert settled_ is not None
    new, checkpoint = settled_
    assert run == before
    assert new.state is RunState.COMPENSATING
    assert checkpoint == Checkpoint(
        workflow_id="run-1",
        epoch=3,
        steps=(),
        state=RunState.COMPENSATING,
        output=None,
        error=run.error,
        wake_at=None,
        at=50.0,
        generation=0,
        previous_state=RunState.RUNNING,
    )
    assert new.updated_at == 50.0
    assert new.steps == run.steps
    assert (new.completed_count, new.last_completion_order) == (1, 1)
    assert names(decide(FORK, new, 50.0)) == ["start"]


def test_recover_fails_a_run_with_nothing_to_undo():
    """Recovery of a run whose failed step left nothing to undo fails the run."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    run = fail(PLAIN_FORK, run, "b", retryable=False, in_flight={"c"})
    settled_ = recover(PLAIN_FORK, run, 60.0)
    assert settled_ is not None
    new, checkpoint = settled_
    assert checkpoint.state is RunState.FAILED
    assert new.state is RunState.FAILED
    assert new.wake_at is None
    assert run.state is RunState.RUNNING


def test_recover_finishes_a_compensation_whose_undos_all_settled():
    """A compensating run with no undo left becomes compensated on recovery."""
    run = make_run(
        SAGA,
        state=RunState.COMPENSATING,
        steps=[StepRecord("reserve", StepState.COMPENSATED, completion_order=1)],
    )
    new, checkpoint = recover(SAGA, run, 70.0)
    assert new.state is RunState.COMPENSATED
    assert checkpoint.state is RunState.COMPENSATED
    assert run.state is RunState.COMPENSATING


def test_recover_completes_a_run_whose_last_step_completed_unwritten():
    """A running run whose steps all completed is completed on recovery, with its output."""
    done = [
        StepRecord(name, StepState.COMPLETED, 1, f'"{name}"', completion_order=i)
        for i, name in enumerate("abc", 1)
    ]
    new, checkpoint = recover(CHAIN, make_run(CHAIN, steps=done), 75.0)
    assert new.state is RunState.COMPLETED
    assert new.output == '"c"'
    assert checkpoint.output == '"c"'
    assert new.wake_at is None


def test_recover_enters_compensation_waking_for_an_undo_already_retrying():
    """A run entering compensation on recovery wakes when the retrying undo it holds is due."""
    steps = [
        StepRecord("reserve", StepState.COMPLETED, 1, '"r"', completion_order=1),
        StepRecord("charge", StepState.COMPENSATING, 1, '"c"', next_attempt_at=40.0, completion_order=2),
        StepRecord("ship", StepState.FAILED, 1),
    ]
    boom = Failure("ship", "RuntimeError", "boom", 1, retryable=False)
    new, checkpoint = recover(SAGA, make_run(SAGA, steps=steps, error=boom), 30.0)
    assert new.state is RunState.COMPENSATING
    assert new.wake_at == 40.0
    assert checkpoint.wake_at == 40.0


def test_recover_returns_none_when_nothing_changes():
    """A healthy running run needs no recovery write."""
    run = complete(CHAIN, make_run(CHAIN), "a")
    before = copy.deepcopy(run)
    assert recover(CHAIN, run, 80.0) is None
    assert run == before


@pytest.mark.parametrize("state", sorted(FINAL_RUN_STATES), ids=lambda s: s.value)
def test_recover_leaves_a_final_run_alone(state):
    """A run that already ended is not changed by recovery."""
    run = make_run(SAGA, state=state)
    assert recover(SAGA, run, 90.0) is None
    assert run.state is state


# --- dead_letter -------------------------------------------------------------------------------------------


def test_dead_letter_sets_the_run_aside_with_its_error_and_no_step_changes():
    """The last resort ends the run dead-lettered with the error, writing no step and waking never."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=95.0)
    assert run.wake_at == 105.0
    error = Failure("a", "EngineError", "could not settle", 1, retryable=False)
    before = copy.deepcopy(run)
    new, checkpoint = dead_letter(run, error, 96.0)
    assert run == before
    assert new.state is RunState.DEAD_LETTERED
    assert new.error is error
    assert new.wake_at is None
    assert new.updated_at == 96.0
    assert new.steps == run.steps
    assert new.steps is not run.steps
    assert (new.completed_count, new.last_completion_order) == (0, 0)
    assert (new.output, new.epoch, new.generation) == (run.output, run.epoch, run.generation)
    done = complete(CHAIN, make_run(CHAIN), "a")
    aside = dead_letter(done, error, 12.0)[0]
    assert (aside.completed_count, aside.last_completion_order) == (1, 1)
    assert checkpoint == Checkpoint(
        "run-1", 3, (), RunState.DEAD_LETTERED, None, error, None, 96.0, 0, previous_state=run.state
    )


# --- reopen_for_retry --------------------------------------------------------------------------------------


def compensated_saga():
    """The saga after ship failed and both undos ran: compensated, error set, nothing left to do."""
    run = undone(SAGA, failed_saga(), "charge", at=5.0)[0]
    return undone(SAGA, run, "reserve", at=6.0)[0]


def test_reopen_for_retry_starts_failed_and_undone_steps_over():
    """A retry by hand resets failed and undone steps to pending and runs the run again."""
    run = compensated_saga()
    before = copy.deepcopy(run)
    new, checkpoint = reopen_for_retry(SAGA, run, 50.0)
    assert run == before
    assert new.state is RunState.RUNNING
    assert (new.error, new.output, new.wake_at) == (None, None, None)
    assert new.updated_at == 50.0
    assert new.generation == 1
    for name in ("reserve", "charge", "ship"):
        record = new.steps[name]
        assert record == StepRecord(name, started_at=record.started_at, finished_at=record.finished_at)
        assert (record.started_at, record.finished_at) == (
            run.steps[name].started_at,
            run.steps[name].finished_at,
        )
    assert (new.completed_count, new.last_completion_order) == (0, 0)
    assert checkpoint == Checkpoint(
        "run-1",
        3,
        tuple(new.steps.values()),
        RunState.RUNNING,
        None,
        None,
        None,
        50.0,
        1,
        previous_state=RunState.COMPENSATED,
    )
    assert names(decide(SAGA, new, 50.0)) == ["reserve"]


def test_reopen_for_retry_keeps_completed_steps_and_writes_only_the_reset_ones():
    """Completed steps are kept as they were, and are not in the checkpoint."""
    run = complete(CHAIN, make_run(CHAIN), "a", '"kept"', at=1.0)
    run = fail(CHAIN, run, "b", at=2.0)
    new, checkpoint = reopen_for_retry(CHAIN, run, 3.0)
    assert new.steps["a"] is run.steps["a"]
    assert new.steps["c"] is run.steps["c"]
    assert [record.name for record in checkpoint.steps] == ["b"]
    assert new.steps["b"].state is StepState.PENDING
    assert (new.completed_count, new.last_completion_order) == (1, 1)
    assert names(decide(CHAIN, new, 3.0)) == ["b"]


def test_reopen_for_retry_resets_a_step_that_was_waiting_for_a_retry():
    """A dead-lettered run's retrying step starts over with no attempts and no timer."""
    run = fail(RETRYING_CHAIN, make_run(RETRYING_CHAIN), "a", at=95.0)
    run = dead_letter(run, Failure("a", "DeadLettered", "died", 3, retryable=False), 96.0)[0]
    new, checkpoint = reopen_for_retry(RETRYING_CHAIN, run, 97.0)
    assert new.steps["a"] == StepRecord("a", started_at=94.0, finished_at=95.0)
    assert [record.name for record in checkpoint.steps] == ["a"]
    assert new.wake_at is None


def test_a_second_retry_by_hand_raises_the_generation_again():
    """Each retry by hand bumps the generation, so steps run again get fresh idempotency keys each time."""
    first, checkpoint = reopen_for_retry(CHAIN, fail(CHAIN, make_run(CHAIN), "a"), 10.0)
    assert (first.generation, checkpoint.generation) == (1, 1)
    second, checkpoint = reopen_for_retry(CHAIN, fail(CHAIN, first, "a", at=20.0), 30.0)
    assert (second.generation, checkpoint.generation) == (2, 2)
    assert second.steps["a"].state is StepState.PENDING
    after, checkpoint = succeeded(CHAIN, second, "a", at=40.0)
    assert (after.generation, checkpoint.generation) == (2, 2)


@pytest.mark.parametrize("state", [RunState.RUNNING, RunState.COMPLETED, RunState.COMPENSATING])
def test_reopen_for_retry_refuses_a_run_that_did_not_fail(state):
    """Only a run that ended badly can be retried by hand; the error names the run."""
    with pytest.raises(
        InvalidTransitionError, match=f"run 'run-1' cannot go from '{state.value}'"
    ) as refused:
        reopen_for_retry(CHAIN, make_run(CHAIN, state=state), 1.0)
    assert refused.value.workflow_id == "run-1"


def test_chain_after_a_manual_retry_never_reruns_a_kept_completed_step():
    """After reopen_for_retry, a chain hands out an undone step again, never a completed step it kept."""
    workflow = conveyor.Flow("undo_then_plain").then(start).then(a).then(b).build()
    assert workflow.is_chain is True
    run = complete(workflow, make_run(workflow), "start", at=1.0)
    run = complete(workflow, run, "a", at=2.0)
    run = fail(workflow, run, "b", at=3.0)
    run = undone(workflow, run, "start", at=4.0)[0]
    assert run.state is RunState.COMPENSATED
    assert run.steps["a"].state is StepState.COMPLETED
    run = reopen_for_retry(workflow, run, 5.0)[0]
    assert run.state is RunState.RUNNING
    assert run.steps["start"].state is StepState.PENDING
    decision = decide(workflow, run, 5.0)
    assert decision.action is Action.RUN_STEPS
    assert "a" not in names(decision)
    assert names(decision)[0] == "start"


# --- merge_checkpoints -------------------------------------------------------------------------------------


def _checkpoint(steps, state, *, at, output=None, error=None, wake_at=None, epoch=1, generation=0):
    return Checkpoint("run-1", epoch, tuple(steps), state, output, error, wake_at, at, generation)


def test_merging_one_checkpoint_returns_it_unchanged():
    """A single checkpoint is its own merge."""
    only = _checkpoint([StepRecord("a")], RunState.RUNNING, at=1.0)
    assert merge_checkpoints([only]) is only


def test_merging_checkpoints_keeps_every_step_and_the_last_run_state():
    """Merged steps are the union (latest per name, first-seen order); run fields are the last's."""
    first_a = StepRecord("a", state=StepState.RETRYING)
    b_record = StepRecord("b", state=StepState.COMPLETED)
    second_a = StepRecord("a", state=StepState.COMPLETED)
    failure = Failure("c", "RuntimeError", "x", 1)
    merged = merge_checkpoints(
        [
            _checkpoint([first_a], RunState.RUNNING, at=1.0, wake_at=5.0, epoch=2, generation=4),
            _checkpoint([b_record], RunState.RUNNING, at=2.0, wake_at=6.0, epoch=2, generation=4),
            _checkpoint(
                [second_a],
                RunState.COMPENSATING,
                at=3.0,
                error=failure,
                output="9",
                wake_at=7.0,
                epoch=2,
                generation=4,
            ),
        ]
    )
    assert merged.steps == (second_a, b_record)
    assert merged.steps[0] is second_a
    assert merged.state is RunState.COMPENSATING
    assert merged.error is failure
    assert merged.output == "9"
    assert merged.wake_at == 7.0
    assert merged.at == 3.0
    assert merged.epoch == 2
    assert merged.generation == 4
    assert merged.workflow_id == "run-1"


def test_merging_real_settlements_of_two_branches():
    """Two branch completions settled together merge into one write holding both steps."""
    run = complete(PLAIN_FORK, make_run(PLAIN_FORK), "a")
    run, first = succeeded(PLAIN_FORK, run, "b", at=20.0, in_flight={"c"})
    run, second = succeeded(PLAIN_FORK, run, "c", at=21.0)
    merged = merge_checkpoints([first, second])
    assert [record.name for record in merged.steps] == ["b", "c"]
    assert merged.at == 21.0
    assert merged.state is RunState.RUNNING


# --- Failure -----------------------------------------------------------------------------------------------


def _raised(error):
    try:
        raise error
    except BaseException as caught:
        return caught


def test_failure_from_exception_describes_the_error():
    """from_exception keeps the step, type name, message, attempt count, retryability and traceback."""
    error = _raised(RuntimeError("card declined"))
    failure = Failure.from_exception("charge", error, 2, retryable=False)
    assert failure.step_name == "charge"
    assert failure.error_type == "RuntimeError"
    assert failure.message == "card declined"
    assert failure.attempts == 2
    assert failure.retryable is False
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert failure.traceback.endswith("RuntimeError: card declined\n")
    assert "_raised" in failure.traceback


def test_failure_of_an_error_without_a_message_uses_its_type_name():
    """An exception with an empty message is described by its type name."""
    failure = Failure.from_exception("s", KeyboardInterrupt(), 1, retryable=True)
    assert failure.message == "KeyboardInterrupt"
    assert failure.error_type == "KeyboardInterrupt"


def test_failure_of_an_unraised_error_has_just_the_error_line_as_traceback():
    """An exception never raised has no stack, only its own line."""
    failure = Failure.from_exception("s", ValueError("v"), 1, retryable=True)
    assert failure.traceback == "ValueError: v\n"


def test_failure_traceback_keeps_only_the_last_characters():
    """A huge traceback is cut to its last MAX_TRACEBACK_CHARS characters, keeping the error line."""
    error = _raised(ValueError("x" * 20_000 + "END"))
    failure = Failure.from_exception("s", error, 1, retryable=True)
    assert MAX_TRACEBACK_CHARS == 8000
    assert len(failure.traceback) == 8000
    assert failure.traceback.endswith("xEND\n")
    assert failure.message == "x" * 20_000 + "END"


def test_failure_to_dict_is_exact():
    """to_dict gives every field under its own name."""
    failure = Failure("charge", "ValueError", "bad", 3, retryable=False, traceback="tb")
    assert failure.to_dict() == {
        "step_name": "charge",
        "error_type": "ValueError",
        "message": "bad",
        "attempts": 3,
        "retryable": False,
        "traceback": "tb",
    }


def test_failure_round_trips_through_a_dict():
    """from_dict(to_dict(f)) rebuilds an equal failure."""
    failure = Failure.from_exception("charge", _raised(TypeError("t")), 4, retryable=True)
    assert Failure.from_dict(failure.to_dict()) == failure


def test_failure_from_dict_defaults_retryable_and_traceback():
    """A stored failure missing retryable and traceback gets True and an empty traceback."""
    failure = Failure.from_dict({"step_name": "s", "error_type": "E", "message": "m", "attempts": 1})
    assert failure == Failure("s", "E", "m", 1, retryable=True, traceback="")


def test_failure_str_uses_singular_for_one_attempt():
    """One attempt is written 'after 1 attempt'."""
    assert (
        str(Failure("charge", "ValueError", "bad", 1))
        == "step 'charge' failed after 1 attempt: ValueError: bad"
    )


def test_failure_str_uses_plural_for_several_attempts():
    """Several attempts are written 'after N attempts'."""
    assert str(Failure("ship", "OSError", "down", 4)) == "step 'ship' failed after 4 attempts: OSError: down"


def test_failure_is_frozen():
    """A recorded failure cannot be altered."""
    failure = Failure("s", "E", "m", 1)
    with pytest.raises(AttributeError):
        failure.message = "other"  # type: ignore[misc]


# --- records -----------------------------------------------------------------------------------------------


def test_step_duration_is_unknown_until_started_and_finished():
    """duration_seconds is None until both times are recorded."""
    assert StepRecord("s", started_at=3.0).duration_seconds is None
    assert StepRecord("s", finished_at=4.25).duration_seconds is None
    assert StepRecord("s", started_at=3.0, finished_at=4.25).duration_seconds == 1.25


@pytest.mark.parametrize("state", list(RunState), ids=lambda s: s.value)
def test_run_is_final_exactly_in_final_states(state):
    """RunRecord.is_final is true for the five final states only."""
    assert make_run(CHAIN, state=state).is_final is (state in FINAL_RUN_STATES)


def test_completion_counts_count_completed_steps_and_the_highest_order():
    """The counters a record carries: completed steps, and the highest completion order of any step."""
    steps = [
        StepRecord("a", StepState.COMPENSATED, completion_order=1),
        StepRecord("b", StepState.COMPLETED, completion_order=3),
        StepRecord("c", StepState.COMPLETED, completion_order=2),
        StepRecord("d"),
    ]
    assert completion_counts(steps) == (2, 3)
    assert completion_counts([]) == (0, 0)


def test_pending_steps_are_fresh_dicts_of_pending_records():
    """Each call gives a dict of its own (records are shared: they cannot change)."""
    first = pending_steps(("x", "y"))
    second = pending_steps(("x", "y"))
    assert first == {"x": StepRecord("x"), "y": StepRecord("y")}
    assert first is not second
    first["x"] = StepRecord("x", StepState.COMPLETED)
    assert pending_steps(("x", "y"))["x"] == StepRecord("x")


# --- what only a broken decide or settle would do ---------------------------------------------------------


def test_chain_whose_next_step_waits_for_an_earlier_one_runs_the_earlier_one():
    """A chain with only its last step completed runs its first step, not the one after the count."""
    done = StepRecord("c", StepState.COMPLETED, 1, '"c"', completion_order=1)
    run = make_run(CHAIN, steps=[done])
    assert names(decide(CHAIN, run, 0.0)) == ["a"]


def test_an_undo_with_no_completion_order_is_undone_last():
    """A completed step recorded without a completion order sorts as the oldest."""
    run = make_run(
        FORK,
        state=RunState.COMPENSATING,
        steps=[
            StepRecord("start", StepState.COMPLETED),
            StepRecord("left", StepState.COMPLETED, completion_order=1),
        ],
    )
    assert [record.name for record in compensation_order(FORK, run)] == ["left", "start"]


def test_a_success_settled_on_a_run_that_is_not_running_leaves_its_state():
    """settle moves a run only as its steps imply: a pending run stays pending."""
    run = complete(CHAIN, make_run(CHAIN, state=RunState.PENDING), "a")
    assert run.state is RunState.PENDING


def test_a_success_while_a_failed_sibling_waits_for_another_keeps_the_run_running():
    """With one branch failed for good and two in flight, the first to succeed does not end the run yet."""
    workflow = (
        conveyor.Flow("three_undo").then(start).fork().branch(left).branch(right).branch(e).join(d).build()
    )
    run = complete(workflow, make_run(workflow), "start", at=1.0)
    run = fail(workflow, run, "left", retryable=False, at=2.0, in_flight={"right", "e"})
    run = complete(workflow, run, "right", at=3.0, in_flight={"e"})
    assert run.state is RunState.RUNNING
    run = complete(workflow, run, "e", at=4.0)
    assert run.state is RunState.COMPENSATING


def test_a_retry_settled_after_a_sibling_failed_for_good_keeps_the_runs_error():
    """A branch failing for a retry while another already failed for good leaves the run's error as it was."""
    workflow = (
        conveyor.Flow("retry_after_failure", retries=RETRY_POLICY)
        .then(start)
        .fork()
        .branch(left)
        .branch(right)
        .join(merge)
        .build()
    )
    run = complete(workflow, make_run(workflow), "start", at=1.0)
    run = fail(workflow, run, "left", ValueError("first"), retryable=False, at=2.0, in_flight={"right"})
    run, checkpoint = failed(workflow, run, "right", ValueError("second"), at=3.0)
    assert run.error.message == "first"
    assert checkpoint.error is run.error
    assert run.state is RunState.COMPENSATING
    assert run.wake_at is None
    assert checkpoint.wake_at is None


def test_a_run_entering_compensation_wakes_for_an_undo_already_waiting_for_its_retry():
    """Entering compensation, the run wakes when an undo that is already retrying is due."""
    steps = [
        StepRecord("reserve", StepState.COMPLETED, 1, '"r"', completion_order=1),
        StepRecord("charge", StepState.COMPENSATING, 1, '"c"', next_attempt_at=40.0, completion_order=2),
    ]
    run, checkpoint = failed(SAGA, make_run(SAGA, steps=steps), "ship", at=30.0)
    assert run.state is RunState.COMPENSATING
    assert run.wake_at == 40.0
    assert checkpoint.wake_at == 40.0


@pytest.mark.parametrize("kind", list(OUTCOMES))
def test_every_settle_keeps_what_its_outcome_does_not_change(kind):
    """Identity, version, step names, lease and owner are carried over by every kind of settle."""
    name, outcome, run = OUTCOMES[kind]
    run = copy.deepcopy(run)
    run.leased_until, run.owner, run.recoveries = 99.0, "worker-7", 2
    new, _ = settle(SAGA, run, SAGA.step(name), outcome)
    kept = ("workflow_id", "workflow_name", "workflow_version", "input", "correlation_id", "step_names")
    assert [getattr(new, field) for field in kept] == [getattr(run, field) for field in kept]
    assert (new.created_at, new.epoch, new.recoveries, new.leased_until, new.owner) == (
        0.0,
        3,
        2,
        99.0,
        "worker-7",
    )


def test_decide_on_a_chain_built_just_now_runs_its_steps_in_order():
    """A chain decide has not seen before is decided as every other: first step first, then the next."""
    workflow = conveyor.Flow("new_chain").then(a).then(b).build()
    run = make_run(workflow)
    assert decide(workflow, run, 0.0) == Decision(Action.RUN_STEPS, (workflow.step("a"),))
    run = complete(workflow, run, "a")
    assert decide(workflow, run, 11.0) == Decision(Action.RUN_STEPS, (workflow.step("b"),))
    other = conveyor.Flow("other_chain").then(c).then(e).build()
    assert decide(other, make_run(other), 0.0) == Decision(Action.RUN_STEPS, (other.step("c"),))
