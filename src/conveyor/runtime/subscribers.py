"""Subscribers: code told what happens to runs, by event kind, in the process that made the change.

``app.on("step.failed")`` registers a function for one or more kinds (``"*"`` for every kind, seed 002's
``"task.completed"`` and the other aliases of :data:`~conveyor.core.history.EVENT_ALIASES` for the kind they
spell); ``app.subscribe(monitor)`` registers an object whose ``subscribe_to`` names the kinds and whose
``handle_<kind>`` methods take them (see :func:`object_handlers`). Kinds are checked when registered: an
unknown one is an error naming the kinds there are.

In-process delivery (this module) is fast and lost if the process dies: the runtime puts one listener on its
backend, which gets the events of every write this process commits; the listener only queues them, and one
thread of the runtime (:class:`LocalDispatcher`) hands each to the handlers of its kind, in the order they
were committed. A handler never runs on the thread that wrote, so a slow one never holds up a run; one that
raises is logged with the event's id and the next handler, and the next event, go on. Durable delivery,
from a cursor over the history, is :mod:`conveyor.runtime.durable`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from conveyor.backends.base import Backend
from conveyor.core.history import EVENT_ALIASES, Event, EventKind, event_kind
from conveyor.errors import ConfigurationError, InvalidArgumentError

log = logging.getLogger("conveyor.subscribers")

Handler = Callable[[Event], object]
"""A subscriber's function: called with one event; what it returns is ignored."""

EVERY_KIND = "*"
"""The kind that names every kind (in ``app.on("*")`` and a ``subscribe_to``)."""

MAX_PENDING_EVENTS = 100_000
"""How many events in-process delivery holds for handlers that fall behind; past it, new ones are dropped
(and the drop logged): a handler that cannot keep up must never grow the process without bound."""

FLUSH_ON_CLOSE_SECONDS = 5.0
"""How long closing a runtime waits for in-process handlers to take the events already queued."""


def kinds_named(names: Iterable[str | EventKind], *, what: str = "kind") -> frozenset[str] | None:
    """The kind values ``names`` spell (aliases included), None for every kind (``"*"``).

    An empty list, or a name that is no kind, is an :class:`~conveyor.errors.InvalidArgumentError` naming
    the kinds there are.
    """
    given = [names] if isinstance(names, str) else list(names)
    if not given:
        raise InvalidArgumentError(
            f"name at least one event {what} (or '*' for every kind)", argument="kinds"
        )
    if EVERY_KIND in given:
        return None
    found = set()
    for name in given:
        try:
            found.add(event_kind(name).value)
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(str(exc), argument="kinds") from None
    return frozenset(found)


def handler_label(handler: object) -> str:
    """How logs name a handler: its qualified name (a bound method's with its class)."""
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def check_handler(handler: object) -> Handler:
    """``handler`` if it can take events (a plain callable); else an error saying why not."""
    if not callable(handler):
        raise InvalidArgumentError(f"a subscriber must be callable, not {handler!r}", argument="handler")
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (an object whose __call__ is async)
    ):
        raise InvalidArgumentError(
            f"{handler_label(handler)} is async; a subscriber is a plain function (it runs on a thread of "
            "its own: hand slow work to your own loop or queue from there)",
            argument="handler",
        )
    return handler


def _method_name(kind: str) -> str:
    return "handle_" + kind.replace(".", "_")


def object_handlers(subscriber: object) -> list[tuple[frozenset[str] | None, Handler]]:
    """The (kinds, method) pairs a class-based subscriber declares, as seed 002's subscribers do::

        class CheckoutMonitor:
            subscribe_to = ("step.failed", "task.completed")

            def handle_step_failed(self, event: Event) -> None: ...
            def handle_task_completed(self, event: Event) -> None: ...

    Each name in ``subscribe_to`` is taken by the method named for it as written (``handle_task_completed``
    for ``"task.completed"``), else by the one named for the kind it spells (``handle_run_completed``);
    ``"*"`` by ``handle_event``. Without ``subscribe_to``, every ``handle_<kind>`` method the object has
    (a kind or an alias) subscribes to its kind. A name no method takes is a ConfigurationError.
    """
    label = type(subscriber).__qualname__
    declared = getattr(subscriber, "subscribe_to", None)
    if declared is None:
        spellings = [kind.value for kind in EventKind] + list(EVENT_ALIASES)
        found = [
            (kinds_named([name]), check_handler(getattr(subscriber, _method_name(name))))
            for name in spellings
            if callable(getattr(subscriber, _method_name(name), None))
        ]
        if not found:
            raise ConfigurationError(
                f"{label} has neither subscribe_to nor any handle_<kind> method (handle_step_failed, ...)"
            )
        return found
    names = [declared] if isinstance(declared, str) else list(declared)
    kinds_named(names, what="kind in subscribe_to")  # every name checked before any is registered
    pairs: list[tuple[frozenset[str] | None, Handler]] = []
    for name in names:
        if name == EVERY_KIND:
            candidates = ["handle_event"]
        else:
            candidates = list(dict.fromkeys([_method_name(str(name)), _method_name(event_kind(name).value)]))
        method = next(
            (found for found in (getattr(subscriber, each, None) for each in candidates) if callable(found)),
            None,
        )
        if method is None:
            raise ConfigurationError(
                f"{label} subscribes to {str(name)!r} but has no method {' or '.join(candidates)}"
            )
        pairs.append((kinds_named([name]), check_handler(method)))
    return pairs


@dataclass(frozen=True, slots=True)
class Subscription:
    """One handler and the kinds it takes (None: every kind)."""

    kinds: frozenset[str] | None
    handler: Handler
    label: str

    def wants(self, kind: str) -> bool:
        """Whether this subscription takes events of ``kind``."""
        return self.kinds is None or kind in self.kinds


def call_handler(subscription: Subscription, event: Event) -> None:
    """Hand ``event`` to one in-process handler; whatever it raises is logged, never passed on."""
    try:
        subscription.handler(event)
    except BaseException:  # a side thread: even SystemExit from a handler must not end delivery
        log.exception(
            "subscriber %s failed on event %s (%s); the run is not affected",
            subscription.label,
            event.id,
            event.kind,
        )


class LocalSubscriptions:
    """The in-process subscriptions of a runtime, indexed by kind (replaced whole on each change, so the
    listener reads them without a lock)."""

    def __init__(self, subscriptions: Sequence[Subscription] = ()) -> None:
        self._all: tuple[Subscription, ...] = ()
        self._by_kind: dict[str, tuple[Subscription, ...]] = {}
        self._every: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        for subscription in subscriptions:
            self.add(subscription)

    def add(self, subscription: Subscription) -> None:
        """Add one subscription."""
        with self._lock:
            self._all = (*self._all, subscription)
            kinds = {kind for each in self._all for kind in each.kinds or ()}
            self._every = tuple(each for each in self._all if each.kinds is None)
            self._by_kind = {kind: tuple(each for each in self._all if each.wants(kind)) for kind in kinds}

    def __bool__(self) -> bool:
        return bool(self._all)

    @property
    def all(self) -> tuple[Subscription, ...]:
        """Every subscription, in the order added."""
        return self._all

    def wanted(self, kind: str) -> bool:
        """Whether any subscription takes events of ``kind``."""
        return bool(self._every) or kind in self._by_kind

    def for_kind(self, kind: str) -> tuple[Subscription, ...]:
        """The subscriptions that take ``kind``, in the order they were added."""
        return self._by_kind.get(kind, self._every)


class LocalDispatcher:
    """Hands the events this process commits to in-process handlers, on one thread of its own.

    :meth:`listener` is what the backend calls after each committed write; it only queues the events some
    handler wants (at most :data:`MAX_PENDING_EVENTS` waiting). The thread starts with the first event.
    """

    def __init__(self, subscriptions: LocalSubscriptions, *, max_pending: int = MAX_PENDING_EVENTS) -> None:
        self._subscriptions = subscriptions
        self._max_pending = max_pending
        self._pending: deque[Event] = deque()
        self._condition = threading.Condition()
        self._busy = False
        self._waiting = False
        self._closed = False
        self._dropped = 0
        self._thread: threading.Thread | None = None

    def listener(self, events: Sequence[Event]) -> None:
        """Queue the events of one committed write (called by the backend on the writing thread)."""
        wanted = [event for event in events if self._subscriptions.wanted(event.kind)]
        if not wanted:
            return
        with self._condition:
            if self._closed:
                return
            room = self._max_pending - len(self._pending)
            if room < len(wanted):
                self._dropped += len(wanted) - max(room, 0)
                log.warning(
                    "in-process subscribers are %d events behind: %d event(s) dropped so far (from %s on)",
                    len(self._pending),
                    self._dropped,
                    wanted[max(room, 0)].id,
                )
                wanted = wanted[: max(room, 0)]
            self._pending.extend(wanted)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver, name="conveyor-subscribers", daemon=True
                )
                self._thread.start()
            elif self._waiting:  # a busy thread finds the events when it comes back: no wake-up needed
                self._condition.notify_all()

    @property
    def dropped(self) -> int:
        """How many events were dropped because handlers fell :data:`MAX_PENDING_EVENTS` behind."""
        return self._dropped

    def _deliver(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._waiting = True
                    self._condition.wait()
                    self._waiting = False
                if not self._pending:
                    return
                batch, self._pending = self._pending, deque()  # all that is queued, in one hand-over
                self._busy = True
            try:
                for event in batch:
                    for subscription in self._subscriptions.for_kind(event.kind):
                        call_handler(subscription, event)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Wait until every event queued so far has been handed to its handlers; False on timeout."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout_seconds
            )

    def close(self, timeout_seconds: float = FLUSH_ON_CLOSE_SECONDS) -> None:
        """Deliver what is queued, then stop the thread: at most ``timeout_seconds`` in all."""
        deadline = time.monotonic() + timeout_seconds
        if not self.flush(timeout_seconds):
            log.warning("in-process subscribers did not take %d queued event(s) in time", len(self._pending))
        with self._condition:
            self._closed = True
            self._pending.clear()
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))


class InProcessDelivery:
    """A runtime's in-process subscriptions and their dispatcher, listening on its backend once there is
    both a backend and a subscription (no listener, and no cost to writes, before)."""

    def __init__(self, subscriptions: Sequence[Subscription] = ()) -> None:
        self.subscriptions = LocalSubscriptions(subscriptions)
        self._backend: Backend | None = None
        self._dispatcher: LocalDispatcher | None = None
        self._listener: Callable[[Sequence[Event]], None] | None = None
        self._lock = threading.Lock()

    def add(self, subscription: Subscription) -> None:
        """Subscribe one handler (listening at once if the backend is open)."""
        self.subscriptions.add(subscription)
        self._listen()

    def bind(self, backend: Backend) -> None:
        """The runtime's backend is open: listen on it if there is anything to deliver."""
        with self._lock:
            self._backend = backend
        self._listen()

    def _listen(self) -> None:
        with self._lock:
            if self._dispatcher is not None or self._backend is None or not self.subscriptions:
                return
            self._dispatcher = LocalDispatcher(self.subscriptions)
            self._listener = self._dispatcher.listener  # one bound method: removed by identity later
            self._backend.add_listener(self._listener)

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Wait until the handlers have taken every event this process committed so far."""
        dispatcher = self._dispatcher
        return True if dispatcher is None else dispatcher.flush(timeout_seconds)

    def close(self, timeout_seconds: float = FLUSH_ON_CLOSE_SECONDS) -> None:
        """Stop listening, deliver what is queued (for at most ``timeout_seconds``), stop the thread."""
        with self._lock:
            dispatcher, self._dispatcher = self._dispatcher, None
            listener, self._listener = self._listener, None
            backend, self._backend = self._backend, None
        if dispatcher is None:
            return
        if backend is not None and listener is not None:
            backend.remove_listener(listener)
        dispatcher.close(timeout_seconds)
