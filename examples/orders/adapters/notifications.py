"""Notifications: the ``outbox`` table, and an email provider simulator with its ``mailbox``.

A service puts a message in the outbox *in the same transaction* as the change it announces (an order
completed), so the message exists exactly when the change does. A relay (``examples.orders.relay``) later
hands it to the email provider and retries it, with backoff, as long as the provider fails: a failing email
never touches the order. Each message may be in the outbox once per (order, kind).

The provider accepts each message id once (a resend of the same id is a no-op), which closes the last gap:
a relay that dies between the provider's acceptance and marking the message sent sends it again, and the
customer still gets one email.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from examples.orders.adapters.db import Database, Row, Transaction


class EmailDeliveryError(Exception):
    """The email provider did not accept the message this time (a transient failure)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message waiting in the outbox."""

    id: str
    order_id: str
    kind: str
    recipient: str
    subject: str
    body: str
    attempts: int


_ENQUEUE = (
    "INSERT INTO outbox (id, order_id, kind, recipient, subject, body, created_at, attempts, "
    "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT DO NOTHING"
)
_DUE = (
    "SELECT id FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ? "
    "AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_attempt_at LIMIT ?"
)
_CLAIM = (
    "UPDATE outbox SET claimed_until = ? WHERE id = ? AND sent_at IS NULL "
    "AND (claimed_until IS NULL OR claimed_until < ?)"
)
_MESSAGE = "SELECT id, order_id, kind, recipient, subject, body, attempts FROM outbox WHERE id = ?"
_SENT = "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, claimed_until = NULL WHERE id = ?"
_FAILED = (
    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, claimed_until = NULL "
    "WHERE id = ?"
)
_PENDING = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
_DELIVER = (
    "INSERT INTO mailbox (message_id, recipient, subject, delivered_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_DELIVERED = "SELECT count(*) FROM mailbox WHERE message_id = ?"


def _message(row: Row) -> Message:
    return Message(
        id=row[0],
        order_id=row[1],
        kind=row[2],
        recipient=row[3],
        subject=row[4],
        body=row[5],
        attempts=int(row[6]),
    )


class Outbox:
    """Messages to send: enqueued in the caller's transaction, then claimed and marked in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(
        self, tx: Transaction, *, order_id: str, kind: str, recipient: str, subject: str, body: str
    ) -> str:
        """Put a message in the outbox (once per order and kind); return its id."""
        message_id = f"{kind}:{order_id}"
        now = time.time()
        tx.execute(_ENQUEUE, (message_id, order_id, kind, recipient, subject, body, now, now))
        return message_id

    def claim_due(self, *, limit: int, claim_seconds: float, now: float | None = None) -> list[Message]:
        """Claim up to ``limit`` messages due at ``now``, for ``claim_seconds``; no other relay takes them."""
        now = time.time() if now is None else now
        with self.db.transaction(readonly=True) as tx:
            due = [str(row[0]) for row in tx.all(_DUE, (now, now, limit))]
        claimed = []
        for message_id in due:
            with self.db.transaction() as tx:
                if tx.execute(_CLAIM, (now + claim_seconds, message_id, now)) != 1:
                    continue
                row = tx.one(_MESSAGE, (message_id,))
            assert row is not None
            claimed.append(_message(row))
        return claimed

    def claim(self, message_id: str, *, claim_seconds: float) -> Message | None:
        """Claim the message ``message_id`` if it is unsent and unclaimed."""
        now = time.time()
        with self.db.transaction() as tx:
            if tx.execute(_CLAIM, (now + claim_seconds, message_id, now)) != 1:
                return None
            row = tx.one(_MESSAGE, (message_id,))
        assert row is not None
        return _message(row)

    def mark_sent(self, message_id: str) -> None:
        """Record that the provider accepted the message."""
        with self.db.transaction() as tx:
            tx.execute(_SENT, (time.time(), message_id))

    def mark_failed(self, message_id: str, error: str, retry_at: float) -> None:
        """Record a failed attempt; the message is due again at ``retry_at``."""
        with self.db.transaction() as tx:
            tx.execute(_FAILED, (retry_at, error[:500], message_id))

    def pending(self) -> int:
        """How many messages have not been sent yet."""
        with self.db.transaction(readonly=True) as tx:
            row = tx.one(_PENDING)
        return int(row[0]) if row else 0


class EmailProvider:
    """The simulated email provider: accepts each message id once; fails at ``failure_rate``."""

    def __init__(self, db: Database, failure_rate: float = 0.0, rng: random.Random | None = None) -> None:
        self.db = db
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()

    def send(self, *, message_id: str, recipient: str, subject: str) -> None:
        """Deliver the message, unless one with this id was delivered already."""
        if self.rng.random() < self.failure_rate:
            raise EmailDeliveryError("421 4.7.0 try again later: the mail server is busy")
        with self.db.transaction() as tx:
            tx.execute(_DELIVER, (message_id, recipient, subject, time.time()))

    def delivered(self, message_id: str) -> int:
        """How many times the message with this id was delivered (0 or 1)."""
        with self.db.transaction(readonly=True) as tx:
            row = tx.one(_DELIVERED, (message_id,))
        return int(row[0]) if row else 0
