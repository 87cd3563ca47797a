"""OpenTelemetry spans of runs and step attempts, on the memory backend, checked with the SDK's in-memory
exporter: names, parents, attributes, errors, the step's span current inside it, and the trace a worker
continues from the one stored with the run."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conveyor import Conveyor, Flow, InMemoryBackend, NonRetryableError, RetryPolicy, RunState, task
from conveyor.engine.api import new_run
from conveyor.engine.calls import StepCall
from tracing_support import attributes, named, only, parent_id, recording_provider, span_id, trace_id


@task
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "reserved": True}


@task
def charge(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "charged": True}


@task
def confirm(order: dict[str, Any]) -> str:
    return f"confirmed {order['id']}"


CHECKOUT = Flow("checkout").then(reserve).then(charge).then(confirm).build()


def traced_app(*workflows: Any) -> tuple[Conveyor, TracerProvider, InMemorySpanExporter]:
    """A runtime on the memory backend tracing through a provider of its own; the provider; its spans."""
    provider, exporter = recording_provider()
    return Conveyor(InMemoryBackend(), workflows=workflows, tracer_provider=provider), provider, exporter


def test_a_run_is_one_span_with_a_child_span_per_step_attempt() -> None:
    """conveyor.run <workflow> is the parent of conveyor.step <step>, each with the run's attributes."""
    app, _provider, exporter = traced_app(CHECKOUT)
    status = app.run(CHECKOUT, {"id": 7}, workflow_id="order-7", correlation_id="corr-7")
    assert status.state is RunState.COMPLETED
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == [
        "conveyor.step reserve",
        "conveyor.step charge",
        "conveyor.step confirm",
        "conveyor.run checkout",
    ]
    run = only(spans, "conveyor.run checkout")
    assert attributes(run) == {
        "conveyor.workflow": "checkout",
        "conveyor.workflow_version": CHECKOUT.version,
        "conveyor.workflow_id": "order-7",
        "conveyor.correlation_id": "corr-7",
        "conveyor.run.state": "completed",
    }
    assert run.status.status_code is StatusCode.UNSET
    for step in spans[:3]:
        assert parent_id(step) == span_id(run)
        assert trace_id(step) == trace_id(run)
        assert attributes(step) == {
            "conveyor.workflow": "checkout",
            "conveyor.workflow_version": CHECKOUT.version,
            "conveyor.workflow_id": "order-7",
            "conveyor.step": step.name.removeprefix("conveyor.step "),
            "conveyor.attempt": 1,
            "conveyor.correlation_id": "corr-7",
            "conveyor.compensation": False,
        }
        assert step.start_time is not None
        assert run.start_time is not None
        assert run.start_time <= step.start_time


def test_a_failed_attempt_records_its_exception_and_an_error_status() -> None:
    """The attempt that raised has the exception and an error status; the retry that passed has neither."""
    calls: list[int] = []

    @task(retries=RetryPolicy(max_retries=2, initial_delay_secs=0.0))
    def flaky(value: int) -> int:
        calls.append(value)
        if len(calls) == 1:
            raise ConnectionError("gateway down")
        return value

    flow = Flow("flaky").then(flaky).build()
    app, _provider, exporter = traced_app(flow)
    assert app.run(flow, 1).state is RunState.COMPLETED
    first, second = named(exporter.get_finished_spans(), "conveyor.step flaky")
    assert (attributes(first)["conveyor.attempt"], attributes(second)["conveyor.attempt"]) == (1, 2)
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ConnectionError: gateway down"
    (event,) = first.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ConnectionError"
    assert second.status.status_code is StatusCode.UNSET
    assert not second.events


def test_undo_attempts_are_spans_and_a_compensated_run_ends_in_error() -> None:
    """Each undo is conveyor.undo <step> (conveyor.compensation true); the run's span says compensated."""
    undone: list[str] = []

    @task(compensate=lambda order: undone.append(order["id"]))
    def hold(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @task
    def decline(order: dict[str, Any]) -> None:
        raise NonRetryableError("card declined")

    flow = Flow("declined").then(hold).then(decline).build()
    app, _provider, exporter = traced_app(flow)
    assert app.run(flow, {"id": "o-1"}).state is RunState.COMPENSATED
    assert undone == ["o-1"]
    spans = exporter.get_finished_spans()
    undo = only(spans, "conveyor.undo hold")
    run = only(spans, "conveyor.run declined")
    assert parent_id(undo) == span_id(run)
    assert attributes(undo)["conveyor.compensation"] is True
    assert attributes(undo)["conveyor.attempt"] == 1
    assert undo.status.status_code is StatusCode.UNSET
    assert only(spans, "conveyor.step decline").status.status_code is StatusCode.ERROR
    assert attributes(run)["conveyor.run.state"] == "compensated"
    assert run.status.status_code is StatusCode.ERROR
    assert "card declined" in (run.status.description or "")


def test_the_run_continues_the_trace_current_where_it_was_started() -> None:
    """A run started inside a span is that span's child, and the span's W3C context is stored with it."""
    provider, exporter = recording_provider()
    app = Conveyor(InMemoryBackend(), workflows=[CHECKOUT], tracer_provider=provider)
    with provider.get_tracer("caller").start_as_current_span("handle order") as caller:
        app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    run = only(exporter.get_finished_spans(), "conveyor.run checkout")
    assert parent_id(run) == caller.get_span_context().span_id
    assert trace_id(run) == caller.get_span_context().trace_id
    stored = app.backend.load_run("order-1")
    assert stored is not None
    assert stored.trace_context is not None
    traceparent = orjson.loads(stored.trace_context)["traceparent"]
    assert traceparent.split("-")[1:3] == [
        f"{caller.get_span_context().trace_id:032x}",
        f"{caller.get_span_context().span_id:016x}",
    ]


def test_each_step_runs_with_its_attempt_span_current_wherever_it_runs() -> None:
    """Inline, fork branches (pool threads), async, with a timeout (own thread), map elements: the span
    current inside the step is its attempt's, so the step's own spans are its children."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def note(name: str) -> None:
        with lock:
            seen[name] = trace.get_current_span().get_span_context().span_id

    @task
    def lines(order: dict[str, Any]) -> list[int]:
        note("lines")
        return [1, 2, 3]

    @task
    def pick(line: int) -> int:
        note(f"pick {line}")
        return line

    both_branches = threading.Barrier(2, timeout=10)  # they run at once: one of them on a pool thread

    @task
    def left(picked: list[int]) -> int:
        both_branches.wait()
        note("left")
        return 1

    @task
    def right(picked: list[int]) -> int:
        both_branches.wait()
        note("right")
        return 2

    @task
    async def settle_async(branches: dict[str, int]) -> int:
        await asyncio.sleep(0)
        note("settle_async")
        return sum(branches.values())

    @task(timeout_secs=30)
    def timed(total: int) -> int:
        note("timed")
        return total

    flow = (
        Flow("everywhere")
        .then(lines)
        .map(pick, max_concurrency=2)
        .fork()
        .branch(left)
        .branch(right)
        .join(settle_async)
        .then(timed)
        .build()
    )
    app, _provider, exporter = traced_app(flow)
    assert app.run(flow, {"id": 1}).state is RunState.COMPLETED
    spans = exporter.get_finished_spans()
    run = only(spans, "conveyor.run everywhere")
    for name in ("lines", "left", "right", "settle_async", "timed"):
        step = only(spans, f"conveyor.step {name}")
        assert seen[name] == span_id(step), name
        assert parent_id(step) == span_id(run)
    elements = {attributes(span)["conveyor.index"]: span for span in named(spans, "conveyor.step pick")}
    assert sorted(elements) == [0, 1, 2]
    for index, span in elements.items():
        assert seen[f"pick {index + 1}"] == span_id(span)
        assert parent_id(span) == span_id(run)


class _HoldingExecutor:
    """Runs calls here; a call started elsewhere waits, never begun, until the driver takes it back (or
    abandons it)."""

    run_here = staticmethod(StepCall.run_here)

    def __init__(self) -> None:
        self.started: list[StepCall] = []

    def start(self, call: StepCall, on_done: Any, context: Any = None) -> None:
        self.started.append(call)

    def take_back(self, call: StepCall) -> bool:
        return True

    def abandon(self, call: StepCall) -> None:
        pass


def _fork(left_body: Any) -> Any:
    @task
    def left(order: dict[str, Any]) -> int:
        return left_body()

    @task
    def right(order: dict[str, Any]) -> int:
        return trace.get_current_span().get_span_context().span_id

    @task
    def join(branches: dict[str, int]) -> dict[str, int]:
        return branches

    return Flow("forked").then(reserve).fork().branch(left).branch(right).join(join).build()


def test_a_started_call_taken_back_runs_inside_the_span_it_was_started_with() -> None:
    """A branch no thread began, run on the driving thread after all, has one span, current inside it."""
    flow = _fork(lambda: trace.get_current_span().get_span_context().span_id)
    provider, exporter = recording_provider()
    executor = _HoldingExecutor()
    app = Conveyor(InMemoryBackend(), workflows=[flow], tracer_provider=provider, executor=executor)
    status = app.run(flow, {"id": 1})
    assert status.state is RunState.COMPLETED
    assert [call.spec.name for call in executor.started] == ["right"]
    spans = exporter.get_finished_spans()
    current_inside = status.output()
    assert current_inside == {
        "left": span_id(only(spans, "conveyor.step left")),
        "right": span_id(only(spans, "conveyor.step right")),
    }


class _Stop(BaseException):
    """Not an Exception: the drive stops on it, abandoning the calls it started."""


def test_an_abandoned_call_ends_its_span_with_an_error() -> None:
    """When the drive stops with a call started but never begun, that call's span ends, marked abandoned."""

    def stop() -> int:
        raise _Stop

    flow = _fork(stop)
    provider, exporter = recording_provider()
    app = Conveyor(InMemoryBackend(), workflows=[flow], tracer_provider=provider, executor=_HoldingExecutor())
    with pytest.raises(_Stop):
        app.run(flow, {"id": 1})
    spans = exporter.get_finished_spans()
    abandoned = only(spans, "conveyor.step right")
    assert abandoned.status.status_code is StatusCode.ERROR
    assert abandoned.status.description == "abandoned: the drive stopped first"
    assert only(spans, "conveyor.step left").status.status_code is StatusCode.ERROR
    assert only(spans, "conveyor.run forked").status.status_code is StatusCode.ERROR


def test_a_worker_continues_the_trace_stored_with_the_run() -> None:
    """A run started inside a span and driven by a worker outside any span: the drive's span is the
    starter's child, and says the drive finished."""
    app, provider, exporter = traced_app(CHECKOUT)
    with provider.get_tracer("starter").start_as_current_span("submit order") as submitting:
        app.start(CHECKOUT, {"id": 3}, workflow_id="order-3")
    app.worker(concurrency=1).run(until_idle=True)
    assert app.status("order-3").state is RunState.COMPLETED
    spans = exporter.get_finished_spans()
    run = only(spans, "conveyor.run checkout")
    assert parent_id(run) == submitting.get_span_context().span_id
    assert trace_id(run) == submitting.get_span_context().trace_id
    assert attributes(run)["conveyor.drive.outcome"] == "finished"
    assert {parent_id(span) for span in spans if span.name.startswith("conveyor.step")} == {span_id(run)}


def test_each_drive_of_a_worker_is_a_span_of_the_starters_trace() -> None:
    """A run that sleeps is handed back and claimed again: two drives, two spans, both the starter's
    children; the first says it stopped to wait."""
    flow = Flow("cooling").then(reserve).delay("cool-off", 0.05).then(confirm).build()
    app, provider, exporter = traced_app(flow)
    with provider.get_tracer("starter").start_as_current_span("submit order") as submitting:
        app.start(flow, {"id": 4}, workflow_id="order-4")
    app.worker(concurrency=1, poll_interval_seconds=0.02).run(until_idle=True)
    assert app.status("order-4").state is RunState.COMPLETED
    first, second = named(exporter.get_finished_spans(), "conveyor.run cooling")
    assert attributes(first)["conveyor.drive.outcome"] == "waiting"
    assert attributes(first)["conveyor.run.state"] == "running"
    assert attributes(second)["conveyor.drive.outcome"] == "finished"
    assert {parent_id(first), parent_id(second)} == {submitting.get_span_context().span_id}


def test_a_child_run_continues_its_parents_trace() -> None:
    """The child run's drive is a child span of the drive of the parent that started it."""
    shipping = Flow("shipping").then(charge).build()
    parent = Flow("order").then(reserve).then_flow(shipping).build()
    app, _provider, exporter = traced_app(parent)
    assert app.run(parent, {"id": 5}, workflow_id="order-5").state is RunState.COMPLETED
    spans = exporter.get_finished_spans()
    parent_span = only(spans, "conveyor.run order")
    child_span = only(spans, "conveyor.run shipping")
    assert parent_id(child_span) == span_id(parent_span)
    assert parent_id(only(spans, "conveyor.step charge")) == span_id(child_span)


def test_tracing_is_off_unless_asked_for() -> None:
    """A runtime made without tracing makes no span and stores no trace context, even inside a span."""
    provider, exporter = recording_provider()
    app = Conveyor(InMemoryBackend(), workflows=[CHECKOUT])
    assert app.tracer is None
    with provider.get_tracer("caller").start_as_current_span("handle order"):
        assert app.run(CHECKOUT, {"id": 6}, workflow_id="order-6").state is RunState.COMPLETED
        app.start(CHECKOUT, {"id": 8}, workflow_id="order-8")
    app.worker(concurrency=1).run(until_idle=True)
    assert [span.name for span in exporter.get_finished_spans()] == ["handle order"]
    for run_id in ("order-6", "order-8"):
        stored = app.backend.load_run(run_id)
        assert stored is not None
        assert stored.trace_context is None


class _BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the tracer is broken")


class _BrokenProvider:
    def get_tracer(self, *args: Any, **kwargs: Any) -> _BrokenTracer:
        return _BrokenTracer()


def test_a_tracer_that_fails_never_fails_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """Spans that cannot be started are logged and left out; the run completes as it would untraced."""
    app = Conveyor(InMemoryBackend(), workflows=[CHECKOUT], tracer_provider=_BrokenProvider())
    with caplog.at_level(logging.WARNING, logger="conveyor.tracing"):
        status = app.run(CHECKOUT, {"id": 9})
    assert status.state is RunState.COMPLETED
    assert status.output() == "confirmed 9"
    messages = [record.getMessage() for record in caplog.records]
    assert any("could not start the span of run" in message for message in messages)
    assert any("could not start the span of step 'charge'" in message for message in messages)


@pytest.mark.parametrize(
    "stored", ["not json", '["a list"]', '{"traceparent": 7}', '{"traceparent": "00-x"}']
)
def test_a_stored_trace_context_that_cannot_be_read_starts_a_trace_of_its_own(stored: str) -> None:
    """A run whose stored context is not a readable traceparent is driven, its span a root span."""
    app, _provider, exporter = traced_app(CHECKOUT)
    recorded = new_run(CHECKOUT, "order-10", {"id": 10}, None)
    recorded.trace_context = stored
    app.backend.submit_run(recorded, now=app.clock.now())
    app.worker(concurrency=1).run(until_idle=True)
    assert app.status("order-10").state is RunState.COMPLETED
    run: ReadableSpan = only(exporter.get_finished_spans(), "conveyor.run checkout")
    assert run.parent is None


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_conveyor_runs_without_opentelemetry_and_asking_for_tracing_names_the_extra() -> None:
    """With OpenTelemetry not importable, runs work untraced; tracing=True says to install the extra."""
    result = _python(
        """
        import sys

        class NoOpenTelemetry:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from conveyor import ConfigurationError, Conveyor, Flow, InMemoryBackend, task

        @task
        def one(value: int) -> int:
            return value + 1

        flow = Flow("plain").then(one).build()
        app = Conveyor(InMemoryBackend(), workflows=[flow])
        print(app.run(flow, 1).output())
        app.start(flow, 2, workflow_id="queued")
        app.worker(concurrency=1).run(until_idle=True)
        print(app.status("queued").output())
        try:
            Conveyor(InMemoryBackend(), tracing=True)
        except ConfigurationError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2",
        "3",
        'tracing needs the OpenTelemetry API, which is not installed: pip install "conveyor[tracing]"',
    ]


def test_a_run_without_tracing_imports_nothing_of_opentelemetry() -> None:
    """Tracing off, conveyor never imports OpenTelemetry (installed here): the extra costs nothing unused."""
    result = _python(
        """
        import sys
        from conveyor import Conveyor, Flow, InMemoryBackend, task

        @task
        def one(value: int) -> int:
            return value + 1

        flow = Flow("plain").then(one).build()
        Conveyor(InMemoryBackend(), workflows=[flow]).run(flow, 1)
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tracing_true_uses_the_global_provider_even_one_set_after_the_runtime() -> None:
    """tracing=True records through OpenTelemetry's global provider, looked up as each span starts."""
    result = _python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from conveyor import Conveyor, Flow, InMemoryBackend, task

        @task
        def one(value: int) -> int:
            return value + 1

        flow = Flow("plain").then(one).build()
        app = Conveyor(InMemoryBackend(), workflows=[flow], tracing=True)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        app.run(flow, 1)
        print([span.name for span in exporter.get_finished_spans()])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['conveyor.step one', 'conveyor.run plain']"
