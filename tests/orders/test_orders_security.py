"""The order API's doors: cards are tokenised there, every request carries a token, bad text is a 422.

Fault 11: the card number was stored in plaintext (in the shop's tables and in conveyor's checkpoints, so
``conveyor status`` printed it); anyone could read and cancel any order; a NUL in ``customer_email`` was a
500 on PostgreSQL; ``"quantity": "3"`` was taken as 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from examples.orders import services
from examples.orders.access import TOKENS_VARIABLE, ApiAccess
from examples.orders.adapters.payments import NotACardTokenError
from examples.orders.api import create_app
from examples.orders.system import OrderSystem
from examples.orders.workflows import checkout, order_fulfilment, shop_runtime, tutorial_order
from fastapi import FastAPI
from fastapi.testclient import TestClient
from orders_support import drive, make_system, shop_command

from conveyor import Conveyor, EncodingError, InvalidInputError, RunNotFoundError, Workflow

ROOT = Path(__file__).parents[2]
CARD = "4242424242424242"
"""A test Visa number: it must appear nowhere once an order paid with it has run."""
ADA, BOB, ADMIN = "ada-token-0123456789", "bob-token-0123456789", "admin-token-0123456789"
ACCESS = ApiAccess(customers={ADA: "ada", BOB: "bob"}, admin_tokens=(ADMIN,))
ORDER: dict[str, Any] = {
    "customer_email": "ada@example.com",
    "card_number": CARD,
    "shipping_address": "1 Tea St",
    "items": [{"sku": "mug", "quantity": 2}],
}


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def api_for(runtime: Conveyor, access: ApiAccess = ACCESS) -> FastAPI:
    """The order API over ``runtime``, with ``access``."""
    return create_app(runtime, access)


@pytest.fixture
def shop_on(any_database_url: str) -> Iterator[tuple[str, OrderSystem, Conveyor]]:
    """The database URL, the shop and its runtime, on SQLite and then on PostgreSQL."""
    system = make_system(any_database_url)
    with shop_runtime(any_database_url, system=system) as runtime:
        yield any_database_url, system, runtime
    system.close()


@pytest.fixture
def client(shop_on: tuple[str, OrderSystem, Conveyor]) -> Iterator[TestClient]:
    """The API over the shop, on each database; server errors come back as 500s, not exceptions."""
    with TestClient(api_for(shop_on[2]), raise_server_exceptions=False) as api:
        yield api


def everything_stored(url: str, folder: Path | None = None) -> str:
    """Every byte the database holds, as text: the SQLite files, or every row of every PostgreSQL table."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        return "".join(file.read_bytes().decode("latin-1") for file in files if file.exists())
    import psycopg

    with psycopg.connect(url) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return "\n".join(
            str(row[0]) for table in tables for row in connection.execute(f'SELECT t::text FROM "{table}" t')
        )


def conveyor_status(url: str, workflow_id: str) -> str:
    """What ``conveyor status WORKFLOW_ID --backend URL --json`` prints."""
    done = subprocess.run(
        [sys.executable, "-m", "conveyor.cli", "status", workflow_id, "--backend", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return done.stdout + done.stderr


def test_a_card_number_is_tokenised_at_the_door_and_never_stored(
    shop_on: tuple[str, OrderSystem, Conveyor], client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The order keeps a token and its last four digits; no table, checkpoint, status or log has the card."""
    url, system, runtime = shop_on
    caplog.set_level("DEBUG")
    placed = [
        client.post("/orders", json=ORDER, headers=bearer(ADA)),
        client.post("/orders", json={**ORDER, "allow_partial": True}, headers=bearer(ADA)),
    ]
    assert [answer.status_code for answer in placed] == [202, 202], placed[0].text
    drive(system, runtime.backend)
    for answer in placed:
        order_id = answer.json()["order_id"]
        shown = client.get(f"/orders/{order_id}", headers=bearer(ADA)).json()
        assert shown["status"] == "completed"
        assert (shown["card_last4"], shown["card_brand"]) == ("4242", "visa")
        assert CARD not in json.dumps(shown)
        status = conveyor_status(url, answer.json()["workflow_id"])
        assert '"state": "completed"' in status
        assert CARD not in status
    stored = everything_stored(url)
    assert "ada@example.com" in stored  # the search does look at what is stored
    assert CARD not in stored
    assert CARD not in caplog.text


@pytest.mark.parametrize("token", [CARD, f"tok_{CARD}", f"tok_visa_{CARD}_x"])
def test_a_card_number_sent_as_the_token_is_refused_and_never_stored(
    shop_on: tuple[str, OrderSystem, Conveyor], client: TestClient, token: str
) -> None:
    """A card number where a token goes (even behind ``tok_``) is a 422 naming the field, stored nowhere."""
    url, _, _ = shop_on
    body = {key: value for key, value in ORDER.items() if key != "card_number"} | {"card_token": token}
    answer = client.post("/orders", json=body, headers=bearer(ADA))
    assert answer.status_code == 422
    assert "card_token" in answer.json()["detail"]
    assert CARD not in answer.text
    assert CARD not in everything_stored(url)


@pytest.mark.parametrize("number", ["4242424242424241", "4242", "4242-4242-4242-4242x", "4242\x004242"])
def test_a_bad_card_number_is_a_422_that_does_not_repeat_it(client: TestClient, number: str) -> None:
    """A number that fails the Luhn check or is not digits: named, and never echoed."""
    answer = client.post("/orders", json={**ORDER, "card_number": number}, headers=bearer(ADA))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "card_number"
    assert number not in answer.text


@pytest.mark.parametrize(
    ("workflow", "error", "message"),
    [
        (order_fulfilment, InvalidInputError, "field 'card': Extra inputs are not permitted"),
        (tutorial_order, EncodingError, r"input\.card is a secret \(SecretStr\)"),
    ],
)
def test_a_card_as_a_secret_in_a_workflow_input_is_refused_before_anything_is_stored(
    shop_on: tuple[str, OrderSystem, Conveyor], workflow: Workflow, error: type[Exception], message: str
) -> None:
    """A workflow input holding a secret (pydantic's SecretStr) is refused; no run is recorded."""
    url, _, runtime = shop_on
    order = {"order_id": "o-1", "card": pydantic.SecretStr(CARD)}
    with pytest.raises(error, match=message) as refused:
        runtime.start(workflow, order, workflow_id="order-o-1")
    assert CARD not in str(refused.value)
    with pytest.raises(RunNotFoundError):
        runtime.status("order-o-1")
    assert CARD not in everything_stored(url)


@pytest.mark.parametrize(
    ("workflow", "order"),
    [
        (tutorial_order, {"order_id": "1", "amount_cents": 1, "customer_email": "a@b.c", "card_token": CARD}),
        (checkout, {"cart_items": [{"sku": "mug", "quantity": 1}], "payment_info": {"token": CARD},
                    "customer_info": {"email": "a@b.c"}}),
        (tutorial_order, {"order_id": "1", "amount_cents": 1, "customer_email": "a@b.c",
                          "card_token": f"tok_{CARD}"}),
        (checkout, {"cart_items": [{"sku": "mug", "quantity": 1}], "payment_info": {"token": f"tok_{CARD}"},
                    "customer_info": {"email": "a@b.c"}}),
    ],
)  # fmt: skip
def test_the_seed_workflows_refuse_a_card_number_where_their_token_goes(
    shop_on: tuple[str, OrderSystem, Conveyor], workflow: Workflow, order: dict[str, Any]
) -> None:
    """Seed 003's tutorial and seed 002's checkout take a card token; a card number is refused at the door."""
    url, _, runtime = shop_on
    with pytest.raises(InvalidInputError) as refused:
        runtime.start(workflow, order, workflow_id="seed-1")
    assert CARD not in str(refused.value)
    assert CARD not in everything_stored(url)


def test_the_gateway_charges_a_token_never_a_card_number(shop_on: tuple[str, OrderSystem, Conveyor]) -> None:
    """Handed a card number, the gateway refuses it and stores nothing."""
    url, system, _ = shop_on
    with pytest.raises(NotACardTokenError):
        system.gateway.charge(
            amount_cents=100, currency="usd", card_token=CARD, reference="r-1", idempotency_key="k-1"
        )
    assert CARD not in everything_stored(url)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/orders/0123456789abcdef0123456789abcdef"), ("POST", "/orders"), ("GET", "/products")],
)
@pytest.mark.parametrize("headers", [{}, bearer("not-a-known-token-at-all"), {"Authorization": ADA}])
def test_a_request_without_a_known_bearer_token_is_401(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    """No token, an unknown one, or one not sent as ``Bearer``: 401 with a ``WWW-Authenticate`` header."""
    answer = client.request(method, path, json=ORDER if method == "POST" else None, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_customer_sees_and_cancels_only_their_own_orders(
    shop_on: tuple[str, OrderSystem, Conveyor], client: TestClient
) -> None:
    """Bob gets 404 for Ada's order, reading or cancelling it, and it is left alone; the admin sees it."""
    _, system, _ = shop_on
    order_id = client.post("/orders", json=ORDER, headers=bearer(ADA)).json()["order_id"]
    assert client.get(f"/orders/{order_id}", headers=bearer(BOB)).status_code == 404
    assert client.post(f"/orders/{order_id}/cancel", headers=bearer(BOB)).status_code == 404
    assert services.get_order(system, order_id).status.value == "created"
    assert client.get(f"/orders/{order_id}", headers=bearer(ADMIN)).json()["customer_id"] == "ada"
    assert client.get(f"/orders/{order_id}", headers=bearer(ADA)).status_code == 200
    assert client.post(f"/orders/{order_id}/cancel", headers=bearer(ADA)).status_code == 202


def test_an_admin_token_reads_every_order_but_places_none(client: TestClient) -> None:
    """The admin's token is for looking after orders: placing one with it is a 403."""
    answer = client.post("/orders", json=ORDER, headers=bearer(ADMIN))
    assert answer.status_code == 403
    assert "customer" in answer.json()["detail"]


def test_an_idempotency_key_belongs_to_the_customer_who_used_it(client: TestClient) -> None:
    """Bob reusing Ada's key makes his own order: he neither gets hers back nor learns its id."""
    first = client.post("/orders", json=ORDER, headers={**bearer(ADA), "Idempotency-Key": "k-1"})
    second = client.post("/orders", json=ORDER, headers={**bearer(BOB), "Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["order_id"] != second.json()["order_id"]
    assert "idempotent-replayed" not in second.headers


def test_the_api_refuses_to_be_built_without_tokens(shop_on: tuple[str, OrderSystem, Conveyor]) -> None:
    """No token configured: no API at all (every network door needs a token)."""
    with pytest.raises(ValueError, match=TOKENS_VARIABLE):
        api_for(shop_on[2], ApiAccess())


def test_the_server_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    """``serve`` with no token in its environment exits 2 with one line naming the variables."""
    done = shop_command("serve", "--db", f"sqlite:///{tmp_path / 'shop.db'}")
    assert done.returncode == 2
    assert TOKENS_VARIABLE in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("raw_field", "field"),
    [
        ('"customer_email": "ada\\u0000@example.com"', "customer_email"),
        ('"customer_email": "ada\\ud800@example.com"', "customer_email"),
        ('"shipping_address": "1 Tea St\\u0007"', "shipping_address"),
        ('"shipping_address": "1 Tea St\\u0000"', "shipping_address"),
        ('"items": [{"sku": "mu\\u0000g", "quantity": 1}]', "items.0.sku"),
        ('"items": [{"sku": "\\udfff", "quantity": 1}]', "items.0.sku"),
    ],
)
def test_bad_text_is_a_422_naming_the_field(
    client: TestClient, shop_on: tuple[str, OrderSystem, Conveyor], raw_field: str, field: str
) -> None:
    """NUL, control characters and lone surrogates, sent as JSON escapes, are refused on both databases."""
    body = json.dumps({key: value for key, value in ORDER.items() if key != field.split(".")[0]})
    raw = body[:-1] + ", " + raw_field + "}"
    answer = client.post(
        "/orders", content=raw.encode(), headers={**bearer(ADA), "Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]
    with shop_on[1].db.transaction(readonly=True) as tx:
        assert tx.one("SELECT count(*) FROM orders") == (0,)


@pytest.mark.parametrize("path", ["/orders/%00", "/orders/%ED%A0%80", "/orders/%01abc/cancel"])
def test_an_order_id_that_is_not_text_is_refused_not_a_500(client: TestClient, path: str) -> None:
    """A path with NUL, a lone surrogate's bytes or a control character: a 4xx on both databases."""
    method = "POST" if path.endswith("/cancel") else "GET"
    answer = client.request(method, path, headers=bearer(ADA))
    assert answer.status_code in (404, 422), answer.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": [{"sku": "mug", "quantity": "3"}]}, "items.0.quantity"),
        ({"items": [{"sku": "mug", "quantity": 3.0}]}, "items.0.quantity"),
        ({"items": [{"sku": "mug", "quantity": True}]}, "items.0.quantity"),
        ({"allow_partial": "true"}, "allow_partial"),
        ({"allow_partial": 1}, "allow_partial"),
        ({"customer_email": 42}, "customer_email"),
        ({"card_number": 4242424242424242}, "card_number"),
    ],
)
def test_strings_are_not_coerced_into_numbers_or_booleans(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    """A field of the wrong JSON type is a 422 naming it; nothing is converted."""
    answer = client.post("/orders", json={**ORDER, **change}, headers=bearer(ADA))
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]]
