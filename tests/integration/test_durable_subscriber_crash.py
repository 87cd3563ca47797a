"""A worker killed between a state change and its durable delivery: the next worker delivers the event from
the cursor, so the subscriber gets every event, and, dropping the repeat by its id, each exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import subscriber_app
from worker_support import HERE, wait_until

from conveyor import Conveyor, RunState
from conveyor.backends.urls import open_backend

DIE_AT = "order-1#3"  # reserve's step.completed: charge is still waiting, so the run is mid-way


def spawn(url: str, tmp_path: Path, die_when: str) -> subprocess.Popen[str]:
    """`conveyor worker --app subscriber_app` in its own process (output appended to workers.out)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "SUBSCRIBER_LOG": str(tmp_path / "ledger.log"),
        "DIE_AT": DIE_AT,
        "DIE_WHEN": die_when,
        "DIE_MARKER": str(tmp_path / "died"),
    }
    command = [sys.executable, "-m", "conveyor.cli", "-v", "worker", "--app", "subscriber_app"]
    with (tmp_path / "workers.out").open("a") as output:
        return subprocess.Popen(
            [*command, "--backend", url, "--lease-seconds", "1", "--poll-interval-seconds", "0.2"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def ledger(tmp_path: Path) -> list[tuple[int, str]]:
    path = tmp_path / "ledger.log"
    if not path.exists():
        return []
    return [
        (int(pid), event_id) for pid, event_id in (line.split() for line in path.read_text().splitlines())
    ]


@pytest.mark.parametrize("die_when", ["after", "before"])
def test_a_worker_killed_before_its_cursor_is_saved_leaves_no_event_lost_and_one_repeat_to_drop(
    database_url: str, tmp_path: Path, die_when: str
) -> None:
    """SIGKILL after (or before) handling an event: the next worker takes the cursor over at once (its
    owner is dead), hands over again what came after the saved position, and finishes the run."""
    backend = open_backend(database_url)
    app = Conveyor(backend, workflows=[subscriber_app.CHECKOUT])
    app.start(subscriber_app.CHECKOUT, {"id": 1}, workflow_id="order-1")
    first = spawn(database_url, tmp_path, die_when)
    second = None
    try:
        assert first.wait(60) == -signal.SIGKILL, (tmp_path / "workers.out").read_text()
        handled_first = [event_id for pid, event_id in ledger(tmp_path) if pid == first.pid]
        assert (DIE_AT in handled_first) is (die_when == "after")
        assert app.status("order-1").state is RunState.RUNNING  # it died mid-run
        second = spawn(database_url, tmp_path, die_when)
        wait_until(lambda: app.status("order-1").state is RunState.COMPLETED, 60, "the run to complete")
        history = [event.id for event in app.history("order-1")]
        wait_until(lambda: {e for _, e in ledger(tmp_path)} >= set(history), 60, "every event delivered")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        backend.close()
    delivered = [event_id for _, event_id in ledger(tmp_path)]
    by_second = [event_id for pid, event_id in ledger(tmp_path) if pid == second.pid]
    assert DIE_AT in by_second  # delivered again (or for the first time) by the next worker
    if die_when == "after":
        assert delivered.count(DIE_AT) == 2  # at least once: the repeat the event id lets it drop
    once = list(dict.fromkeys(delivered))  # drop repeats by event id
    assert once == history  # every event of the run, exactly once in effect, in order
