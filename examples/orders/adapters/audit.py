"""Read-only queries across every table, for the invariant check (``examples.orders.check``).

Each function answers one question about the whole database in one query or two; none writes anything.
"""

from __future__ import annotations

from examples.orders.adapters.db import Transaction

_SUCCEEDED_CHARGES_PER_ORDER = (
    "SELECT reference, count(*) FROM gateway_charges WHERE status = 'succeeded' "
    "AND reference IN (SELECT id FROM orders) GROUP BY reference HAVING count(*) > 1"
)
_MONEY = (
    "SELECT coalesce(sum(amount_cents), 0), coalesce(sum(refunded_cents), 0) FROM gateway_charges "
    "WHERE status = 'succeeded' AND reference IN (SELECT id FROM orders)"
)
_COMPLETED_TOTAL = "SELECT coalesce(sum(total_cents), 0) FROM orders WHERE status = 'completed'"
_NET_PER_ORDER = (
    "SELECT o.id, o.status, o.total_cents, coalesce(sum(c.amount_cents - c.refunded_cents), 0) "
    "FROM orders o LEFT JOIN gateway_charges c ON c.reference = o.id AND c.status = 'succeeded' "
    "GROUP BY o.id, o.status, o.total_cents"
)
_STOCK = "SELECT sku, available, received FROM stock ORDER BY sku"
_COMPLETED_UNITS = (
    "SELECT l.sku, sum(l.quantity) FROM order_lines l JOIN orders o ON o.id = l.order_id "
    "WHERE o.status = 'completed' AND NOT l.dropped GROUP BY l.sku"
)
_UNRELEASED = (
    "SELECT o.id, o.status, r.status FROM orders o JOIN reservations r ON r.order_id = o.id "
    "WHERE o.status IN ('failed', 'cancelled') AND r.status <> 'released'"
)
_LIVE_LABELS = (
    "SELECT o.id, o.status FROM orders o JOIN shipments s ON s.order_id = o.id "
    "WHERE o.status IN ('failed', 'cancelled') AND s.status <> 'cancelled' AND NOT EXISTS "
    "(SELECT 1 FROM order_history h WHERE h.order_id = o.id AND h.to_status = 'completed')"
)
_BY_STATUS = "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status"
_CONFIRMATIONS = (
    "SELECT o.id, o.status, count(m.message_id) FROM orders o "
    "LEFT JOIN outbox b ON b.order_id = o.id AND b.kind = ? "
    "LEFT JOIN mailbox m ON m.message_id = b.id GROUP BY o.id, o.status"
)
_EMAILS = "SELECT count(*), coalesce(sum(attempts - 1), 0) FROM outbox WHERE sent_at IS NOT NULL"
_WITH_STATUS = "SELECT id FROM orders WHERE status = ? ORDER BY created_at"
_LATENCIES = (
    "SELECT finished_at - created_at FROM orders WHERE finished_at IS NOT NULL "
    "ORDER BY finished_at - created_at"
)


def orders_charged_more_than_once(tx: Transaction) -> list[tuple[str, int]]:
    """Orders with more than one successful charge: (order id, charges)."""
    return [(str(ref), int(count)) for ref, count in tx.all(_SUCCEEDED_CHARGES_PER_ORDER)]


def money(tx: Transaction) -> tuple[int, int, int]:
    """Cents captured and refunded by the gateway for orders, and the total of the completed orders."""
    row = tx.one(_MONEY)
    completed = tx.one(_COMPLETED_TOTAL)
    assert row is not None
    assert completed is not None
    return int(row[0]), int(row[1]), int(completed[0])


def net_charged_per_order(tx: Transaction) -> list[tuple[str, str, int, int]]:
    """Every order: (id, status, total, cents still charged for it: captured minus refunded)."""
    return [(str(o), str(s), int(t), int(n)) for o, s, t, n in tx.all(_NET_PER_ORDER)]


def stock(tx: Transaction) -> list[tuple[str, int, int]]:
    """Every SKU: (sku, units available now, units ever received)."""
    return [(str(sku), int(available), int(received)) for sku, available, received in tx.all(_STOCK)]


def units_sold(tx: Transaction) -> dict[str, int]:
    """Units per SKU on the kept lines of completed orders."""
    return {str(sku): int(units) for sku, units in tx.all(_COMPLETED_UNITS)}


def unreleased_reservations(tx: Transaction) -> list[tuple[str, str, str]]:
    """Failed or cancelled orders whose reservation still holds units: (order, order status, reservation)."""
    return [(str(o), str(s), str(r)) for o, s, r in tx.all(_UNRELEASED)]


def live_labels_of_ended_orders(tx: Transaction) -> list[tuple[str, str]]:
    """Failed or cancelled orders whose label was not cancelled (a completed order's was used: exempt)."""
    return [(str(o), str(s)) for o, s in tx.all(_LIVE_LABELS)]


def orders_by_status(tx: Transaction) -> dict[str, int]:
    """How many orders are in each status."""
    return {str(status): int(count) for status, count in tx.all(_BY_STATUS)}


def confirmations_per_order(tx: Transaction, kind: str) -> list[tuple[str, str, int]]:
    """Every order: (id, status, confirmation emails delivered for it)."""
    return [(str(o), str(s), int(n)) for o, s, n in tx.all(_CONFIRMATIONS, (kind,))]


def order_latencies(tx: Transaction) -> list[float]:
    """Seconds from creation to a final state, for every order that reached one, shortest first."""
    return [float(seconds) for (seconds,) in tx.all(_LATENCIES)]


def order_ids_with_status(tx: Transaction, status: str) -> list[str]:
    """The ids of the orders in ``status``, oldest first."""
    return [str(order_id) for (order_id,) in tx.all(_WITH_STATUS, (status,))]


def emails_sent(tx: Transaction) -> tuple[int, int]:
    """Outbox messages sent, and the failed attempts it took to send them (by any process)."""
    row = tx.one(_EMAILS)
    assert row is not None
    return int(row[0]), int(row[1])
