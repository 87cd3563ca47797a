"""The shop's own registry of workflows: importing the shop leaves conveyor's default registry alone.

Every workflow of the shop is registered here (see :mod:`examples.orders.workflows`), so that
``orders_registry.start("orders.OrderProcessing", ...)`` and ``orders_registry.get(...)`` find them by name.
"""

from __future__ import annotations

from conveyor import Registry

orders_registry = Registry()
"""The order application's workflows, by namespace, name and version."""
