"""Signals on PostgreSQL under real concurrency: a signal whose transaction commits while a release is
waiting on the run's row is seen by that release (READ COMMITTED gives the release a new snapshot once it
holds the lock), so a run handed back to wait never sleeps through it."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from conveyor.backends import postgres_signals as signal_sql
from conveyor.backends.postgres import PostgresBackend
from conveyor.core.records import NewRun
from conveyor.core.waits import WAIT_FOREVER
from postgres_support import PostgresDatabase


@pytest.mark.postgres
def test_a_signal_committed_while_the_release_waits_for_the_row_lock_keeps_the_run_awake(
    postgres_database: PostgresDatabase,
) -> None:
    backend = PostgresBackend(postgres_database.url)
    run = NewRun("run-1", "orders", "1", "null", "corr", ("a",))
    backend.submit_run(run, now=backend.now())
    claimed = backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)
    assert len(claimed) == 1
    params = {"workflow_id": "run-1", "name": "tick", "payload": "1", "now": backend.now()}
    with psycopg.connect(postgres_database.url) as sender:  # a sender in another session, held open
        sender.execute(signal_sql.SEND_SIGNAL, params)  # not committed yet: it holds the run's row
        released: list[bool] = []
        releasing = threading.Thread(
            target=lambda: released.append(
                backend.release_run(
                    workflow_id="run-1",
                    epoch=claimed[0].epoch,
                    wake_at=WAIT_FOREVER,
                    wake_for_signals=["tick"],
                )
            )
        )
        releasing.start()
        time.sleep(0.5)
        assert released == []  # the release waits for the sender's lock
        sender.commit()
    releasing.join(10)
    assert released == [True]
    assert len(backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)) == 1
    backend.close()


@pytest.mark.postgres
def test_a_signal_sent_while_a_release_holds_the_row_makes_the_released_run_claimable(
    postgres_database: PostgresDatabase,
) -> None:
    """The other order: the release looked first (no signal yet) and holds the row; the send waits for it,
    then wakes the run the release just handed back to wait forever."""
    backend = PostgresBackend(postgres_database.url)
    run = NewRun("run-1", "orders", "1", "null", "corr", ("a",))
    backend.submit_run(run, now=backend.now())
    claimed = backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)
    params = {"workflow_id": "run-1", "epoch": claimed[0].epoch, "wake_at": WAIT_FOREVER, "names": ["tick"]}
    with psycopg.connect(postgres_database.url) as releaser:  # a release in another session, held open
        releaser.execute(signal_sql.LOCK_RUN, params)
        releaser.execute(signal_sql.RELEASE_LOCKED, params)
        sent: list[int] = []
        sending = threading.Thread(
            target=lambda: sent.append(backend.send_signal("run-1", "tick", "1", now=backend.now()))
        )
        sending.start()
        time.sleep(0.5)
        assert sent == []  # the send waits for the release's lock
        releaser.commit()
    sending.join(10)
    assert len(sent) == 1
    assert len(backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)) == 1
    backend.close()
