"""The service layer: what the application does, one function per use case, over an :class:`OrderSystem`.

Each function is safe to call again after a crash or a retry (the workflows run every step at least once):
a repeated call finds its own earlier work and returns it. Changes that belong together are written in one
transaction (a status change and the reservation behind it; completing an order and queueing its email).
Calls to the simulated providers (gateway, carrier) sit outside those transactions, as calls to a real
provider would, and carry idempotency keys instead.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from examples.orders import domain
from examples.orders.adapters.db import Transaction
from examples.orders.adapters.inventory import OutOfStockError, UnknownProductError
from examples.orders.adapters.orders import ConcurrentUpdateError, UnknownOrderError
from examples.orders.adapters.payments import (
    CardDeclinedError,
    ChargeAlreadyRefundedError,
    IdempotencyKeyReusedError,
    RefundExceedsChargeError,
    UnknownChargeError,
)
from examples.orders.adapters.shipping import ShipmentRefusedError
from examples.orders.domain import Order, OrderStatus
from examples.orders.system import OrderSystem

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    domain.OrderError,
    OutOfStockError,
    UnknownProductError,
    UnknownOrderError,
    CardDeclinedError,
    IdempotencyKeyReusedError,
    RefundExceedsChargeError,
    UnknownChargeError,
    ShipmentRefusedError,
)
"""Errors that retrying cannot fix: the workflows' retry policies fail a step at once on these."""

CONFIRMATION = "order_confirmation"
"""The outbox kind of the email a completed order gets."""


class IdempotencyConflictError(Exception):
    """The idempotency key was used before for a different order."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a customer submits: who, how they pay (a card token), where to ship, and (SKU, quantity) items.

    ``customer_id`` is who placed it (the API's caller); ``card_last4`` and ``card_brand`` describe the
    card the token stands for, when the card was tokenised at the door.
    """

    customer_email: str
    card_token: str
    shipping_address: str
    items: tuple[tuple[str, int], ...]
    allow_partial: bool = False
    customer_id: str = ""
    card_last4: str | None = None
    card_brand: str | None = None

    def fingerprint(self) -> str:
        """A digest of the request, to tell a replay (same request, same key) from a key reused.

        A card tokenised at the door gets a new token on every request, so it counts by its brand and last
        four digits; a token given as it is counts as itself.
        """
        card = f"{self.card_brand}:{self.card_last4}" if self.card_last4 else self.card_token
        text = json.dumps([self.customer_id, self.customer_email, card, self.shipping_address, self.items])
        return hashlib.sha256(f"{text}|{self.allow_partial}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """The order a request created (or, replayed with the same key, the one it created before)."""

    order_id: str
    workflow_id: str
    created: bool


# -- the catalogue ------------------------------------------------------------------------------------


def add_products(system: OrderSystem, products: Iterable[tuple[str, str, int, int]]) -> None:
    """Add (SKU, name, price in cents, units on the shelf) to the catalogue and the stock."""
    with system.db.transaction() as tx:
        for sku, name, price_cents, units in products:
            system.inventory.add_product(tx, sku, name, price_cents)
            system.inventory.receive(tx, sku, units)


def catalogue_prices(system: OrderSystem) -> dict[str, int]:
    """The price in cents of every SKU."""
    with system.db.transaction(readonly=True) as tx:
        return system.inventory.prices(tx)


def catalogue(system: OrderSystem) -> list[tuple[str, int, int]]:
    """(SKU, price in cents, units available) for every product, by SKU."""
    with system.db.transaction(readonly=True) as tx:
        prices = system.inventory.prices(tx)
        available = system.inventory.available(tx)
    return [(sku, price, available.get(sku, 0)) for sku, price in sorted(prices.items())]


def workflow_id_for(order_id: str) -> str:
    """The id of the run that processes the order."""
    return f"order-{order_id}"


def place_order(
    system: OrderSystem, request: OrderRequest, idempotency_key: str | None = None
) -> PlacedOrder:
    """Record a new order in ``created``; the same ``idempotency_key`` returns the order it made before.

    Raises :class:`~examples.orders.domain.InvalidOrderError` for an order that breaks a rule (an unknown
    SKU among them) and :class:`IdempotencyConflictError` for a key reused with another request.
    """
    order_id = uuid.uuid4().hex
    prices = catalogue_prices(system)
    order = domain.new_order(
        order_id,
        customer_email=request.customer_email,
        card_token=request.card_token,
        shipping_address=request.shipping_address,
        items=request.items,
        prices=prices,
        customer_id=request.customer_id,
        card_last4=request.card_last4,
        card_brand=request.card_brand,
    )
    order = replace(order, workflow_id=workflow_id_for(order_id))
    fingerprint = request.fingerprint()
    # A key is the customer's own: another customer's same key is another key (and learns nothing).
    scoped_key = None if idempotency_key is None else json.dumps([request.customer_id, idempotency_key])
    with system.db.transaction() as tx:
        stored_id, stored_fingerprint = system.orders.add(
            tx, order, idempotency_key=scoped_key, fingerprint=fingerprint
        )
    if stored_fingerprint != fingerprint:
        raise IdempotencyConflictError(
            f"Idempotency-Key {idempotency_key!r} was used for a different order ({stored_id})"
        )
    return PlacedOrder(stored_id, workflow_id_for(stored_id), created=stored_id == order_id)


def get_order(system: OrderSystem, order_id: str) -> Order:
    """The order as it stands; :class:`UnknownOrderError` if there is none."""
    with system.db.transaction(readonly=True) as tx:
        return system.orders.get(tx, order_id)


def note_failure(system: OrderSystem, order_id: str, reason: str) -> None:
    """Record why the order is about to fail (shown by the API; the status changes when it is settled)."""
    with system.db.transaction() as tx:
        system.orders.set_field(tx, order_id, "failure_reason", reason[:500])


def _advance(system: OrderSystem, tx: Transaction, order: Order, to: OrderStatus) -> Order:
    """Move ``order`` to ``to`` inside ``tx``; a no-op when it is there already (a repeated step).

    A cancelled order goes nowhere: :class:`~examples.orders.domain.IllegalTransitionError`.
    """
    if order.status is to:
        return order
    after = order.move_to(to)
    system.orders.save_status(tx, order, after)
    return after


# -- the steps of an order ------------------------------------------------------------------------------


def drop_unavailable_lines(system: OrderSystem, order_id: str) -> tuple[Order, list[str]]:
    """Partial fulfilment: drop the lines the shelf cannot cover; the order and the SKUs dropped.

    Raises :class:`~examples.orders.domain.NothingAvailableError` when no line can be fulfilled.
    """
    with system.db.transaction() as tx:
        order = system.orders.get(tx, order_id)
        if order.status is not OrderStatus.CREATED:
            return order, [line.sku for line in order.lines if line.dropped]
        _, short = domain.partition_available(order, system.inventory.available(tx))
        if short:
            order = order.drop_lines(short)
            system.orders.save_lines(tx, order)
        return order, short


def unavailable_items(system: OrderSystem, order: Order) -> list[dict[str, int | str]]:
    """The order's SKUs the shelf cannot cover now (advisory: stock may change before it is reserved)."""
    with system.db.transaction(readonly=True) as tx:
        available = system.inventory.available(tx)
    return [
        {"sku": sku, "requested": wanted, "available": available.get(sku, 0)}
        for sku, wanted in order.quantities.items()
        if available.get(sku, 0) < wanted
    ]


def reserve_stock(system: OrderSystem, order_id: str) -> str:
    """Hold the order's units on the shelf; return the reservation id (the same one when called again).

    Raises :class:`OutOfStockError` (nothing is held then) or
    :class:`~examples.orders.domain.IllegalTransitionError` (the order is no longer created: cancelled).
    """
    try:
        with system.db.transaction() as tx:
            order = system.orders.get(tx, order_id)
            if order.reservation_id is not None:
                return order.reservation_id
            if order.status is not OrderStatus.CREATED:
                raise domain.IllegalTransitionError(order_id, order.status, OrderStatus.PAYMENT_PENDING)
            reservation_id, _ = system.inventory.reserve(tx, f"res_{order_id}", order_id, order.quantities)
            system.orders.set_field(tx, order_id, "reservation_id", reservation_id)
            return reservation_id
    except OutOfStockError as exc:
        note_failure(system, order_id, str(exc))
        raise


def release_stock(system: OrderSystem, order_id: str) -> bool:
    """Put the order's reserved units back on the shelf (once); whether this call did."""
    with system.db.transaction() as tx:
        reservation = system.inventory.reservation_of(tx, order_id)
        return reservation is not None and system.inventory.release(tx, reservation[0])


def confirm_stock(system: OrderSystem, order_id: str) -> bool:
    """Make the order's reservation permanent (the units leave the shelf for good); whether this call did."""
    with system.db.transaction() as tx:
        reservation = system.inventory.reservation_of(tx, order_id)
        return reservation is not None and system.inventory.confirm(tx, reservation[0])


def charge_order(system: OrderSystem, order_id: str, idempotency_key: str) -> str:
    """Charge the order's total (``created`` → ``payment_pending`` → ``awaiting_shipment``); the charge id.

    ``idempotency_key`` must be the same on every attempt: a retried charge is then made once.
    """
    with system.db.transaction() as tx:
        order = system.orders.get(tx, order_id)
        if order.payment_id is not None:
            return order.payment_id
        order = _advance(system, tx, order, OrderStatus.PAYMENT_PENDING)
    try:
        charge = system.gateway.charge(
            amount_cents=order.total_cents,
            currency=order.currency,
            card_token=order.card_token,
            reference=order_id,
            idempotency_key=idempotency_key,
        )
    except CardDeclinedError as exc:
        note_failure(system, order_id, f"Payment failed: {exc}")
        raise domain.PaymentFailedError(f"Payment failed: {exc}") from exc
    with system.db.transaction() as tx:
        order = system.orders.get(tx, order_id)
        system.orders.set_field(tx, order_id, "payment_id", charge.id)
        _advance(system, tx, order, OrderStatus.AWAITING_SHIPMENT)
    return charge.id


def refund_payment(system: OrderSystem, payment_id: str, idempotency_key: str) -> int:
    """Refund what is left of the charge; the cents refunded by this call (0 if it was refunded already)."""
    try:
        return system.gateway.refund(
            charge_id=payment_id, amount_cents=None, idempotency_key=idempotency_key
        ).amount_cents
    except ChargeAlreadyRefundedError:
        return 0


def ship_order(system: OrderSystem, order_id: str) -> str:
    """Book the carrier and mark the order ``shipped`` (its reservation confirmed); the shipment id."""
    order = get_order(system, order_id)
    if order.shipment_id is not None:
        return order.shipment_id
    try:
        shipment_id = system.carrier.create_shipment(order_id, order.shipping_address)
    except ShipmentRefusedError as exc:
        note_failure(system, order_id, f"shipping failed: {exc}")
        raise
    try:
        with system.db.transaction() as tx:
            order = system.orders.get(tx, order_id)
            _advance(system, tx, order, OrderStatus.SHIPPED)
            if order.reservation_id is not None:
                system.inventory.confirm(tx, order.reservation_id)
            system.orders.set_field(tx, order_id, "shipment_id", shipment_id)
    except domain.IllegalTransitionError:  # cancelled meanwhile: no label for it
        system.carrier.cancel_shipment(order_id)
        raise
    return shipment_id


def cancel_shipment(system: OrderSystem, order_id: str) -> bool:
    """Cancel the order's shipping label, if it has one; whether this call did."""
    return system.carrier.cancel_shipment(order_id)


def complete_order(system: OrderSystem, order_id: str) -> Order:
    """Mark the order ``completed`` and queue its confirmation email, in one transaction."""
    with system.db.transaction() as tx:
        order = system.orders.get(tx, order_id)
        order = _advance(system, tx, order, OrderStatus.COMPLETED)
        _queue_confirmation(system, tx, order)
        return order


def _queue_confirmation(system: OrderSystem, tx: Transaction, order: Order) -> str:
    return system.outbox.enqueue(
        tx,
        order_id=order.id,
        kind=CONFIRMATION,
        recipient=order.customer_email,
        subject=f"Your order {order.id[:8]} is confirmed",
        body=confirmation_body(order),
    )


def queue_confirmation(system: OrderSystem, order_id: str) -> str:
    """Put the order's confirmation email in the outbox (once); the message id."""
    with system.db.transaction() as tx:
        return _queue_confirmation(system, tx, system.orders.get(tx, order_id))


def confirmation_body(order: Order) -> str:
    """The text of an order's confirmation email."""
    lines = [
        f"{line.quantity} x {line.sku}  {domain.format_cents(line.total_cents)}" for line in order.kept_lines
    ]
    return "\n".join([*lines, f"Total: {domain.format_cents(order.total_cents, order.currency)}"])


def settle_failed_order(
    system: OrderSystem, order_id: str, idempotency_key: str, cancel_reason: str | None = None
) -> OrderStatus:
    """End an order whose workflow failed, or was cancelled: refund, unbook, restock, then ``failed``, or
    ``cancelled`` with ``cancel_reason`` (the run's, which its undo's context carries).

    The last undo of an order's workflow. Besides the other steps' undos it sweeps up what they cannot
    see: a charge whose response was lost on the charge step's last attempt is found by its reference and
    refunded. Safe to repeat; returns the order's final status.
    """
    for charge in system.gateway.charges_for(order_id):
        if charge.refundable_cents > 0:
            refund_payment(system, charge.id, f"{idempotency_key}:{charge.id}")
    if system.carrier.shipment_of(order_id) is not None:
        system.carrier.cancel_shipment(order_id)
    release_stock(system, order_id)
    with system.db.transaction() as tx:
        order = system.orders.get(tx, order_id)
        if order.status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
            return order.status
        if cancel_reason is not None:
            system.orders.save_status(
                tx, order, order.move_to(OrderStatus.CANCELLED), cancel_reason=cancel_reason
            )
            return OrderStatus.CANCELLED
        system.orders.save_status(tx, order, order.move_to(OrderStatus.FAILED))
        return OrderStatus.FAILED


def record_paid_order(
    system: OrderSystem, order: Order, *, tax_cents: int, payment_id: str, reservation_id: str
) -> Order:
    """Record an order that was paid and reserved before it existed (the YAML checkout's way round).

    It is stored ``awaiting_shipment``, having passed through ``created`` and ``payment_pending`` in its
    history. Safe to repeat: the order recorded before is returned.
    """
    with system.db.transaction() as tx:
        existing = system.orders.find(tx, order.id)
        if existing is not None:
            return existing
        order = replace(order, tax_cents=tax_cents)
        system.orders.add(tx, order, idempotency_key=None, fingerprint="checkout")
        system.orders.set_field(tx, order.id, "payment_id", payment_id)
        system.orders.set_field(tx, order.id, "reservation_id", reservation_id)
        for status in (OrderStatus.PAYMENT_PENDING, OrderStatus.AWAITING_SHIPMENT):
            order = _advance(system, tx, order, status)
        return replace(order, payment_id=payment_id, reservation_id=reservation_id)


def fail_recorded_order(system: OrderSystem, order_id: str, reason: str = "checkout undone") -> None:
    """Mark an order ``failed`` if it is not final yet (the YAML checkout's undo of its order row)."""
    with system.db.transaction() as tx:
        order = system.orders.find(tx, order_id)
        if order is not None and not order.is_final:
            system.orders.save_status(tx, order, order.move_to(OrderStatus.FAILED), reason=reason)


# -- cancellation ------------------------------------------------------------------------------------------

CUSTOMER_CANCELLED = "cancelled by the customer"
"""The reason the API cancels an order's run with."""


def cancel_unstarted_order(system: OrderSystem, order_id: str, reason: str) -> bool:
    """End a ``created`` order ``cancelled`` at once; whether this call did (False once it moved on).

    The API does this before it cancels the order's run: a run cancelled before its first step completed
    has nothing to undo, so no undo of its would settle the order. Nothing was reserved or charged that
    could need undoing: the run's reservation, if it comes, is undone by its own compensation (and a later
    step fails: a cancelled order goes nowhere).
    """
    try:
        with system.db.transaction() as tx:
            order = system.orders.get(tx, order_id)
            if order.status is not OrderStatus.CREATED:
                return False
            system.orders.save_status(tx, order, order.move_to(OrderStatus.CANCELLED), cancel_reason=reason)
            return True
    except ConcurrentUpdateError:  # a worker moved it on after the read: nothing written; the run's cancel
        return False  # undoes what that worker did


def status_history(
    system: OrderSystem, order_id: str
) -> tuple[Sequence[tuple[str | None, str, float]], float]:
    """The order's changes of status (from, to, when) and when it was created."""
    with system.db.transaction(readonly=True) as tx:
        created, _, _ = system.orders.times(tx, order_id)
        return system.orders.history(tx, order_id), created
