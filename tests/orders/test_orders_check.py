"""The invariant check: it passes on a database the application left consistent, and catches each breach."""

from __future__ import annotations

import pytest
from examples.orders import services
from examples.orders.__main__ import main
from examples.orders.check import check_invariants
from examples.orders.relay import OutboxRelay
from examples.orders.system import OrderSystem
from examples.orders.workflows import order_fulfilment
from orders_support import drive, order_request

from conveyor import SqliteBackend, start_workflow

INVARIANTS = [
    "no order charged twice",
    "captured - refunded = completed orders' total",
    "stock = received - sold, never below zero",
    "failed/cancelled orders refunded and released",
    "every order in a final state",
    "one confirmation per completed order",
]


@pytest.fixture
def busy_shop(shop: OrderSystem, backend: SqliteBackend) -> OrderSystem:
    """A shop after three completed orders, one declined, one out of stock and one refused by the carrier."""
    requests = [
        order_request(("mug", 2)),
        order_request(("kettle", 1), ("mug", 1)),
        order_request(("matcha", 2)),
        order_request(("mug", 1), card="tok_chargeDeclined"),
        order_request(("matcha", 1)),
        order_request(("kettle", 1), address="1 Undeliverable Lane"),
    ]
    for request in requests:
        placed = services.place_order(shop, request)
        start_workflow(order_fulfilment, placed.workflow_id, {"order_id": placed.order_id}, backend)
    drive(shop, backend)
    OutboxRelay(shop).deliver_due()
    return shop


def broken(system: OrderSystem) -> list[str]:
    """The names of the invariants that fail."""
    return [invariant.name for invariant in check_invariants(system.db) if not invariant.holds]


def test_every_invariant_holds_after_orders_succeed_and_fail(busy_shop: OrderSystem) -> None:
    """Completed, declined, out-of-stock and undeliverable orders leave the database consistent."""
    results = check_invariants(busy_shop.db)
    assert [result.name for result in results] == INVARIANTS
    assert broken(busy_shop) == []
    assert "3 completed" in results[4].detail


def test_a_second_charge_is_caught(busy_shop: OrderSystem) -> None:
    """An order charged twice breaks the first invariant, and the money no longer adds up."""
    order_id = _completed(busy_shop)[0]
    busy_shop.gateway.charge(
        amount_cents=100, currency="usd", card_token="tok_visa", reference=order_id, idempotency_key="rogue"
    )
    assert broken(busy_shop) == [INVARIANTS[0], INVARIANTS[1]]


def test_stock_that_does_not_add_up_is_caught(busy_shop: OrderSystem) -> None:
    """A unit vanishing from the shelf breaks the stock invariant."""
    with busy_shop.db.transaction() as tx:
        tx.execute("UPDATE stock SET available = available - 1 WHERE sku = 'mug'")
    assert broken(busy_shop) == [INVARIANTS[2]]


def test_a_failed_order_still_holding_stock_is_caught(busy_shop: OrderSystem) -> None:
    """A failed order whose reservation is held again breaks the release invariant."""
    with busy_shop.db.transaction() as tx:
        tx.execute(
            "UPDATE reservations SET status = 'held' "
            "WHERE order_id IN (SELECT id FROM orders WHERE status = 'failed')"
        )
    assert INVARIANTS[3] in broken(busy_shop)


def test_a_failed_order_left_charged_is_caught(busy_shop: OrderSystem) -> None:
    """Undoing the refund of the order the carrier refused breaks the refund invariant and the money."""
    with busy_shop.db.transaction() as tx:
        tx.execute("UPDATE gateway_charges SET refunded_cents = 0 WHERE refunded_cents > 0")
    assert broken(busy_shop) == [INVARIANTS[1], INVARIANTS[3]]


def test_an_order_left_in_flight_is_caught(busy_shop: OrderSystem) -> None:
    """An order that never reached a final state breaks that invariant."""
    services.place_order(busy_shop, order_request(("mug", 1)))
    assert broken(busy_shop) == [INVARIANTS[4]]


def test_a_completed_order_without_its_email_is_caught(busy_shop: OrderSystem) -> None:
    """A confirmation that never went out breaks the email invariant."""
    with busy_shop.db.transaction() as tx:
        tx.execute("DELETE FROM mailbox WHERE message_id = (SELECT min(message_id) FROM mailbox)")
    assert broken(busy_shop) == [INVARIANTS[5]]


def test_the_command_exits_1_when_an_invariant_fails(
    busy_shop: OrderSystem, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m examples.orders check`` prints each invariant and exits 0, then 1 once one is broken."""
    assert main(["check", "--db", sqlite_url]) == 0
    assert capsys.readouterr().out.count("ok  ") == 6
    services.place_order(busy_shop, order_request(("mug", 1)))
    assert main(["check", "--db", sqlite_url]) == 1
    assert "FAIL  every order in a final state" in capsys.readouterr().out


def _completed(system: OrderSystem) -> list[str]:
    with system.db.transaction(readonly=True) as tx:
        return [str(row[0]) for row in tx.all("SELECT id FROM orders WHERE status = 'completed'")]
