"""The Flow builder, build_workflow's graph checks, and @task declarations."""

import dataclasses
import inspect
from datetime import timedelta
from typing import Any

import pytest

import conveyor
from conveyor import DefinitionError, Flow, RetryPolicy, StepContext, Task, Workflow, task
from conveyor.definition import Fork, StepDefinition, build_workflow
from conveyor.definition.binding import FromBranches, FromPrevious
from conveyor.definition.retry import DEFAULT_COMPENSATION_RETRIES, NO_RETRIES
from conveyor.definition.task import TaskSpec, make_task_spec

# --- step functions ----------------------------------------------------------------------------------------


def fetch(order):
    """Fetch the order."""
    return order


def price(order):
    return order


def tax(order):
    return order


def pack(order):
    return order


def label(order):
    return order


def notify(results):
    return results


def summarise(results):
    return results


def takes_two(first, second):
    return first, second


def takes_one_and_a_default(first, second=2):
    return first, second


def takes_nothing():
    return 1


async def fetch_async(order):
    return order


def spec_of(fn):
    return make_task_spec(fn)


# --- Flow: the shapes it builds ----------------------------------------------------------------------------


def test_chain_flow_builds_steps_in_order_each_depending_on_the_previous():
    """then() chains steps: each depends on the one before and the last is the output."""
    workflow = Flow("orders").then(fetch).then(price).then(pack).build()
    assert isinstance(workflow, Workflow)
    assert workflow.name == "orders"
    assert workflow.version == "1"
    assert workflow.step_names == ("fetch", "price", "pack")
    assert [step.depends_on for step in workflow.steps] == [(), ("fetch",), ("price",)]
    assert [step.index for step in workflow.steps] == [0, 1, 2]
    assert workflow.steps[0].binding == FromPrevious(None)
    assert workflow.steps[1].binding == FromPrevious("fetch")
    assert workflow.output_step == "pack"
    assert workflow.is_chain is True


def test_fork_flow_depends_branches_on_the_step_before_and_the_join_on_every_branch():
    """Branches depend on the step before the fork; the join depends on every branch's last step."""
    workflow = Flow("orders").then(fetch).fork().branch(price).branch(pack).join(notify).build()
    assert workflow.step_names == ("fetch", "price", "pack", "notify")
    assert workflow.step("price").depends_on == ("fetch",)
    assert workflow.step("pack").depends_on == ("fetch",)
    assert workflow.step("notify").depends_on == ("price", "pack")
    assert workflow.step("notify").binding == FromBranches((("price", "price"), ("pack", "pack")))
    assert workflow.output_step == "notify"
    assert workflow.is_chain is False


def test_fork_at_the_start_hands_every_branch_the_workflow_input():
    """Branches of a leading fork read the workflow input."""
    workflow = Flow("f").fork().branch(price).branch(pack).join(notify).build()
    assert workflow.step("price").binding == FromPrevious(None)
    assert workflow.step("price").depends_on == ()
    assert workflow.step("pack").depends_on == ()


def test_branch_chain_is_keyed_by_its_last_tasks_name():
    """A branch of several tasks is a chain, and the join receives it under its last task's name."""
    workflow = Flow("f").then(fetch).fork().branch(price, tax).branch(pack).join(notify).build()
    assert workflow.step("price").depends_on == ("fetch",)
    assert workflow.step("tax").depends_on == ("price",)
    assert workflow.step("tax").binding == FromPrevious("price")
    assert workflow.step("notify").binding == FromBranches((("tax", "tax"), ("pack", "pack")))
    assert workflow.step("notify").depends_on == ("tax", "pack")


def test_branch_name_keys_the_branch_in_the_join():
    """branch(..., name=) keys the branch's result under that name, not the step's."""
    workflow = Flow("f").then(fetch).fork().branch(price, tax, name="money").branch(pack).join(notify).build()
    join = workflow.step("notify")
    assert join.binding == FromBranches((("money", "tax"), ("pack", "pack")))
    args, kwargs = join.build_arguments("null", {"tax": "12", "pack": '"box"'})
    assert args == ({"money": 12, "pack": "box"},)
    assert kwargs == {}


def test_join_step_after_a_fork_can_be_followed_by_more_steps():
    """then() after join() continues from the join step."""
    workflow = Flow("f").fork().branch(price).branch(pack).join(notify).then(label).build()
    assert workflow.step("label").depends_on == ("notify",)
    assert workflow.output_step == "label"


def test_step_arguments_come_from_the_previous_result_or_the_input():
    """The first step receives the workflow input; the next receives the previous step's result."""
    workflow = Flow("f").then(fetch).then(price).build()
    assert workflow.step("fetch").build_arguments('{"id":1}', {}) == (({"id": 1},), {})
    assert workflow.step("price").build_arguments('{"id":1}', {"fetch": "[1,2]"}) == (([1, 2],), {})


def test_step_taking_no_arguments_is_called_with_none():
    """A step with no parameters is given no arguments."""
    workflow = Flow("f").then(takes_nothing).build()
    assert workflow.step("takes_nothing").build_arguments('"ignored"', {}) == ((), {})


def test_step_with_one_required_and_one_default_parameter_is_accepted():
    """Extra parameters with defaults are fine: the step still receives one value."""
    workflow = Flow("f").then(takes_one_and_a_default).build()
    assert workflow.step("takes_one_and_a_default").build_arguments("5", {}) == ((5,), {})


def test_then_with_name_renames_the_step():
    """then(fn, name=) gives the step that name."""
    workflow = Flow("f").then(fetch).then(fetch, name="fetch_again").build()
    assert workflow.step_names == ("fetch", "fetch_again")
    assert workflow.step("fetch_again").task.fn is fetch
    assert workflow.step("fetch_again").depends_on == ("fetch",)


def test_flow_options_reach_the_workflow():
    """version (as text), description and the default policies are taken from Flow()."""
    retries = RetryPolicy(max_retries=4)
    undo_retries = RetryPolicy(max_retries=1)
    workflow = (
        Flow("f", version=3, description="does things", retries=retries, compensation_retries=undo_retries)
        .then(fetch)
        .build()
    )
    assert workflow.version == "3"
    assert workflow.description == "does things"
    assert workflow.step("fetch").retries is retries
    assert workflow.step("fetch").compensation_retries is undo_retries


def test_default_policies_are_no_retries_and_the_default_undo_retries():
    """Without options a step never retries and its undo uses the default undo policy."""
    workflow = Flow("f").then(fetch).build()
    assert workflow.step("fetch").retries is NO_RETRIES
    assert workflow.step("fetch").compensation_retries is DEFAULT_COMPENSATION_RETRIES


def test_a_tasks_own_policies_override_the_flows():
    """A task's retries and compensation_retries win over the flow's defaults."""
    own = RetryPolicy(max_retries=9)
    own_undo = RetryPolicy(max_retries=8)
    declared = task(retries=own, compensation_retries=own_undo)(fetch)
    workflow = Flow("f", retries=RetryPolicy(max_retries=1)).then(declared).build()
    assert workflow.step("fetch").retries is own
    assert workflow.step("fetch").compensation_retries is own_undo


def test_runs_inline_only_for_sync_steps_without_a_timeout():
    """Sync steps without a timeout run inline; async steps or steps with a timeout do not."""
    timed = task(timeout_secs=5)(price)
    workflow = Flow("f").then(fetch).then(timed).then(fetch_async).build()
    assert [step.runs_inline for step in workflow.steps] == [True, False, False]
    assert workflow.step("price").timeout_seconds == 5.0


# --- Flow: what it refuses ---------------------------------------------------------------------------------


def test_duplicate_step_names_are_refused_suggesting_name():
    """The same function twice is refused, and the message suggests name=."""
    with pytest.raises(DefinitionError) as caught:
        Flow("dup").then(fetch).then(fetch).build()
    assert str(caught.value) == (
        "step 'fetch' appears twice in workflow 'dup'; give one of them another name (name=...)"
    )


def test_duplicate_step_names_across_branches_are_refused():
    """Two branches holding the same task collide on its step name."""
    with pytest.raises(DefinitionError, match=r"step 'price' appears twice.*\(name=\.\.\.\)"):
        Flow("dup").then(fetch).fork().branch(price).branch(price, name="again").join(notify).build()


def test_empty_flow_is_refused():
    """A flow with no steps cannot be built."""
    with pytest.raises(DefinitionError, match=r"^flow 'empty' has no steps; add some with \.then\(task\)$"):
        Flow("empty").build()


def test_fork_with_no_branches_is_refused_at_join():
    """Joining a fork that has no branch is refused."""
    with pytest.raises(DefinitionError, match="a fork in flow 'f' has no branches"):
        Flow("f").then(fetch).fork().join(notify)


def test_fork_never_joined_cannot_be_built():
    """Calling build() on an open fork says to close it with join()."""
    fork = Flow("f").then(fetch).fork().branch(price)
    assert isinstance(fork, Fork)
    with pytest.raises(DefinitionError, match=r"^flow 'f' ends in a fork; close it with \.join\(task\)$"):
        fork.build()


def test_duplicate_branch_names_are_refused():
    """Two branches keyed alike are refused, suggesting branch(..., name=...)."""
    with pytest.raises(DefinitionError) as caught:
        Flow("f").then(fetch).fork().branch(price).branch(price)
    message = str(caught.value)
    assert "two branches of a fork in flow 'f' are both called 'price'" in message
    assert "branch(..., name=...)" in message


def test_duplicate_explicit_branch_names_are_refused():
    """Explicit branch names must differ too."""
    with pytest.raises(DefinitionError, match="both called 'x'"):
        Flow("f").fork().branch(price, name="x").branch(pack, name="x")


def test_branch_named_like_another_branchs_last_task_is_refused():
    """An explicit name colliding with another branch's default key is refused."""
    with pytest.raises(DefinitionError, match="both called 'pack'"):
        Flow("f").fork().branch(pack).branch(price, name="pack")


def test_empty_branch_is_refused():
    """A branch needs at least one task."""
    with pytest.raises(DefinitionError, match="an empty branch in flow 'f'"):
        Flow("f").fork().branch()


@pytest.mark.parametrize("bad", ["", "   "])
def test_blank_branch_name_is_refused(bad):
    """A branch name must be non-empty text."""
    with pytest.raises(DefinitionError, match="a branch name must be a non-empty string"):
        Flow("f").fork().branch(price, name=bad)


@pytest.mark.parametrize("bad", ["", "  ", None, 3])
def test_blank_or_non_text_flow_name_is_refused(bad):
    """A flow's name must be non-empty text."""
    with pytest.raises(DefinitionError, match="a flow's name must be a non-empty string"):
        Flow(bad)


@pytest.mark.parametrize("bad", ["", "  ", 3])
def test_blank_step_name_is_refused(bad):
    """then(fn, name=) must be non-empty text."""
    with pytest.raises(DefinitionError, match="a step name must be a non-empty string"):
        Flow("f").then(fetch, name=bad)


def test_step_taking_two_required_arguments_is_refused_with_a_clear_message():
    """A first step taking two required arguments is refused: it receives one value, the input."""
    with pytest.raises(DefinitionError) as caught:
        Flow("f").then(takes_two).build()
    assert str(caught.value) == (
        "step 'takes_two' takes 2 arguments (first, second), but it receives one value: the workflow "
        "input. Give the other parameters defaults, or take one value and unpack it."
    )


def test_later_step_taking_two_required_arguments_names_its_source():
    """A later step taking two arguments is told it receives the previous step's result."""
    with pytest.raises(DefinitionError, match="receives one value: the result of 'fetch'"):
        Flow("f").then(fetch).then(takes_two).build()


def test_join_taking_two_required_arguments_is_refused():
    """A join taking two arguments is told it receives a dict of the branches' results."""
    with pytest.raises(DefinitionError, match="receives one value: a dict of the branches' results"):
        Flow("f").fork().branch(price).branch(pack).join(takes_two).build()


def test_non_function_task_is_refused():
    """Something that is not a function cannot be declared as a task."""
    with pytest.raises(DefinitionError, match=r"^task 'weird' must be a function, not 42$"):
        conveyor.task(name="weird")(42)


# --- Flow: immutability ------------------------------------------------------------------------------------


def test_extending_a_shared_prefix_twice_gives_two_independent_flows():
    """Each then() returns a new builder, so two extensions of one prefix do not see each other."""
    prefix = Flow("shared").then(fetch)
    with_price = prefix.then(price)
    with_pack = prefix.then(pack)
    assert with_price is not prefix
    assert with_price.build().step_names == ("fetch", "price")
    assert with_pack.build().step_names == ("fetch", "pack")
    assert prefix.build().step_names == ("fetch",)


def test_extending_a_shared_fork_twice_gives_two_independent_flows():
    """Each branch() returns a new fork, so the fork can be shared too."""
    fork = Flow("shared").then(fetch).fork().branch(price)
    two = fork.branch(pack).join(notify).build()
    one = fork.join(summarise).build()
    assert two.step_names == ("fetch", "price", "pack", "notify")
    assert one.step_names == ("fetch", "price", "summarise")


def test_flow_repr_lists_its_steps():
    """A flow's repr shows its name and step names."""
    assert repr(Flow("f").then(fetch).then(price)) == "<Flow 'f' steps=['fetch', 'price']>"


# --- build_workflow ----------------------------------------------------------------------------------------


def test_unknown_dependency_is_refused():
    """A step depending on a step the workflow lacks is refused, naming both."""
    with pytest.raises(DefinitionError) as caught:
        build_workflow("w", [StepDefinition("fetch", spec_of(fetch), FromPrevious("ghost"))])
    assert str(caught.value) == (
        "step 'fetch' of workflow 'w' depends on 'ghost', which the workflow does not have"
    )


def test_unknown_explicit_dependency_is_refused():
    """depends_on naming a missing step is refused like a binding source."""
    with pytest.raises(DefinitionError, match="depends on 'nope', which the workflow does not have"):
        build_workflow("w", [StepDefinition("fetch", spec_of(fetch), FromPrevious(None), ("nope",))])


def test_step_depending_on_itself_is_refused():
    """A step reading its own result is refused."""
    with pytest.raises(DefinitionError, match=r"^step 'fetch' of workflow 'w' depends on itself$"):
        build_workflow("w", [StepDefinition("fetch", spec_of(fetch), FromPrevious("fetch"))])


def test_dependency_cycle_is_refused_showing_the_cycle():
    """Three steps reading each other in a ring are refused, and the message walks the ring."""
    steps = [
        StepDefinition("fetch", spec_of(fetch), FromPrevious("pack")),
        StepDefinition("price", spec_of(price), FromPrevious("fetch")),
        StepDefinition("pack", spec_of(pack), FromPrevious("price")),
    ]
    with pytest.raises(DefinitionError) as caught:
        build_workflow("ring", steps)
    assert str(caught.value) == "workflow 'ring' has a dependency cycle: fetch -> pack -> price -> fetch"


def test_cycle_message_leaves_out_steps_leading_into_the_cycle():
    """A step downstream of a two-step cycle is not shown as part of it."""
    steps = [
        StepDefinition("label", spec_of(label), FromPrevious("fetch")),
        StepDefinition("fetch", spec_of(fetch), FromPrevious("price")),
        StepDefinition("price", spec_of(price), FromPrevious("fetch")),
    ]
    with pytest.raises(DefinitionError) as caught:
        build_workflow("loop", steps)
    assert str(caught.value) == "workflow 'loop' has a dependency cycle: fetch -> price -> fetch"


def test_cycle_behind_a_valid_prefix_is_still_found():
    """Steps that can be ordered do not hide a cycle after them."""
    steps = [
        StepDefinition("fetch", spec_of(fetch), FromPrevious(None)),
        StepDefinition("price", spec_of(price), FromPrevious("fetch"), ("pack",)),
        StepDefinition("pack", spec_of(pack), FromPrevious("price")),
    ]
    with pytest.raises(
        DefinitionError, match=r"^workflow 'w' has a dependency cycle: price -> pack -> price$"
    ):
        build_workflow("w", steps)


def test_empty_workflow_is_refused():
    """build_workflow with no steps is refused."""
    with pytest.raises(DefinitionError, match=r"^workflow 'w' has no steps$"):
        build_workflow("w", [])


def test_unknown_output_step_is_refused():
    """The output step must be one of the workflow's steps."""
    with pytest.raises(DefinitionError, match="the output step 'nope' is not a step of workflow 'w'"):
        build_workflow("w", [StepDefinition("fetch", spec_of(fetch), FromPrevious(None))], output_step="nope")


@pytest.mark.parametrize("bad", ["", "  ", None])
def test_blank_workflow_name_is_refused(bad):
    """A workflow's name must be non-empty text."""
    with pytest.raises(DefinitionError, match="a workflow's name must be a non-empty string"):
        build_workflow(bad, [StepDefinition("fetch", spec_of(fetch), FromPrevious(None))])


def test_blank_version_is_refused():
    """A workflow's version must be non-empty text."""
    with pytest.raises(DefinitionError, match="the version of workflow 'w' must be a non-empty string"):
        build_workflow("w", [StepDefinition("fetch", spec_of(fetch), FromPrevious(None))], version=" ")


def test_steps_are_ordered_dependencies_first_whatever_the_declaration_order():
    """A chain declared backwards is ordered so each step follows its dependency, and is a chain."""
    steps = [
        StepDefinition("pack", spec_of(pack), FromPrevious("price")),
        StepDefinition("price", spec_of(price), FromPrevious("fetch")),
        StepDefinition("fetch", spec_of(fetch), FromPrevious(None)),
    ]
    workflow = build_workflow("w", steps)
    assert workflow.step_names == ("fetch", "price", "pack")
    assert [step.index for step in workflow.steps] == [0, 1, 2]
    assert workflow.is_chain is True


def test_explicit_dependencies_and_binding_sources_are_merged_without_duplicates():
    """depends_on and the binding's source are combined, each once, explicit ones first."""
    steps = [
        StepDefinition("fetch", spec_of(fetch), FromPrevious(None)),
        StepDefinition("price", spec_of(price), FromPrevious(None)),
        StepDefinition("pack", spec_of(pack), FromPrevious("fetch"), ("price", "fetch")),
    ]
    workflow = build_workflow("w", steps)
    assert workflow.step("pack").depends_on == ("price", "fetch")
    assert workflow.is_chain is False


def test_workflow_step_lookup_of_a_missing_step_is_a_definition_error():
    """Workflow.step() names the workflow and the missing step."""
    workflow = Flow("f").then(fetch).build()
    assert workflow.step("fetch") is workflow.steps[0]
    with pytest.raises(DefinitionError, match=r"^workflow 'f' has no step 'nope'$"):
        workflow.step("nope")


def test_workflow_is_frozen():
    """A built workflow's fields cannot be reassigned."""
    workflow = Flow("f").then(fetch).build()
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.steps = ()  # type: ignore[misc]


def test_workflow_step_map_is_read_only():
    """by_name cannot be changed through the workflow."""
    workflow = Flow("f").then(fetch).build()
    with pytest.raises(TypeError):
        workflow.by_name["other"] = workflow.steps[0]  # type: ignore[index]


def test_step_specs_are_frozen():
    """A built step's fields cannot be reassigned."""
    workflow = Flow("f").then(fetch).build()
    with pytest.raises(dataclasses.FrozenInstanceError):
        workflow.steps[0].name = "other"  # type: ignore[misc]


def test_workflow_repr_shows_name_version_and_steps():
    """repr(workflow) names it, its version and its steps."""
    workflow = Flow("f", version=2).then(fetch).then(price).build()
    assert repr(workflow) == "<Workflow 'f' v2 steps=['fetch', 'price']>"


def test_output_codec_is_the_output_steps_return_codec():
    """output_codec decodes with the output step's return annotation."""

    def dated() -> int:
        return 1

    workflow = Flow("f").then(dated).build()
    assert workflow.output_codec is workflow.step("dated").task.shape.returns
    assert workflow.output_codec.annotation is int


# --- @task -------------------------------------------------------------------------------------------------


def test_bare_task_decorator_declares_a_task_with_defaults():
    """@task with no options names the task after the function and sets no policies."""

    @task
    def charge(order):
        """Charge the card."""
        return order["amount"]

    assert isinstance(charge, Task)
    assert charge.name == "charge"
    assert charge.__name__ == "charge"
    assert charge.__doc__ == "Charge the card."
    assert charge.spec.retries is None
    assert charge.spec.timeout_seconds is None
    assert charge.spec.compensation is None
    assert charge.spec.description == "Charge the card."
    assert charge.spec.tags == ()
    assert repr(charge) == "<task 'charge'>"


def test_task_is_still_callable_as_the_plain_function():
    """Calling a task calls the function directly."""

    @task(retries=RetryPolicy(max_retries=2))
    def add(x, y=10):
        return x + y

    assert add(1) == 11
    assert add(1, y=2) == 3
    assert inspect.unwrap(add) is add.spec.fn


def test_task_options_are_recorded():
    """name, retries, compensation_retries, description and tags are kept on the spec."""
    retries = RetryPolicy(max_retries=2)
    undo_retries = RetryPolicy(max_retries=7)

    @task(
        name="custom",
        retries=retries,
        compensation_retries=undo_retries,
        description="explicit",
        tags=["billing", "eu"],
    )
    def charge(order):
        """Docstring ignored when a description is given."""
        return order

    assert charge.name == "custom"
    assert charge.spec.retries is retries
    assert charge.spec.compensation_retries is undo_retries
    assert charge.spec.description == "explicit"
    assert charge.spec.tags == ("billing", "eu")


def test_task_timeout_as_float_is_kept_in_seconds():
    """timeout_secs=2.5 is a 2.5 s timeout."""
    assert task(timeout_secs=2.5)(fetch).spec.timeout_seconds == 2.5


def test_task_timeout_as_timedelta_is_converted_to_seconds():
    """timeout_secs=timedelta(minutes=1) is a 60 s timeout."""
    assert task(timeout_secs=timedelta(minutes=1))(fetch).spec.timeout_seconds == 60.0


@pytest.mark.parametrize("zero", [0, 0.0, timedelta(0)])
def test_zero_timeout_is_refused(zero):
    """A zero timeout would fail every attempt, so it is refused."""
    with pytest.raises(DefinitionError, match=r"^timeout_secs of task 'fetch' must be more than zero$"):
        task(timeout_secs=zero)(fetch)


def test_negative_timeout_is_refused_naming_the_task():
    """A negative timeout is refused naming the task's timeout_secs."""
    with pytest.raises(DefinitionError, match="timeout_secs of task 'fetch' must be a finite, non-negative"):
        task(timeout_secs=-1)(fetch)


@pytest.mark.parametrize("bad", [3, {"max_retries": 3}, "3"])
def test_retries_must_be_a_retry_policy(bad):
    """retries= accepts only a RetryPolicy."""
    with pytest.raises(DefinitionError, match=r"^retries of task 'fetch' must be a RetryPolicy, not "):
        task(retries=bad)(fetch)


def test_compensation_retries_must_be_a_retry_policy():
    """compensation_retries= accepts only a RetryPolicy."""
    with pytest.raises(DefinitionError, match="compensation_retries of task 'fetch' must be a RetryPolicy"):
        task(compensation_retries=5)(fetch)


def test_sync_and_async_functions_are_told_apart():
    """An async def task is marked async; a plain one is not."""
    assert task(fetch_async).spec.shape.is_async is True
    assert task(fetch).spec.shape.is_async is False


def test_parameter_annotated_step_context_is_the_context_parameter():
    """A parameter annotated StepContext, whatever its name, receives the context, not data."""

    def with_context(order: dict, where: StepContext, extra: int = 1):
        return order

    shape = task(with_context).spec.shape
    assert shape.context_parameter == "where"
    assert [parameter.name for parameter in shape.parameters] == ["order", "extra"]
    assert [parameter.name for parameter in shape.required] == ["order"]


def test_unannotated_parameter_named_ctx_is_data():
    """Only the StepContext annotation marks the context parameter, not the name."""

    def plain(ctx):
        return ctx

    shape = task(plain).spec.shape
    assert shape.context_parameter is None
    assert [parameter.name for parameter in shape.parameters] == ["ctx"]


def test_step_taking_input_and_context_fits_a_flow():
    """A step with one data parameter plus a context parameter is accepted by a flow."""

    def step(order: dict, ctx: StepContext):
        return order

    workflow = Flow("f").then(step).build()
    assert workflow.step("step").build_arguments('{"a":1}', {}) == (({"a": 1},), {})


def test_var_keyword_and_var_positional_parameters_are_not_data():
    """*args and **kwargs are not counted as data parameters."""

    def loose(order, *args: Any, **kwargs: Any):
        return order

    shape = task(loose).spec.shape
    assert [parameter.name for parameter in shape.parameters] == ["order"]
    assert shape.accepts_var_keyword is True


def test_compensate_option_sets_the_undo():
    """task(compensate=undo) records the undo's shape."""

    def release(reservation):
        return None

    reserve = task(compensate=release)(fetch)
    assert reserve.spec.compensation is not None
    assert reserve.spec.compensation.fn is release


def test_compensate_decorator_sets_the_undo_and_returns_it_unchanged():
    """@some_task.compensate records the undo and leaves the undo function as it was."""

    @task
    def charge(order):
        return order

    def refund(receipt, order):
        return None

    returned = charge.compensate(refund)
    assert returned is refund
    assert charge.spec.compensation is not None
    assert charge.spec.compensation.fn is refund
    workflow = Flow("f").then(charge).build()
    assert workflow.step("charge").has_compensation is True


def test_compensate_decorator_syntax_works():
    """The documented @charge.compensate form works as a decorator."""

    @task
    def charge(order):
        return order

    @charge.compensate
    def refund(receipt):
        return "refunded"

    assert refund("r") == "refunded"
    assert charge.spec.compensation.fn is refund


def test_step_without_an_undo_has_no_compensation():
    """A plain function step declares no undo."""
    assert Flow("f").then(fetch).build().step("fetch").has_compensation is False


def test_compensation_taking_three_required_arguments_is_refused():
    """An undo is called with the result and maybe the input, so three required arguments are refused."""

    def undo(result, order, extra):
        return None

    with pytest.raises(DefinitionError) as caught:
        task(compensate=undo)(fetch)
    assert str(caught.value) == (
        "the compensation of task 'fetch' takes 3 arguments; it is called with the step's result, and "
        "optionally the step's input"
    )


def test_compensate_decorator_refuses_three_required_arguments():
    """The @task.compensate form applies the same check and leaves the task without an undo."""

    @task
    def charge(order):
        return order

    def undo(result, order, extra):
        return None

    with pytest.raises(DefinitionError, match="the compensation of task 'charge' takes 3 arguments"):
        charge.compensate(undo)
    assert charge.spec.compensation is None


def test_compensation_with_context_and_defaults_is_accepted():
    """Context and defaulted parameters do not count against an undo's two arguments."""

    def undo(result, order, ctx: StepContext, note="x"):
        return None

    shape = task(compensate=undo)(fetch).spec.compensation
    assert shape.context_parameter == "ctx"
    assert [parameter.name for parameter in shape.required] == ["result", "order"]


def test_task_used_in_a_flow_keeps_its_spec():
    """A Task handed to a flow brings its own spec (name, timeout, policies)."""
    declared = task(name="priced", timeout_secs=3)(price)
    workflow = Flow("f").then(declared).build()
    assert workflow.step_names == ("priced",)
    assert workflow.step("priced").task is declared.spec
    assert workflow.step("priced").timeout_seconds == 3.0


def test_make_task_spec_of_a_task_returns_its_spec():
    """make_task_spec hands back a Task's own spec rather than wrapping it again."""
    declared = task(fetch)
    assert make_task_spec(declared) is declared.spec
    assert isinstance(declared.spec, TaskSpec)
    assert declared.spec.fn is fetch


def test_task_without_a_name_is_refused():
    """A callable without __name__ (and no name=) is refused with a hint to pass name=."""

    class Callable:
        def __call__(self, value):
            return value

    with pytest.raises(DefinitionError, match=r"a task needs a non-empty name.*\(pass name=\.\.\.\)"):
        task(Callable())


def test_description_defaults_to_the_docstring():
    """Without description= the task's description is its function's docstring."""
    assert task(fetch).spec.description == "Fetch the order."
    assert task(price).spec.description == ""
