"""OpenTelemetry spans for runs and step attempts: the ``tracing`` extra, ``pip install "conveyor[tracing]"``.

Turned on by the runtime: ``Conveyor(..., tracing=True)`` records spans with OpenTelemetry's global tracer
provider (looked up as each span starts, so the SDK may be set up after the runtime is made), and
``Conveyor(..., tracer_provider=provider)`` with that provider. Off by default: with tracing off, no span
is made and nothing of OpenTelemetry is imported.

- **One span per drive of a run**, ``conveyor.run <workflow>``: a call of ``Conveyor.run`` (or ``resume``,
  ``retry``...) that drives the run to its end, or one claim of the run by a worker, up to its end or the
  wait or pause that hands it back. It ends with ``conveyor.run.state`` (the run's state then) and, for a
  worker's drive, ``conveyor.drive.outcome`` (``finished``, ``waiting`` or ``paused``); an error status
  when the run ended failed, compensated, compensation_failed or dead_lettered, or the drive raised.
- **One span per attempt of a step's function**, ``conveyor.step <step>``, or of its undo,
  ``conveyor.undo <step>``, a child of the run's span. It is the current span while the function runs,
  wherever it runs (the driving thread, a pool thread, the event loop, a timed step's own thread), so the
  spans a step's own code opens are its children. An attempt that raised (or ran past its timeout)
  records the exception and has an error status.
- **Attributes**: ``conveyor.workflow``, ``conveyor.workflow_version``, ``conveyor.workflow_id`` and
  ``conveyor.correlation_id`` on both; ``conveyor.step``, ``conveyor.attempt`` (1 first, counted apart
  for the undo), ``conveyor.compensation`` (True for an undo) and, for a loop's iteration or a map's
  element, ``conveyor.index`` on the attempts.
- **The starter's trace goes on in the worker.** When a run is recorded (``Conveyor.run``, ``start``, or a
  parent run starting a child run), the W3C trace context current there (``traceparent`` and
  ``tracestate``, through the API's propagator; never baggage) is stored with the run. Whichever process
  drives the run makes that context the parent of the run's span, so the spans a worker records share the
  starter's trace id. A run stored without one (started with tracing off, or outside any span) gets the
  context current where it is driven.

Observation is a side channel: a span that cannot be made or ended is logged and left out; the run goes on.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from conveyor.core.records import RunRecord
from conveyor.core.states import RunState
from conveyor.engine.calls import StepCall
from conveyor.engine.driver import Finished, Paused, RunDriver, WaitUntil
from conveyor.engine.executor import CallRunner, OnDone
from conveyor.errors import ConfigurationError

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # the [tracing] extra is not installed: say so when tracing is asked for
    if not (exc.name or "").startswith("opentelemetry"):
        raise
    _API_MISSING: ImportError | None = exc
else:
    _API_MISSING = None

log = logging.getLogger("conveyor.tracing")

T = TypeVar("T")

_FAILED_STATES = frozenset(
    {RunState.FAILED, RunState.COMPENSATED, RunState.COMPENSATION_FAILED, RunState.DEAD_LETTERED}
)
"""The run states a run's span ends with an error status in."""
_OUTCOMES: dict[type, str] = {Finished: "finished", WaitUntil: "waiting", Paused: "paused"}
"""What ``conveyor.drive.outcome`` says of why a drive stopped."""
_MOST_CARRIER_CHARS = 2048
"""A stored trace context longer than this is not read (a traceparent is 55 characters)."""


class RunTracer:
    """Makes the spans of runs and step attempts through an OpenTelemetry tracer provider.

    ``tracer_provider`` is the provider to use; None for the API's global one, looked up at each span (so
    that one set after this tracer was made is used). Raises ConfigurationError when the OpenTelemetry
    API is not installed.
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        if _API_MISSING is not None:
            raise ConfigurationError(
                'tracing needs the OpenTelemetry API, which is not installed: pip install "conveyor[tracing]"'
            ) from _API_MISSING
        from conveyor import __version__

        self.tracer_provider = tracer_provider
        """The provider given (None: the global one)."""
        self._tracer = trace.get_tracer("conveyor", __version__, tracer_provider=tracer_provider)
        self._propagator = TraceContextTextMapPropagator()

    # -- the starter's trace context --------------------------------------------------------------

    def capture(self) -> str | None:
        """The W3C trace context current here, as the JSON text stored with a new run (None if none)."""
        try:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            return orjson.dumps(carrier).decode() if carrier else None
        except Exception:
            log.warning("could not read the trace context; the run is stored without it", exc_info=True)
            return None

    def _stored_parent(self, run: RunRecord) -> otel_context.Context | None:
        """The context a run's span continues: the one stored with the run, if it holds a valid span."""
        stored = run.trace_context
        if stored is None or len(stored) > _MOST_CARRIER_CHARS:
            return None
        try:
            carrier = orjson.loads(stored)
        except orjson.JSONDecodeError:
            return None
        if type(carrier) is not dict or not all(type(value) is str for value in carrier.values()):
            return None
        parent = self._propagator.extract(carrier)
        return parent if trace.get_current_span(parent).get_span_context().is_valid else None

    # -- a run's span -----------------------------------------------------------------------------

    def drive(self, driver: RunDriver, drive: Callable[[], T]) -> T:
        """Call ``drive`` (one drive of ``driver``'s run) inside the run's span, current on this thread."""
        span = self._start_run_span(driver.run)
        if span is None:
            return drive()
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            outcome = drive()
        except BaseException as exc:
            _guarded(_record_error, span, exc)
            raise
        else:
            _guarded(_run_ended, span, driver.run, outcome)
            return outcome
        finally:
            otel_context.detach(token)
            _guarded(span.end)

    def _start_run_span(self, run: RunRecord) -> Span | None:
        try:
            return self._tracer.start_span(
                f"conveyor.run {run.workflow_name}",
                context=self._stored_parent(run),
                attributes={
                    "conveyor.workflow": run.workflow_name,
                    "conveyor.workflow_version": run.workflow_version,
                    "conveyor.workflow_id": run.workflow_id,
                    "conveyor.correlation_id": run.correlation_id,
                },
            )
        except Exception:
            log.warning("could not start the span of run %s", run.workflow_id, exc_info=True)
            return None

    # -- a step attempt's span --------------------------------------------------------------------

    def executor(self, executor: CallRunner) -> TracingExecutor:
        """``executor`` with a span around each call it runs (one per driver: it keeps its calls' spans)."""
        return TracingExecutor(executor, self)

    def start_attempt(self, call: StepCall) -> Span | None:
        """Start the span of one attempt (a child of the current span: the run's); None if it failed."""
        try:
            context = call()  # the attempt's number and index, as the step itself sees them
            spec = call.spec
            verb = "undo" if call.is_undo else "step"
            attributes: dict[str, Any] = {
                "conveyor.workflow": context.workflow_name,
                "conveyor.workflow_version": call.run.workflow_version,
                "conveyor.workflow_id": context.workflow_id,
                "conveyor.step": spec.name,
                "conveyor.attempt": context.attempt,
                "conveyor.correlation_id": context.correlation_id,
                "conveyor.compensation": call.is_undo,
            }
            if context.index is not None:
                attributes["conveyor.index"] = context.index
            return self._tracer.start_span(f"conveyor.{verb} {spec.name}", attributes=attributes)
        except Exception:
            log.warning("could not start the span of step %r", call.spec.name, exc_info=True)
            return None

    @staticmethod
    def end_attempt(span: Span, call: StepCall) -> None:
        """End an attempt's span: with the exception and an error status if the attempt failed."""
        try:
            error = call.error
            if error is not None:
                _record_error(span, error)
            span.end()
        except Exception:
            log.warning("could not end the span of step %r", call.spec.name, exc_info=True)


class TracingExecutor:
    """Runs a driver's calls through ``executor``, each inside its attempt's span.

    A call run on this thread runs with its span attached here; a call started elsewhere is started in a
    copy of this thread's context with its span current, and the span ends as the call does. A started
    call taken back (run here after all) keeps the span it was started with.
    """

    def __init__(self, executor: CallRunner, tracer: RunTracer) -> None:
        self._executor = executor
        self._tracer = tracer
        self._started: dict[StepCall, tuple[Span, contextvars.Context]] = {}
        """The calls started elsewhere whose span has not ended, with the context each runs in."""

    def run_here(self, call: StepCall) -> None:
        """Run ``call`` on this thread inside its span."""
        started = self._started.pop(call, None)
        if started is not None:  # started, then taken back: it runs in the context it was started with
            span, context = started
            try:
                context.run(self._executor.run_here, call)
            except BaseException as exc:  # not the step's own error (that is kept in the call): re-raised
                _guarded(_record_error, span, exc)
                raise
            finally:
                self._tracer.end_attempt(span, call)
            return
        attempt = self._tracer.start_attempt(call)
        if attempt is None:
            self._executor.run_here(call)
            return
        token = otel_context.attach(trace.set_span_in_context(attempt))
        try:
            self._executor.run_here(call)
        except BaseException as exc:
            _guarded(_record_error, attempt, exc)
            raise
        finally:
            otel_context.detach(token)
            self._tracer.end_attempt(attempt, call)

    def start(self, call: StepCall, on_done: OnDone, context: contextvars.Context | None = None) -> None:
        """Start ``call`` elsewhere (in a copy of ``context``, else of this thread's) with its span current
        there; the span ends as the call does."""
        span = self._tracer.start_attempt(call)
        if span is None:
            self._executor.start(call, on_done, context)
            return
        context = contextvars.copy_context() if context is None else context.copy()
        context.run(otel_context.attach, trace.set_span_in_context(span))
        self._started[call] = (span, context)
        started = self._started
        end_attempt = self._tracer.end_attempt

        def done(ended: StepCall) -> None:
            if started.pop(ended, None) is not None:
                end_attempt(span, ended)
            on_done(ended)

        self._executor.start(call, done, context)

    def take_back(self, call: StepCall) -> bool:
        """Withdraw a started call no thread has begun (its span goes on, for :meth:`run_here`)."""
        return self._executor.take_back(call)

    def abandon(self, call: StepCall) -> None:
        """Give up on a started call; its span ends now unless the call ends first."""
        self._executor.abandon(call)
        started = self._started.pop(call, None)
        if started is not None:
            span = started[0]
            _guarded(span.set_status, Status(StatusCode.ERROR, "abandoned: the drive stopped first"))
            _guarded(span.end)


def _record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    message = str(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}" if message else None))


def _run_ended(span: Span, run: RunRecord, outcome: object) -> None:
    """Set what a drive ended with on the run's span: the run's state, why the drive stopped, any failure."""
    state = run.state
    span.set_attribute("conveyor.run.state", state.value)
    if isinstance(outcome, Finished | WaitUntil | Paused):  # a worker's drive: why it stopped
        span.set_attribute("conveyor.drive.outcome", _OUTCOMES[type(outcome)])
    if state in _FAILED_STATES:
        span.set_status(Status(StatusCode.ERROR, str(run.error) if run.error is not None else state.value))


def _guarded(function: Callable[..., object], *args: Any) -> None:
    """Call a tracing function; what it raises is logged and swallowed (a span must never fail a run)."""
    try:
        function(*args)
    except Exception:
        log.warning("tracing failed; the run goes on", exc_info=True)
