"""Metrics and event logs on every backend: counted from the events a process writes, never changing a run;
the metrics endpoint answers only a request that carries its token."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

import pytest

from conveyor import Conveyor, Flow, RetryPolicy, task
from conveyor.backends.base import Backend
from conveyor.core.records import NewRun
from conveyor.core.states import RunState
from conveyor.errors import ConfigurationError
from conveyor.runtime.event_logs import JsonFormatter

TOKEN = "a-scrape-token-of-some-length"


def checkout_flow() -> Any:
    calls = {"charge": 0}

    @task(name="reserve")
    def reserve(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @reserve.compensate
    def release(order: dict[str, Any]) -> None:
        return None

    @task(name="charge", retries=RetryPolicy(max_retries=2, initial_delay_secs=0.001))
    def charge(order: dict[str, Any]) -> dict[str, Any]:
        calls["charge"] += 1
        if calls["charge"] == 1:
            raise ConnectionError("gateway timeout")
        if order.get("decline"):
            raise ValueError("card declined")
        return order

    return Flow("checkout", version="1").then(reserve).then(charge).build()


def sample(app: Conveyor, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics_count_runs_steps_retries_and_undos(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[checkout_flow()], metrics=True)
    assert app.run("checkout", {}, workflow_id="ok").state is RunState.COMPLETED
    assert app.run("checkout", {}, workflow_id="ok-2").state is RunState.COMPLETED
    assert sample(app, "conveyor_runs_started_total", workflow="checkout") == 2
    assert sample(app, "conveyor_runs_finished_total", workflow="checkout", state="completed") == 2
    assert sample(app, "conveyor_run_duration_seconds_count", workflow="checkout", state="completed") == 2
    labels = {"workflow": "checkout", "step": "charge"}
    assert sample(app, "conveyor_step_attempts_total", **labels, outcome="failed") == 1
    assert sample(app, "conveyor_step_attempts_total", **labels, outcome="completed") == 2
    assert sample(app, "conveyor_step_retries_total", **labels) == 1
    assert sample(app, "conveyor_step_duration_seconds_count", **labels, outcome="completed") == 2


def test_metrics_count_a_compensated_run_and_its_undo(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[checkout_flow()], metrics=True)
    status = app.run("checkout", {"decline": True}, workflow_id="no")
    assert status.state is RunState.COMPENSATED
    assert sample(app, "conveyor_runs_finished_total", workflow="checkout", state="compensated") == 1
    undo = {"workflow": "checkout", "step": "reserve", "outcome": "completed"}
    assert sample(app, "conveyor_undos_total", **undo) == 1


def test_the_unfinished_runs_gauge_reads_queued_waiting_and_running_from_the_backend(
    backend: Backend,
) -> None:
    app = Conveyor(backend, metrics=True)
    for number in range(3):
        run = NewRun(f"q-{number}", "billing", "1", "{}", "", ("a",))
        backend.submit_run(run, now=backend.now())
    backend.claim_runs(owner="w", limit=1, lease_seconds=3600, max_recoveries=5)
    backend.request_pause("q-2")
    assert sample(app, "conveyor_runs_unfinished", workflow="billing", status="running") == 1
    assert sample(app, "conveyor_runs_unfinished", workflow="billing", status="queued") == 1
    assert sample(app, "conveyor_runs_unfinished", workflow="billing", status="waiting") == 1


def test_the_metrics_endpoint_needs_its_token(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[checkout_flow()], metrics=True)
    app.run("checkout", {}, workflow_id="ok")
    with pytest.raises(ConfigurationError, match="at least 16 printable ASCII"):
        app.metrics.serve(0, token="short")
    server = app.metrics.serve(0, token=TOKEN)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(server.url, headers=headers), timeout=5)
            assert refused.value.code == 401
            refused.value.close()
        request = urllib.request.Request(server.url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
        assert 'conveyor_runs_finished_total{state="completed",workflow="checkout"} 1.0' in body
    finally:
        server.close()


def test_each_event_is_one_log_line_with_the_run_step_attempt_and_correlation_id(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app = Conveyor(backend, workflows=[checkout_flow()], log_events=True)
    with caplog.at_level(logging.INFO, logger="conveyor.events"):
        app.run("checkout", {}, workflow_id="ok", correlation_id="req-9")
    records = [record for record in caplog.records if record.name == "conveyor.events"]
    assert len(records) == len(app.history("ok"))
    failed = next(record for record in records if "step.failed" in record.getMessage())
    assert failed.levelno == logging.WARNING
    assert failed.getMessage() == (
        "step.failed workflow_id=ok step=charge attempt=1 correlation_id=req-9 error='gateway timeout'"
    )
    line = json.loads(JsonFormatter().format(failed))
    assert (line["workflow_id"], line["step"], line["attempt"], line["correlation_id"]) == (
        "ok",
        "charge",
        1,
        "req-9",
    )
    assert line["kind"] == "step.failed"
    assert line["level"] == "warning"


def test_a_runtime_with_history_off_counts_nothing_and_runs_the_same(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[checkout_flow()], metrics=True, history=False)
    assert app.run("checkout", {}, workflow_id="ok").state is RunState.COMPLETED
    assert sample(app, "conveyor_runs_started_total", workflow="checkout") == 0


def test_a_closed_runtime_stops_counting_the_writes_of_a_backend_it_shared(backend: Backend) -> None:
    closed = Conveyor(backend, workflows=[checkout_flow()], metrics=True, log_events=True)
    closed.close()
    still_open = Conveyor(backend, workflows=[checkout_flow()])
    assert still_open.run("checkout", {}, workflow_id="after").state is RunState.COMPLETED
    assert sample(closed, "conveyor_runs_started_total", workflow="checkout") == 0
