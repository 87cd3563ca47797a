"""``Conveyor``: the one object that owns execution.

It holds the backend, the workflows it knows, the clock and the resources steps ask for. Everything that
starts, runs, reads or retries a run goes through it; the module functions the seeds spell
(``run_durable_workflow``, ``get_workflow_status``, ...) and the class methods (``Saga.run``,
``Registry.run``) are thin adapters over one. Workers, the CLI and later the REST server load it by import
path (``conveyor worker --app myapp.workflows:app``)::

    app = Conveyor("sqlite:///orders.db", workflows=[checkout, OrderProcessing])

    @app.resource("gateway")
    def gateway() -> PaymentGateway:
        return PaymentGateway.from_environment()

    @app.on("step.failed")
    def alert(event: Event) -> None: ...

    status = app.run("checkout", {"id": 42}, workflow_id="order-42")

Every blocking method has an ``_async`` twin for async code (``run_async``, ``status_async``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from conveyor.backends.base import Backend
from conveyor.backends.history import EventPage, Listener, RowListener
from conveyor.backends.retention import DEFAULT_PRUNE_BATCH
from conveyor.backends.urls import open_backend
from conveyor.codec import max_value_bytes
from conveyor.core.history import Event
from conveyor.core.records import NewRun, RunPage, RunRecord
from conveyor.core.states import RunState
from conveyor.definition.children import child_steps, with_children
from conveyor.definition.registry import Registry, UnknownWorkflowError
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import new_run, same_workflow_or_raise, stored_run
from conveyor.engine.checks import check_backend, check_workflow, check_workflow_id
from conveyor.engine.children import ChildRuns, resolver_over
from conveyor.engine.clock import Clock, SystemClock
from conveyor.engine.driver import RunDriver
from conveyor.engine.executor import StepExecutor
from conveyor.engine.handles import RunHandle
from conveyor.engine.lease import Heartbeat, Lease
from conveyor.engine.reading import wait_for_run
from conveyor.engine.status import WorkflowStatus
from conveyor.engine.worker import Worker
from conveyor.errors import (
    BackendError,
    ConfigurationError,
    InvalidArgumentError,
    LeaseLostError,
    RunAlreadyRunningError,
    RunNotFoundError,
)
from conveyor.observe.analytics import Bottlenecks, Performance
from conveyor.runtime import analytics, operator, retention, steering
from conveyor.runtime.analytics import Moment
from conveyor.runtime.event_logs import EVENTS_LOGGER, EventLog
from conveyor.runtime.listing import list_runs
from conveyor.runtime.metrics import Metrics
from conveyor.runtime.ownership import PROCESS, LocalRuns, owner_is_dead
from conveyor.runtime.resources import Resources
from conveyor.runtime.retention import Age
from conveyor.runtime.signals import send_signal_to
from conveyor.runtime.subscriber_methods import SubscriberMethods
from conveyor.runtime.subscriptions import Subscriptions

if TYPE_CHECKING:
    from conveyor.observe.tracing import RunTracer

DEFAULT_BACKEND_URL = "sqlite:///conveyor.db"
BACKEND_VARIABLE = "CONVEYOR_BACKEND"
DEFAULT_LEASE_SECONDS = 15.0
"""How long a run driven in process stays this process's without a renewal (renewed every third of it)."""

IfRunning = Literal["wait", "fail"]
"""What :meth:`Conveyor.run` does when another caller is driving the run: wait for its outcome, or fail."""

_FIRST_POLL_SECONDS = 0.002
_LONGEST_POLL_SECONDS = 0.25
_SYSTEM_CLOCK = SystemClock()

T = TypeVar("T")


def default_backend_url() -> str:
    """The backend a runtime uses when given none: ``$CONVEYOR_BACKEND``, else ``sqlite:///conveyor.db``."""
    return os.environ.get(BACKEND_VARIABLE, "").strip() or DEFAULT_BACKEND_URL


class Conveyor(SubscriberMethods):
    """The runtime: a backend, the workflows it runs, a clock and the resources steps may ask for.

    ``backend`` is a backend object (the caller keeps ownership and closes it), a URL such as
    ``"sqlite:///orders.db"`` or ``"postgresql://host/db"`` (opened on first use and closed by
    :meth:`close`), or ``None`` for ``$CONVEYOR_BACKEND``, else ``sqlite:///conveyor.db``. ``workflows``
    are registered at once (built workflows or workflow classes); ``resources`` are handed to steps by name.
    ``lease_seconds`` is how long a run driven in process stays this process's if its heartbeat stops.
    ``executor`` runs the step functions (the runtime makes its own, and closes it, when given none).
    ``history=False`` records no event history (runs run the same; nothing can be watched or subscribed to).
    It is a setting of the backend: left out (None), a backend object keeps its own ``records_history``
    (True unless turned off) and a URL's backend records it; given, it sets the backend's.
    ``metrics=True`` counts Prometheus metrics from the start (see :attr:`metrics`); ``log_events=True``
    logs one line per event (see :meth:`log_events`). ``read_only=True`` opens the backend URL only to read
    (nothing is created or migrated; every write is refused; see :mod:`conveyor.backends.read_only`).
    ``tracing=True`` makes OpenTelemetry spans of each drive of a run and of each step attempt, through the
    API's global tracer provider; ``tracer_provider`` turns tracing on with that provider instead (both
    need the ``tracing`` extra; see :mod:`conveyor.observe.tracing`). Off by default.
    """

    def __init__(
        self,
        backend: Backend | str | None = None,
        *,
        workflows: Iterable[Workflow | type] = (),
        resources: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        registry: Registry | None = None,
        executor: StepExecutor | None = None,
        history: bool | None = None,
        metrics: bool = False,
        log_events: bool = False,
        tracing: bool = False,
        tracer_provider: Any = None,
        read_only: bool = False,
    ) -> None:
        if read_only and not (isinstance(backend, str) or backend is None):
            raise InvalidArgumentError(
                "read_only=True opens a backend URL read-only; a backend object is used as it was opened "
                "(open it read-only itself: SqliteBackend(path, read_only=True))",
                argument="read_only",
            )
        self.read_only = bool(read_only)
        """Whether the backend URL is opened only to read (every write is refused)."""
        if isinstance(backend, str) or backend is None:
            self._backend: Backend | None = None
            self._backend_url: str | None = backend
        else:
            self._backend = check_backend(backend)
            self._backend_url = None
        self._owns_backend = self._backend is None
        if history is None:
            history = True if self._backend is None else self._backend.records_history
        self.records_history = bool(history)
        """Whether the backend records each run's event history (see :meth:`history`)."""
        self._event_listeners: list[tuple[Listener | RowListener, bool]] = []
        self._metrics: Metrics | None = None
        if self._backend is not None:
            self._backend.records_history = self.records_history
        if not isinstance(lease_seconds, int | float) or not 0 < lease_seconds < float("inf"):
            raise InvalidArgumentError(
                f"lease_seconds must be a positive number of seconds, not {lease_seconds!r}",
                argument="lease_seconds",
            )
        self.registry = registry if registry is not None else Registry()
        """The workflows this runtime knows, by (namespace, name, version)."""
        self.resources = Resources(resources)
        """What steps may ask for by name (see :meth:`resource`)."""
        self.clock: Clock = clock or _SYSTEM_CLOCK
        self._owns_executor = executor is None
        self.executor = executor if executor is not None else StepExecutor()
        """Where step functions run: this thread, a pool of threads, an event loop (started when needed)."""
        self.lease_seconds = float(lease_seconds)
        self.tracer: RunTracer | None = None
        """Makes the spans of runs and step attempts, and stores the starter's trace context with each new
        run; None when tracing is off."""
        if tracing or tracer_provider is not None:
            from conveyor.observe.tracing import RunTracer  # only now: OpenTelemetry is an optional extra

            self.tracer = RunTracer(tracer_provider)
        self.owner = PROCESS.new_owner()
        """How this runtime names itself as the owner of the runs it drives in process."""
        self._open_lock = threading.Lock()
        self._value_limit: int | None = None
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()
        """The workers this runtime made (while they live): where a cancel looks for a driver here."""
        self._heartbeat = Heartbeat(_backend_of(weakref.ref(self)), self.owner, self.lease_seconds)
        self._local: LocalRuns | None = None if self._backend is None else LocalRuns(self._backend)
        self.subscriptions = Subscriptions()
        """Who is told what happens to runs, in process and durably (see :meth:`on`)."""
        if self._backend is not None:
            self.subscriptions.in_process.bind(self._backend)
        for workflow in workflows:
            self.register(workflow)
        if metrics:
            self.metrics  # noqa: B018 (counting starts now)
        if log_events:
            self.log_events()

    # -- set-up -----------------------------------------------------------------------------------

    @classmethod
    def from_path(cls, path: str) -> Conveyor:
        """Import the runtime named ``"package.module:attribute"`` (attribute ``app`` when left out)."""
        if not isinstance(path, str) or not path.strip():
            raise InvalidArgumentError("an app path looks like 'myapp.workflows:app'", argument="app")
        module_name, _, attribute = path.strip().partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import {module_name!r} (for --app {path!r}): {exc}") from exc
        app = getattr(module, attribute or "app", None)
        if not isinstance(app, Conveyor):
            found = "nothing" if app is None else type(app).__name__
            raise ConfigurationError(
                f"{module_name}:{attribute or 'app'} must be a conveyor.Conveyor, but is {found}"
            )
        return app

    def using(self, backend: Backend | str, *, read_only: bool = False) -> Conveyor:
        """A runtime like this one (same workflows, resources, clock, lease, history and tracing) on another
        ``backend`` (a URL opened only to read with ``read_only``)."""
        other = Conveyor(
            backend,
            clock=self.clock,
            lease_seconds=self.lease_seconds,
            registry=self.registry,
            history=self.records_history,
            read_only=read_only,
        )
        other.resources = self.resources
        other.tracer = self.tracer
        other.subscriptions = self.subscriptions.copy()
        if other._backend is not None:
            other.subscriptions.in_process.bind(other._backend)
        return other

    @property
    def backend_url(self) -> str | None:
        """The URL the backend is opened from (``$CONVEYOR_BACKEND`` or the default when given none); None
        when the runtime was given a backend object."""
        if not self._owns_backend:
            return None
        return self._backend_url or default_backend_url()

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use when the runtime was given a URL."""
        backend = self._backend
        if backend is None:
            with self._open_lock:
                if self._backend is None:
                    opened = open_backend(
                        self._backend_url or default_backend_url(), read_only=self.read_only
                    )
                    opened.records_history = self.records_history
                    for listener, stored_rows in self._event_listeners:
                        opened.add_listener(listener, stored_rows=stored_rows)
                    self._local = LocalRuns(opened)
                    self._backend = opened
                    self.subscriptions.in_process.bind(opened)
                backend = self._backend
        return backend

    def _max_value_bytes(self) -> int:
        limit = self._value_limit
        if limit is None:
            limit = self._value_limit = max_value_bytes(self.backend)
        return limit

    def register(self, workflow: T, *, namespace: str | None = None, name: str | None = None) -> T:
        """Register a built workflow or a workflow class, and return it (usable as a class decorator).

        A workflow class's ``namespace`` and ``workflow_name`` attributes are used unless given here. The
        workflows its child steps were given (``then_flow(shipping)``, not by name) are registered too,
        unless a workflow of the same name and version is.
        """
        registered = self.registry.register(workflow, namespace=namespace, name=name)
        built: Any = getattr(workflow, "workflow", workflow)
        for child in with_children([built])[1:]:
            try:
                self.registry.for_run(child.name, child.version)
            except UnknownWorkflowError:
                self.registry.register(child)
        return registered

    def resource(self, name: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
        """Register the decorated function as the factory of resource ``name`` (built on first use)."""

        def add(factory: Callable[[], T]) -> Callable[[], T]:
            self.resources.add_factory(name, factory)
            return factory

        return add

    def workflow(self, name: str, version: str | None = None, namespace: str | None = None) -> Workflow:
        """The registered workflow ``name`` (its newest version unless ``version``)."""
        return self.registry.get(name, version, namespace)

    def workflows(self) -> list[Workflow]:
        """Every registered workflow."""
        return self.registry.workflows()

    # -- running in this process --------------------------------------------------------------------

    def run(
        self,
        workflow: Workflow | type | str,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        version: str | None = None,
        correlation_id: str | None = None,
        if_running: IfRunning = "wait",
        deadline_seconds: float | None = None,
    ) -> WorkflowStatus:
        """Run ``workflow`` (a workflow, a workflow class, or a registered name) here; wait for its end.

        With ``deadline_seconds``, the whole run must end within that long of its start, else it is
        cancelled (and its completed steps compensated); the deadline is stored with the run.

        Each step is checkpointed before anything that depends on it starts. With a ``workflow_id`` that
        exists, nothing starts twice: a run that ended is returned as it is; a run nobody drives (its
        process died) resumes from its last checkpoint; a run another caller is driving, in this process or
        another, is waited for and its outcome returned (``if_running="fail"`` raises
        :class:`~conveyor.errors.RunAlreadyRunningError` instead). Returns the run's status, whatever
        its outcome.
        """
        chosen = workflow if type(workflow) is Workflow else self._resolve(workflow, version)
        workflow_id = chosen.new_run_id() if workflow_id is None else check_workflow_id(workflow_id)
        if if_running != "wait":
            _check_if_running(if_running)
        recorded = new_run(chosen, workflow_id, input, correlation_id, max_bytes=self._max_value_bytes())
        if deadline_seconds is not None:
            recorded.deadline_at = self.clock.now() + deadline_seconds
        if self.tracer is not None:
            recorded.trace_context = self.tracer.capture()
        return self._run_recorded(chosen, recorded, if_running)

    def retry(
        self,
        workflow_id: str,
        *,
        workflow: Workflow | type | None = None,
        from_step: str | None = None,
        by: str | None = None,
        reason: str = "",
        if_running: IfRunning = "wait",
        wait: bool = True,
    ) -> WorkflowStatus:
        """Run a failed run again, here, once its fault is fixed; wait for its end.

        Completed steps are kept and never run again; the failed step, any undone steps and what follows
        them run again with fresh idempotency keys. Only a failed, compensated, compensation_failed or
        dead-lettered run can be retried (else :class:`~conveyor.errors.RunNotRetryableError`). With
        ``from_step``, that step and every step depending on it run again too, completed or not (a
        completed run can be retried so); nothing is undone first. Logged with ``by`` (the OS user when
        None) and ``reason``. The workflow is the registered one the run recorded, unless ``workflow``.

        With ``wait=False`` the run is reopened and left, claimable at once, for a worker (what a web
        request or a CLI command on another machine wants); its status is returned as it stands then.
        """
        _check_if_running(if_running)
        return operator.retry(
            self,
            workflow_id,
            workflow=workflow,
            from_step=from_step,
            by=by,
            reason=reason,
            if_running=if_running,
            wait=wait,
        )

    def resume(
        self,
        workflow_id: str,
        *,
        workflow: Workflow | type | None = None,
        by: str | None = None,
        reason: str = "",
    ) -> WorkflowStatus:
        """Drive here, to its end, a run whose driver died (its process was killed mid-run, say).

        The run goes on from its last checkpoint (a paused run is unpaused first). A run that has ended
        raises :class:`~conveyor.errors.RunFinishedError`; one a live process drives (its lease holds),
        :class:`~conveyor.errors.RunAlreadyRunningError`. Logged with ``by`` and ``reason``. To let a
        worker go on with a paused run instead, :meth:`unpause` it.
        """
        return operator.resume(self, workflow_id, workflow=workflow, by=by, reason=reason)

    def skip_step(
        self,
        workflow_id: str,
        step: str,
        result: Any = None,
        *,
        workflow: Workflow | type | None = None,
        by: str | None = None,
        reason: str = "",
        if_running: IfRunning = "wait",
        wait: bool = True,
    ) -> WorkflowStatus:
        """Complete the failed ``step`` of a run that ended without completing, with ``result`` (checked
        against what the step returns), and drive the run on here as a retry does; wait for its end.

        The skipped step counts as completed: later steps get ``result``, and its undo runs with it if the
        run is compensated later. Logged with ``by`` and ``reason``. ``wait=False`` leaves the run to a
        worker, as :meth:`retry` does.
        """
        _check_if_running(if_running)
        return operator.skip(
            self,
            workflow_id,
            step,
            result,
            workflow=workflow,
            by=by,
            reason=reason,
            if_running=if_running,
            wait=wait,
        )

    def complete_by_hand(
        self, workflow_id: str, output: Any = None, *, by: str | None = None, reason: str = ""
    ) -> WorkflowStatus:
        """Mark a run that has not completed as completed, with ``output``: a person's word, logged with
        ``by`` and ``reason``. Its steps stay as recorded; nothing is undone or run. A run a live process
        drives is refused (pause or cancel it first); a completed one raises RunFinishedError."""
        return operator.complete(self, workflow_id, output, by=by, reason=reason)

    def _run_recorded(self, workflow: Workflow, recorded: NewRun, if_running: IfRunning) -> WorkflowStatus:
        local = self._local
        if local is None:
            self.backend  # noqa: B018 (opens the backend, and with it the table of local runs)
            local = self._local
        assert local is not None
        workflow_id = recorded.workflow_id
        while True:
            if not local.try_take(workflow_id):
                if if_running == "fail":
                    raise RunAlreadyRunningError(
                        f"run {workflow_id!r} is being run by another caller in this process",
                        workflow_id=workflow_id,
                    )
                local.wait_until_free(workflow_id)
                continue
            try:
                status = self._drive_here(workflow, recorded, if_running)
            finally:
                local.let_go(workflow_id)
            if status is None:  # another process drives it: wait for its outcome
                status = self._wait_for_other_owner(workflow, workflow_id)
            if status is not None:
                return status

    def _drive_here(
        self, workflow: Workflow, recorded: NewRun, if_running: IfRunning
    ) -> WorkflowStatus | None:
        """Take the run and drive it to its end; None if another live process holds it."""
        backend, clock = self.backend, self.clock
        take_over_from: str | None = None
        while True:
            record, created = backend.start_run(
                recorded,
                owner=self.owner,
                now=clock.now(),
                durable=False,  # the first checkpoint flushes it; until then a power cut loses nothing told
                lease_seconds=self.lease_seconds,
                take_over_from=take_over_from,
            )
            if not created:
                same_workflow_or_raise(record, workflow)
            if record.is_final:
                return WorkflowStatus(record, workflow.output_codec)
            if created or record.owner == self.owner:
                break
            if take_over_from is None and owner_is_dead(record.owner):
                take_over_from = record.owner
                continue
            if if_running == "fail":
                raise RunAlreadyRunningError(
                    f"run {record.workflow_id!r} is being run by {record.owner}",
                    workflow_id=record.workflow_id,
                    owner=record.owner,
                )
            return None
        lease = Lease(record.workflow_id, record.epoch, self.owner)
        self._heartbeat.hold(lease)
        driver = RunDriver(
            workflow,
            record,
            backend,
            clock,
            executor=self.executor,
            resources=self.resources,
            lease=lease,
            children=ChildRuns(self._resolve_child, self._drive_child),
            tracer=self.tracer,
        )
        try:
            driver.drive_to_end()
            if lease.paused and not driver.run.is_final:  # hand it back: paused, it holds nothing
                backend.release_run(workflow_id=record.workflow_id, epoch=driver.run.epoch, wake_at=None)
                return self.status(record.workflow_id, workflow=workflow)
        except LeaseLostError:
            return None  # taken over after our lease ended: the new owner's outcome is the run's
        except BaseException:
            # Hand the run back so that nobody waits for a lease this process no longer drives under.
            with contextlib.suppress(Exception):  # else its lease ends by itself; the error matters more
                backend.release_run(workflow_id=record.workflow_id, epoch=driver.run.epoch, wake_at=None)
            raise
        finally:
            self._heartbeat.drop(lease)
        return WorkflowStatus(
            driver.run, workflow.output_codec, driver.errors, child_steps=child_steps(workflow)
        )

    def _wait_for_other_owner(self, workflow: Workflow, workflow_id: str) -> WorkflowStatus | None:
        """Wait while another process drives the run; its status once it ended, None once it is free."""
        pause = _FIRST_POLL_SECONDS
        while True:
            record = self._load(workflow_id)
            if record.is_final:
                return WorkflowStatus(record, workflow.output_codec)
            if record.leased_until is None or owner_is_dead(record.owner):
                return None
            _SYSTEM_CLOCK.sleep(pause)  # another process's progress is in real time, whatever our clock
            pause = min(pause * 2, _LONGEST_POLL_SECONDS)

    # -- workers ----------------------------------------------------------------------------------

    def start(
        self,
        workflow: Workflow | type | str,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        version: str | None = None,
        correlation_id: str | None = None,
        deadline_seconds: float | None = None,
    ) -> RunHandle:
        """Record a run for a worker to execute and return its handle at once (durable when it returns).

        A ``workflow_id`` that exists returns a handle on that run; nothing starts twice. With
        ``deadline_seconds``, the run is cancelled if it has not ended that long after it was recorded.
        """
        chosen = self._resolve(workflow, version)
        workflow_id = chosen.new_run_id() if workflow_id is None else check_workflow_id(workflow_id)
        recorded = new_run(chosen, workflow_id, input, correlation_id, max_bytes=self._max_value_bytes())
        if deadline_seconds is not None:
            recorded.deadline_at = self.clock.now() + deadline_seconds
        if self.tracer is not None:  # the worker that drives the run continues this trace
            recorded.trace_context = self.tracer.capture()
        record, created = self.backend.submit_run(recorded, now=self.clock.now())
        if not created:
            same_workflow_or_raise(record, chosen)
        return RunHandle(workflow_id, self.backend, chosen)

    def worker(self, **options: Any) -> Worker:
        """A worker that claims and drives this runtime's runs (options as :class:`~conveyor.Worker`)."""
        workflows = self.workflows()
        if not workflows:
            raise ConfigurationError("this runtime has no workflows registered; a worker needs some")
        options.setdefault("clock", None if self.clock is _SYSTEM_CLOCK else self.clock)
        options.setdefault("resources", self.resources)
        options.setdefault("executor", self.executor)
        options.setdefault("children", ChildRuns(self._resolve_child))
        options.setdefault("tracer", self.tracer)
        worker = Worker(self.backend, workflows, **options)
        self._workers.add(worker)
        return worker

    def _resolve_child(self, name: str, version: str | None) -> Workflow:
        """The workflow a child step names: registered under ``name``, else recorded by runs as ``name``."""
        try:
            return self.registry.get(name, version)
        except UnknownWorkflowError:
            return resolver_over(self.registry.workflows())(name, version)

    def _drive_child(self, child: RunRecord) -> None:
        """Drive a child run here to its end (a parent driven in process waits for it so, holding nothing
        else); a child another driver holds, or of a workflow this runtime does not know, is left to it."""
        workflow = self._known_workflow(child)
        if workflow is not None:
            with contextlib.suppress(RunAlreadyRunningError):  # another driver has it: its end wakes us
                self._run_recorded(workflow, stored_run(child, workflow), "fail")

    def _driven_lease(self, workflow_id: str) -> Lease | None:
        """The lease ``workflow_id`` is driven under in this process, by this runtime or one of its workers
        (a cancel or pause then reaches its driver at once, not at the next heartbeat round)."""
        lease = self._heartbeat.lease_of(workflow_id)
        if lease is None:
            lease = next(filter(None, (worker.lease_of(workflow_id) for worker in list(self._workers))), None)
        return lease

    # -- steering ---------------------------------------------------------------------------------

    def cancel(
        self, workflow_id: str, reason: str = "", *, by: str | None = None, wait: bool = True
    ) -> WorkflowStatus:
        """Cancel the run from any process: no new step starts, its completed steps are undone, newest
        first, and it ends ``cancelled`` with ``reason``; returns its status.

        The request is stored with the run (and logged with ``by``). A running step is told
        (``context.cancelled``, ``context.raise_if_cancelled()``); a waiting, paused or pending run this
        runtime knows the workflow of is compensated here at once, unless ``wait=False``: then it is left,
        claimable at once, for a worker to undo (what a web request wants). Cancelling a cancelled run is
        harmless; one that ended otherwise raises :class:`~conveyor.errors.RunFinishedError`.
        """
        operator.log_request(self, workflow_id, "cancel", by, reason)
        return steering.cancel(self, workflow_id, reason, undo_here=wait)

    def compensate(self, workflow_id: str, reason: str = "") -> WorkflowStatus:
        """Undo the run from any process, even one that completed: the undos of its completed steps run,
        newest first, and it ends ``cancelled`` with ``reason``; returns its status.

        A completed run is reopened to compensate (a worker, or this runtime at once when it knows the
        workflow, runs the undos); a run that has not ended is cancelled, as :meth:`cancel`. Undoing a
        cancelled run is harmless; one that ended otherwise (failed, compensated ...) raises
        :class:`~conveyor.errors.RunFinishedError`: what it did was undone already.
        """
        return steering.compensate(self, workflow_id, reason)

    def pause(self, workflow_id: str, *, by: str | None = None, reason: str = "") -> WorkflowStatus:
        """Pause the run from any process: a running step finishes and is recorded, no new step starts,
        and the run holds no worker slot until :meth:`unpause` or :meth:`resume` (RunFinishedError if it
        has ended). Logged with ``by`` and ``reason``."""
        operator.log_request(self, workflow_id, "pause", by, reason)
        return steering.pause(self, workflow_id)

    def unpause(self, workflow_id: str, *, by: str | None = None, reason: str = "") -> WorkflowStatus:
        """Lift a pause: a worker claims the run at once and it goes on where it stopped (to drive it here
        instead, :meth:`resume` it). RunFinishedError if it has ended. Logged with ``by`` and ``reason``."""
        operator.log_request(self, workflow_id, "unpause", by, reason)
        return steering.resume(self, workflow_id)

    # -- reading ----------------------------------------------------------------------------------

    def status(self, workflow_id: str, *, workflow: Workflow | type | None = None) -> WorkflowStatus:
        """The run ``workflow_id`` as it stands now (:class:`~conveyor.errors.RunNotFoundError` if none).

        Its output is decoded as the declared type of ``workflow`` (else of the registered workflow the run
        recorded; plain JSON values when there is none).
        """
        record = self._load(check_workflow_id(workflow_id))
        chosen = self._known_workflow(record) if workflow is None else self._resolve(workflow, None)
        return WorkflowStatus(
            record, None if chosen is None else chosen.output_codec, child_steps=child_steps(chosen)
        )

    def send_signal(self, workflow_id: str, name: str, payload: Any = None) -> int:
        """Send the signal ``name`` with ``payload`` (JSON) to the run ``workflow_id``, from any process.

        Kept until a ``wait_for_signal`` step of the run consumes it (one signal per wait, oldest first);
        a run waiting for it is woken. Returns the signal's id. An unknown run raises
        :class:`~conveyor.errors.RunNotFoundError`, a finished one :class:`~conveyor.errors.RunFinishedError`.
        """
        return send_signal_to(
            self.backend, workflow_id, name, payload, now=self.clock.now(), max_bytes=self._max_value_bytes()
        )

    def wait(self, workflow_id: str, timeout: float | None = None) -> WorkflowStatus:
        """Wait until the run ends (at most ``timeout`` seconds, else ``TimeoutError``); its status."""
        record = self._load(check_workflow_id(workflow_id))
        workflow = self._known_workflow(record)
        return wait_for_run(workflow_id, self.backend, timeout_seconds=timeout, workflow=workflow)

    def runs(
        self,
        workflow: Workflow | type | str | None = None,
        *,
        state: RunState | str | Iterable[RunState | str] | None = None,
        version: str | None = None,
        correlation_id: str | None = None,
        created_after: dt.datetime | float | None = None,
        created_before: dt.datetime | float | None = None,
        limit: int = 50,
        page: str | None = None,
    ) -> RunPage:
        """The runs recorded, newest first, ``limit`` at a time (at most 1,000).

        ``workflow`` keeps the runs of one workflow (a workflow, a class, or a name), ``version`` those of
        one of its versions; ``state`` those in one state or any of several; ``correlation_id`` those
        started with it; ``created_after`` (inclusive) and ``created_before`` (exclusive) those recorded in
        that range (timezone-aware datetimes or epoch seconds). ``page`` is the ``next_page`` token of the
        page before, for the next one; a run recorded meanwhile never makes another appear twice.
        """
        return list_runs(
            self,
            workflow,
            state,
            limit=limit,
            page=page,
            version=version,
            correlation_id=correlation_id,
            created_after=created_after,
            created_before=created_before,
        )

    # -- observing ---------------------------------------------------------------------------------

    def add_event_listener(self, listener: Listener | RowListener, *, stored_rows: bool = False) -> None:
        """Call ``listener`` with the events each write of this process commits (on the backend, now or
        when it opens): the hook subscribers, metrics and event logs hang on. With ``stored_rows``, it gets
        their stored columns instead of :class:`Event` values (see ``HistoryHooks.add_listener``)."""
        self._event_listeners.append((listener, stored_rows))
        if self._backend is not None:
            self._backend.add_listener(listener, stored_rows=stored_rows)

    @property
    def metrics(self) -> Metrics:
        """The runtime's Prometheus metrics, counted from the first access on (``metrics=True`` starts
        them with the runtime); ``app.metrics.serve(port, token=...)`` serves them."""
        with self._open_lock:
            created = self._metrics is None
            if self._metrics is None:
                self._metrics = Metrics(lambda: self.backend)
            metrics = self._metrics
        if created:
            self.add_event_listener(metrics.count, stored_rows=True)
        return metrics

    def log_events(self, logger: logging.Logger | None = None) -> None:
        """Log one line per event this process writes to ``logger`` (``conveyor.events``, set to INFO),
        with the event's fields attached (see :class:`~conveyor.runtime.event_logs.JsonFormatter`)."""
        if logger is None:
            logger = logging.getLogger(EVENTS_LOGGER)
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
        self.add_event_listener(EventLog(logger))

    def history(self, workflow_id: str, *, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        """The run's event history, oldest first: every transition of the run and of each attempt at its
        steps (see docs/observability.md); ``after_seq`` reads on from a ``seq`` seen before.

        RunNotFoundError if there is no such run. A run recorded with history off has none.
        """
        check_workflow_id(workflow_id)
        _check_count(after_seq, "after_seq", minimum=0)
        _check_count(limit, "limit", minimum=1)
        events = self.backend.read_history(workflow_id, after_seq=after_seq, limit=limit)
        if not events and after_seq == 0:
            self._load(workflow_id)  # no run at all says so
        return events

    def events(self, *, after: str | None = None, limit: int = 500) -> EventPage:
        """Every run's events in the order they were committed, ``limit`` at a time, after the position
        ``after`` (the ``position`` of the page before; None for the start). A durable consumer stores the
        position it reached and passes it back after a restart: nothing is missed, nothing skipped."""
        _check_count(limit, "limit", minimum=1)
        return self.backend.read_events(after=after, limit=limit)

    def _load(self, workflow_id: str) -> RunRecord:
        record = self.backend.load_run(workflow_id)
        if record is None:
            raise RunNotFoundError(f"no run {workflow_id!r} in {self.backend!r}", workflow_id=workflow_id)
        return record

    def _known_workflow(self, record: RunRecord) -> Workflow | None:
        try:
            return self.registry.for_run(record.workflow_name, record.workflow_version)
        except UnknownWorkflowError:
            return None

    def _output_codec(self, record: RunRecord) -> Any:
        workflow = self._known_workflow(record)
        return None if workflow is None else workflow.output_codec

    def _workflow_of(self, record: RunRecord) -> Workflow:
        return self.registry.for_run(record.workflow_name, record.workflow_version)

    def _resolve(self, workflow: Workflow | type | str, version: str | None) -> Workflow:
        if isinstance(workflow, str):
            return self.registry.get(workflow, version)
        built = getattr(workflow, "workflow", workflow)
        if isinstance(built, Workflow):
            return built
        return check_workflow(workflow)

    # -- analytics and retention --------------------------------------------------------------------

    def performance(
        self,
        *,
        since: Moment | None = None,
        until: Moment | None = None,
        workflow: Workflow | type | str | None = None,
        namespace: str | None = None,
    ) -> Performance:
        """Each workflow's runs that finished in the window, computed in the database: throughput, success
        and failure rates, p50/p95/p99 duration, and the health score (see :mod:`conveyor.observe.analytics`).

        The window is ``[since, until)``: timezone-aware datetimes or epoch seconds; ``since`` may be a
        timedelta before ``until``. By default, the 24 hours before now. ``workflow`` (a workflow, a class,
        or a name) and ``namespace`` keep the runs of one workflow, or of the workflows registered in one
        namespace (seed 002's ``task_name`` and ``namespace``).
        """
        return analytics.performance(self, since, until, workflow, namespace)

    def bottlenecks(
        self,
        *,
        since: Moment | None = None,
        until: Moment | None = None,
        workflow: Workflow | type | str | None = None,
        namespace: str | None = None,
    ) -> Bottlenecks:
        """Each step of the runs that finished in the window, worst bottleneck first, computed in the
        database: p50/p95 and mean duration, retry rate, failure rate, its share of the time. The window,
        ``workflow`` and ``namespace`` are as in :meth:`performance`."""
        return analytics.bottlenecks(self, since, until, workflow, namespace)

    def prune(
        self,
        *,
        older_than: Age,
        batch_size: int = DEFAULT_PRUNE_BATCH,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the finished runs that finished more than ``older_than`` ago (a timedelta, seconds, or
        ``"30d"``, ``"12h"``, ``"90m"``), with all they hold; return how many.

        Runs that have not finished are never touched, nor a finished child run whose parent has not.
        Deleted ``batch_size`` runs at a time, each batch one short transaction; ``on_progress`` is called
        after each with the number deleted so far.
        """
        return retention.prune(self, older_than, batch_size, on_progress)

    # -- async twins ------------------------------------------------------------------------------

    async def run_async(
        self, workflow: Workflow | type | str, input: Any = None, **options: Any
    ) -> WorkflowStatus:
        """:meth:`run` for async code (the run is driven on a worker thread)."""
        return await asyncio.to_thread(lambda: self.run(workflow, input, **options))

    async def retry_async(self, workflow_id: str, **options: Any) -> WorkflowStatus:
        """:meth:`retry` for async code."""
        return await asyncio.to_thread(lambda: self.retry(workflow_id, **options))

    async def start_async(
        self, workflow: Workflow | type | str, input: Any = None, **options: Any
    ) -> RunHandle:
        """:meth:`start` for async code."""
        return await asyncio.to_thread(lambda: self.start(workflow, input, **options))

    async def runs_async(self, workflow: Workflow | type | str | None = None, **options: Any) -> RunPage:
        """:meth:`runs` for async code."""
        return await asyncio.to_thread(self.runs, workflow, **options)

    async def history_async(self, workflow_id: str, **options: Any) -> list[Event]:
        """:meth:`history` for async code."""
        return await asyncio.to_thread(lambda: self.history(workflow_id, **options))

    async def status_async(self, workflow_id: str) -> WorkflowStatus:
        """:meth:`status` for async code."""
        return await asyncio.to_thread(self.status, workflow_id)

    async def wait_async(self, workflow_id: str, timeout_seconds: float | None = None) -> WorkflowStatus:
        """:meth:`wait` for async code."""
        return await asyncio.to_thread(self.wait, workflow_id, timeout_seconds)

    # -- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat, deliver what in-process subscribers have queued, stop counting metrics and
        logging events, close what resource factories built, and the backend if it opened it."""
        self._heartbeat.close()
        if self._owns_executor:
            self.executor.close()
        self.subscriptions.close()
        self.resources.close()
        backend = self._backend
        if backend is not None:  # a backend shared with other runtimes stops feeding this one's
            for listener, _ in self._event_listeners:
                backend.remove_listener(listener)
        if self._owns_backend:
            with self._open_lock:
                backend, self._backend = self._backend, None
            if backend is not None:
                backend.close()

    def __enter__(self) -> Conveyor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._backend_url or (repr(self._backend) if self._backend is not None else "default")
        return f"<Conveyor {where} workflows={len(self.registry)}>"


def _check_count(value: object, name: str, *, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise InvalidArgumentError(
            f"{name} must be a whole number >= {minimum}, not {value!r}", argument=name
        )


def _check_if_running(if_running: object) -> None:
    if if_running not in ("wait", "fail"):
        raise InvalidArgumentError(
            f"if_running must be 'wait' or 'fail', not {if_running!r}", argument="if_running"
        )


def _backend_of(runtime: weakref.ref[Conveyor]) -> Callable[[], Backend]:
    """The backend of ``runtime`` when asked, by weak reference: its heartbeat thread must not keep it alive
    (a runtime dropped with leases still held cannot be: its drivers hold it)."""

    def backend() -> Backend:
        alive = runtime()
        if alive is None:
            raise BackendError("the runtime of these leases was closed")
        return alive.backend

    return backend
