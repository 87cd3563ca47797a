"""Workflows the crash tests run in child processes, which then die mid-run in the way they are told.

Usage: python crash_app.py DATABASE WORKFLOW_ID WORKFLOW. Each step appends its name to $CRASH_LOG with an
unbuffered write, so the log survives the process dying. $CRASH_IN names the step in which to die, and
$CRASH_HOW says how: "exit" (os._exit), "hang" (block until the parent kills it), or "during-backoff".
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from conveyor import Flow, RetryPolicy, SqliteBackend, run_durable_workflow, task


def note(name: str) -> None:
    descriptor = os.open(os.environ["CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, f"{name}\n".encode())
    finally:
        os.close(descriptor)


def maybe_die(step: str) -> None:
    if os.environ.get("CRASH_IN") != step:
        return
    how = os.environ.get("CRASH_HOW", "exit")
    if how == "exit":
        os._exit(17)
    if how == "hang":
        note(f"{step}:hanging")
        time.sleep(60)


@task
def step1(value: int) -> int:
    note("step1")
    return value + 1


@task
def step2(value: int) -> int:
    note("step2")
    return value * 10


@task
def step3(value: int) -> int:
    note("step3")
    maybe_die("step3")
    return value + 5


@task
def step4(value: int) -> str:
    note("step4")
    return f"result={value}"


@task(retries=RetryPolicy(max_retries=2, initial_delay_secs=3.0, backoff="fixed"))
def flaky(value: int) -> int:
    note("flaky")
    if os.environ.get("CRASH_HOW") == "during-backoff":
        # Fail this attempt, and die 0.3 s into the 3 s wait before the next one (long enough that the
        # next process, which takes a second or so to start on a busy machine, is up before it is due).
        threading.Timer(0.3, lambda: os._exit(18)).start()
        raise ConnectionError("gateway timeout")
    return value


WORKFLOWS = {
    "four-steps": Flow("four-steps").then(step1).then(step2).then(step3).then(step4).build(),
    "backoff": Flow("backoff").then(step1).then(flaky).build(),
}


def main() -> None:
    database, workflow_id, workflow = sys.argv[1:4]
    backend = SqliteBackend(database)
    status = run_durable_workflow(WORKFLOWS[workflow], workflow_id, 1, backend)
    print(json.dumps({"state": status.state.value, "output": status.output()}))
    backend.close()


if __name__ == "__main__":
    main()
