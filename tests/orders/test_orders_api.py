"""The order API: 202 with a status URL, idempotency keys, validation errors naming fields, cancellation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from examples.orders import services
from examples.orders.access import ApiAccess
from examples.orders.api import create_app
from examples.orders.system import OrderSystem
from examples.orders.workflows import shop_runtime
from fastapi.testclient import TestClient
from orders_support import drive

from conveyor import SqliteBackend, get_workflow_status

ORDER = {
    "customer_email": "ada@example.com",
    "card_number": "4242 4242 4242 4242",
    "shipping_address": "1 Tea St",
    "items": [{"sku": "mug", "quantity": 2}, {"sku": "kettle", "quantity": 1}],
}


@pytest.fixture
def client(shop: OrderSystem, backend: SqliteBackend) -> Iterator[TestClient]:
    """The API over the test shop, in this process, called by the customer ``ada``."""
    access = ApiAccess({"ada-token-0123456789": "ada"})
    with shop_runtime(backend, system=shop) as runtime, TestClient(create_app(runtime, access)) as api:
        api.headers["Authorization"] = "Bearer ada-token-0123456789"
        yield api


def post_order(client: TestClient, body: dict[str, Any] | None = None, key: str | None = None) -> Any:
    """POST /orders; the response."""
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/orders", json=body or ORDER, headers=headers)


def count_orders(shop: OrderSystem) -> int:
    """How many orders are recorded."""
    with shop.db.transaction(readonly=True) as tx:
        row = tx.one("SELECT count(*) FROM orders")
    assert row is not None
    return int(row[0])


def test_an_order_is_accepted_with_its_id_and_status_url(client: TestClient, backend: SqliteBackend) -> None:
    """202, the order id, a status URL (also in Location), and its workflow recorded for the workers."""
    answer = post_order(client)
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "created"
    assert body["status_url"] == f"/orders/{body['order_id']}" == answer.headers["location"]
    assert get_workflow_status(body["workflow_id"], backend).state.value == "pending"
    state = client.get(body["status_url"]).json()
    assert (state["status"], state["total_cents"], state["workflow"]["state"]) == (
        "created",
        5_999,
        "pending",
    )


def test_the_same_idempotency_key_returns_the_same_order(client: TestClient, shop: OrderSystem) -> None:
    """A retried request gets the first order back, marked as a replay; nothing new is recorded."""
    first = post_order(client, key="checkout-42")
    again = post_order(client, key="checkout-42")
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert count_orders(shop) == 1
    assert post_order(client, key="checkout-43").json()["order_id"] != first.json()["order_id"]


def test_the_same_idempotency_key_with_another_order_is_refused(
    client: TestClient, shop: OrderSystem
) -> None:
    """A key reused for a different body is a 422 naming the header; no second order is made."""
    post_order(client, key="checkout-42")
    answer = post_order(client, {**ORDER, "items": [{"sku": "mug", "quantity": 9}]}, key="checkout-42")
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert count_orders(shop) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": [{"sku": "mug", "quantity": 0}]}, "items.0.quantity"),
        ({"items": [{"sku": "mug", "quantity": 1}, {"sku": "spoon", "quantity": 1}]}, "items.1.sku"),
        ({"items": []}, "items"),
        ({"customer_email": "not-an-email"}, "customer_email"),
        ({"card_token": ""}, "card_token"),
        ({"coupon": "FREE"}, "coupon"),
        ({"items": [{"sku": "mug", "quantity": "two"}]}, "items.0.quantity"),
    ],
)
def test_an_invalid_order_is_refused_naming_the_field(
    client: TestClient, shop: OrderSystem, change: dict[str, Any], field: str
) -> None:
    """Each invalid field is a 422 whose errors name it; nothing is recorded."""
    answer = post_order(client, {**ORDER, **change})
    assert answer.status_code == 422
    assert field in [error["field"] for error in answer.json()["errors"]]
    assert field in answer.json()["detail"]
    assert count_orders(shop) == 0


def test_a_missing_field_is_named(client: TestClient) -> None:
    """An order without a shipping address names ``shipping_address``."""
    body = {key: value for key, value in ORDER.items() if key != "shipping_address"}
    answer = post_order(client, body)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "shipping_address", "message": "Field required"}]


def test_a_processed_order_shows_its_steps_with_timings(
    client: TestClient, backend: SqliteBackend, shop: OrderSystem
) -> None:
    """Once a worker ran it, the order is completed and each step has its attempts and timings."""
    order_id = post_order(client).json()["order_id"]
    drive(shop, backend)
    state = client.get(f"/orders/{order_id}").json()
    assert state["status"] == "completed"
    assert [entry["to"] for entry in state["history"]][-1] == "completed"
    steps = state["workflow"]["steps"]
    assert [step["name"] for step in steps] == [
        "accept_order",
        "reserve_stock",
        "charge_payment",
        "ship_order",
        "complete_order",
    ]
    for step in steps:
        assert step["state"] == "completed"
        assert step["attempts"] == 1
        assert step["started_at"] <= step["finished_at"]
        assert step["duration_seconds"] >= 0
        assert step["error"] is None


def test_a_failed_order_shows_the_step_that_failed_and_why(
    client: TestClient, backend: SqliteBackend, shop: OrderSystem
) -> None:
    """A declined card: the order failed, its reason, the failing step's error, and the undone steps."""
    order_id = post_order(client, {**ORDER, "card_number": "4000 0000 0000 0002"}).json()["order_id"]
    drive(shop, backend)
    state = client.get(f"/orders/{order_id}").json()
    assert state["status"] == "failed"
    assert "card declined" in state["failure_reason"]
    workflow = state["workflow"]
    assert workflow["state"] == "compensated"
    assert workflow["error"]["step"] == "charge_payment"
    by_name = {step["name"]: step for step in workflow["steps"]}
    assert by_name["charge_payment"]["error"]["type"] == "PaymentFailedError"
    assert by_name["reserve_stock"]["state"] == "compensated"


def test_a_partial_order_runs_the_partial_fulfilment_workflow(
    client: TestClient, backend: SqliteBackend, shop: OrderSystem
) -> None:
    """allow_partial starts seed 000's partial subclass: the missing line is dropped, the rest ships."""
    body = {
        **ORDER,
        "items": [{"sku": "mug", "quantity": 1}, {"sku": "matcha", "quantity": 5}],
        "allow_partial": True,
    }
    order_id = post_order(client, body).json()["order_id"]
    drive(shop, backend)
    state = client.get(f"/orders/{order_id}").json()
    assert state["workflow"]["workflow"] == "orders.PartialOrderProcessing"
    assert state["status"] == "completed"
    assert [line["dropped"] for line in state["lines"]] == [False, True]
    assert state["total_cents"] == 1_250


def test_cancelling_an_order_in_flight_stops_and_undoes_it(
    client: TestClient, backend: SqliteBackend, shop: OrderSystem
) -> None:
    """Before a worker gets to it: its run is cancelled at once (cancel_workflow); nothing charged."""
    order_id = post_order(client).json()["order_id"]
    answer = client.post(f"/orders/{order_id}/cancel")
    assert answer.status_code == 202
    assert answer.json()["workflow_id"] == f"order-{order_id}"
    assert answer.json()["state"] == "cancelled"
    drive(shop, backend)
    state = client.get(f"/orders/{order_id}").json()
    assert state["status"] == "cancelled"
    assert state["cancel_reason"] == "cancelled by the customer"
    assert state["workflow"]["state"] == "cancelled"
    assert state["workflow"]["error"]["message"] == "cancelled by the customer"
    assert state["payment_id"] is None
    assert "cancellation" not in state  # no second workflow


def test_cancelling_a_completed_order_refunds_it(
    client: TestClient, backend: SqliteBackend, shop: OrderSystem
) -> None:
    """A completed order's run is undone (compensate_workflow): refunded and restocked, ends cancelled."""
    order_id = post_order(client).json()["order_id"]
    drive(shop, backend)
    answer = client.post(f"/orders/{order_id}/cancel")
    assert answer.status_code == 202
    assert answer.json()["state"] == "cancelled"  # undone here, at once: the API knows the workflow
    state = client.get(f"/orders/{order_id}").json()
    assert state["status"] == "cancelled"
    assert state["workflow"]["state"] == "cancelled"
    assert [step["state"] for step in state["workflow"]["steps"]][:3] == ["compensated"] * 3
    assert sum(charge.refundable_cents for charge in shop.gateway.charges_for(order_id)) == 0
    assert client.post(f"/orders/{order_id}/cancel").status_code == 200


def test_a_failed_order_cannot_be_cancelled(
    client: TestClient, backend: SqliteBackend, shop: OrderSystem
) -> None:
    """409 for an order that already failed."""
    order_id = post_order(client, {**ORDER, "card_number": "4000 0000 0000 0002"}).json()["order_id"]
    drive(shop, backend)
    answer = client.post(f"/orders/{order_id}/cancel")
    assert answer.status_code == 409
    assert "failed" in answer.json()["detail"]


def test_unknown_orders_are_404(client: TestClient) -> None:
    """Reading or cancelling an order that does not exist is a 404."""
    assert client.get("/orders/nope").status_code == 404
    assert client.post("/orders/nope/cancel").status_code == 404


def test_the_catalogue_lists_prices_and_stock(client: TestClient, shop: OrderSystem) -> None:
    """GET /products lists every SKU with its price in cents and the units available."""
    services.add_products(shop, [("tray", "Tray", 4_450, 3)])
    products = client.get("/products").json()
    assert {"sku": "tray", "price_cents": 4_450, "available": 3} in products
    assert [product["sku"] for product in products] == sorted(product["sku"] for product in products)
