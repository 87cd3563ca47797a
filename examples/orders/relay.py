"""The outbox relay: hands queued emails to the email provider, retrying failures with backoff.

A failing email is retried here, on its own schedule, for as long as it takes; the order it announces is
long finished and is never touched, let alone refunded. Several relays may run at once: each message is
claimed before it is sent, and the provider accepts a message id once.

Run one with ``python -m examples.orders relay --db URL``; the demo runs one in a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from examples.orders.adapters.notifications import EmailDeliveryError, Message
from examples.orders.system import OrderSystem

log = logging.getLogger("orders.relay")


@dataclass
class RelayStats:
    """What a relay has done since it started."""

    sent: int = 0
    failed_attempts: int = 0


class OutboxRelay:
    """Sends due outbox messages; a failed one is due again after ``initial_delay_seconds``, doubling."""

    def __init__(
        self,
        system: OrderSystem,
        *,
        batch_size: int = 50,
        claim_seconds: float = 30.0,
        initial_delay_seconds: float = 0.05,
        max_delay_seconds: float = 5.0,
    ) -> None:
        self.system = system
        self.batch_size = batch_size
        self.claim_seconds = claim_seconds
        self.initial_delay_seconds = initial_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self.stats = RelayStats()
        self._stop = threading.Event()

    def deliver(self, message: Message) -> bool:
        """Try to send one claimed message; whether the provider accepted it."""
        outbox = self.system.outbox
        try:
            self.system.mailer.send(
                message_id=message.id, recipient=message.recipient, subject=message.subject
            )
        except EmailDeliveryError as exc:
            delay = min(self.max_delay_seconds, self.initial_delay_seconds * 2**message.attempts)
            outbox.mark_failed(message.id, str(exc), time.time() + delay)
            self.stats.failed_attempts += 1
            log.info("email %s failed (attempt %d): %s", message.id, message.attempts + 1, exc)
            return False
        outbox.mark_sent(message.id)
        self.stats.sent += 1
        return True

    def deliver_due(self, now: float | None = None) -> int:
        """Claim and try the messages due at ``now`` (one batch); how many were sent."""
        claimed = self.system.outbox.claim_due(
            limit=self.batch_size, claim_seconds=self.claim_seconds, now=now
        )
        return sum(self.deliver(message) for message in claimed)

    def deliver_now(self, message_id: str) -> bool:
        """Try to send one message at once (if no relay holds it); whether it was sent by this call."""
        message = self.system.outbox.claim(message_id, claim_seconds=self.claim_seconds)
        return message is not None and self.deliver(message)

    def run(self, poll_interval_seconds: float = 0.05) -> RelayStats:
        """Deliver until :meth:`stop` is called, looking for due messages every ``poll_interval_seconds``."""
        while not self._stop.is_set():
            try:
                sent = self.deliver_due()
            except Exception:  # a database hiccup: log it and keep relaying
                log.exception("the relay failed a pass; trying again")
                sent = 0
            if not sent:
                self._stop.wait(poll_interval_seconds)
        return self.stats

    def stop(self) -> None:
        """Make :meth:`run` return after its current pass."""
        self._stop.set()

    def pending(self) -> int:
        """Messages not sent yet."""
        return self.system.outbox.pending()
