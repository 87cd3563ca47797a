"""The runtime's subscriber methods: ``app.on``, ``app.subscribe``, ``app.webhook``, ``app.consume``,
``app.consuming`` and ``app.flush_subscribers`` (see docs/observability.md).

:class:`~conveyor.runtime.app.Conveyor` takes them from :class:`SubscriberMethods`, so that the runtime's
module keeps to running workflows; the work is :class:`~conveyor.runtime.subscriptions.Subscriptions`'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from conveyor.backends.base import Backend
from conveyor.core.history import Event, EventKind
from conveyor.definition.retry import RetryPolicy
from conveyor.errors import ConfigurationError
from conveyor.runtime.durable import DEFAULT_POLL_SECONDS, Start
from conveyor.runtime.subscribers import kinds_named
from conveyor.runtime.subscriptions import Subscriptions
from conveyor.runtime.webhooks import DEFAULT_TIMEOUT_SECONDS, RUN_STATUS_KINDS

H = TypeVar("H", bound=Callable[[Event], object])


class SubscriberMethods:
    """What a runtime offers subscribers; it needs the runtime's ``subscriptions``, ``backend``, ``owner``
    and ``records_history``."""

    subscriptions: Subscriptions
    owner: str
    records_history: bool

    @property
    def backend(self) -> Backend:
        """The runtime's backend (the runtime defines it)."""
        raise NotImplementedError

    def on(
        self,
        *kinds: str | EventKind,
        durable: str | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "beginning",
    ) -> Callable[[H], H]:
        """Subscribe the decorated function to events of ``kinds`` (``"*"``: all; seed 002's names, such
        as ``"task.completed"``, are aliases); an unknown kind is an error naming the kinds.

        In process by default: the function gets the events this process commits, on a thread of the
        runtime's, soon after (lost if the process dies); what it raises is logged, never passed on. With
        ``durable="a name"``, it gets every event from a cursor kept under that name, at least once, also
        after a restart (see :meth:`consuming`); ``retry`` then says when a failing event is given up
        (never, without one) and ``start="now"`` skips the history already there when it first runs.
        """

        self._check_history()
        kinds_named(kinds)  # a typo is an error here, where the decorator is written

        def add(handler: H) -> H:
            self.subscribe(handler, *kinds, durable=durable, retry=retry, start=start)
            return handler

        return add

    def subscribe(
        self,
        subscriber: object,
        *kinds: str | EventKind,
        durable: str | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "beginning",
    ) -> None:
        """Subscribe a function to ``kinds`` (``app.subscribe(alert, "step.failed")``), or, with no kinds,
        a class-based subscriber: its ``subscribe_to`` names the kinds and each is taken by its method
        ``handle_<name>`` (``handle_task_completed``), else by that of the kind it spells
        (``handle_run_completed``). Options as :meth:`on`."""
        self._check_history()
        if kinds:
            self.subscriptions.add(kinds, subscriber, durable=durable, retry=retry, start=start)
        else:
            self.subscriptions.add_object(subscriber, durable=durable, retry=retry, start=start)

    def webhook(
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
    ) -> None:
        """POST each event of ``kinds`` (every ``run.*`` kind unless told) to ``url`` as JSON, signed with
        ``secret`` (HMAC-SHA256 over a timestamp and the body) and carrying the event's id: a durable
        subscriber, under ``name`` (else one made from the URL's digest). Failed connections, 5xx, 408
        and 429 are retried with backoff; other answers are logged. Needs ``conveyor[webhooks]``; see
        :func:`~conveyor.verify_webhook` for the receiving end."""
        self._check_history()
        self.subscriptions.add_webhook(
            url,
            secret=secret,
            kinds=kinds,
            name=name,
            timeout_seconds=timeout_seconds,
            headers=headers,
            retry=retry,
            start=start,
        )

    def consume(self, *names: str, timeout_seconds: float | None = None) -> int:
        """Deliver here, in this thread, the events the durable subscribers (or those ``names``) have not
        had yet, until each has caught up with the history; returns how many were handed over. A handler
        that keeps failing is retried until ``timeout_seconds`` passed (for ever without one)."""
        return self.subscriptions.consume(
            self.backend, self.owner, names=names or None, timeout_seconds=timeout_seconds
        )

    @contextlib.contextmanager
    def consuming(self, *names: str, poll_interval_seconds: float = DEFAULT_POLL_SECONDS) -> Iterator[None]:
        """Run the durable subscribers (or those ``names``) on threads of their own while the ``with`` block
        runs (``conveyor worker`` does so for its whole life). One process at a time consumes for each;
        they resume from their cursors. Nothing happens for an app without durable subscribers."""
        with self.subscriptions.consuming(
            self.backend, self.owner, names=names or None, poll_seconds=poll_interval_seconds
        ):
            yield

    def flush_subscribers(self, timeout_seconds: float | None = 5.0) -> bool:
        """Wait until in-process subscribers have had every event this process committed so far (False
        if ``timeout_seconds`` passed first). :meth:`close` does so too."""
        return self.subscriptions.in_process.flush(timeout_seconds)

    def _check_history(self) -> None:
        if not self.records_history:
            raise ConfigurationError(
                "this runtime records no history (history=False): nothing to subscribe to"
            )
