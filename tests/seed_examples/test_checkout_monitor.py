"""Seed 002's CheckoutMonitor (examples/extensions/checkout_monitor.py) runs as docs/observability.md says, on
every backend, in process and as a durable subscriber, and as a script."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.extensions import checkout_monitor
from examples.extensions.checkout_monitor import CARTS, CheckoutMonitor, Gateway, ProcessOrder

from conveyor import Backend, Conveyor, InMemoryBackend, SqliteBackend
from conveyor.backends.postgres import PostgresBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh backend of each kind."""
    if request.param == "memory":
        made: Backend = InMemoryBackend()
    elif request.param == "sqlite":
        made = SqliteBackend(tmp_path / "monitor.db")
    else:
        made = PostgresBackend(request.getfixturevalue("postgres_database").url)
    yield made
    made.close()


def test_the_monitor_alerts_on_each_payment_failure_and_counts_completed_checkouts(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timed-out attempt (retried) and a declined card alert #payments-critical; two checkouts count."""
    assert checkout_monitor.main(backend) == 0
    out = capsys.readouterr().out
    assert (
        "#payments-critical: Payment failure in checkout: payment gateway timed out (attempt 1, will retry)"
        in out
    )
    assert "card declined (attempt 1, for good) [correlation id req-1003]" in out
    assert "checkout.completed: 2 (durations: " in out


def test_the_same_monitor_as_a_durable_subscriber_gets_what_happened_while_it_was_not_running(
    backend: Backend,
) -> None:
    """Runs first, the monitor later: durable="checkout-monitor" reads the history from its cursor."""
    app = Conveyor(backend, workflows=[ProcessOrder])
    app.resources.add("gateway", Gateway(timeouts=1))
    for order_id, (token, cart) in CARTS.items():
        app.run(ProcessOrder, {"cart_items": cart, "payment_info": {"token": token}}, workflow_id=order_id)
    alerts: list[str] = []
    monitor = CheckoutMonitor(lambda channel, text: alerts.append(text))
    app.subscribe(monitor, durable="checkout-monitor")
    deadline = time.monotonic() + 30
    while monitor.completed < 2 or len(alerts) < 2:  # PostgreSQL's feed may hold events back a moment
        assert time.monotonic() < deadline, (monitor.completed, alerts)
        app.consume()
        time.sleep(0.02)
    assert monitor.completed == 2
    assert len(alerts) == 2
    assert app.consume() == 0  # each delivered once; the cursor is past them
    app.close()


def test_the_monitor_runs_as_a_script() -> None:
    """``python -m examples.extensions.checkout_monitor`` exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.extensions.checkout_monitor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checkout.completed: 2" in done.stdout
