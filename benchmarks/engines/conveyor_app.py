"""The benchmark's conveyor workflows, imported by the harness and loaded by ``conveyor worker --app``.

In a worker process started with ``$BENCH_GO_FILE`` set, importing this module blocks until that file
exists (after announcing the process in ``$BENCH_READY_DIR``): every worker is up, connected and has its
workflows before the harness releases them all at once, so worker start-up is not part of the timing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    charge_body,
    finalize_body,
    inventory_body,
    join_body,
    note_step,
    validate_body,
)
from benchmarks.engines.conveyor_observing import runtime_options
from conveyor import Flow, StepContext, task

try:
    from conveyor import Conveyor
except ImportError:  # a build from before the runtime object, measured with --against
    Conveyor = None  # type: ignore[assignment,misc]


@task
def validate(order: dict[str, Any]) -> dict[str, Any]:
    return validate_body(order)


@task
def charge(order: dict[str, Any]) -> dict[str, Any]:
    return charge_body(order)


@task
def inventory(order: dict[str, Any]) -> dict[str, Any]:
    return inventory_body(order)


@task
def finalize(order: dict[str, Any]) -> dict[str, Any]:
    return finalize_body(order)


@task
def join(results: dict[str, Any]) -> dict[str, Any]:
    return join_body(results["charge"], results["inventory"])


SEQ = Flow("bench_seq").then(validate).then(charge).then(inventory).then(finalize).build()
FJ = Flow("bench_fj").then(validate).fork().branch(charge).branch(inventory).join(join).build()


@task
def first_step(probe: dict[str, Any]) -> dict[str, Any]:
    """Reports when it started: the wake-up latency probe."""
    return {**probe, "started": time.time()}


LATENCY = Flow("bench_latency").then(first_step).build()
SIGNALLED = (
    Flow("bench_signal").wait_for_signal("go").then(first_step).build()
    if hasattr(Flow, "wait_for_signal")  # a build from before signals, measured with --against
    else None
)
"""Waits for the signal ``go``; the step after it reports when it started (the signal latency probe)."""


@task
def prepare(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "prepared": True}


@task
def slow(value: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """The step a worker is killed in: logs its start (unbuffered), then takes a while."""
    note_step("start", f"{context.workflow_id}:{context.step_name}")
    time.sleep(float(os.environ.get("BENCH_SLOW_SECONDS", "0.05")))
    return {**value, "slow": True}


@task
def finish(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "finished": True}


FAILOVER = Flow("bench_failover").then(prepare).then(slow).then(finish).build()


def _wait_for_go() -> None:
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if ready_dir:
        (Path(ready_dir) / str(os.getpid())).write_text(f"{time.time():.6f}")
    go = os.environ.get("BENCH_GO_FILE")
    while go and not os.path.exists(go):
        time.sleep(0.0005)


_wait_for_go()


WORKFLOWS = [w for w in (SEQ, FJ, LATENCY, SIGNALLED, FAILOVER) if w is not None]
app = Conveyor(workflows=WORKFLOWS, **runtime_options()) if Conveyor is not None else None
"""The runtime the benchmark's workers load (``conveyor worker --app benchmarks.engines.conveyor_app``)."""
