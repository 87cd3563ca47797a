"""The order demo's bottleneck tables, built from the analytics of real orders (one declined)."""

from __future__ import annotations

from examples.orders import services
from examples.orders.demo import bottleneck_tables
from examples.orders.system import OrderSystem
from examples.orders.workflows import order_fulfilment, shop_runtime
from orders_support import order_request, run_here
from rich.console import Console

from conveyor import SqliteBackend


def test_the_demo_tables_rank_each_workflows_steps_under_its_health_score(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """Three orders, one with a declined card: one table for order_fulfilment, its five steps ranked, the
    charge failing one time in three, and the health score in the title."""
    for card in ("tok_visa", "tok_visa", "tok_chargeDeclined"):
        order = services.place_order(shop, order_request(("mug", 1), card=card))
        workflow_id = services.workflow_id_for(order.order_id)
        run_here(shop, backend, order_fulfilment, workflow_id, {"order_id": order.order_id})
    with shop_runtime(backend, system=shop) as runtime:
        steps = runtime.bottlenecks(since=0.0, until=1e12)
        tables = bottleneck_tables(steps, runtime.performance(since=0.0, until=1e12))
    [table] = tables
    assert str(table.title).startswith("order_fulfilment: 3 runs, health ")
    assert table.row_count == 5  # accept, reserve, charge, ship, complete: each ran at least once
    console = Console(width=100, record=True)
    console.print(table)
    text = console.export_text()
    charge = next(line for line in text.splitlines() if "charge_payment" in line)
    assert "33.3%" in charge  # failed for good once in three
