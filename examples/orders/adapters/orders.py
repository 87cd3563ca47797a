"""Orders in the database: the ``orders``, ``order_lines`` and ``order_history`` tables.

Every write happens inside a transaction the caller opened, so that a service can change an order and, in the
same commit, reserve its stock or put its confirmation in the outbox. A change of status is written as a
conditional ``UPDATE ... WHERE status = <the status it was read in>``: if another process moved the order in
between, nothing is written and :class:`ConcurrentUpdateError` says so (the step is then retried).
"""

from __future__ import annotations

import time
from typing import Any

from examples.orders.adapters.db import Row, Transaction
from examples.orders.domain import Order, OrderLine, OrderStatus


class ConcurrentUpdateError(Exception):
    """The order changed between reading and writing it; read it again and retry."""


class UnknownOrderError(LookupError):
    """No order has this id."""


_COLUMNS = (
    "id, customer_email, card_token, shipping_address, status, currency, cancel_reason, "
    "payment_id, reservation_id, shipment_id, failure_reason, workflow_id, tax_cents, customer_id, "
    "card_last4, card_brand"
)
_SELECT = f"SELECT {_COLUMNS} FROM orders WHERE id = ?"
_SELECT_LINES = (
    "SELECT sku, quantity, unit_price_cents, dropped FROM order_lines WHERE order_id = ? ORDER BY line_no"
)
_INSERT = (
    "INSERT INTO orders (id, idempotency_key, request_fingerprint, customer_email, card_token, "
    "shipping_address, currency, status, tax_cents, total_cents, workflow_id, created_at, "
    "updated_at, customer_id, card_last4, card_brand) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_INSERT_LINE = (
    "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents, dropped) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_HISTORY = "INSERT INTO order_history (order_id, from_status, to_status, at) VALUES (?, ?, ?, ?)"
_BY_KEY = "SELECT id, request_fingerprint FROM orders WHERE idempotency_key = ?"
_MOVE = (
    "UPDATE orders SET status = ?, updated_at = ?, finished_at = coalesce(finished_at, ?), "
    "failure_reason = coalesce(?, failure_reason), cancel_reason = coalesce(?, cancel_reason) "
    "WHERE id = ? AND status = ?"
)
_SET_FIELD = {
    name: f"UPDATE orders SET {name} = ?, updated_at = ? WHERE id = ?"
    for name in ("payment_id", "reservation_id", "shipment_id", "failure_reason")
}
_DROP_LINE = "UPDATE order_lines SET dropped = TRUE WHERE order_id = ? AND sku = ?"
_SET_TOTAL = "UPDATE orders SET total_cents = ?, updated_at = ? WHERE id = ? AND status = 'created'"
_HISTORY_OF = "SELECT from_status, to_status, at FROM order_history WHERE order_id = ? ORDER BY at"
_TIMES = "SELECT created_at, updated_at, finished_at FROM orders WHERE id = ?"


class OrderRepository:
    """Reads and writes orders inside the caller's transaction."""

    def add(
        self,
        tx: Transaction,
        order: Order,
        *,
        idempotency_key: str | None,
        fingerprint: str,
        now: float | None = None,
    ) -> tuple[str, str]:
        """Insert ``order``; if ``idempotency_key`` was used before, insert nothing.

        Returns the id of the order stored under that key (``order.id`` when it was just inserted) and the
        fingerprint of the request that created it.
        """
        at = time.time() if now is None else now
        inserted = tx.execute(
            _INSERT,
            (
                *(order.id, idempotency_key, fingerprint, order.customer_email, order.card_token),
                *(order.shipping_address, order.currency, order.status.value, order.tax_cents),
                order.total_cents,
                *(order.workflow_id, at, at),
                *(order.customer_id, order.card_last4, order.card_brand),
            ),
        )
        if inserted:
            for number, line in enumerate(order.lines):
                tx.execute(
                    _INSERT_LINE,
                    (order.id, number, line.sku, line.quantity, line.unit_price_cents, line.dropped),
                )
            tx.execute(_HISTORY, (order.id, None, order.status.value, at))
            return order.id, fingerprint
        if idempotency_key is None:
            raise ConcurrentUpdateError(f"order {order.id} exists already")
        row = tx.one(_BY_KEY, (idempotency_key,))
        if row is None:  # the key's order was inserted under another id's conflict: cannot happen
            raise ConcurrentUpdateError(f"order {order.id} exists already")
        return str(row[0]), str(row[1])

    def get(self, tx: Transaction, order_id: str) -> Order:
        """The order ``order_id``; :class:`UnknownOrderError` if there is none."""
        row = tx.one(_SELECT, (order_id,))
        if row is None:
            raise UnknownOrderError(f"no order {order_id!r}")
        return _order(row, tx.all(_SELECT_LINES, (order_id,)))

    def find(self, tx: Transaction, order_id: str) -> Order | None:
        """The order ``order_id``, or ``None``."""
        row = tx.one(_SELECT, (order_id,))
        return None if row is None else _order(row, tx.all(_SELECT_LINES, (order_id,)))

    def save_status(
        self,
        tx: Transaction,
        before: Order,
        after: Order,
        *,
        reason: str | None = None,
        cancel_reason: str | None = None,
        now: float | None = None,
    ) -> None:
        """Write ``after.status`` (and why it failed, or was cancelled) if the stored order is still in
        ``before.status``; :class:`ConcurrentUpdateError` when it is not (nothing is written then)."""
        at = time.time() if now is None else now
        finished = at if after.is_final else None
        changed = tx.execute(
            _MOVE, (after.status.value, at, finished, reason, cancel_reason, before.id, before.status.value)
        )
        if changed != 1:
            raise ConcurrentUpdateError(
                f"order {before.id} is no longer {before.status.value}; read it again"
            )
        tx.execute(_HISTORY, (before.id, before.status.value, after.status.value, at))

    def set_field(self, tx: Transaction, order_id: str, name: str, value: str | None) -> None:
        """Record ``payment_id``, ``reservation_id``, ``shipment_id`` or ``failure_reason`` on the order."""
        tx.execute(_SET_FIELD[name], (value, time.time(), order_id))

    def save_lines(self, tx: Transaction, order: Order) -> None:
        """Write which lines of ``order`` are dropped, and its new total (only while it is created)."""
        for line in order.lines:
            if line.dropped:
                tx.execute(_DROP_LINE, (order.id, line.sku))
        if tx.execute(_SET_TOTAL, (order.total_cents, time.time(), order.id)) != 1:
            raise ConcurrentUpdateError(f"order {order.id} is no longer created; its lines cannot change")

    def history(self, tx: Transaction, order_id: str) -> list[tuple[str | None, str, float]]:
        """Every change of the order's status: (from, to, when), oldest first."""
        return [(row[0], row[1], float(row[2])) for row in tx.all(_HISTORY_OF, (order_id,))]

    def times(self, tx: Transaction, order_id: str) -> tuple[float, float, float | None]:
        """When the order was created, last changed, and reached a final state (``None`` if it has not)."""
        row = tx.one(_TIMES, (order_id,))
        if row is None:
            raise UnknownOrderError(f"no order {order_id!r}")
        return float(row[0]), float(row[1]), None if row[2] is None else float(row[2])


def _order(row: Row, lines: list[Row]) -> Order:
    values: list[Any] = list(row)
    return Order(
        id=values[0],
        customer_email=values[1],
        card_token=values[2],
        shipping_address=values[3],
        lines=tuple(
            OrderLine(sku, int(qty), int(price), bool(dropped)) for sku, qty, price, dropped in lines
        ),
        status=OrderStatus(values[4]),
        currency=values[5],
        cancel_reason=values[6],
        payment_id=values[7],
        reservation_id=values[8],
        shipment_id=values[9],
        failure_reason=values[10],
        workflow_id=values[11],
        tax_cents=int(values[12]),
        customer_id=values[13],
        card_last4=values[14],
        card_brand=values[15],
    )
