"""Durable subscribers: every event delivered at least once, from a cursor over the history.

``app.on("run.completed", durable="billing")`` (or ``app.subscribe(monitor, durable=...)``, or
``app.webhook(...)``) names a subscriber whose progress is kept in the backend. Its consumer reads the feed
of every run's events in commit order from the cursor's position, hands each event of its kinds to the
handler, and saves the position after each page it handled. Killed at any moment, the next consumer of that
name, in this process or another, goes on from the saved position: an event handled after the last save is
handed over again (at least once), and its ``event.id`` lets the handler drop the repeat. Nothing is skipped.

A handler that raises gets the event again, with backoff (its ``retry`` policy's delays, else
:data:`DEFAULT_BACKOFF`'s, for ever): a durable subscriber never skips an event silently. With a ``retry``
policy, an event still failing after its last attempt (or failing with one of its ``non_retryable_errors``)
is logged as given up, with its id, and the consumer goes on.

One process at a time consumes for a name: the cursor is claimed under a lease (see
:mod:`conveyor.backends.cursors`), renewed with each save, between events and while the consumer waits
(a handler that takes longer than the lease on one event may lose it to another process); a process found dead
loses its claim at once, one that stops renewing loses it when the lease ends. ``conveyor worker`` runs
the app's durable subscribers beside its runs; ``app.consuming()`` runs them for a block of code,
``app.consume()`` once, in the calling thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from conveyor.backends.base import Backend
from conveyor.core.history import Event
from conveyor.definition.retry import RetryPolicy
from conveyor.errors import ConveyorError
from conveyor.runtime.ownership import owner_is_dead
from conveyor.runtime.subscribers import Handler

log = logging.getLogger("conveyor.subscribers")

Start = Literal["beginning", "now"]
"""Where a durable subscriber's first read begins: the feed's first event, or what is written after it
first runs (the events already there are skipped, once, when its cursor is created)."""

DEFAULT_BACKOFF = RetryPolicy(max_retries=0, initial_delay_secs=1.0, max_delay_secs=300.0, jitter=0.1)
"""The delays between a failing handler's attempts when its subscriber has no ``retry`` policy: 1 s,
doubling, at most 5 minutes, spread by 10 %; it is tried for ever."""
DEFAULT_LEASE_SECONDS = 30.0
"""How long a consumer's claim on its cursor lasts without a renewal (renewed every third of it)."""
DEFAULT_POLL_SECONDS = 1.0
"""The longest a consumer that has caught up waits before it looks at the feed again (it looks sooner,
at once, when this process commits events)."""
DEFAULT_PAGE_SIZE = 100
FEED_START = ""
"""The position saved for a subscriber started ``"now"`` on an empty feed: the feed's start, as every
backend reads an empty position (a cursor saved so is never moved to the end again, at its next claim)."""
_FIRST_POLL_SECONDS = 0.05
_END_PAGE_SIZE = 1_000


@dataclass(frozen=True, slots=True)
class DurableSubscription:
    """A subscriber whose deliveries survive restarts: its name (the cursor's), kinds, handler, policy."""

    name: str
    kinds: frozenset[str] | None
    """The kind values it takes (None: every kind)."""
    handler: Handler
    retry: RetryPolicy | None = None
    """When a failing event is given up (None: never; it is tried again for ever, with backoff)."""
    start: Start = "beginning"

    def wants(self, kind: str) -> bool:
        """Whether this subscriber takes events of ``kind``."""
        return self.kinds is None or kind in self.kinds

    def close(self) -> None:
        """Release what the handler holds (a webhook's connections), if it can be closed."""
        close = getattr(self.handler, "close", None)
        if callable(close):
            close()


def never_stop(seconds: float) -> bool:
    """A pause that sleeps the whole while and is never told to stop."""
    time.sleep(seconds)
    return False


class DurableConsumer:
    """Delivers one durable subscription's events from its cursor, at least once, in commit order.

    ``pause(seconds)`` waits (between attempts, between looks at an idle feed) and returns True when the
    consumer is to stop; tests pass one that records the delays instead of sleeping.
    """

    def __init__(
        self,
        subscription: DurableSubscription,
        backend: Backend,
        *,
        owner: str,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        page_size: int = DEFAULT_PAGE_SIZE,
        pause: Callable[[float], bool] = never_stop,
        random_unit: Callable[[], float] = random.random,
    ) -> None:
        self.subscription = subscription
        self.backend = backend
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.page_size = page_size
        self._pause = pause
        self._random = random_unit
        self._held = False
        self._position: str | None = None
        self._renewed_at = 0.0
        self.delivered = 0
        """How many events this consumer handed to the handler (repeats after a failure not counted)."""

    @property
    def name(self) -> str:
        """The subscription's (and its cursor's) name."""
        return self.subscription.name

    @property
    def holds_cursor(self) -> bool:
        """Whether this consumer holds its cursor's claim (as far as it knows)."""
        return self._held

    # -- the cursor -------------------------------------------------------------------------------

    def claim(self) -> bool:
        """Claim the cursor (at once from an owner found dead); False while a live process holds it."""
        backend = self.backend
        claim = backend.claim_event_cursor(self.name, owner=self.owner, lease_seconds=self.lease_seconds)
        if not claim.claimed and owner_is_dead(claim.owner):
            log.info(
                "durable subscriber %r: its last consumer %s is dead; taking over", self.name, claim.owner
            )
            claim = backend.claim_event_cursor(
                self.name, owner=self.owner, lease_seconds=self.lease_seconds, take_over_from=claim.owner
            )
        if not claim.claimed:
            return False
        self._held, self._position, self._renewed_at = True, claim.position, time.monotonic()
        if claim.position is None and self.subscription.start == "now":
            self._save(self._feed_end())
        return self._held

    def release(self) -> None:
        """Let go of the cursor, its position kept (the next consumer goes on from there)."""
        if self._held:
            self._held = False
            self.backend.release_event_cursor(self.name, owner=self.owner)

    def _save(self, position: str | None) -> bool:
        """Store ``position`` and renew the claim; False (and the claim dropped) if it was taken over."""
        if not self.backend.save_event_cursor(
            self.name, position, owner=self.owner, lease_seconds=self.lease_seconds
        ):
            log.warning("durable subscriber %r: another process took its cursor over", self.name)
            self._held = False
            return False
        self._position, self._renewed_at = position, time.monotonic()
        return True

    def renew_if_due(self) -> bool:
        """Renew the claim if a third of the lease has passed since the last save; False if it was lost."""
        if time.monotonic() - self._renewed_at < self.lease_seconds / 3:
            return self._held
        return self._save(self._position)

    def _feed_end(self) -> str:
        position = FEED_START
        while True:
            page = self.backend.read_events(after=position, limit=_END_PAGE_SIZE)
            if not page.events or page.position is None:
                return position
            position = page.position

    # -- delivering -------------------------------------------------------------------------------

    def deliver_page(self) -> int | None:
        """Read one page of the feed after the cursor, hand each wanted event to the handler, save.

        Returns how many events the page held (0: caught up), or None when the consumer stopped midway
        (told to, or its claim was lost): the events after the saved position come again then.
        """
        start = self._position
        page = self.backend.read_events(after=start, limit=self.page_size)
        if not page.events:
            return 0
        for index, event in enumerate(page.events):
            if not self.subscription.wants(event.kind):
                continue
            # A page of slow handling must not outlast the claim: another consumer of the name would take
            # the cursor at the page's start, this one's save would be refused, and so on for ever.
            if not self.renew_if_due() or not self._deliver(event, start, index):
                return None
        if page.position != start and not self._save(page.position):
            return None
        return len(page.events)

    def _deliver(self, event: Event, page_start: str | None, index: int) -> bool:
        """Hand ``event`` to the handler until it takes it or is given up; False if stopped first."""
        retry = self.subscription.retry
        policy = DEFAULT_BACKOFF if retry is None else retry
        attempts = 0
        while True:
            attempts += 1
            try:
                self.subscription.handler(event)
            except (KeyboardInterrupt, SystemExit):  # the process is told to stop (see run() for threads)
                raise
            except BaseException as exc:  # asyncio's CancelledError and the like: the handler failed
                if retry is not None and not retry.allows_retry(attempts, exc):
                    log.error(
                        "durable subscriber %r gave up on event %s (%s) after %d attempt(s): %s: %s",
                        self.name,
                        event.id,
                        event.kind,
                        attempts,
                        type(exc).__name__,
                        exc,
                    )
                    self.delivered += 1
                    return True
                delay = policy.delay_after(attempts, self._random())
                asked = getattr(exc, "retry_after_seconds", None)
                if isinstance(asked, int | float) and asked > delay:
                    delay = min(float(asked), policy.max_delay_secs or float(asked))
                log.warning(
                    "durable subscriber %r failed on event %s (%s), attempt %d: %s: %s; again in %.1f s",
                    self.name,
                    event.id,
                    event.kind,
                    attempts,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=attempts == 1,  # the traceback once, not at every attempt
                )
                if attempts == 1 and index > 0 and not self._save_before(page_start, index):
                    return False
                if not self._wait(delay):
                    return False
            else:
                self.delivered += 1
                return True

    def _save_before(self, page_start: str | None, index: int) -> bool:
        """Save the position just before the page's event ``index`` (those before it were handled)."""
        before = self.backend.read_events(after=page_start, limit=index)
        return self._save(before.position)

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``, renewing the claim meanwhile; False if told to stop or the claim was lost."""
        remaining = seconds
        while True:
            step = min(remaining, self.lease_seconds / 3)
            if self._pause(step) or not self.renew_if_due():
                return False
            remaining -= step
            if remaining <= 0:
                return True

    def drain(self) -> int:
        """Claim the cursor, deliver until the feed is caught up (or the pause says stop), release it.

        Returns how many events were handed to the handler; 0 at once when a live process holds the cursor.
        """
        if not self._held and not self.claim():
            log.info("durable subscriber %r is being consumed by another process", self.name)
            return 0
        before = self.delivered
        try:
            while self._held and self.deliver_page():
                pass
        finally:
            self.release()
        return self.delivered - before

    def run(self, stop: threading.Event, wake: threading.Event, poll_seconds: float) -> None:
        """Consume until ``stop`` is set: claim, deliver, wait for more (``wake`` cuts a wait short)."""
        idle = _FIRST_POLL_SECONDS
        while not stop.is_set():
            try:
                if not self._held and not self.claim():
                    stop.wait(min(self.lease_seconds / 3, poll_seconds * 5))
                    continue
                read = self.deliver_page()
                if read:
                    idle = _FIRST_POLL_SECONDS
                    continue
                if read is None or not self.renew_if_due():
                    continue
                wake.wait(idle)
                wake.clear()
                idle = min(idle * 2, poll_seconds)
            except (ConveyorError, OSError) as exc:  # the backend failed: the cursor holds; try again
                log.warning("durable subscriber %r: %s; trying again", self.name, exc)
                stop.wait(min(poll_seconds * 5, self.lease_seconds / 3))
            except BaseException:  # a side thread: even SystemExit from a handler must not end delivery
                log.exception("durable subscriber %r failed; trying again", self.name)
                stop.wait(min(poll_seconds * 5, self.lease_seconds / 3))
        try:
            self.release()
        except ConveyorError as exc:
            log.warning("durable subscriber %r could not release its cursor: %s", self.name, exc)


class DurableThreads:
    """Consumers of several durable subscriptions, a thread each, woken when this process commits events."""

    def __init__(
        self,
        subscriptions: Sequence[DurableSubscription],
        backend: Backend,
        *,
        owner: str,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        self._backend = backend
        self._stop = threading.Event()
        self._poll_seconds = poll_seconds
        self._wakes: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        self.consumers = [
            DurableConsumer(
                subscription, backend, owner=owner, lease_seconds=lease_seconds, pause=self._stop.wait
            )
            for subscription in subscriptions
        ]
        self._listener = self._wake_all

    def _wake_all(self, events: Sequence[Event]) -> None:
        for wake in self._wakes:
            wake.set()

    def start(self) -> None:
        """Start a thread per consumer."""
        if not self.consumers:
            return
        self._backend.add_listener(self._listener)
        for consumer in self.consumers:
            wake = threading.Event()
            thread = threading.Thread(
                target=consumer.run,
                args=(self._stop, wake, self._poll_seconds),
                name=f"conveyor-durable-{consumer.name}",
                daemon=True,
            )
            self._wakes.append(wake)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Tell every consumer to stop after the event it is handling; wait for them (at most so long)."""
        self._stop.set()
        for wake in self._wakes:
            wake.set()
        self._backend.remove_listener(self._listener)
        deadline = time.monotonic() + timeout_seconds
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        for thread in self._threads:
            if thread.is_alive():
                log.warning("%s did not stop in time (its handler is still running)", thread.name)
