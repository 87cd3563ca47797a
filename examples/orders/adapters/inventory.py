"""Stock and reservations: the ``products``, ``stock``, ``reservations`` and ``reservation_lines`` tables.

The database, not Python, refuses to oversell: a reservation takes units with
``UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?`` and gives up the whole
reservation (the transaction rolls back) when any line finds too few; a ``CHECK (available >= 0)`` backs it.
Concurrent orders for the last units therefore cannot both get them, on SQLite or on PostgreSQL, however many
processes try at once. Rows are locked in SKU order so two multi-line reservations cannot deadlock.

A reservation is ``held`` until the order ships (``confirmed``: the units left the warehouse) or is
``released`` (its units go back on the shelf; a confirmed one too, when a completed order is cancelled).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from examples.orders.adapters.db import Transaction
from examples.orders.domain import Cents


class OutOfStockError(Exception):
    """Too few units are available for the reservation; nothing was reserved."""

    def __init__(self, sku: str, wanted: int, available: int) -> None:
        self.sku = sku
        self.wanted = wanted
        self.available = available
        super().__init__(f"out of stock: {sku} has {available} available, {wanted} wanted")


class UnknownProductError(LookupError):
    """No product has this SKU."""


_ADD_PRODUCT = (
    "INSERT INTO products (sku, name, price_cents) VALUES (?, ?, ?) "
    "ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents"
)
_ADD_STOCK = (
    "INSERT INTO stock (sku, available, received) VALUES (?, ?, ?) "
    "ON CONFLICT (sku) DO UPDATE SET available = stock.available + excluded.available, "
    "received = stock.received + excluded.received"
)
_PRICES = "SELECT sku, price_cents FROM products"
_AVAILABLE = "SELECT sku, available FROM stock"
_AVAILABLE_OF = "SELECT available FROM stock WHERE sku = ?"
_TAKE = "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?"
_PUT_BACK = "UPDATE stock SET available = available + ? WHERE sku = ?"
_NEW_RESERVATION = (
    "INSERT INTO reservations (id, order_id, status, created_at, updated_at) VALUES (?, ?, 'held', ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_RESERVATION_LINE = "INSERT INTO reservation_lines (reservation_id, sku, quantity) VALUES (?, ?, ?)"
_RESERVATION_OF = "SELECT id, status FROM reservations WHERE order_id = ?"
_STATUS = "SELECT status FROM reservations WHERE id = ?"
_LINES = "SELECT sku, quantity FROM reservation_lines WHERE reservation_id = ? ORDER BY sku"
_CONFIRM = "UPDATE reservations SET status = 'confirmed', updated_at = ? WHERE id = ? AND status = 'held'"
_RELEASE = (
    "UPDATE reservations SET status = 'released', updated_at = ? "
    "WHERE id = ? AND status IN ('held', 'confirmed')"
)


class Inventory:
    """The catalogue, the units on the shelf, and the reservations holding some of them."""

    def add_product(self, tx: Transaction, sku: str, name: str, price_cents: Cents) -> None:
        """Add ``sku`` to the catalogue at ``price_cents`` (or change its name and price)."""
        tx.execute(_ADD_PRODUCT, (sku, name, price_cents))

    def receive(self, tx: Transaction, sku: str, quantity: int) -> None:
        """Put ``quantity`` new units of ``sku`` on the shelf."""
        if quantity < 0:
            raise ValueError(f"cannot receive {quantity} units")
        tx.execute(_ADD_STOCK, (sku, quantity, quantity))

    def prices(self, tx: Transaction) -> dict[str, Cents]:
        """The catalogue: price in cents per SKU."""
        return {sku: int(price) for sku, price in tx.all(_PRICES)}

    def available(self, tx: Transaction) -> dict[str, int]:
        """Units on the shelf and not reserved, per SKU."""
        return {sku: int(units) for sku, units in tx.all(_AVAILABLE)}

    def reserve(
        self, tx: Transaction, reservation_id: str, order_id: str, quantities: Mapping[str, int]
    ) -> tuple[str, bool]:
        """Hold ``quantities`` (units per SKU) for ``order_id``; at most one reservation per order.

        Returns the order's reservation id and whether this call made it (a repeated call returns the
        reservation made before, whatever became of it). Raises :class:`OutOfStockError` when a SKU has too
        few units; the caller's transaction must then roll back, which the ``with`` block does.
        """
        now = time.time()
        if not tx.execute(_NEW_RESERVATION, (reservation_id, order_id, now, now)):
            row = tx.one(_RESERVATION_OF, (order_id,))
            if row is None:
                raise RuntimeError(f"reservation {reservation_id} exists for another order")
            return str(row[0]), False
        for sku in sorted(quantities):
            wanted = quantities[sku]
            if tx.execute(_TAKE, (wanted, sku, wanted)) != 1:
                row = tx.one(_AVAILABLE_OF, (sku,))
                if row is None:
                    raise UnknownProductError(f"no product {sku!r}")
                raise OutOfStockError(sku, wanted, int(row[0]))
            tx.execute(_RESERVATION_LINE, (reservation_id, sku, wanted))
        return reservation_id, True

    def reservation_of(self, tx: Transaction, order_id: str) -> tuple[str, str] | None:
        """The order's reservation (id, status), or ``None``."""
        row = tx.one(_RESERVATION_OF, (order_id,))
        return None if row is None else (str(row[0]), str(row[1]))

    def confirm(self, tx: Transaction, reservation_id: str) -> bool:
        """Mark a held reservation as shipped; whether it was held (a repeated call changes nothing)."""
        return tx.execute(_CONFIRM, (time.time(), reservation_id)) == 1

    def release(self, tx: Transaction, reservation_id: str) -> bool:
        """Put a held or confirmed reservation's units back on the shelf, once; whether this call did."""
        if tx.execute(_RELEASE, (time.time(), reservation_id)) != 1:
            return False
        for sku, quantity in tx.all(_LINES, (reservation_id,)):
            tx.execute(_PUT_BACK, (quantity, sku))
        return True

    def status(self, tx: Transaction, reservation_id: str) -> str | None:
        """``held``, ``confirmed`` or ``released``; ``None`` if there is no such reservation."""
        row = tx.one(_STATUS, (reservation_id,))
        return None if row is None else str(row[0])
