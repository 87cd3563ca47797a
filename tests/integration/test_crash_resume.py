"""A real process dies mid-run; a new process resumes the run from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conveyor import SqliteBackend, StepState, get_workflow_status

APP = Path(__file__).with_name("crash_app.py")


def start(database: Path, log: Path, workflow: str, **env: str) -> subprocess.Popen[str]:
    """Start the crash app in a child process."""
    return subprocess.Popen(
        [sys.executable, str(APP), str(database), "run-1", workflow],
        env={**os.environ, "CRASH_LOG": str(log), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=30)
    return process.returncode, out + err


def steps_run(log: Path) -> list[str]:
    return log.read_text().split()


def test_a_process_killed_in_step_three_resumes_in_a_new_process(tmp_path: Path) -> None:
    """os._exit inside step 3; the next process runs step 3 again and step 4 once; 1-2 never again."""
    database, log = tmp_path / "c.db", tmp_path / "steps.log"
    code, output = finish(start(database, log, "four-steps", CRASH_IN="step3", CRASH_HOW="exit"))
    assert code == 17, output
    assert steps_run(log) == ["step1", "step2", "step3"]

    code, output = finish(start(database, log, "four-steps"))
    assert code == 0, output
    assert json.loads(output) == {"state": "completed", "output": "result=25"}
    assert steps_run(log) == ["step1", "step2", "step3", "step3", "step4"]
    status = get_workflow_status("run-1", SqliteBackend(database))
    assert status.recoveries == 0  # counted once, then set back by the next recorded step
    assert [s.attempts for s in status.steps] == [1, 1, 1, 1]


def test_a_process_killed_with_sigkill_mid_step_resumes(tmp_path: Path) -> None:
    """SIGKILL while step 3 runs; a new process completes the run without re-running steps 1 and 2."""
    database, log = tmp_path / "c.db", tmp_path / "steps.log"
    victim = start(database, log, "four-steps", CRASH_IN="step3", CRASH_HOW="hang")
    deadline = time.monotonic() + 20
    while "step3:hanging" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the child never reached step 3"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    code, _ = finish(victim)
    assert code == -signal.SIGKILL

    code, output = finish(start(database, log, "four-steps"))
    assert code == 0, output
    assert json.loads(output)["output"] == "result=25"
    assert steps_run(log) == ["step1", "step2", "step3", "step3:hanging", "step3", "step4"]


def test_a_crash_during_a_backoff_neither_loses_nor_repeats_the_wait(tmp_path: Path) -> None:
    """The next attempt's due time is stored: after a crash mid-wait, the retry runs when it was due."""
    database, log = tmp_path / "c.db", tmp_path / "steps.log"
    code, output = finish(start(database, log, "backoff", CRASH_HOW="during-backoff"))
    assert code == 18, output
    waiting = get_workflow_status("run-1", SqliteBackend(database)).step("flaky")
    assert waiting.state is StepState.RETRYING
    assert waiting.attempts == 1
    assert waiting.next_attempt_at is not None
    due = waiting.next_attempt_at.timestamp()

    code, output = finish(start(database, log, "backoff"))
    assert code == 0, output
    assert json.loads(output) == {"state": "completed", "output": 2}
    assert steps_run(log) == ["step1", "flaky", "flaky"]
    retried = get_workflow_status("run-1", SqliteBackend(database)).step("flaky")
    assert retried.started_at is not None
    started = retried.started_at.timestamp()
    assert due <= started < due + 1.5  # waited until due, and not a whole delay (3 s) more
    assert retried.attempts == 2
