"""Wiring: the database, the adapters and the simulated providers of one process, built from a URL.

:class:`OrderSystem` holds everything the services need. The shop's runtime hands it to the workflows'
steps as its resource ``"system"`` (see :func:`examples.orders.workflows.shop_runtime`): the API and the
tests give theirs to the runtime they build; worker processes (``conveyor worker --app
examples.orders.workflows``) build it on first use with :meth:`OrderSystem.from_environment`:

- ``ORDERS_DATABASE_URL``: the application's database, which is also conveyor's (default: the
  ``CONVEYOR_BACKEND`` the CLI reads, else ``sqlite:///orders.db``);
- ``ORDERS_FAULTS``: a JSON :class:`Faults`, how the simulated providers misbehave (default: never).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field

from examples.orders.adapters.db import Database
from examples.orders.adapters.inventory import Inventory
from examples.orders.adapters.notifications import EmailProvider, Outbox
from examples.orders.adapters.orders import OrderRepository
from examples.orders.adapters.payments import GatewayBehaviour, PaymentGateway
from examples.orders.adapters.shipping import Carrier, CarrierBehaviour

DATABASE_VARIABLE = "ORDERS_DATABASE_URL"
FAULTS_VARIABLE = "ORDERS_FAULTS"
DEFAULT_URL = "sqlite:///orders.db"
SYSTEM_RESOURCE = "system"
"""The name the shop's runtime holds its :class:`OrderSystem` under, for steps to ask for."""


@dataclass(frozen=True, slots=True)
class Faults:
    """How often each simulated provider fails, and how slow the payment gateway is."""

    gateway_latency_seconds: tuple[float, float] = (0.0, 0.0)
    gateway_transient_rate: float = 0.0
    gateway_lost_response_rate: float = 0.0
    carrier_transient_rate: float = 0.0
    email_failure_rate: float = 0.0

    def to_json(self) -> str:
        """The faults as the JSON ``ORDERS_FAULTS`` holds."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Faults:
        """Faults read from ``ORDERS_FAULTS``'s JSON (missing fields keep their defaults)."""
        values = json.loads(text)
        if "gateway_latency_seconds" in values:
            low, high = values["gateway_latency_seconds"]
            values["gateway_latency_seconds"] = (float(low), float(high))
        return cls(**values)


@dataclass
class OrderSystem:
    """The application's database and the adapters over it, for one process."""

    db: Database
    faults: Faults = field(default_factory=Faults)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        faults = self.faults
        self.orders = OrderRepository()
        self.inventory = Inventory()
        self.outbox = Outbox(self.db)
        self.gateway = PaymentGateway(
            self.db,
            GatewayBehaviour(
                latency_seconds=faults.gateway_latency_seconds,
                transient_error_rate=faults.gateway_transient_rate,
                lost_response_rate=faults.gateway_lost_response_rate,
            ),
            self.rng,
        )
        self.carrier = Carrier(self.db, CarrierBehaviour(faults.carrier_transient_rate), self.rng)
        self.mailer = EmailProvider(self.db, faults.email_failure_rate, self.rng)

    @classmethod
    def open(cls, url: str, faults: Faults | None = None, *, create_schema: bool = False) -> OrderSystem:
        """The system on the database at ``url``; with ``create_schema``, its tables are created first."""
        db = Database(url)
        if create_schema:
            db.create_schema()
        return cls(db, faults or Faults())

    @classmethod
    def from_environment(cls) -> OrderSystem:
        """The system a worker process builds: ``$ORDERS_DATABASE_URL`` and ``$ORDERS_FAULTS``."""
        text = os.environ.get(FAULTS_VARIABLE)
        return cls.open(database_url_from_env(), Faults.from_json(text) if text else None)

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()


def database_url_from_env() -> str:
    """The application's database URL, as worker processes find it in their environment."""
    return os.environ.get(DATABASE_VARIABLE) or os.environ.get("CONVEYOR_BACKEND") or DEFAULT_URL
