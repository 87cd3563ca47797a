"""Seed 003's tutorial, block by block, with only ``sayiir`` replaced by ``conveyor`` in its imports and
``PostgresBackend(...)`` replaced by ``SqliteBackend(...)``. Each block runs in the namespace the blocks
before it left, as in the tutorial, and must print what the tutorial says it prints."""

from __future__ import annotations

import contextlib
import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

TASKS = '''
from conveyor import task, RetryPolicy
@task
def validate_order(order: dict) -> dict:
    """Validate order data and business rules."""
    if order.get("amount", 0) <= 0:
        raise ValueError("Invalid amount: must be positive")
    if not order.get("customer_email"):
        raise ValueError("Customer email is required")
    return {**order, "validated": True}
@task(
    timeout_secs=30,
    retries=RetryPolicy(
        max_retries=3,
        initial_delay_secs=1.0,
        backoff_multiplier=2.0
    )
)
def charge_payment(order: dict) -> dict:
    """Charge payment with automatic retries."""
    return {
        **order,
        "payment_id": "pay_123abc",
        "charged": True
    }
@task
def send_confirmation(order: dict) -> str:
    """Send order confirmation email."""
    return f"Order {order['order_id']} confirmed (payment: {order['payment_id']})"
'''

SEQUENTIAL = """
from conveyor import Flow, run_workflow
# Create a sequential workflow
workflow = (
    Flow("order-processing")
    .then(validate_order)
    .then(charge_payment)
    .then(send_confirmation)
    .build()
)
# Execute the workflow
order_data = {
    "order_id": 1,
    "customer_email": "alice@example.com",
    "amount": 99.99
}
result = run_workflow(workflow, order_data)
print(result) # "Order 1 confirmed (payment: pay_123abc)"
"""

DURABLE = """
from conveyor import run_durable_workflow, InMemoryBackend
backend = InMemoryBackend()
status = run_durable_workflow(
    workflow=workflow,
    workflow_id="order-1",
    initial_input=order_data,
    backend=backend
)
print(status.is_completed()) # True
print(status.output()) # "Order 1 confirmed (payment: pay_123abc)"
"""

FORK = """
@task
def check_inventory(order: dict) -> dict:
    \"\"\"Verify items are in stock.\"\"\"
    return {**order, "in_stock": True}
@task
def finalize(results: dict) -> str:
    \"\"\"Combine results from parallel branches.\"\"\"
    payment = results["charge_payment"]
    inventory = results["check_inventory"]
    return f"Order complete: paid={payment['charged']}, stock={inventory['in_stock']}"
# Build workflow with parallel branches
workflow = (
    Flow("order-v2")
    .then(validate_order)
    .fork()
    .branch(charge_payment)
    .branch(check_inventory)
    .join(finalize)
    .build()
)
status = run_durable_workflow(
    workflow=workflow,
    workflow_id="order-2",
    initial_input=order_data,
    backend=backend
)
print(status.output()) # "Order complete: paid=True, stock=True"
"""

PRODUCTION_BACKEND = """
from conveyor import SqliteBackend
# Create database: createdb sayiir_orders
backend = SqliteBackend(DATABASE)
status = run_durable_workflow(
    workflow=workflow,
    workflow_id="order-3",
    initial_input=order_data,
    backend=backend
)
"""

QUERY_STATUS = """
from conveyor import get_workflow_status
status = get_workflow_status("order-3", backend)
if status.is_running():
    print("Still processing...")
elif status.is_completed():
    print(f"Done: {status.output()}")
elif status.is_failed():
    print(f"Failed: {status.error()}")
"""

COMPLETE_EXAMPLE = """
from conveyor import (
    task,
    Flow,
    RetryPolicy,
    run_durable_workflow,
    SqliteBackend
)
# Task definitions
@task
def validate_order(order: dict) -> dict:
    if order.get("amount", 0) <= 0:
        raise ValueError("Invalid amount: must be positive")
    if not order.get("customer_email"):
        raise ValueError("Customer email is required")
    return {**order, "validated": True}
@task(
    timeout_secs=30,
    retries=RetryPolicy(
        max_retries=3,
        initial_delay_secs=1.0,
        backoff_multiplier=2.0
    )
)
def charge_payment(order: dict) -> dict:
    # Integrate with payment provider
    return {**order, "payment_id": "pay_123abc", "charged": True}
@task
def check_inventory(order: dict) -> dict:
    # Query inventory database
    return {**order, "in_stock": True}
@task
def finalize(results: dict) -> str:
    payment = results["charge_payment"]
    inventory = results["check_inventory"]
    return f"Order complete: paid={payment['charged']}, stock={inventory['in_stock']}"
# Workflow definition
workflow = (
    Flow("order-processing")
    .then(validate_order)
    .fork()
    .branch(charge_payment)
    .branch(check_inventory)
    .join(finalize)
    .build()
)
# Execution
if __name__ == "__main__":
    backend = SqliteBackend(DATABASE)
    order = {
        "order_id": 1001,
        "customer_email": "alice@example.com",
        "product_id": "widget-42",
        "amount": 99.99
    }
    status = run_durable_workflow(
        workflow=workflow,
        workflow_id=f"order-{order['order_id']}",
        initial_input=order,
        backend=backend
    )
    print(status.output())
"""


def run_block(source: str, namespace: dict[str, Any]) -> str:
    """Execute one tutorial block in ``namespace`` and return what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(textwrap.dedent(source), "<seed-003>", "exec"), namespace)
    return printed.getvalue()


@pytest.fixture
def namespace(tmp_path: Path) -> dict[str, Any]:
    """A fresh module namespace, as the tutorial's script would have, with a SQLite path to use."""
    return {"__name__": "__main__", "DATABASE": str(tmp_path / "orders.db")}


def test_tutorial_blocks_print_what_the_tutorial_says(namespace: dict[str, Any]) -> None:
    """Tasks, the sequential flow, the durable run, the fork and the status query print the seed's lines."""
    assert run_block(TASKS, namespace) == ""
    assert run_block(SEQUENTIAL, namespace) == "Order 1 confirmed (payment: pay_123abc)\n"
    assert run_block(DURABLE, namespace) == "True\nOrder 1 confirmed (payment: pay_123abc)\n"
    assert run_block(FORK, namespace) == "Order complete: paid=True, stock=True\n"
    assert run_block(PRODUCTION_BACKEND, namespace) == ""
    assert run_block(QUERY_STATUS, namespace) == "Done: Order complete: paid=True, stock=True\n"


def test_complete_example_prints_the_order_result(namespace: dict[str, Any]) -> None:
    """The tutorial's complete working example runs as a script and prints the joined result."""
    assert run_block(COMPLETE_EXAMPLE, namespace) == "Order complete: paid=True, stock=True\n"


def test_running_twice_with_the_same_id_returns_the_cached_result(namespace: dict[str, Any]) -> None:
    """The tutorial's durability test: a second run with the same workflow_id executes no task again."""
    run_block(TASKS + SEQUENTIAL + DURABLE, namespace)
    calls: list[str] = []
    namespace["calls"] = calls
    again = """
    from conveyor import Flow, task
    @task
    def counted(order: dict) -> dict:
        calls.append(order["order_id"])
        return order
    counted_flow = Flow("counted").then(counted).build()
    first = run_durable_workflow(counted_flow, "counted-1", order_data, backend)
    second = run_durable_workflow(counted_flow, "counted-1", order_data, backend)
    print(first.output() == second.output(), second.is_completed())
    """
    assert run_block(again, namespace) == "True True\n"
    assert calls == [1]


def test_validation_failure_is_reported_by_status(namespace: dict[str, Any]) -> None:
    """An invalid order makes the durable run fail in validate_order, and the status says so."""
    run_block(TASKS + SEQUENTIAL + DURABLE, namespace)
    output = run_block(
        """
    status = run_durable_workflow(workflow, "bad-1", {"order_id": 2, "amount": 0}, backend)
    print(status.is_failed(), status.error().step_name, status.error().message)
    """,
        namespace,
    )
    assert output == "True validate_order Invalid amount: must be positive\n"


def as_postgres(block: str) -> str:
    """The seed's own PostgreSQL spelling of a block: PostgresBackend in place of SqliteBackend."""
    return block.replace("SqliteBackend", "PostgresBackend")


def test_the_postgres_blocks_run_unchanged_against_postgres(postgres_database: Any) -> None:
    """Seed 003's PostgresBackend blocks, with only the connection URL changed, print what they promise."""
    namespace: dict[str, Any] = {"__name__": "__main__", "DATABASE": postgres_database.url}
    run_block(TASKS + SEQUENTIAL + DURABLE + FORK, namespace)
    assert run_block(as_postgres(PRODUCTION_BACKEND), namespace) == ""
    assert run_block(QUERY_STATUS, namespace) == "Done: Order complete: paid=True, stock=True\n"
    fresh = {"__name__": "__main__", "DATABASE": postgres_database.url}
    assert run_block(as_postgres(COMPLETE_EXAMPLE), fresh) == "Order complete: paid=True, stock=True\n"
