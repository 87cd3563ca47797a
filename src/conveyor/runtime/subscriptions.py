"""A runtime's subscribers and how they are delivered to: the one object behind ``app.on``,
``app.subscribe``, ``app.webhook``, ``app.consume`` and ``app.consuming`` (see docs/observability.md).

In-process subscribers are delivered by :mod:`conveyor.runtime.subscribers`; durable ones (a name given:
``durable="billing"``) by :mod:`conveyor.runtime.durable`; webhooks are durable subscribers whose handler is
a :class:`~conveyor.runtime.webhooks.Webhook`.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

from conveyor.backends.base import Backend
from conveyor.core.history import Event, EventKind
from conveyor.definition.retry import RetryPolicy
from conveyor.errors import ConfigurationError, InvalidArgumentError
from conveyor.runtime.durable import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_POLL_SECONDS,
    DurableConsumer,
    DurableSubscription,
    DurableThreads,
    Start,
)
from conveyor.runtime.subscribers import (
    Handler,
    InProcessDelivery,
    Subscription,
    check_handler,
    handler_label,
    kinds_named,
    object_handlers,
)
from conveyor.runtime.webhooks import DEFAULT_TIMEOUT_SECONDS, RUN_STATUS_KINDS, Webhook


class MethodsByKind:
    """A class-based subscriber as one durable handler: each event goes to the methods of its kind.

    A method that raised gets the event again with the next attempt; one that took it already does not.
    """

    def __init__(self, subscriber: object, pairs: Sequence[tuple[frozenset[str] | None, Handler]]) -> None:
        self.subscriber = subscriber
        self._pairs = list(pairs)
        self._done: tuple[str, set[int]] = ("", set())

    @property
    def kinds(self) -> frozenset[str] | None:
        """Every kind some method takes (None: every kind)."""
        if any(kinds is None for kinds, _ in self._pairs):
            return None
        return frozenset().union(*(kinds or () for kinds, _ in self._pairs))

    def __call__(self, event: Event) -> None:
        if self._done[0] != event.id:
            self._done = (event.id, set())
        done = self._done[1]
        for index, (kinds, method) in enumerate(self._pairs):
            if index not in done and (kinds is None or event.kind in kinds):
                method(event)
                done.add(index)

    def close(self) -> None:
        """Close the subscriber, if it can be closed."""
        close = getattr(self.subscriber, "close", None)
        if callable(close):
            close()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(
            f"a durable subscriber's name is a non-empty string, not {name!r}", argument="durable"
        )
    return name


def _check_start(start: object) -> Start:
    if start not in ("beginning", "now"):
        raise InvalidArgumentError(f"start must be 'beginning' or 'now', not {start!r}", argument="start")
    return start


class Subscriptions:
    """A runtime's subscribers, in process and durable, and the means to deliver to them."""

    def __init__(
        self,
        local: Sequence[Subscription] = (),
        durable: Mapping[str, DurableSubscription] | None = None,
    ) -> None:
        self.in_process = InProcessDelivery(local)
        self.durable: dict[str, DurableSubscription] = dict(durable or {})
        """The durable subscriptions by name."""
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def copy(self) -> Subscriptions:
        """The same subscribers, for another runtime (delivered on its backend)."""
        return Subscriptions(self.in_process.subscriptions.all, self.durable)

    # -- registering ------------------------------------------------------------------------------

    def add(
        self,
        kinds: Iterable[str | EventKind],
        handler: object,
        *,
        durable: str | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "beginning",
    ) -> None:
        """Subscribe ``handler`` to ``kinds``: in process, or durably under the name ``durable``."""
        chosen = kinds_named(kinds)
        checked = check_handler(handler)
        if durable is None:
            self._no_durable_options(retry, start)
            self.in_process.add(Subscription(chosen, checked, handler_label(handler)))
        else:
            self.add_durable(
                DurableSubscription(_check_name(durable), chosen, checked, retry, _check_start(start))
            )

    def add_object(
        self,
        subscriber: object,
        *,
        durable: str | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "beginning",
    ) -> None:
        """Subscribe a class-based subscriber (``subscribe_to`` and ``handle_<kind>`` methods)."""
        pairs = object_handlers(subscriber)
        if durable is None:
            self._no_durable_options(retry, start)
            for kinds, method in pairs:
                self.in_process.add(Subscription(kinds, method, handler_label(method)))
            return
        handler = MethodsByKind(subscriber, pairs)
        name = _check_name(durable)
        self.add_durable(DurableSubscription(name, handler.kinds, handler, retry, _check_start(start)))

    def add_durable(self, subscription: DurableSubscription) -> None:
        """Add a durable subscription; its name must be new (the name is its cursor's)."""
        with self._lock:
            if subscription.name in self.durable:
                raise ConfigurationError(
                    f"a durable subscriber named {subscription.name!r} is registered already; each durable "
                    "subscriber needs a name of its own (its cursor is kept under it)"
                )
            self.durable[subscription.name] = subscription

    def add_webhook(
        self,
        url: str,
        *,
        secret: str | bytes,
        kinds: Iterable[str | EventKind] = RUN_STATUS_KINDS,
        name: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "beginning",
    ) -> DurableSubscription:
        """Add a webhook: a durable subscriber that POSTs ``kinds`` to ``url``, signed with ``secret``."""
        webhook = Webhook(url, secret, timeout_seconds=timeout_seconds, headers=headers)
        if name is None:  # the URL may hold a token: the cursor is named by its digest, never by it
            name = "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:16]
        subscription = DurableSubscription(
            _check_name(name), kinds_named(kinds), webhook, retry, _check_start(start)
        )
        self.add_durable(subscription)
        return subscription

    @staticmethod
    def _no_durable_options(retry: RetryPolicy | None, start: str) -> None:
        if retry is not None or start != "beginning":
            raise InvalidArgumentError(
                "retry and start are for durable subscribers (give durable='a name'); an in-process "
                "subscriber's failure is logged, never retried",
                argument="retry" if retry is not None else "start",
            )

    # -- delivering durably -----------------------------------------------------------------------

    def _chosen(self, names: Collection[str] | None) -> list[DurableSubscription]:
        if names is None:
            return list(self.durable.values())
        unknown = sorted(set(names) - set(self.durable))
        if unknown:
            known = ", ".join(sorted(self.durable)) or "none"
            raise InvalidArgumentError(
                f"no durable subscriber named {', '.join(map(repr, unknown))}; registered: {known}",
                argument="names",
            )
        return [self.durable[name] for name in names]

    def consume(
        self,
        backend: Backend,
        owner: str,
        *,
        names: Collection[str] | None = None,
        timeout_seconds: float | None = None,
    ) -> int:
        """Deliver what the durable subscribers (those ``names``) have not had yet, here; how many events.

        Each goes until the feed is caught up; a handler that keeps failing is retried until
        ``timeout_seconds`` (if given) has passed, then left for the next call, its cursor saved before
        the event. A subscriber another process is consuming, or a thread of :meth:`consuming`, is skipped.
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds

        def pause(seconds: float) -> bool:
            if deadline is None:
                time.sleep(seconds)
                return False
            time.sleep(max(min(seconds, deadline - time.monotonic()), 0.0))
            return time.monotonic() >= deadline

        delivered = 0
        for subscription in self._chosen(names):
            with self._lock:
                if subscription.name in self._running:
                    continue
                self._running.add(subscription.name)
            try:
                delivered += DurableConsumer(subscription, backend, owner=owner, pause=pause).drain()
            finally:
                with self._lock:
                    self._running.discard(subscription.name)
        return delivered

    @contextlib.contextmanager
    def consuming(
        self,
        backend: Backend,
        owner: str,
        *,
        names: Collection[str] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> Iterator[DurableThreads]:
        """Run the durable subscribers (those ``names``) on threads of their own for the ``with`` block."""
        chosen = self._chosen(names)
        with self._lock:
            busy = sorted(subscription.name for subscription in chosen if subscription.name in self._running)
            if busy:
                raise ConfigurationError(
                    f"durable subscriber(s) {', '.join(busy)} are being consumed already"
                )
            self._running.update(subscription.name for subscription in chosen)
        threads = DurableThreads(
            chosen, backend, owner=owner, lease_seconds=lease_seconds, poll_seconds=poll_seconds
        )
        try:
            threads.start()
            yield threads
        finally:
            threads.stop()
            with self._lock:
                self._running.difference_update(subscription.name for subscription in chosen)

    def close(self) -> None:
        """Deliver what in-process subscribers have queued; close what durable handlers hold."""
        self.in_process.close()
        for subscription in list(self.durable.values()):
            subscription.close()
