"""Named step arguments from the workflow input or other steps' results: compiled once, decoded by type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pydantic
import pytest

from conveyor import (
    DefinitionError,
    InMemoryBackend,
    NonRetryableError,
    RunState,
    StepInputError,
    run_durable_workflow,
    run_workflow,
    task,
)
from conveyor.definition.arguments import Arguments, from_input, from_result, from_results
from conveyor.definition.binding import ArgumentBuilder
from conveyor.definition.task import describe_callable, make_task_spec
from conveyor.definition.workflow import StepDefinition, build_workflow


class Order(pydantic.BaseModel):
    id: str
    total_cents: int


def compiled(fn: Callable[..., Any], binding: Arguments) -> ArgumentBuilder:
    return binding.compile(describe_callable(fn, what="test step"), "charge")


def text(value: Any) -> str:
    return orjson.dumps(value).decode()


def test_arguments_come_from_input_fields_and_result_fields() -> None:
    """Each parameter gets its own source: a field of the input, a field of a result, a whole result."""

    def charge(order_id: str, order: Order, reservation: dict[str, Any]) -> None: ...

    build = compiled(
        charge,
        Arguments(
            order_id=from_input("order_id"),
            order=from_result("validate_order", "order"),
            reservation=from_result("reserve_inventory"),
        ),
    )
    args, kwargs = build(
        text({"order_id": "A1", "other": 1}),
        {
            "validate_order": text({"order": {"id": "A1", "total_cents": 500}}),
            "reserve_inventory": text({"reservation_id": "res_123"}),
        },
    )
    assert args == ()
    assert kwargs == {
        "order_id": "A1",
        "order": Order(id="A1", total_cents=500),
        "reservation": {"reservation_id": "res_123"},
    }


def test_the_whole_input_can_be_one_argument() -> None:
    """from_input() with no field hands the parameter the whole workflow input."""

    def charge(payload: dict[str, int]) -> None: ...

    _, kwargs = compiled(charge, Arguments(payload=from_input()))(text({"a": 1}), {})
    assert kwargs == {"payload": {"a": 1}}


def test_sources_are_the_steps_read_in_order_without_repeats() -> None:
    """A binding's sources are the steps it reads; from_results adds each of its steps."""
    binding = Arguments(
        a=from_result("validate_order", "order"),
        b=from_input("x"),
        c=from_result("validate_order"),
        d=from_results("reserve_inventory", "process_payment"),
    )
    assert binding.sources == ("validate_order", "reserve_inventory", "process_payment")


def test_from_results_gives_a_dict_keyed_by_step_name() -> None:
    """from_results("a", "b") hands the parameter {"a": result of a, "b": result of b}."""

    def confirm(results: dict[str, Any]) -> None: ...

    _, kwargs = compiled(confirm, Arguments(results=from_results("pay", "ship")))(
        "null", {"pay": text({"payment_id": "pi_1"}), "ship": text("label-9"), "other": "1"}
    )
    assert kwargs == {"results": {"pay": {"payment_id": "pi_1"}, "ship": "label-9"}}


def test_from_result_accepts_a_task_as_well_as_a_name() -> None:
    """A source may name its step by passing the task itself."""

    @task
    def validate_order(order_id: str) -> dict[str, str]:
        return {"order_id": order_id}

    assert from_result(validate_order, "order_id") == from_result("validate_order", "order_id")


def test_absent_field_leaves_the_default_and_without_one_fails_naming_the_field() -> None:
    """A missing field uses the parameter's default; a required one fails with a StepInputError."""

    def charge(order_id: str, currency: str = "EUR") -> None: ...

    build = compiled(charge, Arguments(order_id=from_input("order_id"), currency=from_input("currency")))
    assert build(text({"order_id": "A"}), {}) == ((), {"order_id": "A"})
    with pytest.raises(StepInputError, match="field 'order_id' of the workflow input") as raised:
        build(text({"currency": "USD"}), {})
    assert raised.value.step_name == "charge"
    assert "fields: 'currency'" in str(raised.value)


def test_a_field_that_does_not_fit_its_parameter_type_names_field_and_parameter() -> None:
    """A value of the wrong type is a StepInputError (not retried) naming the source and the parameter."""

    def charge(order: Order) -> None: ...

    build = compiled(charge, Arguments(order=from_result("validate_order", "order")))
    with pytest.raises(StepInputError, match=r"field 'order' of the result of 'validate_order'.*'order'"):
        build("null", {"validate_order": text({"order": {"id": "A", "total_cents": "lots"}})})


def test_reading_a_field_of_a_result_that_is_not_an_object_fails_clearly() -> None:
    """Asking for a field of a list or a number says what the value was."""

    def charge(order: str) -> None: ...

    build = compiled(charge, Arguments(order=from_result("validate_order", "order")))
    with pytest.raises(StepInputError, match="the result of 'validate_order' is list, not an object"):
        build("null", {"validate_order": "[1, 2]"})


def test_binding_a_parameter_the_function_does_not_have_is_a_definition_error() -> None:
    """A typo in an argument name is caught when the workflow is built."""

    def charge(order: str) -> None: ...

    with pytest.raises(DefinitionError, match=r"binds argument 'ordr'.*its parameters: order"):
        compiled(charge, Arguments(order=from_input("order"), ordr=from_input("order")))


def test_a_required_parameter_without_a_source_is_a_definition_error() -> None:
    """Every parameter without a default needs a source."""

    def charge(order: str, amount: int) -> None: ...

    with pytest.raises(DefinitionError, match="no source for parameter\\(s\\) 'amount'"):
        compiled(charge, Arguments(order=from_input("order")))


def test_a_function_taking_keywords_accepts_any_argument_name() -> None:
    """A function with **kwargs may be given arguments it does not name."""

    def charge(**details: Any) -> None: ...

    _, kwargs = compiled(charge, Arguments(anything=from_input("a")))(text({"a": 3}), {})
    assert kwargs == {"anything": 3}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Arguments(order="validate_order"), "needs a source made by from_input"),
        (lambda: from_result(""), "needs a step name"),
        (lambda: from_input(""), "must be a non-empty string"),
        (lambda: from_results(), "at least one step"),
        (lambda: Arguments({"not an identifier": from_input()}), "must be a Python identifier"),
    ],
)
def test_malformed_sources_are_refused_when_declared(make: Callable[[], object], message: str) -> None:
    """Bad sources fail at declaration with a message saying what is expected."""
    with pytest.raises(DefinitionError, match=message):
        make()


def test_a_workflow_built_with_arguments_runs_and_orders_steps_by_what_they_read() -> None:
    """Steps read from each other become dependencies; the run gives each the arguments it names."""

    def validate_order(order_id: str) -> dict[str, Any]:
        return {"order": {"id": order_id, "total_cents": 1250}}

    def charge(order: Order, card: str) -> dict[str, str]:
        return {"payment_id": f"pi_{order.id}_{order.total_cents}_{card}"}

    workflow = build_workflow(
        "arguments-demo",
        [
            StepDefinition(
                "charge",
                make_task_spec(charge),
                Arguments(order=from_result("validate_order", "order"), card=from_input("card")),
            ),
            StepDefinition(
                "validate_order", make_task_spec(validate_order), Arguments(order_id=from_input("id"))
            ),
        ],
        output_step="charge",
    )
    assert workflow.step_names == ("validate_order", "charge")
    assert workflow.step("charge").depends_on == ("validate_order",)
    assert run_workflow(workflow, {"id": "A7", "card": "tok"}) == {"payment_id": "pi_A7_1250_tok"}


def test_an_undo_taking_two_parameters_receives_the_named_arguments() -> None:
    """The engine hands an undo the step's result and the dict of the step's keyword arguments."""
    seen: list[tuple[Any, Any]] = []

    def reserve(sku: str, quantity: int) -> str:
        return "res_1"

    def fail(reservation: str) -> None:
        raise NonRetryableError("payment declined")

    workflow = build_workflow(
        "undo-arguments",
        [
            StepDefinition(
                "reserve",
                make_task_spec(
                    reserve, compensate=lambda result, arguments: seen.append((result, arguments))
                ),
                Arguments(sku=from_input("sku"), quantity=from_input("quantity")),
            ),
            StepDefinition("fail", make_task_spec(fail), Arguments(reservation=from_result("reserve"))),
        ],
    )
    status = run_durable_workflow(workflow, "w", {"sku": "A", "quantity": 2}, InMemoryBackend())
    assert status.state is RunState.COMPENSATED
    assert seen == [("res_1", {"sku": "A", "quantity": 2})]
