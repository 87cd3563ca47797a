"""The run and step transition tables, checked pair by pair against the documented life cycles."""

import itertools

import pytest

from conveyor.core.states import (
    FINAL_RUN_STATES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)
from conveyor.errors import InvalidTransitionError, RunError

R = RunState
S = StepState

# Written out by hand from the documented life cycles, so the tables are checked, not restated.
EXPECTED_RUN: dict[RunState, set[RunState]] = {
    R.PENDING: {R.RUNNING, R.CANCELLED, R.DEAD_LETTERED},
    R.RUNNING: {R.COMPLETED, R.FAILED, R.COMPENSATING, R.CANCELLED, R.DEAD_LETTERED},
    R.COMPENSATING: {R.COMPENSATED, R.COMPENSATION_FAILED, R.CANCELLED, R.DEAD_LETTERED},
    R.COMPLETED: {R.COMPENSATING, R.RUNNING},  # undone by request (compensate_workflow); retried from a step
    R.FAILED: {R.RUNNING},  # manual retry
    R.COMPENSATED: {R.RUNNING},  # manual retry
    R.COMPENSATION_FAILED: {R.RUNNING},  # manual retry
    R.CANCELLED: set(),
    R.DEAD_LETTERED: {R.RUNNING},  # manual retry
}

EXPECTED_STEP: dict[StepState, set[StepState]] = {
    # pending -> pending: a loop's iteration is recorded; skipped: by a route
    S.PENDING: {S.PENDING, S.COMPLETED, S.RETRYING, S.FAILED, S.WAITING, S.SKIPPED},
    S.RETRYING: {S.PENDING, S.COMPLETED, S.RETRYING, S.FAILED, S.WAITING},  # an iteration after a retry
    S.WAITING: {S.COMPLETED, S.RETRYING, S.FAILED},  # a sleep ends, a signal comes, a wait times out
    S.COMPLETED: {S.COMPENSATING, S.COMPENSATED, S.COMPENSATION_FAILED},
    S.FAILED: {S.PENDING},  # manual retry
    S.COMPENSATING: {S.COMPENSATING, S.COMPENSATED, S.COMPENSATION_FAILED},
    S.COMPENSATED: {S.PENDING},  # manual retry
    S.COMPENSATION_FAILED: {S.PENDING},  # manual retry
    S.SKIPPED: {S.PENDING},  # manual retry that runs the route again
}

ALL_RUN_PAIRS = list(itertools.product(RunState, RunState))
ALL_STEP_PAIRS = list(itertools.product(StepState, StepState))
ALLOWED_RUN_PAIRS = [(a, b) for a, b in ALL_RUN_PAIRS if b in EXPECTED_RUN[a]]
REFUSED_RUN_PAIRS = [(a, b) for a, b in ALL_RUN_PAIRS if b not in EXPECTED_RUN[a]]
ALLOWED_STEP_PAIRS = [(a, b) for a, b in ALL_STEP_PAIRS if b in EXPECTED_STEP[a]]
REFUSED_STEP_PAIRS = [(a, b) for a, b in ALL_STEP_PAIRS if b not in EXPECTED_STEP[a]]


def _ids(pairs):
    return [f"{a.value}->{b.value}" for a, b in pairs]


# --- the enumerations themselves ---------------------------------------------------------------------------


def test_run_states_and_their_stored_values():
    """RunState has exactly nine members with lower-case stored values."""
    assert [state.value for state in RunState] == [
        "pending",
        "running",
        "compensating",
        "completed",
        "failed",
        "compensated",
        "compensation_failed",
        "cancelled",
        "dead_lettered",
    ]


def test_step_states_and_their_stored_values():
    """StepState has exactly nine members with lower-case stored values."""
    assert [state.value for state in StepState] == [
        "pending",
        "retrying",
        "waiting",
        "completed",
        "failed",
        "compensating",
        "compensated",
        "compensation_failed",
        "skipped",
    ]


def test_states_are_str_enums_equal_to_their_values():
    """States compare equal to their stored text, so they round-trip through a database column."""
    assert RunState("compensation_failed") is RunState.COMPENSATION_FAILED
    assert StepState("retrying") is StepState.RETRYING
    assert RunState.RUNNING == "running"
    assert f"{StepState.FAILED}" == "failed"


def test_final_run_states_are_the_ended_ones():
    """The six ended states (completed to dead_lettered) are final; no others are."""
    expected = {R.COMPLETED, R.FAILED, R.COMPENSATED, R.COMPENSATION_FAILED, R.CANCELLED, R.DEAD_LETTERED}
    assert frozenset(expected) == FINAL_RUN_STATES


# --- the tables --------------------------------------------------------------------------------------------


def test_run_table_covers_every_state_and_matches_the_documented_life_cycle():
    """RUN_TRANSITIONS has an entry for every run state, equal to the expected exits."""
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert {state: set(exits) for state, exits in RUN_TRANSITIONS.items()} == EXPECTED_RUN


def test_step_table_covers_every_state_and_matches_the_documented_life_cycle():
    """STEP_TRANSITIONS has an entry for every step state, equal to the expected exits."""
    assert set(STEP_TRANSITIONS) == set(StepState)
    assert {state: set(exits) for state, exits in STEP_TRANSITIONS.items()} == EXPECTED_STEP


def test_tables_are_immutable():
    """Each set of exits is a frozenset, so no caller can widen the life cycle."""
    assert all(isinstance(exits, frozenset) for exits in RUN_TRANSITIONS.values())
    assert all(isinstance(exits, frozenset) for exits in STEP_TRANSITIONS.values())


def test_exhaustive_pair_lists_partition_every_pair():
    """The allowed and refused pairs together are all 81 run pairs and all 81 step pairs."""
    assert len(ALLOWED_RUN_PAIRS) == 18
    assert len(ALLOWED_RUN_PAIRS) + len(REFUSED_RUN_PAIRS) == 81
    assert len(ALLOWED_STEP_PAIRS) == 24
    assert len(ALLOWED_STEP_PAIRS) + len(REFUSED_STEP_PAIRS) == 81


# --- run transitions, pair by pair -------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "new"), ALLOWED_RUN_PAIRS, ids=_ids(ALLOWED_RUN_PAIRS))
def test_allowed_run_transition_passes(current, new):
    """An allowed run transition returns None without raising."""
    assert check_run_transition(current, new, workflow_id="wf-1") is None


@pytest.mark.parametrize(("current", "new"), REFUSED_RUN_PAIRS, ids=_ids(REFUSED_RUN_PAIRS))
def test_refused_run_transition_raises_invalid_transition(current, new):
    """Every run transition outside the table raises InvalidTransitionError naming the run and states."""
    with pytest.raises(InvalidTransitionError) as caught:
        check_run_transition(current, new, workflow_id="wf-1")
    error = caught.value
    assert str(error) == f"run 'wf-1' cannot go from '{current.value}' to '{new.value}'"
    assert error.workflow_id == "wf-1"
    assert isinstance(error, RunError)


def test_run_transition_error_without_workflow_id_uses_empty_text():
    """Without a workflow_id the message quotes an empty id."""
    with pytest.raises(InvalidTransitionError, match=r"^run '' cannot go from 'cancelled' to 'running'$"):
        check_run_transition(R.CANCELLED, R.RUNNING)


@pytest.mark.parametrize("state", list(RunState), ids=[s.value for s in RunState])
def test_run_cannot_stay_in_the_same_state(state):
    """No run state is a transition to itself."""
    with pytest.raises(InvalidTransitionError):
        check_run_transition(state, state)


def test_a_cancelled_run_has_no_exit():
    """A cancelled run can go nowhere."""
    for new in RunState:
        with pytest.raises(InvalidTransitionError):
            check_run_transition(R.CANCELLED, new)


def test_a_completed_run_can_only_be_undone_or_retried_from_a_step():
    """A completed run goes nowhere but compensating (undone by request, ``compensate_workflow``) or running
    (retried by hand from one of its steps, ``retry(from_step=...)``)."""
    assert {new for new in RunState if new in RUN_TRANSITIONS[R.COMPLETED]} == {R.COMPENSATING, R.RUNNING}


@pytest.mark.parametrize(
    "state",
    [R.FAILED, R.COMPENSATED, R.COMPENSATION_FAILED, R.DEAD_LETTERED],
    ids=["failed", "compensated", "comp_failed", "dead_lettered"],
)
def test_failed_final_runs_exit_only_to_running_by_manual_retry(state):
    """A failed, compensated, compensation-failed or dead-lettered run may only be retried by hand."""
    allowed = []
    for new in RunState:
        try:
            check_run_transition(state, new)
        except InvalidTransitionError:
            continue
        allowed.append(new)
    assert allowed == [R.RUNNING]


def test_every_final_run_state_exits_only_by_a_request_by_hand():
    """Final run states have no exit but running (a retry) or, for a completed run, compensating (undone)."""
    for state in FINAL_RUN_STATES:
        assert RUN_TRANSITIONS[state] <= {R.RUNNING, R.COMPENSATING}
    assert {state for state in FINAL_RUN_STATES if R.COMPENSATING in RUN_TRANSITIONS[state]} == {R.COMPLETED}


def test_only_pending_and_running_runs_can_be_cancelled():
    """A run ends cancelled before it ends otherwise, or once the undos a cancel started are done."""
    cancellable = {state for state in RunState if R.CANCELLED in RUN_TRANSITIONS[state]}
    assert cancellable == {R.PENDING, R.RUNNING, R.COMPENSATING}


def test_only_compensating_runs_reach_compensated_states():
    """A run is compensated (or fails to be) only after compensating."""
    for target in (R.COMPENSATED, R.COMPENSATION_FAILED):
        sources = {state for state in RunState if target in RUN_TRANSITIONS[state]}
        assert sources == {R.COMPENSATING}


# --- step transitions, pair by pair ------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "new"), ALLOWED_STEP_PAIRS, ids=_ids(ALLOWED_STEP_PAIRS))
def test_allowed_step_transition_passes(current, new):
    """An allowed step transition returns None without raising."""
    assert check_step_transition(current, new, step_name="charge") is None


@pytest.mark.parametrize(("current", "new"), REFUSED_STEP_PAIRS, ids=_ids(REFUSED_STEP_PAIRS))
def test_refused_step_transition_raises_invalid_transition(current, new):
    """Every step transition outside the table raises InvalidTransitionError naming the step and states."""
    with pytest.raises(InvalidTransitionError) as caught:
        check_step_transition(current, new, step_name="charge")
    error = caught.value
    assert str(error) == f"step 'charge' cannot go from '{current.value}' to '{new.value}'"
    assert error.step_name == "charge"


def test_step_transition_error_without_step_name_uses_empty_text():
    """Without a step_name the message quotes an empty name."""
    with pytest.raises(InvalidTransitionError, match=r"^step '' cannot go from 'pending' to 'compensated'$"):
        check_step_transition(S.PENDING, S.COMPENSATED)


def test_only_retrying_compensating_and_looping_steps_may_repeat_their_state():
    """A retry after a retry, an undo retried again, and a loop's (or map's) recorded progress, are the only
    self-transitions."""
    repeatable = {state for state in StepState if state in STEP_TRANSITIONS[state]}
    assert repeatable == {S.PENDING, S.RETRYING, S.COMPENSATING}


@pytest.mark.parametrize(
    "state", [S.FAILED, S.COMPENSATED, S.COMPENSATION_FAILED], ids=["failed", "compensated", "comp_failed"]
)
def test_final_step_states_exit_only_to_pending_by_manual_retry(state):
    """A failed, compensated or compensation-failed step may only be reset to pending."""
    allowed = []
    for new in StepState:
        try:
            check_step_transition(state, new)
        except InvalidTransitionError:
            continue
        allowed.append(new)
    assert allowed == [S.PENDING]


def test_completed_step_can_only_move_into_compensation():
    """Once completed, a step can only be undone (or fail to be), never run again or fail."""
    for new in (S.PENDING, S.RETRYING, S.COMPLETED, S.FAILED):
        with pytest.raises(InvalidTransitionError):
            check_step_transition(S.COMPLETED, new)


def test_steps_that_never_completed_cannot_be_compensated():
    """Pending, retrying and failed steps never enter a compensation state."""
    for current in (S.PENDING, S.RETRYING, S.FAILED):
        for new in (S.COMPENSATING, S.COMPENSATED, S.COMPENSATION_FAILED):
            with pytest.raises(InvalidTransitionError):
                check_step_transition(current, new)
