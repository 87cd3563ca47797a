"""The benchmark's DBOS application: ``@DBOS.workflow``/``@DBOS.step`` and one queue.

Imported by the DBOS adapter (one client in process) and run as a queue worker process with
``python -m benchmarks.engines.dbos_app URL`` (it writes ``$BENCH_READY_DIR/<pid>`` once launched and
listening, then works until SIGTERM). The fork/join workflow is an async workflow gathering two async
steps, the way DBOS runs steps concurrently.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

from benchmarks.common import (
    charge_body,
    finalize_body,
    inventory_body,
    join_body,
    note_step,
    validate_body,
)

QUEUE = "bench_queue"
WORKER_CONCURRENCY = 8
POLLING_INTERVAL_SECONDS = 0.1
"""How often a queue worker looks for work (DBOS's default is 1 s; a tenth is kinder to it here)."""


@DBOS.step()
def validate(order: dict[str, Any]) -> dict[str, Any]:
    return validate_body(order)


@DBOS.step()
def charge(order: dict[str, Any]) -> dict[str, Any]:
    return charge_body(order)


@DBOS.step()
def inventory(order: dict[str, Any]) -> dict[str, Any]:
    return inventory_body(order)


@DBOS.step()
def finalize(order: dict[str, Any]) -> dict[str, Any]:
    return finalize_body(order)


@DBOS.workflow()
def seq_order(order: dict[str, Any]) -> dict[str, Any]:
    return finalize(inventory(charge(validate(order))))


@DBOS.step()
async def validate_async(order: dict[str, Any]) -> dict[str, Any]:
    return validate_body(order)


@DBOS.step()
async def charge_async(order: dict[str, Any]) -> dict[str, Any]:
    return charge_body(order)


@DBOS.step()
async def inventory_async(order: dict[str, Any]) -> dict[str, Any]:
    return inventory_body(order)


@DBOS.step()
async def join_async(charged: dict[str, Any], stocked: dict[str, Any]) -> dict[str, Any]:
    return join_body(charged, stocked)


@DBOS.workflow()
async def fj_order(order: dict[str, Any]) -> dict[str, Any]:
    validated = await validate_async(order)
    charged, stocked = await asyncio.gather(charge_async(validated), inventory_async(validated))
    return await join_async(charged, stocked)


@DBOS.step()
def first_step(probe: dict[str, Any]) -> dict[str, Any]:
    return {**probe, "started": time.time()}


@DBOS.workflow()
def latency_probe(probe: dict[str, Any]) -> dict[str, Any]:
    return first_step(probe)


@DBOS.step()
def prepare(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "prepared": True}


@DBOS.step()
def slow(value: dict[str, Any], label: str) -> dict[str, Any]:
    note_step("start", f"{label}:slow")
    time.sleep(float(os.environ.get("BENCH_SLOW_SECONDS", "0.05")))
    return {**value, "slow": True}


@DBOS.step()
def finish(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "finished": True}


@DBOS.workflow()
def failover_order(value: dict[str, Any], label: str) -> dict[str, Any]:
    return finish(slow(prepare(value), label))


def start(url: str, executor_id: str = "local") -> None:
    """Configure and launch DBOS on the system database ``url``, with the benchmark queue registered."""
    config: DBOSConfig = {
        "name": "conveyor-bench",
        "system_database_url": url,
        "log_level": "WARNING",
        "executor_id": executor_id,
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(
        QUEUE, worker_concurrency=WORKER_CONCURRENCY, polling_interval_sec=POLLING_INTERVAL_SECONDS
    )


def main(url: str) -> None:
    """Run a queue worker until SIGTERM."""
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if ready_dir:
        (Path(ready_dir) / f"{os.getpid()}.up").write_text(f"{time.time():.6f}")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    start(url, os.environ.get("BENCH_EXECUTOR_ID", "local"))
    if ready_dir:
        (Path(ready_dir) / str(os.getpid())).write_text(f"{time.time():.6f}")
    stopping.wait()
    DBOS.destroy(workflow_completion_timeout_sec=0)


if __name__ == "__main__":
    main(sys.argv[1])
