"""The shop's runtime: every workflow of the order application, and the system its steps use.

:func:`shop_runtime` is the composition root. It builds one :class:`~conveyor.Conveyor` with these
workflows registered and the shop's :class:`~examples.orders.system.OrderSystem` as its resource
``"system"``, which every step asks for (``system: OrderSystem = resource("system")``):

- ``order_fulfilment``: the order workflow (Flow builder, :mod:`examples.orders.fulfilment`), started by
  the API for every order;
- ``OrderProcessing``, ``PartialOrderProcessing``: seed 000's reactors as workflow classes
  (:mod:`examples.orders.sagas`); the API starts the partial one for orders that allow it;
- ``tutorial_order``: seed 003's tutorial flow (:mod:`examples.orders.tutorial`);
- ``checkout``: seed 002's YAML checkout (``checkout.yaml`` and :mod:`examples.orders.checkout_handlers`),
  registered as ``orders/process_order`` 1.0.0.

:data:`app` is the runtime ``conveyor worker --backend URL --app examples.orders.workflows`` loads: its
system is built from the worker's environment on first use (see :meth:`OrderSystem.from_environment`).
The API, the demo and the tests build their own with :func:`shop_runtime`, handing in their system.
Nothing is registered anywhere when this module is imported.
"""

from __future__ import annotations

from pathlib import Path

from conveyor import Backend, Conveyor, FakeClock, load_template
from examples.orders.fulfilment import order_fulfilment
from examples.orders.sagas import OrderProcessing, PartialOrderProcessing
from examples.orders.system import SYSTEM_RESOURCE, OrderSystem
from examples.orders.tutorial import tutorial_order

CHECKOUT_TEMPLATE = Path(__file__).with_name("checkout.yaml")
checkout = load_template(CHECKOUT_TEMPLATE)
"""Seed 002's checkout, read from ``checkout.yaml`` (registered by :func:`shop_runtime`)."""

SHOP_WORKFLOWS = (
    OrderProcessing,
    PartialOrderProcessing,
    order_fulfilment,
    tutorial_order,
)
"""Every workflow of the shop but the YAML checkout, which registers under its template's names."""


def shop_runtime(
    backend: Backend | str | None = None,
    *,
    system: OrderSystem | None = None,
    clock: FakeClock | None = None,
) -> Conveyor:
    """The shop's runtime on ``backend``, its steps using ``system`` (built from the environment if None).

    A ``system`` handed in stays the caller's to close; one built from the environment is closed with the
    runtime. ``clock`` is for tests: a fake clock lets retry delays pass at once.
    """
    runtime = Conveyor(backend, workflows=SHOP_WORKFLOWS, clock=clock)
    runtime.register(checkout, namespace="orders", name="process_order")
    if system is None:
        runtime.resources.add_factory(SYSTEM_RESOURCE, OrderSystem.from_environment)
    else:
        runtime.resources.add(SYSTEM_RESOURCE, system)
    return runtime


app = shop_runtime()
"""The runtime workers load (``--app examples.orders.workflows``), on their ``--backend``."""

__all__ = [
    "OrderProcessing",
    "PartialOrderProcessing",
    "app",
    "checkout",
    "order_fulfilment",
    "shop_runtime",
    "tutorial_order",
]
