"""Every workflow of the order application, in one module for workers to import.

``conveyor worker --backend URL --app examples.orders.workflows`` runs all of them:

- ``order_fulfilment``: the order workflow (Flow builder, :mod:`examples.orders.fulfilment`), started by
  the API for every order;
- ``OrderProcessing``, ``PartialOrderProcessing``, ``OrderCancellation``: seed 000's reactors as workflow
  classes (:mod:`examples.orders.sagas`); the API starts the partial one for orders that allow it, and the
  cancellation for ``POST /orders/{id}/cancel``;
- ``tutorial_order``: seed 003's tutorial flow (:mod:`examples.orders.tutorial`);
- ``checkout``: seed 002's YAML checkout (``checkout.yaml`` and :mod:`examples.orders.checkout_handlers`).

All are registered in :data:`orders_registry`, here: nothing registers itself when it is declared.
"""

from __future__ import annotations

from pathlib import Path

from conveyor import Conveyor, load_template
from examples.orders.fulfilment import order_fulfilment
from examples.orders.registry import orders_registry
from examples.orders.sagas import OrderCancellation, OrderProcessing, PartialOrderProcessing
from examples.orders.tutorial import tutorial_order

CHECKOUT_TEMPLATE = Path(__file__).with_name("checkout.yaml")
checkout = load_template(CHECKOUT_TEMPLATE, registry=orders_registry)
"""Seed 002's checkout, registered as ``orders/process_order`` 1.0.0 in :data:`orders_registry`."""

SHOP_WORKFLOWS = (
    OrderProcessing,
    PartialOrderProcessing,
    OrderCancellation,
    order_fulfilment,
    tutorial_order,
)
for workflow in SHOP_WORKFLOWS:
    orders_registry.register(workflow)

app = Conveyor(registry=orders_registry)
"""The shop's runtime, which ``conveyor worker --app examples.orders.workflows`` loads (on ``--backend``)."""

__all__ = [
    "OrderCancellation",
    "OrderProcessing",
    "PartialOrderProcessing",
    "app",
    "checkout",
    "order_fulfilment",
    "orders_registry",
    "tutorial_order",
]
