"""Tracing on every backend (see ``conftest.BACKENDS``): the trace context stored with a run comes back from
every read a driver starts from, and the process that drives the run continues that trace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry.sdk.trace import TracerProvider

from conveyor import Conveyor, Flow, RunState, task
from conveyor.backends import Backend
from conveyor.core.records import NewRun
from tracing_support import attributes, named, only, parent_id, recording_provider, span_id, trace_id

NewRunFactory = Callable[..., NewRun]

TRACE_CONTEXT = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
T0 = 1_700_000_000.0


def test_a_submitted_run_keeps_its_trace_context_for_the_worker_that_claims_it(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Submit, load and claim all give back the trace context the run was recorded with."""
    run = new_run("traced")
    run.trace_context = TRACE_CONTEXT
    created, was_created = backend.submit_run(run, now=T0)
    assert was_created
    assert created.trace_context == TRACE_CONTEXT
    loaded = backend.load_run("traced")
    assert loaded is not None
    assert loaded.trace_context == TRACE_CONTEXT
    (claimed,) = backend.claim_runs(owner="worker-1", limit=5, lease_seconds=3600, max_recoveries=5)
    assert claimed.trace_context == TRACE_CONTEXT


def test_a_run_started_in_process_keeps_its_trace_context_when_taken_over(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """start_run stores it; a second caller taking the run over (its lease lapsed) reads it back."""
    run = new_run("traced")
    run.trace_context = TRACE_CONTEXT
    created, _ = backend.start_run(run, owner="first", now=T0, lease_seconds=0.0)
    assert created.trace_context == TRACE_CONTEXT
    taken, was_created = backend.start_run(new_run("traced"), owner="second", now=T0 + 1, lease_seconds=3600)
    assert not was_created
    assert taken.owner == "second"
    assert taken.trace_context == TRACE_CONTEXT


def test_a_run_recorded_without_a_trace_context_reads_none(backend: Backend, new_run: NewRunFactory) -> None:
    """Runs recorded with tracing off have no trace context, on every read."""
    backend.submit_run(new_run("submitted"), now=T0)
    backend.start_run(new_run("started"), owner="me", now=T0)
    for workflow_id in ("submitted", "started"):
        loaded = backend.load_run(workflow_id)
        assert loaded is not None
        assert loaded.trace_context is None
    (claimed,) = backend.claim_runs(owner="worker-1", limit=5, lease_seconds=3600, max_recoveries=5)
    assert claimed.trace_context is None


@task
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "reserved": True}


@task
def confirm(order: dict[str, Any]) -> str:
    return f"confirmed {order['id']}"


CHECKOUT = Flow("checkout").then(reserve).then(confirm).build()


def _traced(backend: Backend, provider: TracerProvider) -> Conveyor:
    return Conveyor(backend, workflows=[CHECKOUT], tracer_provider=provider)


def test_a_worker_continues_the_trace_of_the_code_that_started_the_run(backend: Backend) -> None:
    """Started inside a span, driven by a worker of another runtime: the run's span is that span's child."""
    provider, exporter = recording_provider()
    with provider.get_tracer("starter").start_as_current_span("submit order") as starter:
        _traced(backend, provider).start(CHECKOUT, {"id": 1}, workflow_id="order-1")
    stored = backend.load_run("order-1")
    assert stored is not None
    assert stored.trace_context is not None
    assert f"{starter.get_span_context().trace_id:032x}" in orjson.loads(stored.trace_context)["traceparent"]
    worker_runtime = _traced(backend, provider)
    worker_runtime.worker(concurrency=1).run(until_idle=True)
    assert worker_runtime.status("order-1").state is RunState.COMPLETED
    spans = exporter.get_finished_spans()
    run = only(spans, "conveyor.run checkout")
    assert parent_id(run) == starter.get_span_context().span_id
    assert trace_id(run) == starter.get_span_context().trace_id
    steps = [span for span in spans if span.name.startswith("conveyor.step")]
    assert [attributes(span)["conveyor.step"] for span in steps] == ["reserve", "confirm"]
    assert {parent_id(span) for span in steps} == {span_id(run)}


def test_a_run_resumed_in_another_process_continues_the_starters_trace(backend: Backend) -> None:
    """A submitted run that a caller then drives in process (by its id, inside a span of its own) still
    continues the trace it was started in."""
    provider, exporter = recording_provider()
    tracer = provider.get_tracer("callers")
    with tracer.start_as_current_span("submit order") as starter:
        _traced(backend, provider).start(CHECKOUT, {"id": 2}, workflow_id="order-2")
    with tracer.start_as_current_span("operator"):
        status = _traced(backend, provider).run(CHECKOUT, {"id": 2}, workflow_id="order-2")
    assert status.state is RunState.COMPLETED
    (run,) = named(exporter.get_finished_spans(), "conveyor.run checkout")
    assert parent_id(run) == starter.get_span_context().span_id
