"""Seed 000's reactors as conveyor workflow classes: ``OrderProcessing`` and its partial-fulfilment
subclass, on this application's services. (Seed 000's ``OrderCancellationReactor`` is not needed here: an
order is cancelled by cancelling its run, ``shop.cancel``, or undoing a completed one, ``shop.compensate``;
``examples/extensions/cancellation_reactor.py`` shows the reactor itself, as conveyor code.)

They follow the RubyReactor originals step for step, with three changes the domain asks for:

- ``validate_order`` has an undo that settles a failed order (``failed`` or ``cancelled``, refunded and
  restocked), because the order row must end in a final state;
- a ``ship_order`` step sits before ``update_order_status``: an order here is shipped before it completes;
- ``update_order_status`` queues the confirmation email in the outbox in the same transaction, and
  ``send_confirmation`` only tries to deliver it at once. The seed notes the flaw this removes: there, an
  email that kept failing refunded an order that was, in fact, complete.

Retry delays are the seed's divided by ten: the simulated gateway recovers in milliseconds. Every step and
undo gets the shop's :class:`~examples.orders.system.OrderSystem` from the runtime that runs it, as the
parameter ``system: OrderSystem = resource("system")``.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor import RetryPolicy, Saga, StepContext, from_result, resource, step
from examples.orders import domain, services
from examples.orders.domain import Order, OrderStatus
from examples.orders.fulfilment import UNDO_RETRIES
from examples.orders.relay import OutboxRelay
from examples.orders.services import PERMANENT_ERRORS
from examples.orders.system import OrderSystem

log = logging.getLogger("orders.sagas")


class OrderInput(BaseModel):
    """``validate_args do required(:order_id).filled(:string) end``."""

    model_config = ConfigDict(extra="forbid")  # an unexpected field (a card, say) is refused, not dropped

    order_id: str = Field(min_length=1)


class OrderProcessing(Saga):
    """Validate an order, check and reserve its stock, charge it, ship it, complete it and confirm it."""

    namespace = "orders"
    input_schema = OrderInput
    retry_defaults = RetryPolicy(
        max_attempts=3, backoff="exponential", initial_delay_secs=0.2, non_retryable_errors=PERMANENT_ERRORS
    )
    compensation_retry_defaults = UNDO_RETRIES

    @step
    def validate_order(self, order_id: str, system: OrderSystem = resource("system")) -> dict[str, Order]:
        """The order must exist, be new, and not be cancelled."""
        order = services.get_order(system, order_id)
        if order.status is OrderStatus.CANCELLED:
            raise domain.OrderCancelledError("Order cancelled")
        if order.status is not OrderStatus.CREATED:
            raise domain.OrderError("Order already processed")
        return {"order": order}

    @validate_order.undo
    def settle_failed_order(
        self, order_id: str, context: StepContext, system: OrderSystem = resource("system"), **_: Any
    ) -> None:
        """Refund, restock and end the order ``failed`` (``cancelled``, with its reason, if the run was)."""
        services.settle_failed_order(system, order_id, context.idempotency_key, context.cancel_reason)

    @step(order=from_result(validate_order, "order"))
    def check_inventory(self, order: Order, system: OrderSystem = resource("system")) -> dict[str, Any]:
        """Every line must be on the shelf now (advisory: the reservation is what the database enforces)."""
        unavailable = services.unavailable_items(system, order)
        if unavailable:
            raise domain.InsufficientInventoryError(f"Insufficient inventory: {unavailable}")
        return {"order": order, "inventory_checked": True}

    @step(order=from_result(check_inventory, "order"))
    def reserve_inventory(self, order: Order, system: OrderSystem = resource("system")) -> dict[str, str]:
        """Hold the units of the order's kept lines."""
        return {"reservation_id": services.reserve_stock(system, order.id)}

    @reserve_inventory.undo
    def release_reservation(self, order: Order, system: OrderSystem = resource("system"), **_: Any) -> None:
        """Put the reserved units back."""
        services.release_stock(system, order.id)

    @step(
        order=from_result(check_inventory, "order"),
        retries=RetryPolicy(
            max_attempts=2, backoff="fixed", initial_delay_secs=3, non_retryable_errors=PERMANENT_ERRORS
        ),
    )
    def process_payment(
        self, order: Order, context: StepContext, system: OrderSystem = resource("system")
    ) -> dict[str, Any]:
        """Charge the order's total, with the step's idempotency key."""
        payment_id = services.charge_order(system, order.id, context.idempotency_key)
        return {"payment_id": payment_id, "payment_amount": order.total_cents}

    @process_payment.undo
    def refund_payment(
        self, payment_id: str, context: StepContext, system: OrderSystem = resource("system"), **_: Any
    ) -> None:
        """Refund the charge."""
        services.refund_payment(system, payment_id, context.idempotency_key)

    @step(
        order=from_result(check_inventory, "order"),
        reservation_id=from_result(reserve_inventory, "reservation_id"),
    )
    def update_inventory(
        self, order: Order, reservation_id: str, system: OrderSystem = resource("system")
    ) -> dict[str, bool]:
        """Turn the reservation into a permanent reduction of the stock."""
        services.confirm_stock(system, order.id)
        return {"inventory_updated": True}

    @update_inventory.undo
    def restore_inventory(self, order: Order, system: OrderSystem = resource("system"), **_: Any) -> None:
        """Put the units back on the shelf."""
        services.release_stock(system, order.id)

    @step(order=from_result(check_inventory, "order"))
    def ship_order(self, order: Order, system: OrderSystem = resource("system")) -> dict[str, str]:
        """Book the carrier; the reservation is confirmed as the order is marked shipped."""
        return {"shipment_id": services.ship_order(system, order.id)}

    @ship_order.undo
    def cancel_shipment(self, order: Order, system: OrderSystem = resource("system"), **_: Any) -> None:
        """Cancel the shipping label."""
        services.cancel_shipment(system, order.id)

    @step(
        order=from_result(check_inventory, "order"),
        payment_id=from_result(process_payment, "payment_id"),
    )
    def update_order_status(
        self, order: Order, payment_id: str, system: OrderSystem = resource("system")
    ) -> dict[str, Any]:
        """Mark the order completed and queue its confirmation email, in one transaction."""
        completed = services.complete_order(system, order.id)
        return {"order_completed": completed.status is OrderStatus.COMPLETED, "payment_id": payment_id}

    @step(
        order=from_result(check_inventory, "order"),
        payment_id=from_result(process_payment, "payment_id"),
        retries=RetryPolicy(max_attempts=3, backoff="linear", initial_delay_secs=1),
    )
    def send_confirmation(
        self, order: Order, payment_id: str, system: OrderSystem = resource("system")
    ) -> dict[str, bool]:
        """Try to deliver the queued confirmation now; if that fails, the relay retries it later.

        It never fails: the order is complete and paid, and nothing about an email may undo that.
        """
        try:
            sent = OutboxRelay(system).deliver_now(f"{services.CONFIRMATION}:{order.id}")
        except Exception:  # the relay will send it; this step is only a head start
            log.warning(
                "could not send the confirmation of order %s now; the relay will", order.id, exc_info=True
            )
            sent = False
        return {"confirmation_sent": sent}


class PartialOrderProcessing(OrderProcessing):
    """Like OrderProcessing, but ships what is on the shelf and drops the rest (seed 000's subclass)."""

    def check_inventory(self, order: Order, system: OrderSystem = resource("system")) -> dict[str, Any]:
        """Drop the lines the shelf cannot cover; fail only when none can be fulfilled."""
        partial, unavailable = services.drop_unavailable_lines(system, order.id)
        if unavailable:
            return {"order": partial, "unavailable_items": unavailable}
        return {"order": partial, "inventory_checked": True}
