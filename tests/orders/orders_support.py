"""Helpers for the order application's tests: the test catalogue, scripted faults, a shop, a driver."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from examples.orders import services
from examples.orders.system import Faults, OrderSystem
from examples.orders.workflows import shop_runtime

from conveyor import Backend, FakeClock, InMemoryBackend, Saga, SagaResult, WorkflowStatus

PRODUCTS = (
    ("kettle", "Stovetop kettle", 3_499, 50),
    ("mug", "Enamel mug", 1_250, 50),
    ("matcha", "Ceremonial matcha", 2_999, 2),
)
"""The test catalogue: (SKU, name, price in cents, units)."""


class ScriptedRandom(random.Random):
    """A random source whose ``random()`` returns the values given, then ``default``: faults on cue."""

    def __init__(self, values: list[float] | None = None, default: float = 0.999) -> None:
        super().__init__(0)
        self.values = list(values or [])
        self.default = default

    def random(self) -> float:
        """The next scripted value, or the default once they run out."""
        return self.values.pop(0) if self.values else self.default


def make_system(url: str, faults: Faults | None = None, rng: random.Random | None = None) -> OrderSystem:
    """A shop with fresh tables and the test catalogue at ``url``."""
    system = OrderSystem.open(url, faults)
    if rng is not None:
        system = OrderSystem(system.db, system.faults, rng)
    system.db.drop_schema()
    system.db.create_schema()
    services.add_products(system, PRODUCTS)
    return system


def drive(system: OrderSystem, backend: Backend) -> None:
    """Run every runnable shop workflow in this process until none is left (a worker, until idle)."""
    with shop_runtime(backend, system=system) as runtime:
        runtime.worker(concurrency=4, poll_interval_seconds=0.05).run(until_idle=True)


def run_here(
    system: OrderSystem, backend: Backend, workflow: Any, workflow_id: str, input: Any
) -> WorkflowStatus:
    """Run ``workflow`` to its end in this process through the shop's runtime (retry delays pass at once)."""
    with shop_runtime(backend, system=system, clock=FakeClock()) as runtime:
        return runtime.run(workflow, input, workflow_id=workflow_id)


def run_saga(
    system: OrderSystem,
    saga: type[Saga],
    order_id: str,
    *,
    backend: Backend | None = None,
    workflow_id: str | None = None,
) -> SagaResult:
    """Run a workflow class for ``order_id`` through the shop's runtime (in memory unless ``backend``)."""
    with shop_runtime(backend or InMemoryBackend(), system=system, clock=FakeClock()) as runtime:
        result: SagaResult = saga.run(order_id=order_id, workflow_id=workflow_id, runtime=runtime)
    return result


def order_request(
    *items: tuple[str, int], card: str = "tok_visa", address: str = "1 Tea St"
) -> services.OrderRequest:
    """An order for ``items`` (SKU, quantity)."""
    return services.OrderRequest("ada@example.com", card, address, tuple(items))


ROOT = Path(__file__).resolve().parents[2]


def shop_command(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m examples.orders ARGUMENTS`` from the repository's root; no API tokens but ``env``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ORDERS_")}
    return subprocess.run(
        [sys.executable, "-m", "examples.orders", *arguments],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
