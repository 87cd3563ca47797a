"""End to end on PostgreSQL: 300 orders with faults through two worker processes, one killed midway."""

from __future__ import annotations

import time

import pytest
from examples.orders.chaos import Scenario, run_chaos

from postgres_support import PostgresDatabase


@pytest.mark.timeout(180)
def test_three_hundred_orders_with_faults_and_a_killed_worker_keep_every_invariant(
    postgres_database: PostgresDatabase,
) -> None:
    """Declines, 503s, lost answers, refused addresses, failing emails, cancellations, a SIGKILL: all hold."""
    started = time.monotonic()
    outcome = run_chaos(postgres_database.url, Scenario(orders=300, seed=11, deadline_seconds=120))
    elapsed = time.monotonic() - started
    failed = [
        f"{invariant.name}: {invariant.detail}" for invariant in outcome.invariants if not invariant.holds
    ]
    assert failed == [], f"worker log: {outcome.worker_log}"
    assert sum(outcome.by_status.values()) == 300
    assert set(outcome.by_status) <= {"completed", "failed", "cancelled"}
    assert outcome.by_status["completed"] > 150
    assert outcome.by_status["failed"] > 0
    assert outcome.killed_pid is not None
    assert outcome.recovered_runs >= 1, "the killed worker had runs in flight; another worker resumes them"
    assert outcome.retries > 0
    assert outcome.compensated_runs > 0
    assert outcome.replays_matched == outcome.replays > 0
    assert outcome.email_retries > 0
    assert outcome.emails_sent >= outcome.by_status["completed"]
    assert elapsed < 60, f"the scenario took {elapsed:.1f} s"
