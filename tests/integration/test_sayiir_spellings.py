"""A program written against Sayiir's Python API runs on conveyor unchanged, with its import swapped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import conveyor
import conveyor.sayiir
from postgres_support import PostgresDatabase

PROGRAM = """
import sys
import time

from sayiir import (
    Flow,
    InMemoryBackend,
    PostgresBackend,
    RetryPolicy,
    TaskError,
    Worker,
    WorkflowClient,
    WorkflowError,
    cancel_workflow,
    get_workflow_status,
    pause_workflow,
    resume_workflow,
    run_durable_workflow,
    run_workflow,
    send_signal,
    task,
    unpause_workflow,
)


@task
def validate_order(order: dict) -> dict:
    if order.get("amount", 0) <= 0:
        raise ValueError("Invalid amount: must be positive")
    return {**order, "validated": True}


@task(timeout_secs=30, retries=RetryPolicy(max_retries=3, initial_delay_secs=0.01, backoff_multiplier=2.0))
def charge_payment(order: dict) -> dict:
    return {**order, "payment_id": "pay_123abc", "charged": True}


@task
def ship(approval: dict) -> str:
    return f"shipped after approval by {approval['by']}"


def wait_until(predicate, what):
    deadline = time.monotonic() + 30
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


checkout = Flow("checkout").then(validate_order).then(charge_payment).build()
approval = (
    Flow("approval")
    .then(validate_order)
    .wait_for_signal("approval", signal_name="approved")
    .then(ship)
    .build()
)
backend = InMemoryBackend() if sys.argv[1] == "memory" else PostgresBackend(sys.argv[1])

try:  # a task that fails in the in-memory runner
    run_workflow(checkout, {"amount": 0})
except TaskError as error:
    print("task failed:", "Invalid amount" in str(error.__cause__))

status = run_durable_workflow(checkout, "order-1", {"amount": 99.99}, backend)
print("durable:", status.is_completed(), status.output()["payment_id"])

client = WorkflowClient(backend)
client.submit(approval, "order-2", {"amount": 10})
handle = Worker("worker-1", backend, poll_interval=0.1, claim_ttl=30).start([approval])
wait_until(lambda: client.status("order-2").is_waiting(), "the run to wait for its approval")
print("waiting:", client.status("order-2").is_in_progress())
client.send_signal("order-2", "approved", {"by": "ops"})
wait_until(lambda: client.status("order-2").is_completed(), "the approved run to complete")
print("approved:", client.status("order-2").output())
print("task result:", client.get_task_result("order-2", "validate_order")["validated"])

client.submit(approval, "order-3", {"amount": 20})
wait_until(lambda: client.status("order-3").is_waiting(), "the second run to wait")
client.cancel("order-3", reason="customer asked", cancelled_by="support")
wait_until(lambda: client.status("order-3").is_cancelled(), "the cancel")
print("cancelled by:", client.status("order-3").cancelled_by)

client.submit(approval, "order-4", {"amount": 30})
wait_until(lambda: client.status("order-4").is_waiting(), "the third run to wait")
pause_workflow("order-4", backend, reason="fraud check", paused_by="risk")
unpause_workflow("order-4", backend)
send_signal("order-4", "approved", {"by": "risk"}, backend)
wait_until(lambda: get_workflow_status("order-4", backend).is_completed(), "the fourth run")
print("unpaused:", get_workflow_status("order-4", backend).paused_by)
client.submit(checkout, "order-6", {"amount": 6})
cancel_workflow("order-6", backend, reason="duplicate order", cancelled_by="support")
print("cancel asked:", get_workflow_status("order-6", backend).cancel_reason)
handle.shutdown()
handle.join()

client.submit(checkout, "order-5", {"amount": 5})  # no worker runs checkout: resume it here
pause_workflow("order-5", backend)
resumed = resume_workflow(checkout, "order-5", backend)
print("resumed:", resumed.is_completed(), resumed.output()["charged"])

try:
    get_workflow_status("nobody", backend)
except WorkflowError:
    print("unknown run: WorkflowError")
backend.close()
"""

EXPECTED = """task failed: True
durable: True pay_123abc
waiting: True
approved: shipped after approval by ops
task result: True
cancelled by: support
unpaused: risk
cancel asked: duplicate order
resumed: True True
unknown run: WorkflowError
"""


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """Where the program keeps its runs: Sayiir's two backends, in memory and PostgreSQL."""
    if request.param == "memory":
        return "memory"
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    return database.url


def test_a_sayiir_program_runs_unchanged_with_its_import_swapped(backend_url: str, tmp_path: Path) -> None:
    """Sayiir's spellings (the client and worker pair, the module functions, the errors and
    ``is_in_progress``) in memory and on PostgreSQL; only ``from sayiir`` becomes ``from conveyor.sayiir``."""
    assert PROGRAM.count("from sayiir import") == 1
    program = tmp_path / "program.py"
    program.write_text(PROGRAM.replace("from sayiir import", "from conveyor.sayiir import"))
    done = subprocess.run(
        [sys.executable, str(program), backend_url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED


def test_sayiirs_names_are_conveyors_objects() -> None:
    """Aliases, not copies: the same classes and functions under Sayiir's names."""
    assert conveyor.sayiir.TaskError is conveyor.WorkflowFailedError is conveyor.TaskError
    assert conveyor.sayiir.WorkflowError is conveyor.ConveyorError is conveyor.WorkflowError
    assert issubclass(conveyor.TaskError, conveyor.WorkflowError)
    assert conveyor.sayiir.cancel_workflow is conveyor.cancel_workflow
    assert conveyor.sayiir.WorkflowClient is conveyor.WorkflowClient
    assert conveyor.sayiir.Worker is not conveyor.Worker  # Sayiir's worker; conveyor.Worker is conveyor's


def test_the_client_refuses_a_conflict_policy_conveyor_does_not_have_and_fails_on_request(
    tmp_path: Path,
) -> None:
    """``terminate_existing`` is refused; ``fail`` refuses an id that has a run; the default returns it."""
    backend = conveyor.SqliteBackend(tmp_path / "c.db")

    @conveyor.task
    def one(value: int) -> int:
        return value

    workflow = conveyor.Flow("one").then(one).build()
    with pytest.raises(conveyor.InvalidArgumentError, match="conveyor never replaces a run"):
        conveyor.WorkflowClient(backend, conflict_policy="terminate_existing")
    assert conveyor.WorkflowClient(backend).submit(workflow, "r-1", 1).state.value == "pending"
    assert conveyor.WorkflowClient(backend).submit(workflow, "r-1", 2).state.value == "pending"
    with pytest.raises(conveyor.InvalidArgumentError, match="exists already"):
        conveyor.WorkflowClient(backend, conflict_policy="fail").submit(workflow, "r-1", 1)
    backend.close()
