"""Confirmation emails through the outbox: queued with the order's completion, sent once, retried alone."""

from __future__ import annotations

import time

from examples.orders import services
from examples.orders.domain import OrderStatus
from examples.orders.relay import OutboxRelay
from examples.orders.system import OrderSystem
from orders_support import order_request


def completed_order(system: OrderSystem) -> str:
    """An order taken all the way to completed through the services; its id."""
    order_id = services.place_order(system, order_request(("mug", 1))).order_id
    services.reserve_stock(system, order_id)
    services.charge_order(system, order_id, f"charge-{order_id}")
    services.ship_order(system, order_id)
    services.complete_order(system, order_id)
    return order_id


def outbox_row(system: OrderSystem, order_id: str) -> tuple[int, float | None, str | None]:
    """The confirmation's attempts, when it was sent, and its last error."""
    with system.db.transaction(readonly=True) as tx:
        row = tx.one("SELECT attempts, sent_at, last_error FROM outbox WHERE order_id = ?", (order_id,))
    assert row is not None
    return int(row[0]), row[1], row[2]


def test_completing_an_order_queues_one_confirmation_however_often_it_runs(shop: OrderSystem) -> None:
    """The completion step may run again after a crash: still one message in the outbox."""
    order_id = completed_order(shop)
    services.complete_order(shop, order_id)
    services.queue_confirmation(shop, order_id)
    with shop.db.transaction(readonly=True) as tx:
        assert tx.all("SELECT id FROM outbox") == [(f"order_confirmation:{order_id}",)]


def test_a_failing_email_is_retried_later_and_never_touches_the_order(shop: OrderSystem) -> None:
    """The provider refuses twice; the message waits with backoff, then goes once; the order stays paid."""
    order_id = completed_order(shop)
    relay = OutboxRelay(shop, initial_delay_seconds=10, max_delay_seconds=60)
    shop.mailer.failure_rate = 1.0
    assert relay.deliver_due() == 0
    attempts, sent_at, error = outbox_row(shop, order_id)
    assert (attempts, sent_at) == (1, None)
    assert error is not None
    assert "try again later" in error
    assert relay.deliver_due() == 0  # not due again for ten seconds: nothing is tried
    assert outbox_row(shop, order_id)[0] == 1
    assert relay.deliver_due(now=time.time() + 11) == 0
    assert outbox_row(shop, order_id)[0] == 2
    shop.mailer.failure_rate = 0.0
    assert relay.deliver_due(now=time.time() + 60) == 1
    assert relay.deliver_due(now=time.time() + 600) == 0
    assert outbox_row(shop, order_id)[0] == 3
    assert shop.mailer.delivered(f"order_confirmation:{order_id}") == 1
    assert relay.stats.failed_attempts == 2
    assert services.get_order(shop, order_id).status is OrderStatus.COMPLETED
    assert sum(charge.refundable_cents for charge in shop.gateway.charges_for(order_id)) == 1_250


def test_a_message_claimed_by_one_relay_is_not_sent_by_another(shop: OrderSystem) -> None:
    """Two relays: the one that claims the message sends it; the other finds nothing to do."""
    order_id = completed_order(shop)
    first, second = OutboxRelay(shop), OutboxRelay(shop)
    [claimed] = shop.outbox.claim_due(limit=10, claim_seconds=30)
    assert second.deliver_due() == 0
    assert second.deliver_now(claimed.id) is False
    assert first.deliver(claimed)
    assert shop.mailer.delivered(f"order_confirmation:{order_id}") == 1


def test_the_provider_delivers_a_message_id_once(shop: OrderSystem) -> None:
    """A relay that died after sending sends again; the customer still gets one email."""
    for _ in range(2):
        shop.mailer.send(message_id="order_confirmation:o-1", recipient="ada@example.com", subject="Hi")
    assert shop.mailer.delivered("order_confirmation:o-1") == 1
