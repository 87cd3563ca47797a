"""Analytics over real runs (retries, failures, compensation), the same figures from every backend.

Every run is driven by a runtime whose clock moves only when a step moves it, so each step's duration and
each run's are known exactly: validate takes 1 s, charge 2 s an attempt (a flaky card fails the first and
waits 5 s to retry), ship 0.5 s (an undeliverable address fails it for good, and the charge is refunded).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conveyor import Conveyor, FakeClock, Flow, InvalidArgumentError, NonRetryableError, RetryPolicy, task
from conveyor.backends import Backend

T0 = 1_700_000_000.0


class Shop:
    """The steps' side of the scenario: which orders are flaky or undeliverable, and the clock they move."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.charges: dict[str, int] = {}
        self.refunds: list[str] = []


def workflows(shop: Shop) -> tuple[Any, Any]:
    """The checkout (validate, charge, ship) and an audit that always fails with nothing to undo."""

    @task
    def validate(order: dict[str, Any]) -> dict[str, Any]:
        shop.clock.advance(1.0)
        return order

    @task(
        retries=RetryPolicy(max_retries=2, initial_delay_secs=5.0),
        compensate=lambda order: shop.refunds.append(order["id"]),
    )
    def charge(order: dict[str, Any]) -> dict[str, Any]:
        shop.clock.advance(2.0)
        attempt = shop.charges[order["id"]] = shop.charges.get(order["id"], 0) + 1
        if order.get("flaky") and attempt == 1:
            raise ConnectionError("gateway timed out")
        return order

    @task
    def ship(order: dict[str, Any]) -> dict[str, Any]:
        shop.clock.advance(0.5)
        if order.get("undeliverable"):
            raise NonRetryableError("no such address")
        return order

    @task
    def check(order: dict[str, Any]) -> dict[str, Any]:
        shop.clock.advance(4.0)
        raise NonRetryableError("audit refused")

    checkout = Flow("checkout").then(validate).then(charge).then(ship).build()
    audit = Flow("audit").then(check).build()
    return checkout, audit


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def shop(clock: FakeClock) -> Shop:
    return Shop(clock)


@pytest.fixture
def app(backend: Backend, clock: FakeClock, shop: Shop) -> Conveyor:
    """A runtime over the backend under test; its clock moves only when a step (or a retry's wait) does."""
    checkout, audit = workflows(shop)
    app = Conveyor(backend, clock=clock)
    app.register(checkout)
    app.register(audit, namespace="back_office")
    return app


def scenario(app: Conveyor, clock: FakeClock) -> None:
    """Three plain orders, a flaky card, an undeliverable address, a failed audit, a cancelled and an
    unfinished run; ten seconds apart."""
    orders = [
        {"id": "o1"},
        {"id": "o2"},
        {"id": "o3"},
        {"id": "o4", "flaky": True},
        {"id": "o5", "undeliverable": True},
    ]
    for order in orders:
        app.run("checkout", order, workflow_id=order["id"])
        clock.advance(10.0)
    app.run("audit", {"id": "a1"}, workflow_id="a1")
    clock.advance(10.0)
    app.start("checkout", {"id": "c1"}, workflow_id="c1")
    app.cancel("c1", "customer changed their mind")  # cancelled before any step ran
    app.start("checkout", {"id": "p1"}, workflow_id="p1")  # pending: never counted, never pruned
    clock.advance(10.0)


def test_performance_counts_each_workflows_runs_by_how_they_ended(app: Conveyor, clock: FakeClock) -> None:
    """Throughput, success and failure rates and duration percentiles per workflow, from real runs."""
    scenario(app, clock)
    report = app.performance(since=T0, until=clock.now())
    checkout = report.workflow("checkout")
    assert checkout is not None
    assert checkout.finished == 6
    assert checkout.by_state["completed"] == 4
    assert checkout.by_state["compensated"] == 1
    assert checkout.by_state["cancelled"] == 1
    assert checkout.success_rate == pytest.approx(4 / 6)
    assert checkout.failure_rate == 0.0  # compensated and cancelled runs need nobody
    # runs: four of 3.5 s (o1, o2, o3, o5), one of 10.5 s (o4: 2 s, a 5 s wait, 2 s), c1 cancelled at once
    assert checkout.duration_p50_seconds == pytest.approx(3.5)
    assert checkout.duration_p95_seconds == pytest.approx(10.5)
    assert checkout.duration_p99_seconds == pytest.approx(10.5)
    assert checkout.step_executions == 15  # 3 steps of five orders; c1 ran none
    assert checkout.retried_steps == 1
    assert checkout.throughput_per_minute == pytest.approx(6 / ((clock.now() - T0) / 60))
    audit = report.workflow("audit")
    assert audit is not None
    assert (audit.finished, audit.by_state["failed"], audit.failure_rate) == (1, 1, 1.0)
    assert audit.duration_p50_seconds == pytest.approx(4.0)
    assert report.finished == 7
    assert report.success_rate == pytest.approx(4 / 7)
    assert report.failure_rate == pytest.approx(1 / 7)


def test_the_health_score_weighs_failures_successes_and_retries_as_documented(
    app: Conveyor, clock: FakeClock
) -> None:
    """health = 100 * (0.60 * (1 - failure rate) + 0.25 * success rate + 0.15 * first-attempt rate)."""
    scenario(app, clock)
    report = app.performance(since=T0, until=clock.now())
    checkout = report.workflow("checkout")
    assert checkout is not None
    assert checkout.health_score == pytest.approx(100 * (0.60 * 1 + 0.25 * 4 / 6 + 0.15 * 14 / 15))
    assert report.health_score == pytest.approx(100 * (0.60 * 6 / 7 + 0.25 * 4 / 7 + 0.15 * 15 / 16))


def test_bottlenecks_rank_steps_by_the_time_they_took_with_retry_and_failure_rates(
    app: Conveyor, clock: FakeClock
) -> None:
    """charge (2 s each, five times) outranks validate (1 s) and ship (0.5 s); its retry and ship's failure
    show as rates; durations are each execution's last attempt."""
    scenario(app, clock)
    report = app.bottlenecks(since=T0, until=clock.now(), workflow="checkout")
    assert [(step.rank, step.step) for step in report.steps] == [(1, "charge"), (2, "validate"), (3, "ship")]
    charge = report.step("checkout", "charge")
    assert charge is not None
    assert (charge.executions, charge.attempts, charge.retried, charge.retries) == (5, 6, 1, 1)
    assert charge.retry_rate == pytest.approx(1 / 5)
    assert charge.failure_rate == 0.0
    assert charge.duration_p50_seconds == pytest.approx(2.0)
    assert charge.duration_p95_seconds == pytest.approx(2.0)
    assert charge.duration_mean_seconds == pytest.approx(2.0)
    assert charge.total_seconds == pytest.approx(10.0)
    assert charge.share_of_time == pytest.approx(10.0 / 17.5)
    assert charge.waits is False
    ship = report.step("checkout", "ship")
    assert ship is not None
    assert (ship.executions, ship.failed, ship.failure_rate) == (5, 1, pytest.approx(0.2))
    assert ship.duration_p95_seconds == pytest.approx(0.5)


def test_percentiles_are_by_nearest_rank_in_every_backend(
    app: Conveyor, clock: FakeClock, shop: Shop
) -> None:
    """Twenty runs of 1..20 s: p50 is the 10th value, p95 the 19th, p99 the 20th (never interpolated)."""

    @task
    def wait(seconds: float) -> float:
        shop.clock.advance(seconds)
        return seconds

    app.register(Flow("timed").then(wait).build())
    for seconds in range(20, 0, -1):
        app.run("timed", float(seconds), workflow_id=f"t{seconds}")
    figures = app.performance(since=T0, until=clock.now() + 1, workflow="timed").workflow("timed")
    assert figures is not None
    assert (figures.duration_p50_seconds, figures.duration_p95_seconds, figures.duration_p99_seconds) == (
        10.0,
        19.0,
        20.0,
    )
    step = app.bottlenecks(since=T0, until=clock.now() + 1, workflow="timed").step("timed", "wait")
    assert step is not None
    assert (step.duration_p50_seconds, step.duration_p95_seconds) == (10.0, 19.0)


def test_the_window_keeps_only_runs_that_finished_inside_it(app: Conveyor, clock: FakeClock) -> None:
    """``since`` is kept, ``until`` left out; a timedelta counts back from until; by default the window is
    the day before the runtime clock's now."""
    scenario(app, clock)
    o4_finished, o5_finished = T0 + 51.0, T0 + 64.5  # see scenario(): 10 s pass after each run

    def finished(since: Any = None, until: Any = None) -> int:
        return app.performance(since=since, until=until, workflow="checkout").finished

    assert finished(o4_finished, o5_finished) == 1
    assert finished(o4_finished, o5_finished + 0.001) == 2
    assert finished(o4_finished + 0.001, o5_finished + 0.001) == 1
    assert finished(dt.timedelta(seconds=1), T0 + 3.5) == 0
    assert finished(dt.timedelta(seconds=1), T0 + 3.501) == 1
    assert finished(until=T0 - 1) == 0
    everything = app.performance(since=dt.datetime.fromtimestamp(T0, dt.UTC))
    assert everything.finished == 7
    assert everything.window.until == clock.now()
    assert app.performance().window.since == clock.now() - 86400


def test_workflow_and_namespace_keep_the_runs_of_what_they_name(app: Conveyor, clock: FakeClock) -> None:
    """``workflow=`` and ``namespace=`` (seed 002's task_name and namespace) filter in the database."""
    scenario(app, clock)
    by_namespace = app.performance(since=T0, until=clock.now(), namespace="back_office")
    assert [found.workflow for found in by_namespace.workflows] == ["audit"]
    both = app.bottlenecks(since=T0, until=clock.now(), namespace="back_office", workflow="audit")
    assert [(step.workflow, step.step, step.failed) for step in both.steps] == [("audit", "check", 1)]
    assert {found.workflow for found in app.performance(since=T0, until=clock.now()).workflows} == {
        "checkout",
        "audit",
    }
    assert app.performance(since=T0, until=clock.now(), workflow="nothing-ran").workflows == ()
    with pytest.raises(InvalidArgumentError, match="namespace 'nowhere'"):
        app.performance(namespace="nowhere")


def test_a_run_undone_after_it_completed_counts_by_its_new_end(app: Conveyor, clock: FakeClock) -> None:
    """Compensating a completed run takes it out of the completed ones and counts it cancelled."""
    app.run("checkout", {"id": "o1"}, workflow_id="o1")
    clock.advance(5.0)
    before = app.performance(since=T0, until=clock.now() + 1).workflow("checkout")
    assert before is not None
    assert (before.finished, before.by_state["completed"]) == (1, 1)
    app.compensate("o1", "returned")
    after = app.performance(since=T0, until=clock.now() + 1).workflow("checkout")
    assert after is not None
    assert (after.finished, after.by_state["completed"], after.by_state["cancelled"]) == (1, 0, 1)
    steps = app.bottlenecks(since=T0, until=clock.now() + 1).of_workflow("checkout")
    assert sum(step.executions for step in steps) == 3  # its three steps, counted once, not twice


def test_reports_are_json_ready(app: Conveyor, clock: FakeClock) -> None:
    """``to_dict()`` of both reports holds the figures, the window in ISO 8601, nothing but JSON types."""
    import json

    scenario(app, clock)
    performance = app.performance(since=T0, until=clock.now()).to_dict()
    assert performance["window"]["since"] == dt.datetime.fromtimestamp(T0, dt.UTC).isoformat()
    assert performance["workflows"][1]["duration_seconds"]["p95"] == pytest.approx(10.5)
    bottlenecks = app.bottlenecks(since=T0, until=clock.now()).to_dict()
    assert bottlenecks["steps"][0]["step"] == "charge"
    json.dumps(performance)
    json.dumps(bottlenecks)


def test_an_empty_window_has_no_rates_and_no_score(app: Conveyor) -> None:
    """No run finished: no workflows, no rates, no health score, throughput 0."""
    report = app.performance()
    assert (report.workflows, report.finished) == ((), 0)
    assert (report.health_score, report.success_rate, report.failure_rate) == (None, None, None)
    assert report.throughput_per_minute == 0.0
    assert app.bottlenecks().steps == ()


@pytest.mark.parametrize(
    ("since", "until", "named"),
    [
        (T0 + 10, T0, "start before it ends"),
        (dt.datetime(2024, 1, 1), None, "timezone-aware"),  # naive: refused
        ("yesterday", None, "since must be"),
        (None, dt.timedelta(hours=1), "until must be"),
        (dt.timedelta(0), None, "positive"),
        (float("nan"), None, "since must be"),
    ],
)
def test_a_window_that_cannot_be_is_refused_with_its_reason(
    app: Conveyor, since: Any, until: Any, named: str
) -> None:
    """Bad windows are InvalidArgumentError naming what is wrong, before anything is read."""
    with pytest.raises(InvalidArgumentError, match=named):
        app.performance(since=since, until=until)
