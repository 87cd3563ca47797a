"""Real workflows and runs for the dashboard's tests (tests/web and tests/browser).

``checkout`` charges through a gateway a test can break and mend: broken, its ``charge`` step fails twice
(a retry), its ``reserve`` step is undone, and the run ends ``compensated``, so a retry is meaningful once
the gateway is mended. ``approval`` waits for the signal ``approved`` (a run to signal or cancel).
``slow_export`` runs past its timeout on its first attempt and succeeds on the second.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from conveyor import Conveyor, Flow, RetryPolicy, Worker, task
from conveyor.definition.resources import resource
from conveyor.web.tokens import ApiTokens

ADMIN_TOKEN = "admin-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"


def dashboard_tokens() -> ApiTokens:
    """One admin token and one read token."""
    return ApiTokens(admin=[ADMIN_TOKEN], read=[READ_TOKEN])


@dataclass
class Gateway:
    """A payment gateway a test breaks and mends; it counts the charges it took."""

    broken: bool = True
    charges: list[str] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)


@dataclass
class Exporter:
    """Counts its calls: the first one is slower than the step's timeout."""

    calls: int = 0


@task(compensate=lambda order, gateway=resource("gateway"): gateway.refunds.append(order["reservation"]))
def reserve(order: dict) -> dict:
    """Reserve the order's stock."""
    return {**order, "reservation": f"res-{order['id']}"}


@task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.01))
def charge(order: dict, gateway: Gateway = resource("gateway")) -> dict:
    """Charge the card, or fail while the gateway is broken."""
    if gateway.broken:
        raise ConnectionError("payment gateway timed out")
    gateway.charges.append(order["reservation"])
    return {**order, "paid": True}


@task
def confirm(order: dict) -> str:
    """Say the order is done."""
    return f"order {order['id']} confirmed"


@task
def prepare(request: dict) -> dict:
    """Get an approval request ready."""
    return request


@task
def ship(approval: object) -> str:
    """Ship once approved."""
    return f"shipped after {approval!r}"


@task(timeout_secs=0.2, retries=RetryPolicy(max_retries=1, initial_delay_secs=0.01))
def export(report: dict, exporter: Exporter = resource("exporter")) -> int:
    """Export a report: the first call hangs past the timeout."""
    exporter.calls += 1
    if exporter.calls == 1:
        time.sleep(0.6)
    return exporter.calls


checkout = Flow("checkout").then(reserve).then(charge).then(confirm).build()
approval = Flow("approval").then(prepare).wait_for_signal("approved").then(ship).build()
slow_export = Flow("slow_export").then(export).build()


def make_app(backend: str) -> tuple[Conveyor, Gateway]:
    """A runtime on ``backend`` with the three workflows and a broken gateway."""
    gateway = Gateway()
    app = Conveyor(
        backend,
        workflows=[checkout, approval, slow_export],
        resources={"gateway": gateway, "exporter": Exporter()},
    )
    return app, gateway


@contextmanager
def running_worker(app: Conveyor) -> Iterator[Worker]:
    """A worker of ``app`` claiming runs on a thread until the block ends."""
    worker = app.worker(concurrency=2, poll_interval_seconds=0.2, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, name="dashboard-test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)


def wait_until(check: Callable[[], bool], *, timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def drive_until_idle(app: Conveyor) -> None:
    """Let a worker of ``app`` drive every run it can claim now, on this thread, until none is left
    (a run that waits for a signal or a timer is left waiting)."""
    app.worker(concurrency=2, poll_interval_seconds=0.2).run(until_idle=True)


def record_runs(app: Conveyor) -> None:
    """The runs every dashboard test reads: ``order-1`` compensated (``charge`` failed twice on the broken
    gateway), ``approval-1`` waiting for its signal, ``export-1`` completed after a timed-out attempt."""
    app.run("checkout", {"id": 1}, workflow_id="order-1", correlation_id="basket-7")
    app.start("approval", {"request": 1}, workflow_id="approval-1", correlation_id="basket-7")
    app.start("slow_export", {"report": "daily"}, workflow_id="export-1")
    drive_until_idle(app)
    assert app.status("approval-1").is_waiting()
    assert app.status("export-1").is_completed()


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = CSRF_FIELD.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: Any, token: str = ADMIN_TOKEN) -> None:
    """Sign ``client`` (a TestClient) in with ``token``."""
    response = client.post("/login", data={"token": token, "next": "/runs"}, follow_redirects=False)
    assert response.status_code == 303, response.text
