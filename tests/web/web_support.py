"""What the REST API tests share: workflows with real steps, the tokens, and a dump of a backend's rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from conveyor import Conveyor, Flow, NonRetryableError

ADMIN_TOKEN = "admin-token-for-the-api-tests"
READ_TOKEN = "read-token-for-the-api-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}

CARD_NUMBER = "".join(["4242", "4242", "4242", "4242"])
"""A card number that must never appear in an answer (built so, not written out, so no traceback's source
line holds it either)."""


class Order(BaseModel):
    """The input of the checkout workflow."""

    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(min_length=1)
    quantity: int = Field(ge=1)


GATEWAY = {"down": False}
"""Whether the payment step fails (a test turns it on, then off again to retry)."""


def reserve(order: Order) -> dict[str, Any]:
    return {"order_id": order.order_id, "reserved": order.quantity}


def charge(reserved: dict[str, Any]) -> dict[str, Any]:
    if GATEWAY["down"]:
        raise NonRetryableError("the payment gateway is down")
    return {"order_id": reserved["order_id"], "charged": reserved["reserved"] * 5}


CHECKOUT = Flow("checkout", input_schema=Order, description="Reserve, then charge").then(reserve).then(charge)
CHECKOUT_V1 = CHECKOUT.build()
CHECKOUT_V2 = (
    Flow("checkout", version="2", input_schema=Order, description="Reserve, then charge")
    .then(reserve)
    .then(charge)
    .build()
)


def ask(order: dict[str, Any]) -> str:
    return f"asked about {order.get('order_id')}"


def pack(approval: Any) -> str:
    return "packed"


APPROVAL = Flow("approval").then(ask).wait_for_signal("approved").then(pack).build()


class Payment(BaseModel):
    """An input that holds a secret: conveyor never stores it."""

    order_id: str
    card: SecretStr


def pay(payment: dict[str, Any]) -> str:
    return "paid"


PAYMENT = Flow("payment", input_schema=Payment).then(pay).build()


def leak(order: dict[str, Any]) -> SecretStr:
    return SecretStr(CARD_NUMBER)  # refused by the codec: the step fails, naming the type, not the value


LEAKY = Flow("leaky").then(leak).build()

WORKFLOWS = [CHECKOUT_V1, CHECKOUT_V2, APPROVAL, PAYMENT, LEAKY]


def sqlite_rows(path: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every conveyor table of the SQLite file at ``path``, sorted."""
    with sqlite3.connect(path) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'conveyor_%'"
            )
        ]
        return {
            table: sorted(map(tuple, connection.execute(f"SELECT * FROM {table}")), key=repr)
            for table in tables
        }


def postgres_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every conveyor table of the PostgreSQL database at ``url``, sorted."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'conveyor_%'"
            )
        ]
        return {
            table: sorted((tuple(row) for row in connection.execute(f"SELECT * FROM {table}")), key=repr)
            for table in tables
        }


@dataclass
class Site:
    """A runtime over a real backend, a client of its REST API, and a dump of the backend's rows."""

    app: Conveyor
    client: TestClient
    rows: Callable[[], dict[str, list[tuple[Any, ...]]]]

    def drive(self) -> None:
        """Drive every run that can go on (a worker, until nothing is left to do now)."""
        self.app.worker(concurrency=1, poll_interval_seconds=0.05).run(until_idle=True)
