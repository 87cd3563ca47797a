"""The documented examples (docs/examples.md) run, and do what the page says, on every backend."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from examples.extensions import cancel_with_signals, cancellation_reactor, fraud, key_metrics, warehouse

from conveyor import Backend, InMemoryBackend, SqliteBackend
from conveyor.backends.postgres import PostgresBackend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES: dict[str, Callable[[Backend | None], int]] = {
    "warehouse": warehouse.main,
    "fraud": fraud.main,
    "cancel_with_signals": cancel_with_signals.main,
    "cancellation_reactor": cancellation_reactor.main,
    "key_metrics": key_metrics.main,
}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh backend of each kind."""
    if request.param == "memory":
        made: Backend = InMemoryBackend()
    elif request.param == "sqlite":
        made = SqliteBackend(tmp_path / "examples.db")
    else:
        made = PostgresBackend(request.getfixturevalue("postgres_database").url)
    yield made
    made.close()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_does_what_its_page_says(
    name: str, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example's main checks its own outcome (0 when it went as documented) on each backend."""
    assert EXAMPLES[name](backend) == 0, capsys.readouterr().out


def test_the_warehouse_is_told_once_after_payment_and_never_for_a_declined_card(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Retried through two outages with one idempotency key: one pick request; a decline sends none."""
    assert warehouse.main() == 0
    out = capsys.readouterr().out
    assert "notify_warehouse took 3 attempts" in out
    assert "warehouse pick requests: [{'order_id': 1001, 'product_id': 'widget-42'}]" in out
    assert "order-1002: failed" in out


def test_fraud_found_by_the_parallel_branch_refunds_the_charge(capsys: pytest.CaptureFixture[str]) -> None:
    """The fraud branch runs beside the charge; finalize refuses the order and the charge is undone."""
    assert fraud.main() == 0
    out = capsys.readouterr().out
    assert "order-1002: compensated: step 'finalize'" in out
    assert "fraud suspected (score 0.9)" in out
    assert "still charged: 99.99" in out  # the honest order's charge alone


def test_a_cancel_signal_and_cancel_workflow_both_refund_a_waiting_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ship completes; the cancel signal fails ship_order (compensated); cancel_workflow ends it cancelled."""
    assert cancel_with_signals.main() == 0
    out = capsys.readouterr().out
    assert "order-1001: completed: order-1001 shipped, tracking TRK-1" in out
    assert "order-1002: compensated" in out
    assert "ordered the wrong size" in out
    assert "order-1003: cancelled: fraud team: stolen card" in out


def test_the_cancellation_reactor_refunds_and_restocks_only_a_completed_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seed 000's reactor: the completed order is refunded and restocked, the pending one only cancelled."""
    assert cancellation_reactor.main() == 0
    out = capsys.readouterr().out
    assert "refunds: ['pay_1']; shelf: {'mug': 10}" in out
    assert "99999: failed at load_order: Order not found" in out


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_runs_as_a_script(name: str) -> None:
    """``python -m examples.extensions.<name>`` exits 0, as docs/examples.md tells readers to run it."""
    done = subprocess.run(
        [sys.executable, "-m", f"examples.extensions.{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_seed_000s_key_metrics_are_read_off_the_runtimes_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    """Thirty orders: three short of stock, two declined, two emails retried once."""
    assert key_metrics.main() == 0
    out = capsys.readouterr().out
    assert "order_processing_success_rate          83.3%" in out
    assert "inventory_insufficient_rate            10.0%" in out
    assert "email_delivery_failure_rate            7.4%" in out
