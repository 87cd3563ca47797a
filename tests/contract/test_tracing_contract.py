"""Tracing on every backend (see ``conftest.BACKENDS``): the trace context stored with a run comes back from
every read a driver starts from."""

from __future__ import annotations

from collections.abc import Callable

from conveyor.backends import Backend
from conveyor.core.records import NewRun

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
