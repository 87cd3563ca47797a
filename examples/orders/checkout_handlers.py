"""The step handlers of seed 002's YAML checkout (``checkout.yaml``), on this application's services.

Tasker's order of work, made safe: the payment is charged before the stock is taken, so a failure after it
(out of stock, the order row, the email) refunds the charge through ``ProcessPaymentHandler.undo``, and
releases the stock through ``UpdateInventoryHandler.undo``: the "charged but no order" of the seed's Black
Friday cannot happen. The confirmation is queued in the outbox, so a flaky email server never fails a paid
checkout. Errors retrying cannot fix are raised as ``NonRetryableError``; the rest are retried as the
template's ``retry_limit`` says. Amounts are integer cents; the seed's 8 % tax is rounded half up. Each
handler gets the shop's :class:`~examples.orders.system.OrderSystem` through its step context
(``step.resource("system")``), from the runtime that runs it.
"""

from __future__ import annotations

from typing import Any

from conveyor import NonRetryableError, StepContext
from examples.orders import domain, services
from examples.orders.adapters.inventory import OutOfStockError
from examples.orders.adapters.payments import CardDeclinedError, IdempotencyKeyReusedError

TAX_BASIS_POINTS = 800
"""8 %, as in the seed."""


class ValidateCartHandler:
    """Validate cart items and calculate totals."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        """Price every item from the catalogue; refuse unknown products and items short of stock."""
        system = step.resource("system")
        with system.db.transaction(readonly=True) as tx:
            prices = system.inventory.prices(tx)
            available = system.inventory.available(tx)
        validated_items = []
        for item in context["cart_items"]:
            sku, quantity = item["sku"], item["quantity"]
            if sku not in prices:
                raise NonRetryableError(f"Product {sku} not found")
            if available.get(sku, 0) < quantity:
                raise NonRetryableError(f"Insufficient stock for {sku}")
            price = prices[sku]
            validated_items.append(
                {"sku": sku, "price_cents": price, "quantity": quantity, "line_total_cents": price * quantity}
            )
        subtotal = sum(item["line_total_cents"] for item in validated_items)
        tax = domain.tax_cents(subtotal, TAX_BASIS_POINTS)
        return {
            "order_id": step.workflow_id,
            "validated_items": validated_items,
            "subtotal_cents": subtotal,
            "tax_cents": tax,
            "total_cents": subtotal + tax,
        }


class ProcessPaymentHandler:
    """Charge payment method."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        """Charge the total with the step's idempotency key; a decline is final, a 503 is retried."""
        totals = results["validate_cart"]
        try:
            charge = step.resource("system").gateway.charge(
                amount_cents=totals["total_cents"],
                currency="usd",
                card_token=context["payment_info"]["token"],
                reference=totals["order_id"],
                idempotency_key=step.idempotency_key,
            )
        except (CardDeclinedError, IdempotencyKeyReusedError) as exc:
            raise NonRetryableError(f"Payment failed: {exc}") from exc
        return {"payment_id": charge.id, "amount_charged_cents": charge.amount_cents}

    def undo(
        self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any], step: StepContext
    ) -> None:
        """Refund the charge."""
        services.refund_payment(step.resource("system"), result["payment_id"], step.idempotency_key)


class UpdateInventoryHandler:
    """Update inventory levels: take the units off the shelf (the database refuses to oversell)."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        """Reserve and confirm the cart's units in one transaction."""
        system = step.resource("system")
        order_id = results["validate_cart"]["order_id"]
        quantities = domain.quantities_by_sku(
            domain.OrderLine(item["sku"], item["quantity"], item["price_cents"])
            for item in results["validate_cart"]["validated_items"]
        )
        try:
            with system.db.transaction() as tx:
                reservation_id, _ = system.inventory.reserve(tx, f"res_{order_id}", order_id, quantities)
                system.inventory.confirm(tx, reservation_id)
        except OutOfStockError as exc:
            raise NonRetryableError(str(exc)) from exc
        return {"reservation_id": reservation_id}

    def undo(
        self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any], step: StepContext
    ) -> None:
        """Put the units back."""
        services.release_stock(step.resource("system"), results["validate_cart"]["order_id"])


class CreateOrderHandler:
    """Create order record: paid and reserved, so it waits for shipment."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        """Record the order as ``awaiting_shipment`` with its payment and reservation."""
        cart = results["validate_cart"]
        customer = context["customer_info"]
        order = domain.new_order(
            cart["order_id"],
            customer_email=customer["email"],
            card_token=context["payment_info"]["token"],
            shipping_address=customer.get("address", ""),
            items=[(item["sku"], item["quantity"]) for item in cart["validated_items"]],
            prices={item["sku"]: item["price_cents"] for item in cart["validated_items"]},
        )
        order = services.record_paid_order(
            step.resource("system"),
            order,
            tax_cents=cart["tax_cents"],
            payment_id=results["process_payment"]["payment_id"],
            reservation_id=results["update_inventory"]["reservation_id"],
        )
        return {"order_id": order.id, "status": order.status.value}

    def undo(
        self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any], step: StepContext
    ) -> None:
        """Mark the order failed."""
        services.fail_recorded_order(step.resource("system"), result["order_id"])


class SendConfirmationHandler:
    """Queue the order confirmation email; the relay delivers it, retrying on its own."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        """Put the confirmation in the outbox."""
        message_id = services.queue_confirmation(step.resource("system"), results["create_order"]["order_id"])
        return {"confirmation_queued": True, "message_id": message_id}


class OrderProcessingHandler:
    """The seed's ``task_handler_class``: express orders get a 15 s payment timeout and one retry, and two
    attempts at the confirmation email (the seed's ``establish_step_dependencies_and_defaults``)."""

    def step_settings(self, context: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The settings of this run's steps that differ from the template's."""
        if context.get("priority") != "express":
            return {}
        return {"process_payment": {"timeout": 15, "retries": 1}, "send_confirmation": {"retries": 1}}
