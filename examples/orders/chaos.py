"""The chaos scenario the demo shows and the end-to-end test asserts: many orders, faults, a killed worker.

:func:`run_chaos` on a database URL: resets the application's tables and stocks a catalogue (some SKUs
scarce); submits the orders through the HTTP API as 25 customers, each with their own token, paying with
test card numbers (declined cards, undeliverable addresses, partial fulfilment, requests repeated with the
same Idempotency-Key); starts ``conveyor worker`` processes and an
outbox relay on the full queue; cancels some orders in flight and some once completed; kills one worker
with SIGKILL midway; waits for every order to end and every email to go; stops the rest; and checks the
invariants. The simulated providers misbehave as :class:`~examples.orders.system.Faults` says: gateway
latency, 503s and lost responses, carrier hiccups, email failures."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi.testclient import TestClient

from conveyor import Conveyor, RunNotFoundError, RunState
from examples.orders import services
from examples.orders.access import ApiAccess
from examples.orders.adapters import audit
from examples.orders.api import create_app
from examples.orders.check import Invariant, check_invariants
from examples.orders.domain import CANCELLABLE_IN_FLIGHT, FINAL_STATES, OrderStatus
from examples.orders.relay import OutboxRelay
from examples.orders.system import DATABASE_VARIABLE, FAULTS_VARIABLE, Faults, OrderSystem
from examples.orders.workflows import shop_runtime

ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``examples`` package (worker processes import it from there)."""

CATALOGUE: tuple[tuple[str, str, int, int], ...] = (
    ("kettle", "Stovetop kettle", 3_499, 400),
    ("mug", "Enamel mug", 1_250, 600),
    ("teapot", "Cast-iron teapot", 5_900, 300),
    ("sencha", "Sencha, 100 g", 1_890, 500),
    ("tray", "Lacquered tray", 4_450, 250),
    ("matcha", "Ceremonial matcha, 30 g", 2_999, 12),
    ("whisk", "Bamboo whisk", 1_575, 8),
    ("timer", "Sand timer", 899, 6),
)
"""(SKU, name, price in cents, units): the last three are scarce, and orders for them run out."""
POPULARITY = (10, 10, 10, 10, 10, 2, 2, 2)
"""How often each SKU of the catalogue is ordered, relatively."""

DEFAULT_FAULTS = Faults(
    gateway_latency_seconds=(0.002, 0.015),
    gateway_transient_rate=0.10,
    gateway_lost_response_rate=0.05,
    carrier_transient_rate=0.05,
    email_failure_rate=0.30,
)


@dataclass(frozen=True)
class Scenario:
    """How many orders, which faults, how many workers, and when to kill one."""

    orders: int = 300
    seed: int = 2024
    workers: int = 2
    concurrency: int = 8
    lease_seconds: float = 2.0
    kill_at_fraction: float = 0.4
    decline_rate: float = 0.08
    undeliverable_rate: float = 0.05
    partial_rate: float = 0.10
    replay_rate: float = 0.05
    cancel_in_flight_rate: float = 0.04
    cancel_completed_rate: float = 0.04
    faults: Faults = DEFAULT_FAULTS
    deadline_seconds: float = 150.0


@dataclass
class Progress:
    """Where a scenario is, for a progress display."""

    total: int
    submitted: int = 0
    finished: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    killed_pid: int | None = None
    held_by_killed: set[str] = field(default_factory=set)
    """The runs the killed worker held when it died (unfinished), which the others must resume."""
    emails_pending: int = 0
    phase: str = "starting"


@dataclass
class Outcome:
    """What a scenario did and found."""

    order_ids: list[str]
    elapsed_seconds: float
    by_status: dict[str, int]
    run_states: dict[str, int]
    retries: int
    compensated_runs: int
    undone_steps: int
    recovered_runs: int
    replays_matched: int
    replays: int
    cancellations: int
    emails_sent: int
    email_retries: int
    latencies: list[float]
    invariants: list[Invariant]
    killed_pid: int | None
    worker_log: Path

    @property
    def ok(self) -> bool:
        """Whether every invariant holds."""
        return all(invariant.holds for invariant in self.invariants)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted ``values`` (nearest rank); 0 for none."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(fraction * len(values)) - 1))]


CUSTOMERS = 25
"""How many customers place the scenario's orders, each with an API token of their own."""
DECLINED_CARD = "4000000000000002"
GOOD_CARDS = ("4242424242424242", "5555555555554444")
"""Test card numbers (see :data:`examples.orders.adapters.payments.TEST_CARDS`): tokenised at the door."""


CUSTOMER_TOKENS = {
    f"customer-{number:02d}": f"demo-token-for-customer-{number:02d}" for number in range(CUSTOMERS)
}
"""Each demo customer's API token, by customer id (the demo's API accepts these, and no others)."""


def _customer_of(number: int) -> str:
    return f"customer-{number % CUSTOMERS:02d}"


def _random_order(rng: random.Random, scenario: Scenario, number: int) -> dict[str, object]:
    wanted = rng.choice((1, 1, 2, 3))
    skus = sorted(set(rng.choices([sku for sku, *_ in CATALOGUE], POPULARITY, k=wanted)))
    card = DECLINED_CARD if rng.random() < scenario.decline_rate else rng.choice(GOOD_CARDS)
    address = (
        f"{number} Undeliverable Lane" if rng.random() < scenario.undeliverable_rate else f"{number} Tea St"
    )
    return {
        "customer_email": f"{_customer_of(number)}@example.com",
        "card_number": card,
        "shipping_address": address,
        "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in skus],
        "allow_partial": rng.random() < scenario.partial_rate,
    }


def start_worker(url: str, scenario: Scenario, log: IO[str]) -> subprocess.Popen[str]:
    """Start one ``conveyor worker`` process running the order workflows on ``url``."""
    env = {
        **os.environ,
        DATABASE_VARIABLE: url,
        FAULTS_VARIABLE: scenario.faults.to_json(),
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    command = [
        *(sys.executable, "-m", "conveyor.cli", "worker", "--backend", url),
        *("--app", "examples.orders.workflows", "--concurrency", str(scenario.concurrency)),
        *("--lease-seconds", str(scenario.lease_seconds), "--poll-interval-seconds", "1"),
        *("--grace-seconds", "10"),
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _run_summary(
    shop: Conveyor, workflow_ids: list[str], held_by_killed: set[str]
) -> tuple[Counter[str], int, int, int, int]:
    """Run states, retries, compensated runs, undone steps, and the runs the killed worker held that ended."""
    states: Counter[str] = Counter()
    retries = compensated = undone = recovered = 0
    for workflow_id in workflow_ids:
        try:
            status = shop.status(workflow_id)
        except RunNotFoundError:
            continue
        states[status.state.value] += 1
        compensated += status.state is RunState.COMPENSATED
        recovered += workflow_id in held_by_killed and not status.is_running()
        for step in status.steps:
            retries += max(0, step.attempts - 1) + max(0, step.compensation_attempts - 1)
            undone += step.state.value == "compensated"
    return states, retries, compensated, undone, recovered


def run_chaos(
    url: str, scenario: Scenario | None = None, on_progress: Callable[[Progress], None] | None = None
) -> Outcome:
    """Run the scenario on the (application and conveyor) database at ``url``; see the module doc."""
    scenario = scenario or Scenario()
    report = on_progress or (lambda progress: None)
    started = time.monotonic()
    rng = random.Random(scenario.seed)
    system = OrderSystem.open(url, scenario.faults)
    shop = shop_runtime(url, system=system)
    try:
        system.db.drop_schema()
        system.db.create_schema()
        services.add_products(system, CATALOGUE)
        progress = Progress(total=scenario.orders)
        relay = OutboxRelay(system)
        relay_thread = threading.Thread(target=relay.run, name="outbox-relay", daemon=True)
        log_path = Path(tempfile.mkdtemp(prefix="orders-workers-")) / "workers.log"
        log = log_path.open("a")
        workers: list[subprocess.Popen[str]] = []
        try:
            access = ApiAccess({token: customer for customer, token in CUSTOMER_TOKENS.items()})
            with TestClient(create_app(shop, access)) as client:
                order_ids, replays, replays_matched = _submit(
                    client, rng, scenario, system, relay, progress, report
                )
                # The workers start on a full queue, so the one killed midway dies with runs in its hands.
                progress.phase = "processing"
                workers.extend(start_worker(url, scenario, log) for _ in range(scenario.workers))
                relay_thread.start()
                cancelled = _process(client, rng, scenario, system, shop, relay, workers, progress, report)
                progress.phase = "checking"
                report(progress)
        except Exception as exc:
            exc.add_note(f"the workers' log: {log_path}")
            raise
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(20)
                except subprocess.TimeoutExpired:
                    worker.kill()
            relay.stop()
            if relay_thread.is_alive():
                relay_thread.join(5)
            log.close()
        states, retries, compensated, undone, recovered = _run_summary(
            shop, [services.workflow_id_for(order_id) for order_id in order_ids], progress.held_by_killed
        )
        with system.db.transaction(readonly=True) as tx:
            latencies = audit.order_latencies(tx)
            by_status = audit.orders_by_status(tx)
            emails_sent, email_retries = audit.emails_sent(tx)
        outcome = Outcome(
            order_ids=order_ids,
            elapsed_seconds=time.monotonic() - started,
            by_status=by_status,
            run_states=dict(states),
            retries=retries,
            compensated_runs=compensated,
            undone_steps=undone,
            recovered_runs=recovered,
            replays_matched=replays_matched,
            replays=replays,
            cancellations=len(cancelled),
            emails_sent=emails_sent,
            email_retries=email_retries,
            latencies=latencies,
            invariants=check_invariants(system.db),
            killed_pid=progress.killed_pid,
            worker_log=log_path,
        )
    finally:
        shop.close()
        system.close()
    return outcome


def _submit(
    client: TestClient,
    rng: random.Random,
    scenario: Scenario,
    system: OrderSystem,
    relay: OutboxRelay,
    progress: Progress,
    report: Callable[[Progress], None],
) -> tuple[list[str], int, int]:
    """POST the scenario's orders, repeating some with their key; the ids, the replays, those that matched."""
    progress.phase = "submitting"
    order_ids: list[str] = []
    replays = matched = 0
    for number in range(scenario.orders):
        body = _random_order(rng, scenario, number)
        headers = {"Idempotency-Key": f"demo-{scenario.seed}-{number}", **_bearer(_customer_of(number))}
        answer = client.post("/orders", json=body, headers=headers)
        answer.raise_for_status()
        order_id = answer.json()["order_id"]
        order_ids.append(order_id)
        if rng.random() < scenario.replay_rate:  # the client's retry of a request it got no answer to
            replays += 1
            again = client.post("/orders", json=body, headers=headers)
            matched += again.json()["order_id"] == order_id
        progress.submitted = number + 1
        if number % 10 == 0:
            _refresh(system, relay, progress)
            report(progress)
    return order_ids, replays, matched


def _process(
    client: TestClient,
    rng: random.Random,
    scenario: Scenario,
    system: OrderSystem,
    shop: Conveyor,
    relay: OutboxRelay,
    workers: list[subprocess.Popen[str]],
    progress: Progress,
    report: Callable[[Progress], None],
) -> set[str]:
    """Watch the workers until every order ended and every email went, cancelling and killing on the way.

    Returns the ids of the orders whose cancellation the API accepted.
    """
    deadline = time.monotonic() + scenario.deadline_seconds
    cancel_in_flight_at = scenario.orders * scenario.kill_at_fraction / 2
    kill_at = scenario.orders * scenario.kill_at_fraction
    cancel_completed_at = scenario.orders * min(0.9, scenario.kill_at_fraction + 0.2)
    cancelled: set[str] = set()
    in_flight_cancelled = completed_cancelled = False
    while True:
        _refresh(system, relay, progress)
        if not in_flight_cancelled and progress.finished >= cancel_in_flight_at:
            in_flight_cancelled = True
            count = scenario.cancel_in_flight_rate * scenario.orders
            cancelled |= _cancel_some(system, client, rng, CANCELLABLE_IN_FLIGHT, count)
        if progress.killed_pid is None and progress.finished >= kill_at:
            victim = workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            progress.killed_pid = victim.pid
            progress.held_by_killed = _held_by(shop, system, victim.pid)
        if not completed_cancelled and progress.finished >= cancel_completed_at:
            completed_cancelled = True
            count = scenario.cancel_completed_rate * scenario.orders
            cancelled |= _cancel_some(system, client, rng, {OrderStatus.COMPLETED}, count)
        done = progress.finished == scenario.orders and progress.emails_pending == 0
        if done and completed_cancelled and _cancellations_ended(shop, cancelled):
            return cancelled
        report(progress)
        if all(worker.poll() is not None for worker in workers):
            raise RuntimeError(f"every worker exited; orders: {progress.by_status}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"orders still open after {scenario.deadline_seconds:.0f} s: {progress.by_status}"
            )
        time.sleep(0.1)  # the workers are real processes: look again shortly, until the deadline


def _held_by(shop: Conveyor, system: OrderSystem, pid: int) -> set[str]:
    """The unfinished runs whose owner is the worker process ``pid`` (``host:pid:…``, its default name)."""
    with system.db.transaction(readonly=True) as tx:
        order_ids = [
            order for status in OrderStatus for order in audit.order_ids_with_status(tx, status.value)
        ]
    held = set()
    for workflow_id in map(services.workflow_id_for, order_ids):
        record = shop.backend.load_run(workflow_id)
        if record is not None and not record.is_final and f":{pid}:" in (record.owner or ""):
            held.add(workflow_id)
    return held


def _refresh(system: OrderSystem, relay: OutboxRelay, progress: Progress) -> None:
    with system.db.transaction(readonly=True) as tx:
        progress.by_status = audit.orders_by_status(tx)
    progress.finished = sum(count for status, count in progress.by_status.items() if status in FINAL_STATES)
    progress.emails_pending = relay.pending()


def _cancel_some(
    system: OrderSystem,
    client: TestClient,
    rng: random.Random,
    statuses: Collection[OrderStatus],
    count: float,
) -> set[str]:
    """Ask the API to cancel ``count`` orders now in one of ``statuses``; the ids it accepted."""
    with system.db.transaction(readonly=True) as tx:
        candidates = [order for status in statuses for order in audit.order_ids_with_status(tx, status.value)]
    chosen = rng.sample(sorted(candidates), min(len(candidates), round(count)))
    accepted = set()
    for order_id in chosen:  # each by the customer who placed it
        owner = _bearer(services.get_order(system, order_id).customer_id)
        if client.post(f"/orders/{order_id}/cancel", headers=owner).status_code in (200, 202):
            accepted.add(order_id)
    return accepted


def _bearer(customer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {CUSTOMER_TOKENS[customer]}"}


def _cancellations_ended(shop: Conveyor, order_ids: set[str]) -> bool:
    for order_id in order_ids:
        try:
            if shop.status(services.workflow_id_for(order_id)).is_running():  # still undoing
                return False
        except RunNotFoundError:
            continue
    return True
