"""Values cross checkpoints as JSON and come back as the annotated type; bad values are refused clearly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from conveyor import (
    EncodingError,
    Flow,
    InMemoryBackend,
    InvalidArgumentError,
    RetryPolicy,
    RunState,
    SqliteBackend,
    StepInputError,
    get_workflow_status,
    run_durable_workflow,
    run_workflow,
    start_workflow,
    task,
)


class Order(pydantic.BaseModel):
    order_id: int
    customer_email: str
    amount: Decimal
    placed_at: dt.datetime


@dataclasses.dataclass
class Receipt:
    order_id: int
    payment_id: uuid.UUID
    amount: Decimal
    charged_at: dt.datetime


PAYMENT_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
PLACED = dt.datetime(2026, 11, 21, 12, 30, tzinfo=dt.UTC)


@task
def charge(order: Order) -> Receipt:
    return Receipt(order.order_id, PAYMENT_ID, order.amount, order.placed_at + dt.timedelta(seconds=5))


@task
def confirm(receipt: Receipt) -> dict[str, Any]:
    assert isinstance(receipt, Receipt)
    assert isinstance(receipt.payment_id, uuid.UUID)
    assert isinstance(receipt.amount, Decimal)
    return {"total": receipt.amount * 2, "at": receipt.charged_at}


TYPED = Flow("typed").then(charge).then(confirm).build()
ORDER = Order(order_id=7, customer_email="a@example.com", amount=Decimal("19.99"), placed_at=PLACED)


@pytest.mark.parametrize("backend_kind", ["memory", "sqlite"])
def test_models_dataclasses_decimals_uuids_and_datetimes_cross_checkpoints(
    backend_kind: str, tmp_path: Any
) -> None:
    """A pydantic model in, a dataclass between steps, decimals, UUIDs and datetimes all arrive typed."""
    backend = InMemoryBackend() if backend_kind == "memory" else SqliteBackend(tmp_path / "c.db")
    status = run_durable_workflow(TYPED, "typed-1", ORDER, backend)
    assert status.is_completed(), status.error()
    assert status.output() == {"total": "39.98", "at": "2026-11-21T12:30:05+00:00"}
    receipt = status.step("charge").result
    assert receipt == {
        "order_id": 7,
        "payment_id": str(PAYMENT_ID),
        "amount": "19.99",
        "charged_at": "2026-11-21T12:30:05+00:00",
    }


def test_output_comes_back_as_the_last_steps_annotated_type() -> None:
    """The run's output is decoded into the last step's return annotation."""
    workflow = Flow("receipt").then(charge).build()
    result = run_workflow(workflow, ORDER)
    assert result == Receipt(7, PAYMENT_ID, Decimal("19.99"), PLACED + dt.timedelta(seconds=5))


def test_output_read_from_another_process_is_plain_json_unless_the_workflow_is_given() -> None:
    """get_workflow_status returns plain JSON values, or typed ones when told the workflow."""
    backend = InMemoryBackend()
    workflow = Flow("receipt").then(charge).build()
    run_durable_workflow(workflow, "r-1", ORDER, backend)
    assert get_workflow_status("r-1", backend).output()["payment_id"] == str(PAYMENT_ID)
    assert get_workflow_status("r-1", backend, workflow).output().payment_id == PAYMENT_ID


def test_input_that_breaks_the_annotation_fails_the_step_at_once_naming_the_field() -> None:
    """A missing field fails the step without retries, with an error naming the field."""
    workflow = Flow("bad-input").then(task(retries=RetryPolicy(max_retries=3))(charge.spec.fn)).build()
    status = run_durable_workflow(workflow, "w", {"order_id": 1, "amount": "5"}, InMemoryBackend())
    assert status.state is RunState.FAILED
    error = status.error()
    assert error.error_type == StepInputError.__name__
    assert error.attempts == 1
    assert "field 'customer_email': Field required" in error.message
    assert "field 'placed_at': Field required" in error.message
    assert "step 'charge'" in error.message


def test_a_result_that_cannot_be_encoded_fails_the_step_and_stores_nothing_for_it() -> None:
    """Returning an object JSON cannot hold fails the step (no retry) and names the step."""

    @task(retries=RetryPolicy(max_retries=3))
    def leaky(_: Any) -> Any:
        return object()

    status = run_durable_workflow(Flow("enc").then(leaky).build(), "w", {}, InMemoryBackend())
    step = status.step("leaky")
    assert status.state is RunState.FAILED
    assert step.attempts == 1
    assert step.result_json is None
    assert step.error is not None
    assert step.error.error_type == "EncodingError"
    assert "result of step 'leaky' cannot be stored as JSON" in step.error.message


def test_an_input_that_cannot_be_encoded_is_refused_before_anything_is_stored() -> None:
    """An input JSON cannot hold raises EncodingError naming the path (input.when); no run is recorded."""
    backend = InMemoryBackend()
    with pytest.raises(EncodingError, match=r"^input cannot be stored as JSON: input\.when is an object"):
        run_durable_workflow(TYPED, "w", {"when": object()}, backend)
    assert backend.load_run("w") is None


@pytest.mark.parametrize(
    ("initial_input", "message"),
    [
        ({"x": float("nan")}, "input.x is NaN"),
        ({"x": [1.0, float("-inf")]}, "input.x[1] is -inf"),
        ({"counts": {1: "one"}}, "input.counts has the key 1 (int)"),
    ],
)
def test_an_input_that_would_be_stored_changed_is_refused_at_the_door(
    initial_input: Any, message: str
) -> None:
    """NaN, infinity and integer keys in an input raise EncodingError naming the path; nothing is stored."""
    backend = InMemoryBackend()
    workflow = Flow("plain").then(task(lambda value: value, name="echo")).build()
    with pytest.raises(EncodingError, match=f"^input cannot be stored as JSON: {re.escape(message)}"):
        run_durable_workflow(workflow, "w", initial_input, backend)
    assert backend.load_run("w") is None
    with pytest.raises(EncodingError, match=re.escape(message)):
        start_workflow(workflow, "w", initial_input, backend)
    assert backend.load_run("w") is None


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"lines": [{"price": 1.0}, {"price": 2.0}, {"price": float("nan")}]}, ".lines[2].price is NaN"),
        ({"totals": {2024: 10}}, ".totals has the key 2024 (int)"),
    ],
)
def test_a_result_that_would_be_stored_changed_fails_the_step_at_once(result: Any, message: str) -> None:
    """A NaN or an integer key in a result fails the step without retries, naming the path; nothing stored."""

    @task(retries=RetryPolicy(max_retries=3))
    def charge(_: Any) -> Any:
        return result

    status = run_durable_workflow(Flow("nan").then(charge).build(), "w", {}, InMemoryBackend())
    step = status.step("charge")
    assert status.state is RunState.FAILED
    assert step.attempts == 1
    assert step.result_json is None
    assert step.error is not None
    assert step.error.error_type == "EncodingError"
    assert not step.error.retryable
    assert f"result of step 'charge'{message}" in step.error.message


@pytest.mark.parametrize(
    ("workflow_id", "message"),
    [
        ("", "workflow_id must not be empty"),
        ("   ", "workflow_id must not be empty"),
        ("x" * 256, "workflow_id is 256 characters long; the limit is 255"),
        ("a\nb", "workflow_id must not contain control characters"),
        (42, "workflow_id must be a string, not int"),
    ],
)
def test_a_bad_workflow_id_is_refused_and_nothing_is_stored(workflow_id: Any, message: str) -> None:
    """Empty, oversized, control-character or non-string ids raise InvalidArgumentError naming the id."""
    backend = InMemoryBackend()
    with pytest.raises(InvalidArgumentError, match=message) as raised:
        run_durable_workflow(TYPED, workflow_id, ORDER, backend)
    assert raised.value.argument == "workflow_id"
    assert backend.load_run(str(workflow_id)) is None


def test_the_longest_allowed_workflow_id_works() -> None:
    """A workflow_id of exactly 255 characters is accepted."""
    status = run_durable_workflow(TYPED, "x" * 255, ORDER, InMemoryBackend())
    assert status.is_completed()
